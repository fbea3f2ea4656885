"""Checks of a pipeline config beyond its JSON schema, run before any job starts.

Every error names the config key, the bad value and the valid choices.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import sys
from pathlib import Path

from .errors import BadInput, check_choice, choices_error
from .memory.fit import check_fit, parse_bytes


def _check_model(name: str, key: str) -> None:
    from .models.registry import MODELS, OTHER, is_known_model

    if not is_known_model(name):
        raise choices_error("model", name, list(MODELS) + [f"{OTHER} (org/name)"], where=f"config {key}")


def _check_on_model(cfg, model_name: str, where: str) -> None:
    """Set the experiment's method up on a meta-device copy of the model (no weights): catches what only
    the model can tell, such as more LISA layers than it has blocks. Skipped for models whose config
    cannot be read offline."""
    import torch
    from transformers import AutoModelForCausalLM

    from .models import model_config

    try:
        config = model_config(model_name)
    except BadInput:
        return
    from .precision import loses_updates, resolve_precision

    precision = resolve_precision(cfg.precision)
    try:
        with torch.device("meta"):  # the method's own modules too (peft's adapters): no initialisation runs
            method = cfg.build_method()
            model = method.prepare_model(AutoModelForCausalLM.from_config(config, dtype=precision.weights))
    except BadInput as exc:
        raise BadInput(f"{where} on {model_name}: {exc}") from None
    if method.trains and loses_updates(precision, (p for p in model.parameters() if p.requires_grad)):
        from .memory.plan import lost_updates_note

        print(f"{lost_updates_note(cfg.precision, [cfg.method])} ({where} on {model_name})", file=sys.stderr)


def check_study(config: dict, experiments_dir: str | Path = "experiments") -> None:
    from .config import experiment_names
    from .evaluation.lm_eval_runner import check_tasks, parse_task_specs
    from .memory.cells import MemoryCell
    from .runs import model_dirs

    for model in config["models"]:
        _check_model(model, "models")
    model_dirs(config["models"])  # each model names one safe run directory
    root = Path(experiments_dir).parent  # the project directory, where the jobs run
    _check_dataset(config["dataset"], root)
    launcher, processes = config["launcher"]["type"], config["launcher"].get("num_processes", 1)
    if launcher == "single" and processes != 1:
        raise BadInput(f"config launcher.num_processes: {processes} with type 'single', which runs one process; "
                       f"valid: num_processes 1, or type ddp or fsdp for {processes} processes")
    nodes = config["launcher"].get("nodes", 1)
    if nodes > 1 and launcher not in ("ddp", "fsdp"):
        raise BadInput(f"config launcher.nodes: {nodes} with type {launcher!r}, which runs on one node; valid: "
                       f"nodes 1, or type ddp or fsdp over {nodes} nodes")
    processes *= nodes  # the world: what sharding, the global batch and the memory model see
    if launcher == "deepspeed":
        from .training.distributed import refuse_deepspeed

        refuse_deepspeed("config launcher.type: 'deepspeed'", ("single", "ddp", "fsdp"))
    if launcher == "fsdp":
        from .training.distributed import check_fsdp

        try:
            check_fsdp(processes, config["device"])
        except BadInput as exc:
            raise BadInput(f"config launcher: {exc}") from None
    overrides = config.get("experiment_overrides") or {}
    known = experiment_names(experiments_dir)
    for exp in config["experiments"]:
        if exp not in known:
            raise choices_error("experiment", exp, known, where="config experiments")
    _check_grid(config, experiments_dir)
    points = grid_points(config)
    for base in (config.get("comparisons") or {}).get("baselines", []):
        if base not in points:
            raise choices_error("experiment", base, list(points), where="config comparisons.baselines",
                                more=" (the study's experiments and grid points)")
    if "plan" in config.get("stages", []):  # the memory model's tables: their axes name known things
        from .memory.plan_tables import check_spec

        check_spec(config.get("plan"))
        for name, table in config["plan"].items():
            for exp in table.get("experiments", []) + [m["method"] for m in table.get("models", [])
                                                       if isinstance(m, dict)] + [table.get("claim", {}).get("baseline")]:
                if exp is not None and exp not in known:
                    raise choices_error("experiment", exp, known, where=f"config plan.{name}")
    if config.get("paper"):  # the paper's numbers for this study: every cell names a model and experiment of it
        from .reporting.paper import check_reference

        memory_cfg = config.get("memory") or {}
        check_reference(Path(experiments_dir).parent / config["paper"],
                        list(dict.fromkeys(config["models"] + memory_cfg.get("models", []))),
                        list(dict.fromkeys(list(points) + [Path(m).stem for m in memory_cfg.get("methods", [])])))
    families = _check_runs(config, points, experiments_dir, launcher, processes)
    matched = (config.get("comparisons") or {}).get("matched")
    if matched is not None:
        check_choice("method family", matched, sorted(set(families)), where="config comparisons.matched",
                     more=" (the method families of the study's runs)")
    memory = config.get("memory") or {}
    listed = list(dict.fromkeys(config["experiments"] + memory.get("methods", [])))
    for key in [k for k in overrides if k not in listed]:
        raise choices_error("experiment", key, listed, where="config experiment_overrides")
    _check_experiment_seeds(config)
    specs = parse_task_specs(config["lm_eval"]["tasks"], "config lm_eval.tasks")
    check_tasks([s.name for s in specs], where="config lm_eval.tasks")
    _check_figure_score(config, [s.name for s in specs])
    for model in memory.get("models", []):
        _check_model(model, "memory.models")
    stems = [Path(exp).stem for exp in memory.get("methods", [])]
    for stem in [s for i, s in enumerate(stems) if s in stems[:i]]:
        raise BadInput(f"config memory.methods: two experiments named {stem!r} (a name and a path, or two paths); "
                       f"valid: experiments whose file names differ, since each names its memory cell")
    for exp in memory.get("methods", []):
        try:
            MemoryCell.from_experiment(exp, experiments_dir, overrides.get(exp))
        except BadInput as exc:
            raise BadInput(f"config memory.methods: {exc}") from None
    _check_method_models(config)
    _check_memory_grid(config)
    if "memory" in config.get("stages", ["train", "memory"]):
        _note_refused_cells(config, experiments_dir, overrides)
    _check_sweep(config, overrides)
    mt_bench = config.get("mt_bench")
    if mt_bench and mt_bench["judge"].startswith("hf:"):
        _check_model(mt_bench["judge"][3:], "mt_bench.judge")
    if mt_bench:
        source = mt_bench["questions"]
        if source not in ("offline", "upstream") and not (root / source / "question.jsonl").is_file():
            raise choices_error("question source", source, ["offline", "upstream"], where="config mt_bench.questions",
                                more=", or a directory with question.jsonl and judge_prompts.jsonl")


GRID_SEP = "+"  # lora-r128+rank=16: the grid point rank 16 of experiment lora-r128
# what a study varies by its own keys (models, seeds, dataset, device), never by a grid
NOT_GRIDDED = ("model", "seed", "dataset", "device", "method", "method_module")


def _label(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)


def grid_points(config: dict) -> dict[str, tuple[str, dict]]:
    """Every experiment a study runs: {name: (experiment file, settings over it)}. An experiment with a ``grid``
    entry runs once per point of its grid (the product of its axes), named ``<experiment>+<key>=<value>...``;
    each axis is a training setting or an option of the experiment's method."""
    grid = config.get("grid") or {}
    points: dict[str, tuple[str, dict]] = {}
    for exp in config["experiments"]:
        axes = grid.get(exp) or {}
        for values in itertools.product(*axes.values()):
            point = dict(zip(axes, values))
            points[exp + "".join(f"{GRID_SEP}{k}={_label(v)}" for k, v in point.items())] = (exp, point)
    return points


