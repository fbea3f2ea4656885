"""``lisa-bench eval``: lm-evaluation-harness (``simple_evaluate``, model ``hf``) on a trained run or a
registered model, with the project's offline tasks registered through ``TaskManager(include_path=...)``.

Each task carries its own few-shot count and prompt format: ``{name, num_fewshot, apply_chat_template}``
or a bare name. The defaults are lm-eval's own: the task's default shots, and no chat template. Tasks
that share settings run in one ``simple_evaluate`` call; shots and template are recorded per task in
``lm_eval.json``, ``scores.json`` and the tables.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .. import atomic, yaml_io
from ..devices import resolve_device
from ..errors import BadInput, choices_error

TASKS_DIR = Path(__file__).parent / "tasks"
OFFLINE_TASKS = ("synthetic_qa", "synthetic_mc")
# The paper's benchmarks by their lm-eval names, with the shots the paper states (None: lm-eval's default).
PAPER_TASKS = {"mmlu": 5, "agieval": None, "winogrande": None, "gsm8k": None, "pubmedqa": 5}
TASK_KEYS = ("name", "num_fewshot", "apply_chat_template")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    num_fewshot: int | None = None  # None: the task's own default
    apply_chat_template: bool = False  # lm-eval's default: plain prompts

    @classmethod
    def parse(cls, entry, where: str = "task") -> "TaskSpec":
        """A bare task name, or a mapping of TASK_KEYS."""
        if isinstance(entry, str):
            return cls(entry)
        if not isinstance(entry, dict) or "name" not in entry:
            raise BadInput(f"{where}: {entry!r} is neither a task name nor a mapping with a 'name'; valid keys: "
                           f"{', '.join(TASK_KEYS)}")
        if not isinstance(entry["name"], str) or not entry["name"]:
            raise BadInput(f"{where}: task name {entry['name']!r} must be a non-empty string (an lm-eval task name)")
        for key in entry:
            if key not in TASK_KEYS:
                raise choices_error("key", key, TASK_KEYS, where=f"{where} {entry['name']!r}")
        shots = entry.get("num_fewshot")
        if shots is not None and (not isinstance(shots, int) or isinstance(shots, bool) or shots < 0):
            raise BadInput(f"{where} {entry['name']!r}: num_fewshot must be an integer >= 0 or null, got {shots!r}")
        template = entry.get("apply_chat_template", False)
        if not isinstance(template, bool):
            raise BadInput(f"{where} {entry['name']!r}: apply_chat_template must be true or false, got {template!r}")
        return cls(entry["name"], shots, template)

    def label(self) -> str:
        shots = "default shots" if self.num_fewshot is None else f"{self.num_fewshot}-shot"
        return f"{shots}{', chat template' if self.apply_chat_template else ''}"


def parse_task_specs(entries, where: str = "task") -> list[TaskSpec]:
    specs = [TaskSpec.parse(e, where) for e in entries]
    seen = [s.name for s in specs]
    dup = next((n for n in seen if seen.count(n) > 1), None)
    if dup:
        raise BadInput(f"{where}: task {dup!r} is listed twice")
    return specs


def task_manager(tasks: list[str] | None = None):
    """lm-eval's task index with the project's tasks added. When every task asked for is one of the project's
    own, lm-eval's ~15,000 bundled tasks are left out of the index (indexing them takes seconds per job)."""
    from lm_eval.tasks import TaskManager

    own = tasks is not None and all(t in OFFLINE_TASKS for t in tasks)
    return TaskManager(include_path=str(TASKS_DIR), include_defaults=not own)


@functools.lru_cache(maxsize=1)
def _all_task_names() -> frozenset[str]:
    """Every task lm-eval knows, with the project's (indexed once per process: about 20 s here)."""
    return frozenset(task_manager(None).all_tasks)


def check_tasks(tasks: list[str], where: str = "") -> None:
    """The one task check: the offline and paper tasks are known without asking lm-eval; anything else
    must be an lm-eval task name."""
    unknown = [t for t in tasks if t not in OFFLINE_TASKS and t not in PAPER_TASKS]
    if not unknown:
        return
    known = _all_task_names()
    for t in unknown:
        if t not in known:
            raise choices_error("task", t, [f"{', '.join(OFFLINE_TASKS)} (offline)",
                                            f"{', '.join(PAPER_TASKS)} (the paper's, need the hub)"],
                                where=where, more=", or any lm-eval task name")


