"""Checks of a pipeline config beyond its JSON schema, run before any job starts.

Every error names the config key, the bad value and the allowed values.
"""

from __future__ import annotations

from pathlib import Path

from .errors import BadInput


def _check_model(name: str, key: str) -> None:
    from .architectures import ARCHITECTURES
    from .models.registry import MODELS

    if name in MODELS or name in ARCHITECTURES or Path(name).is_dir() or "/" in name:
        return
    raise BadInput(f"config {key}: unknown model {name!r}; allowed: {', '.join(MODELS)}, a local model "
                   f"directory or a hub id (org/name)")


def check_study(config: dict, experiments_dir: str | Path = "experiments") -> None:
    from .config import build_config
    from .memory_model import parse_cell
    from .methods import get_method

    exp_dir = Path(experiments_dir)
    known = sorted(p.stem for p in exp_dir.glob("*.yaml"))
    for model in config["models"]:
        _check_model(model, "models")
    launcher = config["launcher"]["type"]
    if launcher in ("fsdp", "deepspeed"):
        raise BadInput(f"config launcher.type: {launcher!r} is not supported by lisa-bench's training loop (LISA "
                       f"changes the trainable set, which sharded parameters fix at wrap time); allowed: single, ddp")
    overrides = config.get("experiment_overrides") or {}
    for exp in config["experiments"]:
        if exp not in known:
            raise BadInput(f"config experiments: unknown experiment {exp!r}; allowed: {', '.join(known)}")
        extra = dict(overrides.get(exp) or {})
        options = extra.pop("method_options", {})
        try:
            cfg = build_config(exp_dir / f"{exp}.yaml", extra, options)
            cls = get_method(cfg.method)
            opts = cls.parse_options(cfg.method_options)
        except BadInput as exc:
            raise BadInput(f"config experiments[{exp}]: {exc}") from None
        gamma = getattr(opts, "gamma", None)
        if gamma is not None:
            for model in config["models"]:
                layers = _num_layers(model)
                if layers is not None and gamma > layers:
                    raise BadInput(f"config experiments[{exp}]: gamma {gamma} is larger than the {layers} decoder "
                                   f"blocks of {model}; allowed: 0..{layers}")
    for key in [k for k in overrides if k not in config["experiments"]]:
        raise BadInput(f"config experiment_overrides: {key!r} is not in experiments; allowed: "
                       f"{', '.join(config['experiments'])}")
    _check_tasks(config["lm_eval"]["tasks"])
    memory = config.get("memory") or {}
    for model in memory.get("models", []):
        _check_model(model, "memory.models")
    for cell in memory.get("methods", []):
        try:
            parse_cell(cell)
        except BadInput as exc:
            raise BadInput(f"config memory.methods: {exc}") from None
    judge = config["mt_bench"]["judge"]
    if judge.startswith("hf:"):
        _check_model(judge[3:], "mt_bench.judge")


def _num_layers(model: str) -> int | None:
    from .architectures import ARCHITECTURES, architecture_config

    if model in ARCHITECTURES:
        cfg = architecture_config(model)
        return getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None)
    if model.startswith("tiny-random-llama"):
        return 8
    return None


def _check_tasks(tasks: list[str]) -> None:
    from .evaluation.lm_eval_runner import OFFLINE_TASKS, PAPER_TASKS, task_manager

    unknown = [t for t in tasks if t not in OFFLINE_TASKS and t not in PAPER_TASKS]
    if unknown:
        known = set(task_manager().all_tasks)
        for t in unknown:
            if t not in known:
                raise BadInput(f"config lm_eval.tasks: unknown task {t!r}; allowed: {', '.join(OFFLINE_TASKS)}, "
                               f"{', '.join(PAPER_TASKS)}, or any lm-eval task name")
