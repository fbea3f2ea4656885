"""Exact memory accounting: optimizer state from its tensors, CUDA allocator peaks, CPU RSS."""

from __future__ import annotations

import resource

import psutil
import torch


def tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor held in the optimizer's state (moments, step counters, projections)."""
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                total += tensor_bytes(value)
            elif hasattr(value, "ortho_matrix") and torch.is_tensor(getattr(value, "ortho_matrix")):
                total += tensor_bytes(value.ortho_matrix)  # GaLore's projector
    return total


def adamw_state_bytes(params: list[torch.Tensor]) -> int:
    """The analytic AdamW state: two moments of each parameter's dtype plus one fp32 step scalar per tensor."""
    return sum(2 * tensor_bytes(p) + 4 for p in params)


def trainable_param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class MemoryMeter:
    """Per-step memory: CUDA peak allocated (allocator stats) or CPU resident set size."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.kind = "cuda_allocated" if self.cuda else "cpu_rss"
        self.device = device
        self.process = psutil.Process()
        self.peak = 0

    def start_step(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def end_step(self) -> dict:
        if self.cuda:
            stats = {
                "memory_bytes": torch.cuda.max_memory_allocated(self.device),
                "cuda_reserved_peak_bytes": torch.cuda.max_memory_reserved(self.device),
                "cuda_allocated_bytes": torch.cuda.memory_allocated(self.device),
                "cuda_active_peak_bytes": torch.cuda.memory_stats(self.device).get("active_bytes.all.peak", 0),
                "cpu_rss_bytes": self.process.memory_info().rss,
            }
        else:
            stats = {"memory_bytes": self.process.memory_info().rss}
        self.peak = max(self.peak, stats["memory_bytes"])
        return stats

    def peak_bytes(self) -> int:
        if self.cuda:
            return self.peak
        # ru_maxrss is in KiB on Linux: the process-lifetime peak, which also sees spikes between samples
        return max(self.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