def load_target(run: str | None, model: str | None, device: str, dtype: str = "fp32"):
    """The model to evaluate: a run directory (full weights, or base + LoRA adapter merged) or a name."""
    from ..models import load_model

    if bool(run) == bool(model):
        raise BadInput("give exactly one of --run DIR or --model NAME")
    if model:
        loaded = load_model(model, dtype=dtype)
        return loaded.model.to(device).eval(), loaded.tokenizer, {"model": model}
    run_dir = Path(run)
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        raise BadInput(f"run directory {run!r} has no metrics.json (not a lisa-bench train output)")
    metrics = json.loads(metrics_path.read_text())
    info = {"run": str(run_dir), "method": metrics["method"], "model": metrics["model"], "seed": metrics["seed"]}
    if not (run_dir / "model").is_dir():  # a run that trained nothing: the model it names
        loaded = load_model(metrics["model"], seed=metrics["seed"], dtype=dtype)
        return loaded.model.to(device).eval(), loaded.tokenizer, info
    if (run_dir / "model" / "adapter_config.json").exists():
        from peft import PeftModel

        base = load_model(metrics["model"], seed=metrics["seed"], dtype=dtype)
        peft_model = PeftModel.from_pretrained(base.model, run_dir / "model")
        # merging is exact up to rounding and gives lm-eval a plain transformers model
        return peft_model.merge_and_unload().to(device).eval(), base.tokenizer, info
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..models.registry import resolve_dtype

    model_obj = AutoModelForCausalLM.from_pretrained(run_dir / "model", dtype=resolve_dtype(dtype))
    return model_obj.to(device).eval(), AutoTokenizer.from_pretrained(run_dir / "model"), info


def scores_from_results(results: dict, specs: dict[str, TaskSpec] | None = None) -> list[dict]:
    rows = []
    for task, metrics in results["results"].items():
        spec = (specs or {}).get(task)
        n = results.get("n-samples", {}).get(task, {}).get("effective")
        for key, value in metrics.items():
            if key in ("alias", "sample_len") or "_stderr," in key or not isinstance(value, (int, float)):
                continue
            metric, _, filt = key.partition(",")
            stderr = metrics.get(f"{metric}_stderr,{filt}")
            rows.append({"task": task, "metric": metric, "filter": filt, "value": value,
                         "stderr": stderr if isinstance(stderr, (int, float)) and math.isfinite(stderr) else None,
                         "n": n, "num_fewshot": results.get("n-shot", {}).get(task),
                         "apply_chat_template": spec.apply_chat_template if spec else None})
    return rows


def run_eval(run: str | None, model: str | None, specs: list[TaskSpec], output_dir: str | Path, limit: int | None,
             batch_size: int | str, device: str, seed: int = 0, engine: str = "hf") -> list[dict]:
    from lm_eval import simple_evaluate

    from ..provenance import provenance
    from ..runs import copy_identity
    from .engines import check_engine

    check_engine(engine, device)
    check_tasks([s.name for s in specs])
    manager = task_manager([s.name for s in specs])
    if engine == "vllm":  # lm-eval's vllm model type loads the weights itself
        from lm_eval.api.registry import get_model

        from .engines import lm_eval_model_args, vllm_target

        if run and not Path(run, "metrics.json").is_file():
            raise BadInput(f"run directory {run!r} has no metrics.json (not a lisa-bench train output)")
        info = {"run": run, "model": model, "engine": "vllm"}
        lm = get_model("vllm").create_from_arg_string(lm_eval_model_args(vllm_target(run, model)),
                                                       {"batch_size": batch_size, "device": device})
    else:
        from lm_eval.models.huggingface import HFLM

        model_obj, tokenizer, info = load_target(run, model, device)
        lm = HFLM(pretrained=model_obj, tokenizer=tokenizer, batch_size=batch_size, device=device)
    groups: dict[tuple, list[str]] = {}  # tasks that share shots and prompt format run together
    for spec in specs:
        groups.setdefault((spec.num_fewshot, spec.apply_chat_template), []).append(spec.name)
    merged: dict = {"results": {}, "configs": {}, "versions": {}, "n-samples": {}, "n-shot": {}}
    samples: list[dict] = []
    for (shots, template), names in groups.items():
        results = simple_evaluate(model=lm, tasks=names, num_fewshot=shots, limit=limit, task_manager=manager,
                                  apply_chat_template=template, device=device, random_seed=seed,
                                  numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
                                  log_samples=True)
        for key in merged:
            merged[key].update(results.get(key) or {})
        samples += per_question(results.get("samples") or {})
    by_name = {s.name: s for s in specs}
    scores = scores_from_results(merged, by_name)
    config = {"run": run, "model": model, "tasks": [asdict(s) for s in specs], "limit": limit,
              "batch_size": batch_size, "device": device, "seed": seed, "engine": engine}
    out = Path(output_dir)
    atomic.write_json(out / "lm_eval.json", {"target": info, "tasks": [asdict(s) for s in specs], **merged,
                                             "provenance": provenance(config, torch.device(device))})
    atomic.write_json(out / "scores.json", scores)
    # each question's score, for comparisons paired over the same questions
    atomic.write_text(out / "samples.jsonl", "".join(json.dumps(r) + "\n" for r in samples))
    copy_identity(run, out)  # the evaluated run's model, experiment and seed, for the report
    return scores


