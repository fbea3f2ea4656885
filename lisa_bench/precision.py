"""Training precisions: how parameters are stored, in what dtype the optimizer keeps its state and updates the
weights, and in what dtype forward and backward compute.

- ``fp32``: everything in float32.
- ``bf16``: pure bfloat16 weights, gradients and optimizer state (the paper's memory-table protocol). An AdamW
  step smaller than half a weight's bf16 spacing is rounded away: at lr 2e-5 that is 96% of SmolLM2-135M's
  weights, so this recipe is for measuring memory, not for training (peft's LoRA adapters stay fp32 in it).
- ``bf16-mixed``: float32 weights (frozen ones too), gradients and optimizer state; forward and backward under
  bfloat16 autocast (what transformers' Trainer does with ``bf16=True`` on an fp32-loaded model).
- ``bf16-master``: bfloat16 weights and gradients; every trainable bf16 parameter gets an fp32 master copy and
  fp32 AdamW moments, the optimizer steps the master and the bf16 weight is the master rounded to nearest
  (DeepSpeed's bf16 recipe, which the paper's runs used through LMFlow). Frozen weights stay bf16. Forward and
  backward run on the bf16 weights as under ``bf16``: with every weight in bf16, autocast would cast nothing,
  and the operations it would keep in fp32 (softmax, RMSNorm, the loss) are upcast by the models themselves.
- ``bf16-kahan``: bfloat16 weights, gradients and AdamW moments, plus a bf16 Kahan compensation buffer for each
  trainable bf16 parameter that carries what rounding dropped into the next step (torch-optimi's
  ``AdamW(kahan_sum=True)``): 6 bytes of state per trainable parameter against 12 for ``bf16-master``.

A master copy lives in the optimizer's own state (``optimizer.state[p]["master"]``), next to the moments it
belongs with: whatever frees a parameter's state (LISA's switch) frees its master too, a checkpoint of the
optimizer holds it, and the optimizer-state bytes count it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .errors import BadInput, check_choice

LOW = (torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class Precision:
    name: str
    weights: torch.dtype  # storage dtype of the parameters, and so of their gradients (and AdamW state, but see below)
    autocast_dtype: torch.dtype | None = None  # forward/backward compute under autocast, None: no autocast
    masters: bool = False  # fp32 master and fp32 optimizer state for each trainable low-precision parameter
    kahan: bool = False  # AdamW with Kahan-summed updates (torch-optimi), state in the weights' dtype
    keeps_updates: bool = True  # False: updates below half a weight's spacing are lost (pure bf16)
    help: str = ""

    def autocast(self, device_type: str):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device_type, dtype=self.autocast_dtype)

    @property
    def weights_name(self) -> str:
        return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.weights]

    @property
    def state_dtype(self) -> torch.dtype | None:
        """The dtype AdamW's moments take for a low-precision parameter (None: the parameter's own)."""
        return torch.float32 if self.masters else None


PRECISIONS = {
    "fp32": Precision("fp32", torch.float32, help="float32 weights, gradients and AdamW state"),
    "bf16": Precision("bf16", torch.bfloat16, keeps_updates=False,
                      help="pure bf16 weights, gradients and AdamW state: updates below half a weight's spacing are lost"),
    "bf16-mixed": Precision("bf16-mixed", torch.float32, torch.bfloat16,
                            help="fp32 weights (frozen ones too), gradients and state; bf16 autocast"),
    "bf16-master": Precision("bf16-master", torch.bfloat16, masters=True,
                             help="bf16 weights; fp32 master and fp32 AdamW moments of what trains (DeepSpeed's bf16)"),
    "bf16-kahan": Precision("bf16-kahan", torch.bfloat16, kahan=True,
                            help="bf16 weights and AdamW moments with a bf16 Kahan compensation buffer (torch-optimi)"),
}


def resolve_precision(name: str) -> Precision:
    return PRECISIONS[check_choice("precision", name, PRECISIONS)]


def precision_help() -> str:
    return "; ".join(f"{p.name}: {p.help}" for p in PRECISIONS.values())


def check_method(precision: Precision, method) -> None:
    """Refuse a method the recipe cannot serve, with the method's own reason."""
    if precision.kahan and method.trains and method.own_optimizer:
        raise BadInput(f"precision {precision.name!r} cannot serve method {method.name!r}: it builds "
                       f"{method.own_optimizer}, and bf16-kahan needs the AdamW it replaces; valid precisions for "
                       f"it: {', '.join(n for n, p in PRECISIONS.items() if not p.kahan)}")
    if precision.kahan:
        kahan_adamw_class()  # installed?


def kahan_adamw_class():
    try:
        from optimi import AdamW
    except ImportError:
        raise BadInput("precision 'bf16-kahan' needs the torch-optimi package (pip install torch-optimi); valid "
                       f"precisions without it: {', '.join(n for n, p in PRECISIONS.items() if not p.kahan)}") from None
    return AdamW