def point_layer(point: dict) -> dict:
    """A grid point's settings as a config layer: training settings as they are, the rest as method options."""
    from .config import FIELDS

    options = {k: v for k, v in point.items() if k not in FIELDS}
    return {**{k: v for k, v in point.items() if k in FIELDS}, **({"method_options": options} if options else {})}


def _check_grid(config: dict, experiments_dir) -> None:
    """``grid: {experiment: {key: [values]}}``: experiments of the study, each key a training setting or an option
    of the experiment's method (not one the study varies by its own keys), each axis a list of distinct values."""
    from .config import FIELDS, build_config

    for exp, axes in (config.get("grid") or {}).items():
        where = f"config grid[{exp}]"
        check_choice("experiment", exp, config["experiments"], where="config grid")
        if not isinstance(axes, dict) or not axes:
            raise BadInput(f"{where}: {axes!r} is not a mapping of setting or option: [values]; e.g. {{rank: [16, 64]}}")
        method = build_config(Path(experiments_dir) / f"{exp}.yaml", {}, {}).build_method()
        options = sorted(f.name for f in dataclasses.fields(type(method.options)))
        for key, values in axes.items():
            if key in NOT_GRIDDED or (key not in FIELDS and key not in options):
                valid = [k for k in sorted(FIELDS) if k not in NOT_GRIDDED and k != "method_options"]
                raise choices_error("grid key", key, valid + [f"{o} (option of {method.name})" for o in options],
                                    where=where)
            _check_axis(values, f"{where}.{key}")
            for value in values:  # each value names its runs' directories and the tables' rows
                if not re.fullmatch(r"[A-Za-z0-9._-]+", _label(value)):
                    raise BadInput(f"{where}.{key}: value {value!r} cannot name a run ({_label(value)!r}); valid: "
                                   f"numbers, true/false, or words of letters, digits, '.', '_' and '-'")


