"""LISA: Layerwise Importance Sampled AdamW (Pan et al., NeurIPS 2024, Algorithm 1).

Embedding, LM head and every other parameter outside the decoder blocks always train. Every
``interval`` steps, ``gamma`` distinct decoder blocks are sampled (seeded, independent of data
order) and trained with AdamW; the rest are frozen. Sampling is ``uniform`` (the paper's), ``weighted``
(by given weights or block norms) or ``cover`` (without replacement within a pass over the blocks, so that
every block trains once before any trains twice).

Memory is what the paper intends: the optimizer holds state only for parameters that train
now. On a switch the AdamW moments and ``.grad`` of deactivated blocks are freed and newly
activated blocks start from fresh state (the paper's runs trained each interval separately).
Peak optimizer state = 2 moments x bytes per element x (always-on + gamma block parameters),
plus one scalar ``step`` tensor per parameter tensor.

Known defects of the common implementations avoided here:
- freezing before the optimizer is built, so that later-sampled blocks never update
  (LMFlow issue 726, ms-swift PR 10140): the optimizer's block group is rebuilt on each switch;
- keeping every visited block's Adam state (LMFlow issue 768): state is dropped on a switch
  (the ``lisa-callback`` method reproduces that defect on purpose, as a reference).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import BadInput
from ..layers import LayerLayout
from .base import Method, drop_state, register

SAMPLING = ("uniform", "weighted", "cover")
ROUNDING = ("stochastic", "nearest")
UNITS = ("embedding", "head")  # what trains besides the sampled blocks; "none" for nothing


@dataclass
class LisaOptions:
    gamma: int = 2  # sampled middle layers per interval ("E+H+2L" = 2; 0 = "E+H")
    interval: int = 20  # K: steps between switches
    # "uniform": gamma distinct blocks afresh each interval; "weighted": the same by per-block probabilities;
    # "cover": passes over the blocks, each a seeded permutation drawn gamma at a time (see LayerSampler)
    sampling: str = "uniform"
    # weighted sampling: per-block probabilities (normalised); None = proportional to each block's
    # weight norm at the start of training (the paper's importance-sampling idea)
    weights: list[float] | None = None
    layers_attribute: str | None = None  # dotted path of the decoder-block ModuleList, if not found
    reset_always_on_state: bool = False  # also restart embedding/head moments at each switch
    # bf16 weights with an exact copy in the optimizer state (bf16-master's fp32 master, bf16-kahan's buffer): at
    # a switch the leaving block's weights get that value by "stochastic" rounding (unbiased: what the block
    # learnt below the bf16 spacing survives in expectation) or keep their "nearest" rounding, which drops it
    switch_rounding: str = "stochastic"
    # what trains at every step besides the sampled blocks: "embedding,head" (the paper's E+H: the embedding,
    # and the head with the final norm), "embedding", "head", or "none" (only the sampled blocks train)
    always_on: str = "embedding,head"

    def always_on_units(self) -> list[str]:
        units = [u.strip() for u in str(self.always_on).split(",") if u.strip()]
        return [] if units == ["none"] else units


class LayerSampler:
    """Draws ``gamma`` distinct blocks per interval from its own seeded generator: uniformly, by ``probs``, or
    (``cover``) in passes over the blocks.

    Cover: each pass is a fresh permutation of the blocks (from the same generator), drawn ``gamma`` at a time, so
    every block trains once in a pass before any trains twice. When fewer than ``gamma`` blocks remain in the pass,
    the interval takes that remainder and fills up with the first blocks of the next pass's permutation that are
    not in the remainder; those count as drawn in the next pass, whose other blocks (the remainder's included)
    follow in its order. Every interval thus has ``gamma`` distinct blocks and every pass still covers all blocks
    once. ``pending`` (the current pass's blocks not yet drawn, in order) is the state to checkpoint with the
    generator."""

    def __init__(self, num_blocks: int, gamma: int, seed: int, probs: torch.Tensor | None = None,
                 cover: bool = False):
        self.num_blocks = num_blocks
        self.gamma = gamma
        self.probs = probs
        self.cover = cover
        self.pending: list[int] = []
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self) -> list[int]:
        if self.gamma == 0:
            return []
        if self.cover:
            picked = self.pending[: self.gamma]
            self.pending = self.pending[self.gamma:]
            if len(picked) < self.gamma:  # the pass ends: fill up from the next one (see the class docstring)
                order = [int(i) for i in torch.randperm(self.num_blocks, generator=self.generator)]
                fill = [b for b in order if b not in picked][: self.gamma - len(picked)]
                self.pending = [b for b in order if b not in fill]
                picked = picked + fill
        elif self.probs is None:
            picked = torch.randperm(self.num_blocks, generator=self.generator)[: self.gamma]
        else:
            picked = torch.multinomial(self.probs, self.gamma, replacement=False, generator=self.generator)
        return sorted(int(i) for i in picked)


def validate_lisa_options(options: LisaOptions) -> None:
    if options.gamma < 0:
        raise BadInput(f"lisa gamma (--lisa-layers) must be >= 0, got {options.gamma}")
    if options.interval < 1:
        raise BadInput(f"lisa interval (--lisa-interval) must be >= 1, got {options.interval}")
    if options.switch_rounding not in ROUNDING:
        raise BadInput(f"unknown lisa switch_rounding {options.switch_rounding!r}; valid choices: {', '.join(ROUNDING)}")
    if options.sampling not in SAMPLING:
        raise BadInput(f"unknown lisa sampling {options.sampling!r}; valid choices: {', '.join(SAMPLING)}")
    if options.sampling == "cover" and options.weights is not None:
        raise BadInput(f"lisa sampling 'cover' takes no weights, got weights {options.weights}; valid choices: "
                       f"sampling=weighted with weights, or cover without them")
    units = [u.strip() for u in str(options.always_on).split(",") if u.strip()]
    for unit in units:
        if unit not in UNITS + ("none",) or (unit == "none" and len(units) > 1):
            raise BadInput(f"unknown lisa always_on unit {unit!r} in {options.always_on!r}; valid choices: "
                           f"embedding,head (default), embedding, head, none")


def block_norms(model: nn.Module, layout: LayerLayout) -> torch.Tensor:
    norms = torch.zeros(layout.num_blocks)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in layout.block_of:
                sq = p.detach().float().pow(2).sum()
                norms[layout.block_of[name]] += (sq.full_tensor() if hasattr(sq, "full_tensor") else sq).cpu()
    return norms.sqrt()


@register("lisa")
class Lisa(Method):
    Options = LisaOptions
    ddp_wrappable = False
    flags = {"--lisa-layers": ("gamma", "LISA gamma: middle layers sampled per interval"),
             "--lisa-interval": ("interval", "LISA K: steps between layer switches")}
    quick_test = {"lr": 2e-3, "method_options": {"gamma": 2, "interval": 5}}
    family_options = ("always_on", "sampling")  # gamma is its size

    def __init__(self, options: LisaOptions, seed: int = 0):
        super().__init__(options, seed)
        self.layout: LayerLayout | None = None
        self.sampler: LayerSampler | None = None
        self.active: list[int] = []

    @classmethod
    def validate_options(cls, options):
        validate_lisa_options(options)

    # ---- set-up ---------------------------------------------------------------------------
    def _sampling_probs(self, model: nn.Module) -> torch.Tensor | None:
        o = self.options
        n = self.layout.num_blocks
        if o.sampling in ("uniform", "cover"):
            return None
        if o.weights is not None:
            w = torch.tensor(o.weights, dtype=torch.float64)
            if w.numel() != n or (w < 0).any() or (w > 0).sum() < o.gamma:
                raise BadInput(f"lisa weights must be {n} non-negative numbers (one per decoder block) with at "
                               f"least gamma={o.gamma} of them positive, got {o.weights}")
        elif next(model.parameters()).is_meta:  # the memory model's shapes-only copy: no norms to sample by
            return None
        else:
            w = block_norms(model, self.layout).double()
        return (w / w.sum()).float()

    def prepare_model(self, model: nn.Module) -> nn.Module:
        self.layout = self.find_blocks(model)
        n = self.layout.num_blocks
        if self.options.gamma > n:
            raise BadInput(f"lisa gamma (--lisa-layers) {self.options.gamma} is larger than the {n} decoder "
                           f"blocks of this model; valid choices: 0..{n}")
        model.requires_grad_(False)
        for p in self._always_on(model):
            p.requires_grad_(True)
        return model

    def _always_on(self, model: nn.Module) -> list[nn.Parameter]:
        units = self.layout.outside_units(model)
        chosen = {id(p): p for unit in self.options.always_on_units() for p in units[unit]}
        return list(chosen.values())

    def build_optimizer(self, model, optim):
        # The sampler starts here, where the weights are final on every process (sharded ones too), so
        # that weighted sampling by block norms sees them and every process draws the same blocks.
        self.sampler = LayerSampler(self.layout.num_blocks, self.options.gamma, self.seed, self._sampling_probs(model),
                                    cover=self.options.sampling == "cover")
        # group 0: always-on parameters; group 1: the active blocks (filled at each switch)
        return optim.adamw([{"params": self._always_on(model)}, {"params": []}])

    def active_blocks(self) -> list[int]:
        return list(self.active)

    def peak_blocks(self, num_blocks: int) -> list[int] | None:
        """Without the embedding trained, backward stops at the lowest sampled block: the run's peak comes when
        the sample holds block 0 (with the embedding trained it runs to the bottom at every step). Cover sampling
        leaves this as it is: with the embedding on, nothing to add; without it, every pass reaches block 0, as
        uniform sampling may at any interval, so the whole run's peak is the same."""
        if "embedding" in self.options.always_on_units() or self.options.gamma == 0:
            return None
        return list(range(min(self.options.gamma, num_blocks)))

    def state_dict(self) -> dict:
        # pending: cover sampling's blocks left in the current pass (empty for uniform and weighted)
        return {"generator": self.sampler.generator.get_state(), "active": list(self.active),
                "pending": list(self.sampler.pending)}

    def load_state_dict(self, state, model, optimizer):
        self.sampler.generator.set_state(state["generator"])
        self.sampler.pending = list(state.get("pending", []))  # checkpoints from before cover sampling lack it
        self.switch(model, optimizer, state["active"])  # the optimizer's groups then match the saved ones

    # ---- the switch -------------------------------------------------------------------------
    def on_step_start(self, step, model, optimizer):
        if step % self.options.interval != 0:
            return
        self.switch(model, optimizer, self.sampler.sample(), step)

    def switch(self, model: nn.Module, optimizer: torch.optim.Optimizer, new_active: list[int],
               step: int | None = None) -> None:
        block_group = optimizer.param_groups[1]
        for p in block_group["params"]:
            p.grad = None
            p.requires_grad_(False)
        # moments, and masters or Kahan buffers where the precision has them (their value written back first)
        seed = self.seed * 100_003 + step if step is not None and self.options.switch_rounding == "stochastic" else None
        drop_state(optimizer, block_group, seed)
        new_params = self.layout.block_params(model, new_active)
        for p in new_params:
            p.requires_grad_(True)
        block_group["params"] = new_params
        if self.options.reset_always_on_state:
            drop_state(optimizer, optimizer.param_groups[0], None if seed is None else seed + 1)
        self.active = list(new_active)