# ---------------------------------------------------------------------------------------------
# fp32 masters, through the optimizer's step and load hooks
# ---------------------------------------------------------------------------------------------
def _low(p: torch.Tensor) -> bool:
    return p.dtype in LOW


class MasterWeights:
    """Gives an optimizer fp32 masters of its low-precision parameters, whatever the optimizer (AdamW, GaLore's,
    APOLLO's): before each step every low-precision parameter with a gradient has its storage swapped for its
    fp32 master (created from the weight at its first step) and its gradient cast to fp32, so that the optimizer
    steps the master and creates fp32 state; after the step the weight is the master rounded to nearest and the
    master goes into the parameter's optimizer state. Loading a state dict casts the saved masters and moments
    to fp32, not to the weights' dtype. The parameter objects never change, so DDP's hooks, FSDP2's shards and
    the method's bookkeeping see the same parameters throughout."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self.swapped: list[tuple[torch.Tensor, torch.Tensor]] = []  # (parameter, its own low-precision data)
        self.handles = [optimizer.register_step_pre_hook(self._before_step),
                        optimizer.register_step_post_hook(self._after_step),
                        optimizer.register_load_state_dict_pre_hook(self._before_load),
                        optimizer.register_load_state_dict_post_hook(self._after_load)]

    def _before_step(self, optimizer, args, kwargs):
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None or not _low(p):
                    continue
                master = optimizer.state.get(p, {}).get("master")
                if master is None:
                    master = p.detach().to(torch.float32)
                own = p.data
                p.data = master
                p.grad = p.grad.to(torch.float32)
                self.swapped.append((p, own))

    @torch.no_grad()
    def _after_step(self, optimizer, args, kwargs):
        for p, own in self.swapped:
            master = p.data
            own.copy_(master)  # round to nearest
            p.data = own
            p.grad = None  # the fp32 copy; the step is over
            optimizer.state[p]["master"] = master
        self.swapped.clear()

    def _before_load(self, optimizer, state_dict):
        # the saved state (masters, moments) is cast to each parameter's dtype on load: make that fp32 for the
        # parameters that had a master, for the duration of the load
        saved = [i for g in state_dict["param_groups"] for i in g["params"]]
        mine = [p for g in optimizer.param_groups for p in g["params"]]
        for index, p in zip(saved, mine):
            if "master" in state_dict["state"].get(index, {}) and _low(p):
                own = p.data
                p.data = own.to(torch.float32)
                self.swapped.append((p, own))

    def _after_load(self, optimizer):
        for p, own in self.swapped:
            p.data = own
        self.swapped.clear()


def master_bytes(params) -> int:
    """fp32 master copies of the low-precision parameters among ``params`` (this process's shards)."""
    from .memory.accounting import tensor_bytes

    return sum(tensor_bytes(p) * 4 // p.element_size() for p in params if _low(p))


def prepare_optimizer(precision: Precision, method, optimizer: torch.optim.Optimizer | None):
    """Attach what the recipe needs to a method's optimizer (fp32 masters); returns the optimizer."""
    if optimizer is not None and precision.masters and not method.keeps_masters:
        optimizer._lisa_bench_masters = MasterWeights(optimizer)
    return optimizer


def state_bytes(precision: Precision, method, params: list[torch.Tensor]) -> int:
    """Analytic optimizer-state bytes once each of ``params`` has stepped, under the recipe: the method's own
    count, with fp32 moments and an fp32 master for each low-precision parameter under bf16-master, and a Kahan
    compensation buffer in the weight's dtype for each low-precision parameter under bf16-kahan."""
    if precision.masters and not method.keeps_masters:
        return method.optimizer_state_bytes(params, state_dtype=torch.float32) + master_bytes(params)
    if precision.kahan:
        from .memory.accounting import tensor_bytes

        # optimi: two moments and the buffer per parameter; the step is counted once per group, not per parameter
        return sum(2 * tensor_bytes(p) + (tensor_bytes(p) if _low(p) else 0) for p in params)
    return method.optimizer_state_bytes(params)


def step_temporary_bytes(precision: Precision, method, params: list[torch.Tensor], device_type: str) -> int:
    """The optimizer step's short-lived buffers: the method's own (on fp32 masters under bf16-master), plus the
    fp32 copies of the low-precision gradients that a masters step works on (2 bytes more per element than the
    bf16 gradients they replace)."""
    if precision.masters and not method.keeps_masters:
        return (method.step_temporary_bytes([_as_fp32(p) for p in params], device_type)
                + master_bytes(params) // 2)
    return method.step_temporary_bytes(params, device_type)


def _as_fp32(p: torch.Tensor) -> torch.Tensor:
    return p if not _low(p) else torch.empty(p.shape, dtype=torch.float32, device="meta")
