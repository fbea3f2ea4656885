"""Training configuration: defaults < ``experiments/_defaults.yaml`` < experiment file < flags.

An experiment is a YAML file of TrainConfig fields (``description`` and ``method_module`` besides);
it states only what differs from the ``_defaults.yaml`` beside it. Experiments are named by their
file's stem (``lora-r128`` = ``experiments/lora-r128.yaml``) or given as a path.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import yaml_io
from .devices import DEVICES
from .errors import BadInput, check_choice, choices_error
from .precision import PRECISIONS

SCHEDULERS = ("constant", "linear", "cosine")
ATTENTION = ("sdpa", "eager", "flash_attention_2")
TRACKERS = ("none", "tensorboard", "wandb")
SHARDING = ("none", "fsdp")
# keys that stand for one setting: a layer (defaults, experiment file, study, flags) that sets one of a
# pair replaces the other, so each configuration ends with exactly one of them
ALTERNATIVES = (("max_steps", "num_epochs"), ("warmup_steps", "warmup_ratio"))
EXPERIMENTS_DIR = "experiments"
DEFAULTS_FILE = "_defaults.yaml"


@dataclass
class TrainConfig:
    method: str = "lisa"
    model: str = "smollm2-135m"
    dataset: str = "synthetic-instruct"
    max_steps: int | None = None  # optimizer steps; exactly one of max_steps and num_epochs
    num_epochs: float | None = None  # passes over the training split (fractions allowed)
    seed: int = 0
    lr: float = 1e-4
    scheduler: str = "cosine"
    warmup_steps: int | None = None  # linear warm-up in optimizer steps; or warmup_ratio of all steps
    warmup_ratio: float | None = None
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    batch_size: int = 4  # examples per micro-batch and process
    grad_accum_steps: int = 1  # micro-batches per optimizer step (effective batch: batch x accum x processes)
    global_batch_size: int | None = None  # instead of batch_size: examples per optimizer step over all processes
    sharding: str = "none"  # none | fsdp (FSDP2: each decoder block and the root fully_shard-ed)
    max_length: int = 512
    train_size: int | None = None  # first N training conversations (None: all)
    precision: str = "fp32"  # fp32 | bf16 (pure) | bf16-mixed (fp32 master weights, bf16 autocast)
    attn_implementation: str = "sdpa"  # sdpa | eager (the memory protocol's) | flash_attention_2
    device: str = "auto"
    gradient_checkpointing: bool = False
    group_by_length: bool = False  # batches of similar lengths (less padding), as transformers' Trainer offers
    eval_every: int | None = None  # validation loss every N steps (always at the end)
    eval_batch_size: int | None = None  # default: batch_size
    eval_size: int | None = None  # first N validation conversations (None: the whole held-out split)
    # first N of those for the eval_every points (a learning curve at a fraction of the cost); the run's final
    # held-out loss (metrics.json) is still on all eval_size of them. None: every point on all of them
    curve_size: int | None = None
    # forgetting: the loss on this many tokens of general text no split contains (data/general.py), before and
    # after training, in blocks of max_length tokens at the training micro-batch size; 0: not measured
    forgetting_tokens: int = 4096
    norm_every: int | None = None  # weight-norm snapshot period (None: ~10 per run)
    checkpoint_every: int = 50  # steps between resumable checkpoints (0: none); DDP and FSDP2 included
    memory_snapshot: bool = False  # CUDA only: dump an allocator snapshot (PyTorch memory visualizer)
    report_to: str = "none"  # none | tensorboard | wandb (through accelerate; wandb offline unless configured)
    method_module: str | None = None  # a .py file or module that registers the method (a plugin)
    method_options: dict = field(default_factory=dict)

    def _check_types(self) -> None:
        """Each setting of the kind its field declares (text where a number belongs, ``maybe`` for a switch:
        one line naming it, not a TypeError deep in the run). A number written as YAML 1.1 reads it, as text
        (``1e-5`` in a study file, which Snakemake loads), is taken as the number."""
        from .kinds import checked

        values = checked(type(self), {f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                         lambda name, value, wanted: f"{name} must be {wanted}, got {value!r}",
                         mapping="a mapping of options")
        for name, value in values.items():
            setattr(self, name, value)

    def validate(self) -> None:
        self._check_types()
        if (self.max_steps is None) == (self.num_epochs is None):
            given = (f"both: max_steps {self.max_steps}, num_epochs {self.num_epochs}" if self.max_steps is not None
                     else "neither")
            raise BadInput(f"give exactly one of max_steps and num_epochs (got {given})")
        if self.warmup_steps is not None and self.warmup_ratio is not None:
            raise BadInput(f"give at most one of warmup_steps and warmup_ratio (got both: warmup_steps "
                           f"{self.warmup_steps}, warmup_ratio {self.warmup_ratio})")
        for name, value, low in (("max_steps", self.max_steps, 1), ("batch_size", self.batch_size, 1),
                                 ("grad_accum_steps", self.grad_accum_steps, 1), ("max_length", self.max_length, 8),
                                 ("checkpoint_every", self.checkpoint_every, 0), ("warmup_steps", self.warmup_steps, 0),
                                 ("eval_every", self.eval_every, 1), ("eval_batch_size", self.eval_batch_size, 1),
                                 ("eval_size", self.eval_size, 1), ("curve_size", self.curve_size, 1),
                                 ("norm_every", self.norm_every, 1), ("forgetting_tokens", self.forgetting_tokens, 0),
                                 ("train_size", self.train_size, 1)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
                raise BadInput(f"{name} must be an integer >= {low}, got {value!r}")
        if self.eval_every is not None and self.max_steps is not None and self.eval_every > self.max_steps:
            raise BadInput(f"eval_every {self.eval_every} is larger than the run (max_steps {self.max_steps}): it "
                           f"would log no held-out point before the end; valid: 1 to {self.max_steps}, or none")
        if self.curve_size is not None and self.eval_size is not None and self.curve_size > self.eval_size:
            raise BadInput(f"curve_size {self.curve_size} is more than eval_size {self.eval_size}: the curve's "
                           f"conversations are the first of the scored ones; valid: 1 to {self.eval_size}")
        if self.num_epochs is not None and not self.num_epochs > 0:
            raise BadInput(f"num_epochs must be > 0, got {self.num_epochs!r}")
        if self.warmup_ratio is not None and not 0 <= self.warmup_ratio < 1:
            raise BadInput(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if not self.lr > 0:
            raise BadInput(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise BadInput(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.max_grad_norm is not None and self.max_grad_norm < 0:  # a negative clip would reverse the step
            raise BadInput(f"max_grad_norm must be >= 0 (0 or null: no clipping), got {self.max_grad_norm}")
        check_choice("scheduler", self.scheduler, SCHEDULERS)
        check_choice("device", self.device, DEVICES)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("attn_implementation", self.attn_implementation, ATTENTION)
        check_choice("report_to", self.report_to, TRACKERS)
        if self.sharding == "deepspeed":
            from .training.distributed import refuse_deepspeed

            refuse_deepspeed("sharding 'deepspeed'", SHARDING)
        check_choice("sharding", self.sharding, SHARDING)
        if self.global_batch_size is not None and (not isinstance(self.global_batch_size, int) or self.global_batch_size < 1):
            raise BadInput(f"global_batch_size must be an integer >= 1, got {self.global_batch_size!r}")

    def process_batch_size(self, world: int) -> int:
        """Examples per micro-batch on each process: batch_size, or global_batch_size split evenly over the
        processes and accumulation steps."""
        if self.global_batch_size is None:
            return self.batch_size
        share, rest = divmod(self.global_batch_size, world * self.grad_accum_steps)
        if rest or not share:
            raise BadInput(f"global_batch_size {self.global_batch_size} does not divide into {world} processes x "
                           f"{self.grad_accum_steps} accumulation steps; valid choices: multiples of "
                           f"{world * self.grad_accum_steps}")
        return share

    def build_method(self):
        """The configured method, its plugin module loaded first if one is named; refused where the precision
        cannot serve it."""
        from .methods import build_method, load_method_module
        from .precision import check_method, resolve_precision

        if self.method_module:
            load_method_module(self.method_module)
        method = build_method(self.method, self.method_options, seed=self.seed)
        check_method(resolve_precision(self.precision), method)
        return method


FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def experiment_names(experiments_dir: str | Path = EXPERIMENTS_DIR) -> list[str]:
    return sorted(p.stem for p in Path(experiments_dir).glob("*.yaml") if not p.stem.startswith("_"))


def resolve_experiment(name: str | Path, experiments_dir: str | Path = EXPERIMENTS_DIR) -> Path:
    """An experiment by name (a file in ``experiments_dir``) or by path."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    candidate = Path(experiments_dir) / f"{name}.yaml"
    if candidate.is_file() and not path.stem.startswith("_"):
        return candidate
    names = experiment_names(experiments_dir)
    if not names:  # run outside the project directory: nothing to choose from, say where they are looked for
        raise BadInput(f"unknown experiment {str(name)!r}: no experiment files in {str(Path(experiments_dir).resolve())!r}; "
                       f"run from the lisa-bench project directory, or give an experiment file path")
    raise choices_error("experiment", str(name), names, more=f" (files in {experiments_dir}/), or an experiment file path")


