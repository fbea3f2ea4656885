"""Per-unit weight norms, logged during training for the layerwise skew analysis."""

from __future__ import annotations

import torch
from torch import nn

from ..layers import LayerLayout, layer_units


def _square(p) -> torch.Tensor:
    """The squared L2 norm of one parameter in fp32, over all shards of a sharded one. ``pow(2).sum()``, not
    ``vector_norm``: on the CPU, torch 2.13's fp32 vector_norm of SmolLM2's 28M-element embedding is off by 0.34%
    (against fp64), the sum of squares by 1.5e-7."""
    sq = p.detach().float().pow(2).sum()
    return sq.full_tensor() if hasattr(sq, "full_tensor") else sq


def _norm(params, squares: dict[int, torch.Tensor]) -> float:
    """The L2 norm of ``params`` together; each parameter's square taken once per call of ``weight_norms``
    (full fine-tuning's trained weights are its weights)."""
    total = None
    for p in params:
        if id(p) not in squares:
            squares[id(p)] = _square(p)
        total = squares[id(p)] if total is None else total + squares[id(p)]
    return 0.0 if total is None else float(total.sqrt())


def weight_norms(model: nn.Module, layout: LayerLayout, method) -> dict[str, dict[str, float]]:
    """For each unit (embedding, layer.i, other, head): the L2 norm of the model's own weights there
    (``weights``) and of what the method trains there (``trained``: LoRA's adapters, the weights
    themselves for methods that train them)."""
    out: dict[str, dict[str, float]] = {"weights": {}, "trained": {}}
    squares: dict[int, torch.Tensor] = {}
    for unit, named in layer_units(model, layout).items():
        out["weights"][unit] = _norm((p for n, p in named if not method.is_adapter(n)), squares)
        out["trained"][unit] = _norm((p for _, p in method.norm_parameters(named)), squares)
    return out
