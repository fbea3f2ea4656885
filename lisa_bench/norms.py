"""Per-layer weight norms for the skew analysis (the paper's motivating observation)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import LayerLayout, layer_units


def _norm(params: list[torch.Tensor]) -> float:
    if not params:
        return 0.0
    return float(torch.sqrt(sum(p.detach().float().pow(2).sum() for p in params)).item())


def weight_norms(model: nn.Module, layout: LayerLayout) -> dict[str, dict[str, float]]:
    """For each unit (embedding, layer.i, other, head): the L2 norm of all its parameters
    (``weights``) and of the parameters the method trains there (``trainable``; for LoRA, the
    adapter)."""
    out: dict[str, dict[str, float]] = {"weights": {}, "trainable": {}}
    for unit, named in layer_units(model, layout).items():
        out["weights"][unit] = _norm([p for n, p in named if "lora_" not in n])
        trainable = [p for n, p in named if p.requires_grad or "lora_" in n]
        out["trainable"][unit] = _norm(trainable)
    return out
