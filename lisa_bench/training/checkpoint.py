"""Resumable checkpoints: everything needed to continue a run exactly (weights, optimizer, method
state, RNG, progress), used only when the run's configuration equals the one that wrote it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch


class Checkpoint:
    def __init__(self, directory: Path, config: dict):
        self.dir = directory
        self.path = directory / "state.pt"
        self.config = config

    def load(self) -> dict | None:
        if not self.path.exists():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        return state if state.get("config") == self.config else None

    def save(self, state: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save({**state, "config": self.config}, tmp)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