PAIRED_METRICS = ("exact_match", "acc", "acc_norm")


def per_question(samples: dict) -> list[dict]:
    """(task, doc_id, metric, value) of every question of lm-eval's logged samples, for the metrics that a
    paired comparison over questions makes sense for (exact match, accuracy)."""
    rows = []
    for task, docs in samples.items():
        for doc in docs:
            for metric in PAIRED_METRICS:
                if isinstance(doc.get(metric), (int, float)):
                    rows.append({"task": task, "doc_id": doc["doc_id"], "metric": metric,
                                 "value": float(doc[metric])})
    return rows


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run or a model with lm-evaluation-harness",
                       description="Runs lm-eval's simple_evaluate (model hf) and writes OUT/lm_eval.json and "
                                   "OUT/scores.json. Offline tasks: " + ", ".join(OFFLINE_TASKS) + "; the paper's: "
                                   + ", ".join(f"{t} ({s}-shot)" if s else t for t, s in PAPER_TASKS.items()) + ".")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--run", help="a lisa-bench train output directory")
    target.add_argument("--model", help="a registered model name, local dir or hub id (untrained)")
    p.add_argument("--tasks", default=",".join(OFFLINE_TASKS), help="comma-separated lm-eval task names")
    p.add_argument("--num-fewshot", type=int, help="shots for every task in --tasks (default: each task's own)")
    p.add_argument("--apply-chat-template", action="store_true",
                   help="render --tasks prompts with the model's chat template (default: lm-eval's plain prompts)")
    p.add_argument("--task-specs", metavar="YAML",
                   help="per-task settings instead of --tasks, e.g. '[{name: mmlu, num_fewshot: 5}, synthetic_qa]' "
                        "(keys: " + ", ".join(TASK_KEYS) + ")")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--limit", type=int, help="evaluate the first N examples of each task")
    p.add_argument("--batch-size", default="8", help="an integer, or auto (lm-eval finds the largest that fits)")
    p.add_argument("--engine", default="hf", help="hf (transformers, default) or vllm (optional extra, CUDA)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available); always passed to lm-eval")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args) -> int:
    device = str(resolve_device(args.device))
    if args.limit is not None and args.limit < 1:
        raise BadInput(f"--limit must be >= 1, got {args.limit}")
    batch = args.batch_size if args.batch_size.startswith("auto") else _positive_int(args.batch_size, "--batch-size")
    if args.task_specs:
        import yaml

        if args.num_fewshot is not None or args.apply_chat_template:  # each task's own settings would win silently
            raise BadInput("--num-fewshot and --apply-chat-template go with --tasks; with --task-specs give them per "
                           "task, e.g. '[{name: mmlu, num_fewshot: 5, apply_chat_template: false}]'")
        try:
            entries = yaml_io.load(args.task_specs)
        except yaml.YAMLError as exc:
            raise BadInput(f"--task-specs: malformed YAML ({str(exc).splitlines()[0]})") from None
        specs = parse_task_specs(entries if isinstance(entries, list) else [entries], "--task-specs")
    else:
        if args.num_fewshot is not None and args.num_fewshot < 0:
            raise BadInput(f"--num-fewshot must be >= 0, got {args.num_fewshot}")
        specs = [TaskSpec(t, args.num_fewshot, args.apply_chat_template) for t in args.tasks.split(",") if t]
    if not specs:
        raise BadInput(f"no task to evaluate (--tasks {args.tasks!r}, --task-specs {args.task_specs!r}); give at least "
                       f"one, e.g. --tasks {','.join(OFFLINE_TASKS)}")
    scores = run_eval(args.run, args.model, specs, args.output_dir, args.limit, batch, device, args.seed, args.engine)
    for s in scores:
        err = f" ± {s['stderr']:.4f}" if s["stderr"] is not None else ""
        shots = f"{s['num_fewshot']}-shot" + (", chat" if s["apply_chat_template"] else "")
        print(f"{s['task']:<16} {s['metric']:<12} {s['value']:.4f}{err}  (n={s['n']}, {shots})")
    return 0


def _positive_int(text: str, flag: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise BadInput(f"{flag} must be a positive integer or auto, got {text!r}")
    return value
