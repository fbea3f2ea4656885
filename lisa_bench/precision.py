"""Training precisions: how parameters are stored (and with them gradients and AdamW state) and in what
dtype forward and backward compute.

- ``fp32``: everything in float32.
- ``bf16``: pure bfloat16 weights, gradients and optimizer state (the paper's memory-table protocol).
- ``bf16-mixed``: float32 master weights, gradients and optimizer state; forward and backward under
  bfloat16 autocast (what transformers' Trainer does with ``bf16=True``; the usual fine-tuning set-up).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .errors import check_choice


@dataclass(frozen=True)
class Precision:
    name: str
    weights: torch.dtype  # storage dtype of the parameters, and so of their gradients and AdamW moments
    autocast_dtype: torch.dtype | None = None  # forward/backward compute under autocast, None: no autocast

    def autocast(self, device_type: str):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device_type, dtype=self.autocast_dtype)

    @property
    def weights_name(self) -> str:
        return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.weights]


PRECISIONS = {
    "fp32": Precision("fp32", torch.float32),
    "bf16": Precision("bf16", torch.bfloat16),
    "bf16-mixed": Precision("bf16-mixed", torch.float32, torch.bfloat16),
}


def resolve_precision(name: str) -> Precision:
    return PRECISIONS[check_choice("precision", name, PRECISIONS)]