def _read_yaml_mapping(path: Path) -> dict:
    try:
        data = yaml_io.load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise BadInput(f"experiment file {path}: malformed YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise BadInput(f"experiment file {path}: expected a mapping of settings")
    data.pop("description", None)
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise BadInput(f"experiment file {path}: unknown key {unknown[0]!r}; valid keys: description, "
                       f"{', '.join(sorted(FIELDS))}")
    if not isinstance(data.get("method_options") or {}, dict):
        raise BadInput(f"experiment file {path}: method_options must be a mapping of option: value (e.g. "
                       f"{{gamma: 2}}), got {data['method_options']!r}")
    return data


def read_experiment(path: str | Path) -> dict:
    """The settings of one experiment file over the ``_defaults.yaml`` of its directory."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"experiment file {str(path)!r} does not exist")
    defaults = path.parent / DEFAULTS_FILE
    values = _read_yaml_mapping(defaults) if defaults.is_file() and defaults.resolve() != path.resolve() else {}
    own = _read_yaml_mapping(path)
    options = {**(values.pop("method_options", None) or {}), **(own.pop("method_options", None) or {})}
    values = _layer(values, own)
    if options:
        values["method_options"] = options
    module = values.get("method_module")
    if module and module.endswith(".py") and not Path(module).is_absolute():
        values["method_module"] = str((path.parent / module).resolve())  # relative to the experiment file
    return values


def _layer(below: dict, above: dict) -> dict:
    """``above`` over ``below``; setting one of a pair of alternatives drops the other from below."""
    below = dict(below)
    for a, b in ALTERNATIVES:
        if a in above:
            below.pop(b, None)
        if b in above:
            below.pop(a, None)
    return {**below, **above}


def build_config(experiment: str | Path | None, overrides: dict, option_overrides: dict,
                 layers: list[dict] = ()) -> TrainConfig:
    """The experiment file, then each of ``layers`` in order (a study's settings, ``--set``), then
    ``overrides`` (named flags); method options merged likewise."""
    values: dict = read_experiment(experiment) if experiment else {}
    options = dict(values.pop("method_options", None) or {})
    for layer in [*layers, {k: v for k, v in overrides.items() if v is not None}]:
        layer = dict(layer)
        given = layer.pop("method_options", None) or {}
        if not isinstance(given, dict):
            raise BadInput(f"method_options must be a mapping of option: value (e.g. {{gamma: 2}}), got {given!r}")
        options.update(given)
        unknown = sorted(set(layer) - FIELDS)
        if unknown:
            raise BadInput(f"unknown training setting {unknown[0]!r}; valid settings: {', '.join(sorted(FIELDS))}")
        values = _layer(values, layer)
    values["method_options"] = options
    options = dict(values.pop("method_options", None) or {})
    options.update({k: v for k, v in option_overrides.items() if v is not None})
    cfg = TrainConfig(**values, method_options=options)
    cfg.validate()
    return cfg