def _check_axis(values, where: str) -> None:
    """A grid axis (training's `grid`, the memory table's `memory.grid`): a non-empty list of distinct values."""
    if not isinstance(values, list) or not values:
        raise BadInput(f"{where}: {values!r} is not a non-empty list of values")
    repeated = [v for i, v in enumerate(values) if v in values[:i]]
    if repeated:
        raise BadInput(f"{where}: value {repeated[0]!r} is listed twice; valid: distinct values")


def _check_runs(config: dict, points: dict, experiments_dir, launcher: str, processes: int) -> list[str]:
    """Each run's settings as its training job gets them (the file, the study's training:, its overrides, its
    grid point), checked on each model; two runs whose settings are the same are refused. Returns each run's
    method family (``Method.family``)."""
    from .config import build_config

    overrides = config.get("experiment_overrides") or {}
    gpu_memory = parse_bytes(config["gpu_memory"], "config gpu_memory") if config.get("gpu_memory") is not None else None
    same: dict[str, str] = {}
    families: list[str] = []
    for name, (exp, point) in points.items():
        where = f"config grid[{exp}] point {name}" if point else f"config experiments[{exp}]"
        try:
            cfg = build_config(Path(experiments_dir) / f"{exp}.yaml", {}, {},
                               layers=[config.get("training") or {}, overrides.get(exp) or {}, point_layer(point),
                                       {"sharding": "fsdp"} if launcher == "fsdp" else {}])
            method = cfg.build_method()
            if launcher == "fsdp" and method.not_shardable:
                raise BadInput(f"method {cfg.method!r} cannot train on FSDP2-sharded parameters: "
                               f"{method.not_shardable}; valid launchers for it: single, ddp")
            cfg.process_batch_size(processes if launcher != "single" else 1)
        except BadInput as exc:
            raise BadInput(f"{where}: {exc}") from None
        # the settings and the method's resolved options (an option left at its default equals one set to it)
        key = repr(sorted({**dataclasses.asdict(cfg), "method_options": dataclasses.asdict(method.options)}.items()))
        if key in same:
            raise BadInput(f"{where}: makes the same run as {same[key]!r} (equal settings); valid: grid points and "
                           f"experiments that differ")
        same[key] = name
        families.append(type(method).family(dataclasses.asdict(method.options)))
        for model in config["models"]:
            _check_on_model(cfg, model, where)
            if gpu_memory and method.trains:
                if check_fit(cfg, model, gpu_memory, where, launcher, processes) is None:
                    print(f"lisa-bench: note: {where} on {model}: its config cannot be read offline, so its fit in "
                          f"gpu_memory is not checked", file=sys.stderr)
    return families


