"""The method interface and its registry: one registered class per fine-tuning method, one file each.

A method owns everything that is specific to it. The training loop, the memory model, the reports
and the norm analysis ask the method through this interface and never branch on its name.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import BadInput
from ..kinds import checked
from ..layers import LayerLayout, find_blocks
from ..memory.accounting import optimizer_state_bytes, tensor_bytes

METHODS: dict[str, type["Method"]] = {}


def register(name: str):
    def wrap(cls: type["Method"]) -> type["Method"]:
        known = METHODS.get(name)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise RuntimeError(f"method {name!r} registered twice ({known.__module__} and {cls.__module__})")
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
    kahan: bool = False  # bf16-kahan: torch-optimi's AdamW with Kahan-summed updates instead of torch's
    rounding_seed: int | None = None  # bf16-sr: AdamW writing bf16 weights by stochastic rounding, seeded so

    def adamw(self, params) -> torch.optim.Optimizer:
        """The AdamW every method that uses plain AdamW builds (params: tensors or groups)."""
        if self.kahan:
            from ..precision import kahan_adamw_class

            # weight decay as torch's AdamW (lr x wd: optimi's decouple_lr=False); its own kernels (triton on CUDA)
            return kahan_adamw_class()(params, lr=self.lr, betas=self.betas, eps=self.eps,
                                       weight_decay=self.weight_decay, kahan_sum=True)
        if self.rounding_seed is not None:
            from ..precision import StochasticRoundingAdamW

            return StochasticRoundingAdamW(params, seed=self.rounding_seed, lr=self.lr, betas=self.betas, eps=self.eps,
                                           weight_decay=self.weight_decay)
        return torch.optim.AdamW(params, lr=self.lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay)


def drop_state(optimizer: torch.optim.Optimizer, group: dict, rounding_seed: int | None = None) -> None:
    """Free the optimizer state of a group's parameters, so that they start afresh when they next step. An
    optimizer that counts steps per group rather than per parameter (torch-optimi, under bf16-kahan) has its
    group's count restarted too, so that bias correction starts from step 1 as torch's per-parameter count does.
    With a ``rounding_seed``, a bf16 weight whose state holds its exact value (an fp32 master, a Kahan buffer)
    gets that value by stochastic rounding first (``precision.settle``; the same draws on every process, so DDP
    replicas stay equal); without, it keeps its nearest rounding."""
    from ..precision import settle

    for i, p in enumerate(group["params"]):
        state = optimizer.state.pop(p, None)
        if state:
            settle(p, state, None if rounding_seed is None else rounding_seed * 1_000_003 + i)
    if "setup" in group and "step" in group:  # torch-optimi: the next step re-creates the group's counter at 0
        group["setup"] = False


def state_size(p: torch.Tensor, state_dtype: torch.dtype | None) -> int:
    """Bytes per element of a parameter's floating-point optimizer state."""
    return torch.finfo(state_dtype).bits // 8 if state_dtype is not None else p.element_size()


