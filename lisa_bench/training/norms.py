"""Per-unit weight norms, logged during training for the layerwise skew analysis."""

from __future__ import annotations

import torch
from torch import nn

from ..layers import LayerLayout, layer_units


def _squares(p) -> torch.Tensor:
    sq = p.detach().float().pow(2).sum()
    return sq.full_tensor() if hasattr(sq, "full_tensor") else sq  # a sharded parameter: over all shards


def _norm(params) -> float:
    params = list(params)
    if not params:
        return 0.0
    return float(torch.sqrt(sum(_squares(p) for p in params)).item())


def weight_norms(model: nn.Module, layout: LayerLayout, method) -> dict[str, dict[str, float]]:
    """For each unit (embedding, layer.i, other, head): the L2 norm of the model's own weights there
    (``weights``) and of what the method trains there (``trained``: LoRA's adapters, the weights
    themselves for methods that train them)."""
    out: dict[str, dict[str, float]] = {"weights": {}, "trained": {}}
    for unit, named in layer_units(model, layout).items():
        out["weights"][unit] = _norm(p for n, p in named if not method.is_adapter(n))
        out["trained"][unit] = _norm(p for _, p in method.norm_parameters(named))
    return out
