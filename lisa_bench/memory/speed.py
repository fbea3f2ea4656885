"""The speed a perfect implementation would reach, relative to full fine-tuning of the same model.

Per token, matrix FLOPs over the weights: forward 2 per weight; backward 4 per trained weight (the input's
gradient and the weight's), 2 per frozen weight that still passes gradients down, 0 below the lowest
trained block (nothing there needs a gradient). Per optimizer step, AdamW's memory traffic: parameter,
gradient and two moments read, parameter and moments written (7 tensors of each trained parameter). Time
per token = FLOPs / the device's matmul rate + step traffic / tokens per step / the device's bandwidth,
both rates measured on the device; the bound is full fine-tuning's time over the method's.
"""

from __future__ import annotations

import time

import torch
from torch import nn

ADAM_TRAFFIC = 7  # tensors of a trained parameter's size read or written by one AdamW step


def _weights(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The matrix weights of linear-like layers (Linear, GPT-2's Conv1D), adapters included."""
    out = []
    for name, m in module.named_modules():
        w = getattr(m, "weight", None)
        if isinstance(w, nn.Parameter) and w.dim() == 2 and not isinstance(m, nn.Embedding):
            out.append((name, w))
    return out


def work_per_token(model: nn.Module, layout, tokens_per_step: int) -> tuple[float, float]:
    """(matrix FLOPs per token, optimizer bytes moved per token) for the trainable set the model has now."""
    blocks = layout.blocks
    trains = [any(p.requires_grad for p in b.parameters()) for b in blocks]
    embedding_trains = any(p.requires_grad for p in model.get_input_embeddings().parameters())
    lowest = 0 if embedding_trains else next((i for i, t in enumerate(trains) if t), len(blocks))
    flops = 0.0
    for i, block in enumerate(blocks):
        for _, w in _weights(block):
            backward = 0 if i < lowest else (4 if w.requires_grad else 2)
            flops += (2 + backward) * w.numel()
    head = model.get_output_embeddings()
    if head is not None:
        flops += (2 + (4 if head.weight.requires_grad else 2)) * head.weight.numel()
    trained = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return flops, ADAM_TRAFFIC * trained / tokens_per_step


def device_rates(device: str, dtype: torch.dtype) -> tuple[float, float]:
    """(matmul FLOP/s, memory bytes/s) measured on the device: a square matmul and a large copy."""
    dev = torch.device(device)
    n = 2048 if dev.type == "cuda" else 512
    a = torch.randn(n, n, device=dev, dtype=dtype)
    src = torch.empty(64 * 2**20 // 4, device=dev, dtype=torch.float32)
    dst = torch.empty_like(src)

    def timed(fn, repeats):
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return (time.perf_counter() - t0) / repeats

    matmul = timed(lambda: a @ a, 10)
    copy = timed(lambda: dst.copy_(src), 10)
    return 2 * n**3 / matmul, 2 * src.numel() * 4 / copy


def bound_vs(flops: float, traffic: float, ref_flops: float, ref_traffic: float, rates: tuple[float, float]) -> float:
    """The reference's ideal time per token over this cell's."""
    flop_rate, bandwidth = rates
    return (ref_flops / flop_rate + ref_traffic / bandwidth) / (flops / flop_rate + traffic / bandwidth)