class Method:
    """A fine-tuning method. The training loop calls, in order:

    ``prepare_model`` (freeze / wrap), ``build_optimizer``, then every step ``on_step_start``
    (which may change the trainable set and the optimizer), and at the end ``save``.

    The memory model runs the same calls on a meta-device copy of the model and asks
    ``optimizer_state_bytes`` and ``step_temporary_bytes`` for the optimizer's share.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    trains: ClassVar[bool] = True
    # False where the trainable set changes during the run, so that DDP's reducer (built once
    # from the parameters that require grad at wrap time) cannot be used; the loop then
    # averages gradients across processes itself.
    ddp_wrappable: ClassVar[bool] = True
    # None where the method runs on FSDP2-sharded parameters; otherwise why it cannot
    not_shardable: str | None = None
    # the optimizer the method builds instead of plain AdamW (``OptimConfig.adamw``), if any: bf16-kahan refuses it
    own_optimizer: ClassVar[str | None] = None
    # True where the method's optimizer already keeps fp32 masters of low-precision weights (bf16-master adds none)
    keeps_masters: ClassVar[bool] = False
    # `lisa-bench train` flags that set one of this method's options: flag -> (option, help)
    flags: ClassVar[dict[str, tuple[str, str]]] = {}
    # settings for a quick run on the tiny random model (TrainConfig fields, method_options included):
    # the test suite trains every registered method with them and expects the loss to fall
    quick_test: ClassVar[dict] = {}
    # options that make experiments of this method separate families rather than sizes of one family (LoRA that
    # also trains the embedding and head is another frontier than LoRA's ranks): figures join each family's points
    # and tables name it (``family``)
    family_options: ClassVar[tuple[str, ...]] = ()

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
        raw = checked(cls.Options, raw, lambda option, value, wanted: (
            f"method {cls.name!r}: option {option!r} must be {wanted}, got {value!r}"))
        options = cls.Options(**raw)
        cls.validate_options(options)
        return options

    @classmethod
    def family(cls, raw: dict | None) -> str:
        """The method family of an experiment with these options: the method's name, followed by each of its
        ``family_options`` that differs from the option's default (``lora (also_train=embedding+head+norms)``)."""
        options = cls.parse_options(raw)
        default = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                   for f in dataclasses.fields(cls.Options)
                   if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
        parts = [f"{o}={'+'.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                 for o in cls.family_options if (v := getattr(options, o)) != default.get(o, v)]
        return f"{cls.name} ({', '.join(parts)})" if parts else cls.name

    @classmethod
    def validate_options(cls, options: Any) -> None:
        """Checks that need no model. Raise BadInput."""

    # ---- lifecycle -------------------------------------------------------------------------
    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model

    def trainable_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def build_optimizer(self, model: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
        return optim.adamw(self.trainable_parameters(model))

    def on_step_start(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        pass

    def state_dict(self) -> dict:
        """What a checkpoint must hold besides model and optimizer to resume this method exactly."""
        return {}

    def load_state_dict(self, state: dict, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Restore ``state_dict()``; called before the optimizer's own state is loaded."""

    def save(self, model: nn.Module, tokenizer, out_dir: Path, state_dict: dict | None = None) -> None:
        """Write the trained weights; ``state_dict`` holds them whole where the model itself is sharded."""
        model.save_pretrained(out_dir, safe_serialization=True, state_dict=state_dict)
        tokenizer.save_pretrained(out_dir)

    # ---- what the rest of the suite asks -------------------------------------------------------
    def find_blocks(self, model: nn.Module) -> LayerLayout:
        """The model's decoder blocks (a method may name them with a ``layers_attribute`` option)."""
        return find_blocks(model, getattr(self.options, "layers_attribute", None))

    def active_blocks(self) -> list[int] | None:
        """Sorted indices of the decoder blocks that train this step, for methods whose trainable set
        changes during a run (logged as ``active_layers``, drawn in the heat map); None where it is fixed."""
        return None

    def peak_blocks(self, num_blocks: int) -> list[int] | None:
        """The decoder blocks that train at the step of a whole run's memory peak, for methods whose first steps
        (the ones the memory model follows) do not show it: one that visits the blocks in turn trains block 0 at
        some point, and backward then runs through every block. None: the first steps show the peak."""
        return None

    def optimizer_bytes(self, optimizer: torch.optim.Optimizer) -> int:
        """Bytes the optimizer holds now, counted from its tensors (a method whose optimizer keeps more than
        its ``state`` says so here)."""
        return optimizer_state_bytes(optimizer)

    def optimizer_state_bytes(self, params: list[torch.Tensor], state_dtype: torch.dtype | None = None) -> int:
        """Analytic bytes of the optimizer's state once each of ``params`` has taken a step, its floating-point
        state in ``state_dtype`` (None: each parameter's own dtype; fp32 when it steps fp32 masters). AdamW: two
        moments plus a 4-byte step counter per tensor."""
        return sum(2 * tensor_bytes(p) // p.element_size() * state_size(p, state_dtype) + 4 for p in params)

    def step_temporary_bytes(self, params: list[torch.Tensor], device_type: str) -> int:
        """Short-lived buffers of one optimizer step over ``params``. torch's AdamW: a per-tensor loop on
        the CPU (temporaries of about twice the largest tensor), foreach kernels on CUDA (about the
        size of all the group's parameters)."""
        if device_type == "cuda":
            return sum(tensor_bytes(p) for p in params)
        return 2 * max((tensor_bytes(p) for p in params), default=0)

    def is_adapter(self, name: str) -> bool:
        """Whether a parameter was added by the method (an adapter) rather than being the model's own."""
        return False

    def norm_parameters(self, named: list[tuple[str, nn.Parameter]]) -> list[tuple[str, nn.Parameter]]:
        """Of one unit's (name, parameter) pairs, those whose norm stands for what this method trains in
        the layerwise weight-norm analysis: the model's own weights, unless the method says otherwise."""
        return [(n, p) for n, p in named if not self.is_adapter(n)]
