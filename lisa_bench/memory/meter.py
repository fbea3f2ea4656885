"""The memory meter: per-step CUDA allocator peaks, or the CPU resident set and its high-water mark."""

from __future__ import annotations

import ctypes
import re
import resource
from pathlib import Path

import psutil
import torch


def rss_now() -> int:
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text())[1]) * 1024


def rss_high_water_mark() -> int:
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())[1]) * 1024


def reset_rss_high_water_mark() -> None:
    """Return freed heap pages to the OS, then restart the resident high-water mark."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass
    Path("/proc/self/clear_refs").write_text("5")


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
