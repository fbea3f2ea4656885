"""APOLLO (Zhu et al., 2025): AdamW with SGD-like memory, through the authors' ``apollo-torch`` package.

Every matrix of the decoder blocks' linear layers keeps AdamW moments of a random rank-``rank``
projection of its gradient, from which a channel-wise (or, for APOLLO-Mini, tensor-wise) scaling of
the raw gradient is estimated; every other parameter keeps full AdamW moments. All parameters train.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import BadInput
from .base import Method, register, state_size

SCALES = ("channel", "tensor")


@dataclass
class ApolloOptions:
    rank: int = 256  # the projection's rank (APOLLO-Mini: 1)
    scale_type: str = "channel"  # channel (APOLLO) or tensor (APOLLO-Mini)
    scale: float = 1.0  # the gradient scaling factor (APOLLO-Mini: 128)
    update_proj_gap: int = 200  # steps between new random projections
    proj: str = "random"


@register("apollo")
class Apollo(Method):
    Options = ApolloOptions
    own_optimizer = "apollo_torch's APOLLOAdamW"
    not_shardable = "its projection works on whole gradient matrices, which FSDP2 keeps in shards"
    quick_test = {"lr": 2e-3, "method_options": {"rank": 8, "update_proj_gap": 10}}
    family_options = ("scale_type",)  # the rank is its size; tensor scaling is APOLLO-Mini

    def __init__(self, options, seed=0):
        super().__init__(options, seed)
        self._rank_of: dict[int, int] = {}

    @classmethod
    def validate_options(cls, options):
        if options.rank < 1:
            raise BadInput(f"apollo rank must be >= 1, got {options.rank}")
        if options.update_proj_gap < 1:
            raise BadInput(f"apollo update_proj_gap must be >= 1, got {options.update_proj_gap}")
        if options.scale_type not in SCALES:
            raise BadInput(f"unknown apollo scale_type {options.scale_type!r}; valid choices: {', '.join(SCALES)}")

    def prepare_model(self, model):
        model.requires_grad_(True)
        return model

    def build_optimizer(self, model, optim):
        from apollo_torch import APOLLOAdamW  # imports bitsandbytes: only when APOLLO is used

        o = self.options
        layout = self.find_blocks(model)
        projected = [p for n, p in model.named_parameters() if n in layout.block_of and p.dim() == 2]
        ids = {id(p) for p in projected}
        rest = [p for p in model.parameters() if id(p) not in ids]
        self._rank_of = {id(p): o.rank for p in projected}
        groups = [{"params": rest},
                  {"params": projected, "rank": o.rank, "proj": o.proj, "scale_type": o.scale_type,
                   "scale": o.scale, "update_proj_gap": o.update_proj_gap, "proj_type": "std"}]
        with torch.random.fork_rng(devices=[]):  # its projections are seeded from the global generator
            torch.manual_seed(self.seed)
            return APOLLOAdamW(groups, lr=optim.lr, betas=optim.betas, eps=optim.eps, weight_decay=optim.weight_decay)

    def optimizer_state_bytes(self, params, state_dtype=None):
        """Each projected matrix keeps moments of rank x its larger side and a rank x smaller-side projection
        (the rank is not capped by the matrix's size), plus a scalar; every other parameter full moments.
        Steps are counted in Python ints."""
        total = 0
        for p in params:
            r = self._rank_of.get(id(p))
            if r is not None and p.dim() == 2:
                total += (2 * r * max(p.shape) + r * min(p.shape)) * state_size(p, state_dtype) + 4
            else:
                total += 2 * p.numel() * state_size(p, state_dtype)
        return total
