"""Training configuration: defaults < experiment file < command-line flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import BadInput

SCHEDULERS = ("constant", "linear", "cosine")
DEVICES = ("auto", "cpu", "cuda")


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
    method_options: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.max_steps < 0:
            raise BadInput(f"max_steps must be >= 0, got {self.max_steps}")
        if self.batch_size < 1:
            raise BadInput(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_length < 8:
            raise BadInput(f"max_length must be >= 8, got {self.max_length}")
        if self.lr <= 0:
            raise BadInput(f"lr must be > 0, got {self.lr}")
        if self.scheduler not in SCHEDULERS:
            raise BadInput(f"unknown scheduler {self.scheduler!r}; valid choices: {', '.join(SCHEDULERS)}")
        if self.device not in DEVICES:
            raise BadInput(f"unknown device {self.device!r}; valid choices: {', '.join(DEVICES)}")
        if self.checkpoint_every < 0:
            raise BadInput(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.norm_every is not None and self.norm_every < 1:
            raise BadInput(f"norm_every must be >= 1, got {self.norm_every}")


FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def read_experiment(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"experiment file {str(path)!r} does not exist")
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