MEMORY_METHODS = ["full", "lora-r128", "lisa-e-h-2l"]  # memory.methods' default


def _memory_axes(config: dict) -> tuple[list[str], list[str], dict]:
    """The memory table's models, methods and method_models, defaults filled in."""
    memory = config.get("memory") or {}
    return (memory.get("models", config["models"]), memory.get("methods", MEMORY_METHODS),
            memory.get("method_models") or {})


# what a memory grid may vary (`memory.grid`), each a key of `memory:` that sets it for every cell
MEMORY_GRID_KEYS = ("dtype", "seq_len", "batch_size", "attn_implementation", "gradient_checkpointing")


def memory_cell_points(config: dict) -> dict[str, tuple[str, dict]]:
    """The memory table's columns: {name: (experiment as `memory.methods` gives it, shape settings over
    `memory:`'s)}. Without `memory.grid` a cell is named by its experiment's file name; with it, each experiment
    is measured at every point of the grid, named ``<experiment>+<key>=<value>...`` as training grid points are."""
    axes = (config.get("memory") or {}).get("grid") or {}
    cells: dict[str, tuple[str, dict]] = {}
    for exp in _memory_axes(config)[1]:
        for values in itertools.product(*axes.values()):
            point = dict(zip(axes, values))
            cells[Path(exp).stem + "".join(f"{GRID_SEP}{k}={_label(v)}" for k, v in point.items())] = (exp, point)
    return cells


def memory_cells(config: dict) -> list[tuple[str, str]]:
    """The memory table's cells, (model, cell) as the study names them: every cell of `memory_cell_points` on every
    model of `memory.models`, or on the models `memory.method_models` gives its experiment."""
    models, _, own = _memory_axes(config)
    return [(m, name) for m in models for name, (e, _) in memory_cell_points(config).items()
            if m in own.get(e, own.get(Path(e).stem, models))]


def _check_memory_grid(config: dict) -> None:
    """`memory.grid: {key: [values]}`: keys of MEMORY_GRID_KEYS not also set alone in `memory:`, each a non-empty
    list of distinct values the key accepts (the schema's own list for dtype and attention)."""
    memory = config.get("memory") or {}
    grid = memory.get("grid") or {}
    for key, values in grid.items():
        where = f"config memory.grid.{key}"
        check_choice("memory grid key", key, list(MEMORY_GRID_KEYS), where="config memory.grid")
        if key in memory:
            raise BadInput(f"{where}: memory.{key} is also set ({memory[key]!r}); valid: a key set once, in "
                           f"memory: for every cell or in memory.grid to vary it")
        _check_axis(values, where)
        for value in values:
            _check_memory_value(key, value, where)


def _note_refused_cells(config: dict, experiments_dir, overrides: dict) -> None:
    """A memory cell whose recipe cannot serve its method is measured as a skipped row: said once, here."""
    from .memory.cells import MemoryCell
    from .precision import check_method, resolve_precision

    memory = config.get("memory") or {}
    default = memory.get("dtype", "bf16" if config["device"] == "cuda" else "fp32")
    for name, (exp, point) in memory_cell_points(config).items():
        try:
            method = MemoryCell.from_experiment(exp, experiments_dir, overrides.get(exp)).build()
            check_method(resolve_precision(point.get("dtype", default)), method)
        except BadInput as exc:
            print(f"lisa-bench: note: memory cell {name} will be a skipped row: {exc}", file=sys.stderr)


