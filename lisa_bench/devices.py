"""The one device check: every command takes ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``."""

from __future__ import annotations

import torch

from .errors import BadInput, choices_error

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | None) -> torch.device:
    """``None``/``auto`` -> ``cuda`` when available, else ``cpu``; a CUDA device that this machine lacks is
    refused by name."""
    name = name or "auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in DEVICES and not name.startswith("cuda:"):
        raise choices_error("device", name, DEVICES)
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.split(":")[1]) if ":" in name and name.split(":")[1].isdigit() else 0
        if count == 0 or index >= count:
            raise BadInput(f"device {name!r} is not available on this machine (CUDA devices: {count}); "
                           f"valid choices: auto, cpu" + (", cuda" if count else ""))
    return torch.device(name)
