"""Updates lost to rounding: the share of an optimizer step's intended update that the weights of record did not
take, measured on a fixed sample of trainable elements (a few per tensor, so that it costs nothing at 70B).

The intended update of an element is AdamW's, computed in fp32 from the optimizer's state after the step (the
moments it just wrote): torch's AdamW ``-lr * (m / bc1) / (sqrt(v / bc2) + eps)``, torch-optimi's (whose moments
are bias-corrected already) ``-lr * m / (sqrt(v) + eps)``, each with its decoupled weight decay
``-lr * wd * w``. The weights of record are what the recipe keeps between steps: the fp32 master where there is
one (bf16-master), the bf16 weight plus its Kahan compensation (bf16-kahan), the weight itself otherwise. Then

    lost = 1 - sum(realized * intended) / sum(intended ** 2)

over the sample: 0 where every update is kept (fp32, bf16-master, Kahan up to its buffer's own rounding), near
1 under pure bf16 when the steps are below half the weights' spacing. Parameters whose state is not AdamW's
(GaLore's and APOLLO's projected matrices, BAdam's block, whose state sits on its own fp32 copies) are not
sampled; ``sampled`` says how many elements were. Not counted: what LISA's switch does to a block's fp32 master
or Kahan buffer, since no optimizer step happens there: with ``switch_rounding: stochastic`` (the default) the
weight takes the master's value by unbiased rounding, the sub-spacing part kept in expectation; with ``nearest``
that part (at most half a spacing per element and interval) is dropped.
"""

from __future__ import annotations

import torch

PER_TENSOR = 64  # sampled elements of each trainable tensor (all of a smaller one)
# measured: the weights of SmolLM2-135M whose bf16 spacing exceeds 2 x 2e-5 (an AdamW step of about lr then rounds
# away); tests/training/test_updates.py recounts it from the embedded model
SMOLLM2_LOST_AT_2E5 = "96%"


def _phase(fn):
    """The meter's work inside the optimizer step, named for torch.profiler (training/profile.py)."""
    import functools

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with torch.profiler.record_function("lisa_bench.lost_updates"):
            return fn(*args, **kwargs)

    return wrapped


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") and hasattr(t, "placements") else t


class LostUpdates:
    """Follows every optimizer step on the sample (hooks registered after the recipe's own, so that it sees the
    fp32 masters in place during the step and in the optimizer's state after it) and sums, per sampled element,
    the intended and the realized updates since the last ``take()``. ``take()`` gives the share lost over that
    window and starts the next: the training loop takes it after the first step and at every held-out-loss point,
    so that the last window spans the run's end (one step alone there, at the end of a cosine schedule, would be
    updates far below any spacing). A resumed run starts a new window at its first step."""

    def __init__(self, optimizer: torch.optim.Optimizer, seed: int = 0, per_tensor: int = PER_TENSOR):
        self.optimizer = optimizer
        self.seed, self.per_tensor = seed, per_tensor
        self.indices: dict[int, torch.Tensor] = {}  # id(parameter) -> flat indices into its local data
        self.order: dict[int, int] = {}  # id(parameter) -> its position among the optimizer's parameters
        self.before: dict[int, torch.Tensor] = {}
        self.intended: dict[int, torch.Tensor] = {}  # id(parameter) -> summed intended update of its sample
        self.realized: dict[int, torch.Tensor] = {}
        self.steps = 0
        optimizer.register_step_pre_hook(self._before_step)
        optimizer.register_step_post_hook(self._after_step)

    def _sample(self, p: torch.Tensor) -> torch.Tensor:
        key = id(p)
        if key not in self.indices:
            n = _local(p).numel()
            position = self.order.setdefault(key, len(self.order))
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + position)
            self.indices[key] = (torch.arange(n) if n <= self.per_tensor
                                 else torch.randperm(n, generator=gen)[: self.per_tensor]).to(_local(p).device)
        return self.indices[key]

    def _record(self, p: torch.Tensor, state: dict, key: torch.Tensor | None = None) -> torch.Tensor:
        """The sampled elements of the weight of record, in fp64 (``key``: the model parameter ``p`` stands for)."""
        idx = self._sample(p if key is None else key)
        source = state.get("master", p.data)
        value = _local(source).reshape(-1)[idx].double()
        comp = state.get("kahan_comp")
        if torch.is_tensor(comp) and comp.shape == p.shape:
            value = value + _local(comp).reshape(-1)[idx].double()
        return value

    @_phase
    @torch.no_grad()
    def _before_step(self, optimizer, args, kwargs):
        from ..precision import model_parameter

        # under bf16-master the groups hold the fp32 masters now, in the place of the parameters they stand for
        self.before = {}
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    owner = model_parameter(optimizer, p)
                    self.before[id(owner)] = self._record(p, optimizer.state.get(p, {}), owner)

    @_phase
    @torch.no_grad()
    def _after_step(self, optimizer, args, kwargs):
        for group in optimizer.param_groups:
            for p in group["params"]:
                before = self.before.get(id(p))
                state = optimizer.state.get(p, {})
                if before is None or not torch.is_tensor(state.get("exp_avg")) or state["exp_avg"].shape != p.shape:
                    continue
                intended = self._intended(group, state, idx=self._sample(p), before=before)
                realized = self._record(p, state) - before
                key = id(p)
                self.intended[key] = self.intended.get(key, 0) + intended
                self.realized[key] = self.realized.get(key, 0) + realized
        self.before = {}
        self.steps += 1

    def take(self) -> dict:
        """The share lost over the steps since the last call (a collective where processes share the run)."""
        dot = sum(float((self.realized[k] * u).sum()) for k, u in self.intended.items())
        norm = sum(float((u * u).sum()) for u in self.intended.values())
        count = sum(u.numel() for u in self.intended.values())
        if dist_ready():
            device = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
            totals = torch.tensor([dot, norm, count], dtype=torch.float64, device=device)
            torch.distributed.all_reduce(totals)
            dot, norm, count = float(totals[0]), float(totals[1]), int(totals[2])
        result = {"lost_update_share": (1 - dot / norm) if norm > 0 else None, "lost_update_sampled": count,
                  "lost_update_steps": self.steps}
        self.intended, self.realized, self.steps = {}, {}, 0
        return result

    def _intended(self, group: dict, state: dict, idx: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
        m = _local(state["exp_avg"]).reshape(-1)[idx].double()
        v = _local(state["exp_avg_sq"]).reshape(-1)[idx].double()
        lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group.get("weight_decay", 0.0))
        if "kahan_sum" in group:  # torch-optimi: moments bias-corrected already (debiased betas)
            update = m / (v.sqrt() + eps)
        else:  # torch's AdamW: bias corrections from the parameter's own step count
            beta1, beta2 = group["betas"]
            step = float(state["step"])
            update = (m / (1 - beta1 ** step)) / ((v / (1 - beta2 ** step)).sqrt() + eps)
        return -lr * (update + wd * before)


def dist_ready() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1


def warning(share: float, precision: str, lr: float, threshold: float) -> str:
    return (f"lisa-bench: warning: the first optimizer step lost {share:.0%} of its update to rounding (more than "
            f"{threshold:.0%}): under precision {precision!r} at lr {lr:g}, steps below half a weight's spacing do not "
            f"move it. Precisions that keep every update: bf16-sr (stochastic rounding, no memory beyond bf16), "
            f"bf16-master (fp32 masters of what trains), bf16-kahan "
            f"(Kahan-summed bf16), bf16-mixed, fp32.")