def _check_memory_value(key: str, value, where: str) -> None:
    from .config import ATTENTION
    from .precision import PRECISIONS

    choices = {"dtype": list(PRECISIONS), "attn_implementation": list(ATTENTION),
               "gradient_checkpointing": [True, False]}.get(key)
    if choices is not None:
        check_choice(key, value, choices, where=where)
    elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInput(f"{where}: {value!r} is not a whole number >= 1")


def _check_method_models(config: dict) -> None:
    models, methods, own = _memory_axes(config)
    for exp, listed in own.items():
        check_choice("experiment", exp, list(dict.fromkeys(methods + [Path(m).stem for m in methods])),
                     where="config memory.method_models")
        for model in listed:
            check_choice("model", model, models, where=f"config memory.method_models[{exp}]",
                         more=" (memory.models)")


def experiment_seeds(config: dict, exp: str) -> list[int]:
    """The seeds an experiment (or grid point) trains: its own `experiment_seeds` entry (a subset of the study's),
    else its experiment's, else every seed."""
    own = config.get("experiment_seeds") or {}
    return list(own.get(exp) or own.get(exp.split(GRID_SEP)[0]) or config["seeds"])


def _check_experiment_seeds(config: dict) -> None:
    """`experiment_seeds: {experiment: [seeds]}` names experiments of the study and seeds of its `seeds`, so that a
    study can run one seed of everything and a second of what its time allows."""
    seeds = config["seeds"]
    for exp, own in (config.get("experiment_seeds") or {}).items():
        check_choice("experiment", exp, list(dict.fromkeys([*config["experiments"], *grid_points(config)])),
                     where="config experiment_seeds", more=" (the study's experiments and grid points)")
        if not isinstance(own, list) or not own:
            raise BadInput(f"config experiment_seeds[{exp}]: {own!r} is not a non-empty list of seeds; valid choices: "
                           f"a list of the study's seeds ({', '.join(map(str, seeds))})")
        for seed in own:
            check_choice("seed", seed, seeds, where=f"config experiment_seeds[{exp}]", more=" (the study's seeds)")


def _check_dataset(name: str, root: Path) -> None:
    """The study's dataset: a registered name, or a local .json/.jsonl file (relative to the project directory)."""
    from .data.registry import dataset_names

    if name in dataset_names():
        return
    if Path(name).suffix in (".json", ".jsonl"):
        if not (root / name).is_file():
            raise BadInput(f"config dataset: file {name!r} does not exist (in {str(root.resolve())!r})")
        return
    raise choices_error("dataset", name, dataset_names(), where="config dataset", more=", or a local .json/.jsonl file")


def _check_figure_score(config: dict, tasks: list[str]) -> None:
    """figures.score names a score the study will have: the held-out loss, MT-Bench's where it runs MT-Bench,
    or a metric of one of its lm-eval tasks (``task/metric``; the metric itself is checked by the report, which
    sees what lm-eval returned)."""
    score = (config.get("figures") or {}).get("score")
    if score is None:
        return
    valid = ["eval_loss"] + (["mt_bench"] if config.get("mt_bench") else []) + [f"{t}/<metric>" for t in tasks]
    task, _, metric = score.partition("/")
    if not (score == "eval_loss" or (score == "mt_bench" and config.get("mt_bench")) or (task in tasks and metric)):
        raise choices_error("figure score", score, valid, where="config figures.score",
                            more=" (the held-out loss, MT-Bench's overall score where the study runs it, a metric "
                                 "of its lm_eval tasks)")


