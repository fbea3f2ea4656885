# Shared by every rule file: the study's names, resources and input functions.

import json
import re
import shlex
import sys
from pathlib import Path

from lisa_bench.models.registry import fetches
from lisa_bench.runs import model_dirs
from lisa_bench.study import check_study, experiment_seeds, grid_points, point_layer
from lisa_bench.study import memory_cell_points, memory_cells as memory_cells_of
from lisa_bench.training.launch import command_line

# The study check builds each experiment's method on each model (seconds): once per invocation, in the process
# that plans the jobs, not again in every cluster job's parse of this file (those run `--mode remote`).
if workflow.is_main_process:
    check_study(config)

NAME = config["name"]
RUNS = f"runs/{NAME}"
# The pipeline's tables and figures; the committed reference of a study lives in results/<name>/, apart,
# so a fresh clone's run is never short-circuited by it (`lisa-bench publish` copies a finished study there).
RESULTS = f"{RUNS}/results"
MODELS = config["models"]
# a run's directory names its model by lisa_bench.runs.model_dir_name (hub id org/name -> org--name, a local path
# -> its last component and a hash); the rules pass the model's own name (MODEL_NAME) to the jobs
MODEL_NAME = model_dirs(MODELS)
MODEL_DIRS = list(MODEL_NAME)
# every experiment the study trains: an experiment with a `grid:` entry runs as each of its points
# (<experiment>+<key>=<value>...), each point's settings over its experiment's file
POINTS = grid_points(config)
EXPERIMENTS = list(POINTS)
STAGES = config.get("stages", ["train", "memory"])
MEMORY = config.get("memory", {})
OVERRIDES = config.get("experiment_overrides") or {}
# The memory table: one job per cell (model x experiment x point of memory.grid: recipe, shape), so that a failing
# or out-of-memory cell costs only itself and resources apply per cell, then one job that collects the cells into
# the table and figures.
MEMORY_MODEL = model_dirs(MEMORY.get("models", MODELS), where="config memory.models")
MEMORY_POINTS = memory_cell_points(config)
MEMORY_CELL = {name: exp for name, (exp, _) in MEMORY_POINTS.items()}  # the experiment: a name or a path
GPU_DEFAULT = 0 if config["device"] == "cpu" else 1

# The suite run by the interpreter Snakemake itself runs under (the one that imported lisa_bench above), so no rule
# needs `lisa-bench` or `torchrun` on PATH: `.venv/bin/snakemake` from a shell where .venv is not activated works.
PYTHON = shlex.quote(sys.executable)
LISA_BENCH = f"{PYTHON} -m lisa_bench.cli"
PROCESSES = config["launcher"].get("num_processes", 1)  # per node
NODES = config["launcher"].get("nodes", 1)
# one node: torchrun --standalone; several: one torchrun agent per node of the job's SLURM allocation, started by
# srun and meeting at a c10d rendezvous (lisa_bench/training/launch.py, docs/gpus.md#several-nodes)
TORCHRUN = (f"{PYTHON} -m torch.distributed.run --standalone --nproc_per_node {PROCESSES} -m lisa_bench.cli"
            if NODES == 1 else command_line(NODES, PROCESSES))
# a multi-node job asks SLURM for its nodes, one task (agent) on each; `mpi` tells the SLURM executor that the job
# starts its own srun step (the launcher's), so the job's command is not wrapped in `srun -n1`
NODE_RESOURCES = {} if NODES == 1 else {"nodes": NODES, "tasks": NODES, "mpi": "srun"}
LAUNCH = {  # torchrun starts one process per GPU; fsdp adds --set sharding=fsdp (training_flags)
    "single": LISA_BENCH,
    "ddp": TORCHRUN,
    "fsdp": TORCHRUN,
}[config["launcher"]["type"]]


