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
- ``bf16-sr``: bfloat16 weights, gradients and AdamW moments, as pure ``bf16`` (4 bytes of state per trainable
  parameter, nothing more), but each new weight is written by stochastic rounding (``StochasticRoundingAdamW``:
  torch's AdamW arithmetic in fp32 on one chunk of one parameter at a time, the weight rounded up or down at random in
  proportion to where the exact value lies), so an update below half a weight's spacing survives in expectation.
  Ours rather than torchao's private ``_AdamW(bf16_stochastic_round=True)``: its draws come from a generator
  seeded by (run seed, step, parameter), so a run is reproducible and resumes exactly without saving RNG state,
  DDP replicas draw alike, and it needs no ``torch.compile`` (torchao compiles its step, which on the CPU needs a
  C++ toolchain); it is torch's AdamW in everything but the rounding, which the lost-update meter reads as it is.

A master copy lives in the optimizer's own state (``optimizer.state[p]["master"]``), next to the moments it
belongs with: whatever frees a parameter's state (LISA's switch) frees its master too, a checkpoint of the
optimizer holds it, and the optimizer-state bytes count it.
"""

from __future__ import annotations

import contextlib
import hashlib
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
    stochastic: bool = False  # AdamW writing each new weight by stochastic rounding, state in the weights' dtype
    keeps_updates: bool = True  # False: updates below half a weight's spacing are lost (pure bf16)

    def autocast(self, device_type: str):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device_type, dtype=self.autocast_dtype)

    @property
    def weights_name(self) -> str:
        return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.weights]


PRECISIONS = {  # what each keeps and costs: the module's docstring
    "fp32": Precision("fp32", torch.float32),
    "bf16": Precision("bf16", torch.bfloat16, keeps_updates=False),
    "bf16-mixed": Precision("bf16-mixed", torch.float32, torch.bfloat16),
    "bf16-master": Precision("bf16-master", torch.bfloat16, masters=True),
    "bf16-kahan": Precision("bf16-kahan", torch.bfloat16, kahan=True),
    "bf16-sr": Precision("bf16-sr", torch.bfloat16, stochastic=True),
}


def resolve_precision(name: str) -> Precision:
    return PRECISIONS[check_choice("precision", name, PRECISIONS)]


def loses_updates(precision: Precision, trained) -> bool:
    """Whether the recipe rounds away small steps of any of the ``trained`` parameters (pure bf16 on bf16 weights;
    LoRA's fp32 adapters keep theirs)."""
    return not precision.keeps_updates and any(p.dtype in LOW for p in trained)


def check_method(precision: Precision, method) -> None:
    """Refuse a method the recipe cannot serve, with the method's own reason."""
    if (precision.kahan or precision.stochastic) and method.trains and method.own_optimizer:
        raise BadInput(f"precision {precision.name!r} cannot serve method {method.name!r}: it builds "
                       f"{method.own_optimizer}, which writes the weights itself, and {precision.name} needs the "
                       f"AdamW it replaces; valid precisions for it: "
                       f"{', '.join(n for n, p in PRECISIONS.items() if not (p.kahan or p.stochastic))}")
    if precision.masters and method.trains and not method.keeps_masters and not _takes_state_dtype(method):
        # a method written before state_dtype existed: its state under fp32 masters cannot be predicted
        valid = [n for n, p in PRECISIONS.items()
                 if not p.masters and not ((p.kahan or p.stochastic) and method.own_optimizer)]
        raise BadInput(f"precision {precision.name!r} cannot serve method {method.name!r}: its "
                       f"optimizer_state_bytes(params) takes no state_dtype, the dtype of its state when it steps "
                       f"fp32 masters (add `state_dtype=None`, see docs/methods.md#adding-a-baseline); valid "
                       f"precisions for it: {', '.join(valid)}")
    if precision.kahan:
        kahan_adamw_class()  # installed?


def _takes_state_dtype(method) -> bool:
    import inspect

    params = inspect.signature(method.optimizer_state_bytes).parameters
    return "state_dtype" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


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
    APOLLO's). For the length of each step, every low-precision parameter with a gradient stands aside in the
    optimizer's groups for its fp32 master (created from the weight at its first step), with the gradient cast
    to fp32 and the parameter's state moved along, so that the optimizer steps the master and keeps fp32 state;
    afterwards the weight is the master rounded to nearest, and the master goes back into the parameter's
    optimizer state. Loading a state dict casts the saved masters and moments to fp32 the same way (torch casts
    loaded state to each parameter's dtype). The model's parameters themselves never change identity or dtype,
    so DDP's hooks, FSDP2's shards (DTensor masters of the local shards) and the method's bookkeeping hold."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self.stood_in: list[tuple[dict, int, torch.Tensor, torch.Tensor]] = []  # (group, index, parameter, master)
        self.owner: dict[int, torch.Tensor] = {}  # id(master) -> its parameter, during a step
        optimizer.register_step_pre_hook(self._before_step)
        optimizer.register_step_post_hook(self._after_step)
        optimizer.register_load_state_dict_pre_hook(self._before_load)
        optimizer.register_load_state_dict_post_hook(self._after_load)

    def _stand_in(self, optimizer, group: dict, i: int, p: torch.Tensor, master: torch.Tensor) -> None:
        group["params"][i] = master
        if p in optimizer.state:
            optimizer.state[master] = optimizer.state.pop(p)
        self.stood_in.append((group, i, p, master))
        self.owner[id(master)] = p

    def _before_step(self, optimizer, args, kwargs):
        for group in optimizer.param_groups:
            for i, p in enumerate(group["params"]):
                if p.grad is None or not _low(p):
                    continue
                master = optimizer.state.get(p, {}).pop("master", None)
                if master is None:
                    master = p.detach().to(torch.float32)
                master = torch.nn.Parameter(master)
                master.grad = p.grad.to(torch.float32)
                p.grad = None
                self._stand_in(optimizer, group, i, p, master)

    @torch.no_grad()
    def _after_step(self, optimizer, args, kwargs):
        for group, i, p, master in self.stood_in:
            p.copy_(master)  # round to nearest
            group["params"][i] = p
            state = optimizer.state.pop(master, {})
            state["master"] = master.detach()
            optimizer.state[p] = state
        self.stood_in.clear()
        self.owner.clear()

    def _before_load(self, optimizer, state_dict):
        # torch casts the loaded state to each parameter's dtype: let an fp32 stand-in take the place of each
        # parameter that had a master, for the duration of the load
        saved = [i for g in state_dict["param_groups"] for i in g["params"]]
        places = [(g, i) for g in optimizer.param_groups for i in range(len(g["params"]))]
        for index, (group, i) in zip(saved, places):
            p = group["params"][i]
            if "master" in state_dict["state"].get(index, {}) and _low(p):
                self._stand_in(optimizer, group, i, p, torch.empty_like(p, dtype=torch.float32))

    def _after_load(self, optimizer):
        for group, i, p, stand_in in self.stood_in:
            group["params"][i] = p
            if stand_in in optimizer.state:
                optimizer.state[p] = optimizer.state.pop(stand_in)
        self.stood_in.clear()
        self.owner.clear()


def _local_tensor(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t  # FSDP2: this process's shard


def stochastic_round_(weight: torch.Tensor, exact: torch.Tensor, seed: int) -> None:
    """Write fp32 ``exact`` into bf16 ``weight``, rounded to one of its two bf16 neighbours at random, up with
    probability (exact - lower) / spacing: unbiased, so progress below the spacing survives in expectation
    (nearest rounding drops all of it). The usual bit trick: add a uniform 16-bit integer to the fp32 bits and
    truncate them to bf16's upper 16 (on the magnitude bits, so the same for either sign)."""
    w, x = _local_tensor(weight), _local_tensor(exact).to(torch.float32).contiguous()
    generator = torch.Generator(device=x.device).manual_seed(seed)
    noise = torch.randint(0, 1 << 16, x.shape, generator=generator, dtype=torch.int32, device=x.device)
    bits = (x.view(torch.int32) + noise) & ~0xFFFF
    w.copy_(bits.view(torch.float32))  # exactly representable in bf16: the copy rounds nothing


@torch.no_grad()
def settle(p: torch.Tensor, state: dict, seed: int | None) -> None:
    """Before a parameter's optimizer state is freed (LISA's switch): write its exact value, the fp32 master
    (bf16-master) or the weight plus its Kahan compensation (bf16-kahan), into the bf16 weight by stochastic
    rounding, so that the progress below the weight's spacing is kept in expectation rather than dropped with
    the state. ``seed`` (of the rounding's random draws) None: keep the weight as it is (rounded to nearest)."""
    if seed is None or p.dtype != torch.bfloat16:
        return
    master, comp = state.get("master"), state.get("kahan_comp")
    if master is not None:
        stochastic_round_(p.data, master, seed)
    elif torch.is_tensor(comp) and comp.shape == p.shape:
        stochastic_round_(p.data, _local_tensor(p.data).float() + _local_tensor(comp).float(), seed)


SR_CHUNK = 1 << 22  # elements of a parameter bf16-sr computes in fp32 at once: its temporaries stay at 80 MiB


def _draw_seed(*parts: int) -> int:
    digest = hashlib.blake2b(",".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # a 63-bit seed, one per (run, step, group, parameter, chunk)


class StochasticRoundingAdamW(torch.optim.AdamW):
    """torch's AdamW (decoupled weight decay, per-parameter step count and bias corrections, state named as
    torch's) whose new bf16 weights are written by stochastic rounding: each parameter in turn, in chunks of
    ``SR_CHUNK`` elements, the moments and the new weight are computed in fp32 from the bf16 state, the moments
    stored back to nearest and the weight by ``stochastic_round_``. The draws are seeded by (``seed``, the
    optimizer's step, the parameter's place, the chunk), the step kept in each group (``sr_step``) so that a
    checkpoint resumes them; every process draws alike (DDP replicas stay equal; under FSDP2 each process rounds
    its own shard). Parameters that are not bf16 (LoRA's fp32 adapters) are updated exactly."""

    def __init__(self, params, seed: int = 0, **kwargs):
        super().__init__(params, foreach=False, **kwargs)
        self.seed = seed
        for group in self.param_groups:
            group.setdefault("sr_step", 0)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for g_index, group in enumerate(self.param_groups):
            group["sr_step"] = group.get("sr_step", 0) + 1
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for i, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = float(state["step"])
                flat = [_local_tensor(x).view(-1) for x in (p.data, p.grad, state["exp_avg"], state["exp_avg_sq"])]
                for c, start in enumerate(range(0, flat[0].numel(), SR_CHUNK)):
                    weight, grad, exp_avg, exp_avg_sq = (x[start:start + SR_CHUNK] for x in flat)
                    grad = grad.float()
                    m = exp_avg.float().lerp_(grad, 1 - beta1)
                    v = exp_avg_sq.float().mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                    exp_avg.copy_(m)
                    exp_avg_sq.copy_(v)
                    # out of place: for an fp32 parameter .float() is the tensor itself, so an in-place
                    # denominator would overwrite the stored second moment
                    denom = (v / (1 - beta2 ** t)).sqrt_().add_(eps)
                    exact = weight.float().mul_(1 - lr * wd)
                    exact.addcdiv_(m, denom, value=-lr / (1 - beta1 ** t))
                    if p.dtype == torch.bfloat16:
                        stochastic_round_(weight, exact, _draw_seed(self.seed, group["sr_step"], g_index, i, c))
                    else:
                        weight.copy_(exact)
        return loss


def model_parameter(optimizer, p: torch.Tensor) -> torch.Tensor:
    """The model's parameter behind what an optimizer's group holds (its fp32 master, during a masters step)."""
    masters = getattr(optimizer, "_lisa_bench_masters", None)
    return masters.owner.get(id(p), p) if masters is not None else p


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
    if precision.kahan and device_type == "cuda":
        return 0  # torch-optimi's fused triton kernel: each element in registers, no buffers
    if precision.stochastic:  # one chunk of one parameter at a time: fp32 gradient, moments, weight, int32 draws
        return 20 * max((min(_local_tensor(p).numel(), SR_CHUNK) for p in params), default=0)
    return method.step_temporary_bytes(params, device_type)


def _as_fp32(p: torch.Tensor) -> torch.Tensor:
    return p if not _low(p) else torch.empty(p.shape, dtype=torch.float32, device="meta")
