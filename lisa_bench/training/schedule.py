"""The global learning-rate schedule over optimizer steps: linear warm-up, then constant, linear or
cosine decay to 0."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    lr: float
    scheduler: str  # constant | linear | cosine
    warmup: int  # warm-up steps
    total: int  # optimizer steps of the run

    @classmethod
    def of(cls, cfg, total: int) -> "Schedule":
        warmup = cfg.warmup_steps if cfg.warmup_steps is not None else round((cfg.warmup_ratio or 0.0) * total)
        return cls(cfg.lr, cfg.scheduler, warmup, total)

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        if self.scheduler == "constant":
            return self.lr
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        if self.scheduler == "linear":
            return self.lr * (1.0 - progress)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