def _check_sweep(config: dict, overrides: dict) -> None:
    """A learning-rate grid per experiment of the study, each a non-empty list of positive rates, on a dataset
    with a held-out split (the grid is scored by its loss)."""
    sweep = config.get("sweep")
    if not sweep:
        return
    grids = sweep.get("lr") or {}
    if not grids:
        raise BadInput("config sweep.lr: no grid; give experiment: [rates], e.g. {lisa-e-h-2l: [1e-5, 5e-5, 2e-4]}")
    names = list(dict.fromkeys([*config["experiments"], *grid_points(config)]))
    for exp, grid in grids.items():
        if exp not in names:
            raise choices_error("experiment", exp, names, where="config sweep.lr",
                                more=" (an experiment sweeps each of its grid points; a grid point, itself)")
        if "lr" in ((config.get("grid") or {}).get(exp.split(GRID_SEP)[0]) or {}):
            raise BadInput(f"config sweep.lr[{exp}]: the experiment's grid also varies lr; the sweep chooses it")
        if not isinstance(grid, list) or not grid:
            raise BadInput(f"config sweep.lr[{exp}]: an empty grid; give a list of learning rates")
        for lr in grid:
            if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
                raise BadInput(f"config sweep.lr[{exp}]: learning rate {lr!r} must be a number > 0")
        if "lr" in (overrides.get(exp) or {}):
            raise BadInput(f"config sweep.lr[{exp}]: the experiment also sets lr in experiment_overrides; the sweep "
                           f"chooses it")
    for exp, source in (sweep.get("rate_from") or {}).items():
        if exp not in names:
            raise choices_error("experiment", exp, names, where="config sweep.rate_from")
        if exp in grids:
            raise BadInput(f"config sweep.rate_from[{exp}]: the experiment has a grid of its own in sweep.lr; give "
                           f"one or the other")
        if source not in grids:
            raise choices_error("swept experiment", source, list(grids), where=f"config sweep.rate_from[{exp}]",
                                more=" (an experiment of sweep.lr)")
        if "lr" in (overrides.get(exp) or {}):
            raise BadInput(f"config sweep.rate_from[{exp}]: the experiment also sets lr in experiment_overrides; the "
                           f"sweep of {source} chooses it")
    if not sweep.get("seeds", [0]):
        raise BadInput("config sweep.seeds: no seed; give at least one, e.g. [0]")
    from .data.registry import load_conversations

    try:
        held_out = load_conversations(config["dataset"], "validation", allow_empty=True)
    except BadInput:  # a hub dataset offline: it has its held-out slice once it can be loaded
        return
    if not held_out:
        raise BadInput(f"config sweep: dataset {config['dataset']!r} has no held-out validation split to score the "
                       f"grid with (a local file needs at least 2 records)")


def schema_error(config: dict, schema: dict) -> str | None:
    """The study's most relevant schema violation as one line naming the key and the value (and the valid keys
    or choices where the schema lists them); None when it validates. Snakemake's own ``validate`` reports the
    same violation over several lines with the whole schema; ``lisa-bench reproduce`` checks first with this."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(schema).iter_errors(config))
    if error is None:
        return None
    where = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    message = error.message if len(error.message) <= 300 else error.message[:297] + "..."
    if error.validator == "additionalProperties":
        message += "; valid keys: " + ", ".join(sorted(error.schema.get("properties", {})))
    return f"config {where}: {message}"


def check_study_file(configfile: Path, root: Path) -> dict:
    """A study's config as the pipeline will read it, checked before Snakemake starts (schema, then
    ``check_study``), so that bad input is one line and exit 2, with nothing run or written."""
    import yaml

    try:
        config = yaml.safe_load(Path(configfile).read_text())
    except yaml.YAMLError as exc:
        raise BadInput(f"config {str(configfile)!r} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(config, dict):
        raise BadInput(f"config {str(configfile)!r} is not a mapping of settings (got {type(config).__name__})")
    problem = schema_error(config, yaml.safe_load((Path(root) / "config" / "schema.yaml").read_text()))
    if problem:
        raise BadInput(problem)
    check_study(config, Path(root) / "experiments")
    return config