# Training and the memory table time themselves, so each has every core to itself; evaluation jobs take half
# the cores, so that two run side by side (a job spends seconds importing on one core before it computes).
EVAL_THREADS = max(1, (workflow.cores or 2) // 2)


def _one_of(names):
    return "|".join(re.escape(str(n)) for n in names)


wildcard_constraints:
    model=_one_of(MODEL_DIRS),
    exp=_one_of(EXPERIMENTS),
    seed=r"\d+",
    lr=r"[0-9.eE+-]+",
    mmodel=_one_of(MEMORY_MODEL),
    mcell=_one_of(MEMORY_CELL),


def model_name(wildcards):
    """The model of a run directory, as the study names it (quoted for the shell)."""
    return shlex.quote(MODEL_NAME[wildcards.model])


def fetched(wildcards):
    """The fetch job's marker of a run's model, where it has weights to fetch (a hub id, the embedded SmolLM2);
    none for a local directory, a model built in code or random weights (lisa_bench.models.registry.fetches)."""
    return [f"{RUNS}/models/{wildcards.model}.fetched"] if fetches(MODEL_NAME[wildcards.model]) else []


def res(rule, key, default):
    """A rule's resource: the study's `resources: {rule: {key: value}}`, else the default."""
    return config.get("resources", {}).get(rule, {}).get(key, default)


def _yaml(value):
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text[:-3].strip() if text.endswith("...") else text


def experiment_file(wildcards):
    return f"experiments/{POINTS[wildcards.exp][0]}.yaml"


def training_flags(wildcards):
    """The study's settings over the experiment file: its `training:` for every experiment, then its
    experiment_overrides for this one, then its grid point's (each `--set KEY=VALUE`, method options
    `--option KEY=VALUE`), and the name the run is reported under."""
    exp, point = POINTS[wildcards.exp]
    flags = ["--set sharding=fsdp"] if config["launcher"]["type"] == "fsdp" else []
    flags.append(f"--experiment-name {shlex.quote(wildcards.exp)}")
    for layer in (config.get("training") or {}, OVERRIDES.get(exp) or {}, point_layer(point)):
        layer = dict(layer)
        flags += [f"--option {shlex.quote(f'{k}={_yaml(v)}')}" for k, v in (layer.pop("method_options", None) or {}).items()]
        flags += [f"--set {shlex.quote(f'{k}={_yaml(v)}')}" for k, v in layer.items()]
    return " ".join(flags)


def memory_cells():
    """Each cell's table (memory.method_models can give a method fewer models)."""
    model_dir = {name: d for d, name in MEMORY_MODEL.items()}
    return [f"{RUNS}/memory/cells/{model_dir[m]}/{cell}/memory.csv" for m, cell in memory_cells_of(config)]


def memory_setting(key, default):
    """A memory cell's setting: its point of memory.grid, else memory:'s, else the default."""
    return lambda wildcards: MEMORY_POINTS[wildcards.mcell][1].get(key, MEMORY.get(key, default))


def memory_overrides(wildcards):
    """The study's experiment_overrides of this cell's experiment, as one quoted argument."""
    exp = MEMORY_CELL[wildcards.mcell]
    cells = {exp: OVERRIDES[exp]} if exp in OVERRIDES else {}
    return f"--experiment-overrides {shlex.quote(json.dumps(cells))}" if cells else ""


def memory_cell_files(wildcards):
    """The cell's experiment file (a name in experiments/, or a path), and the defaults."""
    name = MEMORY_CELL[wildcards.mcell]
    files = [name if name.endswith((".yaml", ".yml")) else f"experiments/{name}.yaml"]
    return files + [f for f in ["experiments/_defaults.yaml"] if Path(f).exists()]


def trained_runs():
    return run_outputs("train")


def run_outputs(stage, filename=None):
    """One path per model, experiment and seed of it (`experiment_seeds` may give an experiment fewer seeds)."""
    tail = f"/{filename}" if filename else ""
    return [f"{RUNS}/{stage}/{model}/{exp}/seed{seed}{tail}"
            for model in MODEL_DIRS for exp in EXPERIMENTS for seed in experiment_seeds(config, exp)]
