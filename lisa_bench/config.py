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

from .devices import DEVICES
from .errors import BadInput, check_choice, choices_error

SCHEDULERS = ("constant", "linear", "cosine")
EXPERIMENTS_DIR = "experiments"
DEFAULTS_FILE = "_defaults.yaml"


@dataclass
class TrainConfig:
    method: str = "lisa"
    model: str = "smollm2-135m"
    dataset: str = "synthetic-instruct"
    max_steps: int = 100
    seed: int = 0
    lr: float = 1e-4
    scheduler: str = "cosine"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    batch_size: int = 4
    max_length: int = 512
    train_size: int | None = None  # first N training conversations (None: all)
    dtype: str = "fp32"
    device: str = "auto"
    gradient_checkpointing: bool = False
    norm_every: int | None = None  # weight-norm snapshot period (None: ~10 per run)
    checkpoint_every: int = 50  # steps between resumable checkpoints (0: none); single process only
    memory_snapshot: bool = False  # CUDA only: dump an allocator snapshot (PyTorch memory visualizer)
    method_module: str | None = None  # a .py file or module that registers the method (a plugin)
    method_options: dict = field(default_factory=dict)

    def validate(self) -> None:
        for name, value, low in (("max_steps", self.max_steps, 0), ("batch_size", self.batch_size, 1),
                                 ("max_length", self.max_length, 8), ("checkpoint_every", self.checkpoint_every, 0)):
            if value < low:
                raise BadInput(f"{name} must be >= {low}, got {value}")
        if self.lr <= 0:
            raise BadInput(f"lr must be > 0, got {self.lr}")
        check_choice("scheduler", self.scheduler, SCHEDULERS)
        check_choice("device", self.device, DEVICES)
        if self.norm_every is not None and self.norm_every < 1:
            raise BadInput(f"norm_every must be >= 1, got {self.norm_every}")

    def build_method(self):
        """The configured method, its plugin module loaded first if one is named."""
        from .methods import build_method, load_method_module

        if self.method_module:
            load_method_module(self.method_module)
        return build_method(self.method, self.method_options, seed=self.seed)


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
    raise choices_error("experiment", str(name), experiment_names(experiments_dir),
                        more=f" (files in {experiments_dir}/), or an experiment file path")


def _read_yaml_mapping(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise BadInput(f"experiment file {path}: malformed YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise BadInput(f"experiment file {path}: expected a mapping of settings")
    data.pop("description", None)
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise BadInput(f"experiment file {path}: unknown key {unknown[0]!r}; valid keys: description, "
                       f"{', '.join(sorted(FIELDS))}")
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
    values.update(own)
    if options:
        values["method_options"] = options
    module = values.get("method_module")
    if module and module.endswith(".py") and not Path(module).is_absolute():
        values["method_module"] = str((path.parent / module).resolve())  # relative to the experiment file
    return values


def build_config(experiment: str | Path | None, overrides: dict, option_overrides: dict) -> TrainConfig:
    values: dict = {}
    if experiment:
        values.update(read_experiment(experiment))
    values.update({k: v for k, v in overrides.items() if v is not None})
    options = dict(values.pop("method_options", None) or {})
    options.update({k: v for k, v in option_overrides.items() if v is not None})
    cfg = TrainConfig(**values, method_options=options)
    cfg.validate()
    return cfg
