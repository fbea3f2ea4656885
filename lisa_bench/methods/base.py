"""The method interface and its registry: one registered class per fine-tuning method, one file each."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import BadInput, choices_error

METHODS: dict[str, type["Method"]] = {}


def register(name: str):
    def wrap(cls: type["Method"]) -> type["Method"]:
        if name in METHODS:
            raise RuntimeError(f"method {name!r} registered twice")
        cls.name = name
        METHODS[name] = cls
        return cls

    return wrap


@dataclasses.dataclass
class NoOptions:
    pass


@dataclasses.dataclass
class OptimConfig:
    lr: float
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8


class Method:
    """A fine-tuning method. The training loop calls, in order:

    ``prepare_model`` (freeze / wrap), ``build_optimizer``, then every step ``on_step_start``
    (which may change the trainable set and the optimizer), and at the end ``save``.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    trains: ClassVar[bool] = True
    # False where the trainable set changes during the run, so that DDP's reducer (built once
    # from the parameters that require grad at wrap time) cannot be used; the loop then
    # averages gradients across processes itself.
    ddp_wrappable: ClassVar[bool] = True

    def __init__(self, options: Any, seed: int = 0):
        self.options = options
        self.seed = seed

    # ---- options -------------------------------------------------------------------------
    @classmethod
    def parse_options(cls, raw: dict | None) -> Any:
        raw = dict(raw or {})
        fields = {f.name: f for f in dataclasses.fields(cls.Options)}
        unknown = sorted(set(raw) - set(fields))
        if unknown:
            valid = ", ".join(fields) or "(none)"
            raise BadInput(f"unknown option {unknown[0]!r} for method {cls.name!r}; valid options: {valid}")
        options = cls.Options(**raw)
        cls.validate_options(options)
        return options

    @classmethod
    def validate_options(cls, options: Any) -> None:
        """Checks that need no model. Raise BadInput."""

    # ---- lifecycle -------------------------------------------------------------------------
    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model

    def trainable_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def build_optimizer(self, model: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.trainable_parameters(model), lr=optim.lr, betas=optim.betas,
                                 eps=optim.eps, weight_decay=optim.weight_decay)

    def on_step_start(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        pass

    def state_dict(self) -> dict:
        """What a checkpoint must hold besides model and optimizer to resume this method exactly."""
        return {}

    def load_state_dict(self, state: dict, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Restore ``state_dict()``; called before the optimizer's own state is loaded."""

    def active_layers(self) -> list[int] | None:
        """Sorted indices of the decoder blocks that train this step (layerwise methods only)."""
        return None

    def save(self, model: nn.Module, tokenizer, out_dir: Path) -> None:
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)


def get_method(name: str) -> type[Method]:
    from . import load_all

    load_all()
    if name not in METHODS:
        raise choices_error("method", name, sorted(METHODS))
    return METHODS[name]
