"""Throughput a user can compare: steady-state tokens per second (warm-up apart) and model FLOPs utilisation.

Warm-up: the first tenth of a run's steps, at least 1 and at most 10 (the first steps load kernels, grow the
allocator's pools and, for LISA, meet each block's first switch). Steady state: the median of the remaining steps'
tokens per second (a median, not a mean, so a stray slow step on a shared machine does not move it).

FLOPs per token: the matrix FLOPs of forward and backward over the weights the step has (training/../memory/speed.py
``work_per_token``: 2 per weight forward, 4 per trained weight and 2 per frozen weight that passes gradients down
in backward, nothing below the lowest block that needs a gradient; LoRA's adapter matmuls are weights of their own;
attention's score matmuls and checkpointing's recomputed forward are not counted: model FLOPs, as MFU is defined).
MFU = steady tokens/s x FLOPs per token / the device's dense peak for the weights' dtype (PEAK_FLOPS).
"""

from __future__ import annotations

import statistics

import torch

# dense (no sparsity) peak matrix FLOP/s per GPU, from NVIDIA's datasheets (H100/H200 SXM: 989.4 TFLOP/s BF16/FP16,
# 494.7 TF32; A100 SXM: 312 BF16/FP16, 156 TF32; L40S: 362.1 BF16/FP16, 183 TF32); matched by device name
PEAK_FLOPS = {
    "H200": {torch.bfloat16: 989.4e12, torch.float16: 989.4e12, torch.float32: 494.7e12},
    "H100": {torch.bfloat16: 989.4e12, torch.float16: 989.4e12, torch.float32: 494.7e12},
    "A100": {torch.bfloat16: 312e12, torch.float16: 312e12, torch.float32: 156e12},
    "L40S": {torch.bfloat16: 362.1e12, torch.float16: 362.1e12, torch.float32: 183e12},
}


def warmup_steps(steps: int) -> int:
    return min(10, max(1, steps // 10))


def device_peak(device: torch.device, dtype: torch.dtype) -> tuple[str, float | None]:
    """(device name, dense peak FLOP/s for ``dtype``, None where the table has no entry: CPUs, unlisted GPUs)."""
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_FLOPS.items():
        if key in name:
            return name, peaks.get(dtype)
    return name, None


def summary(seconds: list[float], tokens: list[int], flops_per_token: list[float], peak: float | None) -> dict:
    """The run's throughput from its per-step seconds, tokens and FLOPs per token (index = step)."""
    warm = warmup_steps(len(seconds))
    steady = [(t / s, f) for s, t, f in zip(seconds[warm:], tokens[warm:], flops_per_token[warm:]) if s > 0]
    rate = statistics.median(r for r, _ in steady) if steady else None
    flops = statistics.fmean(f for _, f in steady) if steady else None
    return {"warmup_steps": min(warm, len(seconds)), "warmup_seconds": sum(seconds[:warm]),
            "steady_tokens_per_second": rate, "flops_per_token": flops,
            "mfu": rate * flops / peak if rate and flops and peak else None}
