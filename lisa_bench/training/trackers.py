"""Experiment trackers through accelerate (``report_to``: none, tensorboard or wandb). They work offline:
TensorBoard writes event files into the run's ``trackers/`` directory; wandb runs in offline mode unless
``WANDB_MODE`` says otherwise, its files in the same directory (``wandb sync`` uploads them later)."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path

from ..errors import BadInput

PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


class Trackers:
    @staticmethod
    def accelerate_name(report_to: str) -> str | None:
        """The name accelerate knows the tracker by (None: none), after checking its package is there."""
        if report_to == "none":
            return None
        package = PACKAGES[report_to]
        if importlib.util.find_spec(package) is None:
            raise BadInput(f"report_to {report_to!r} needs the {package} package (pip install {package}, or "
                           f"pip install -e '.[trackers]'); valid choices without it: none")
        return report_to

    def __init__(self, accelerator, cfg, out: Path):
        self.accelerator = accelerator
        self.on = cfg.report_to != "none"
        if not self.on:
            return
        directory = Path(out) / "trackers"
        directory.mkdir(parents=True, exist_ok=True)
        accelerator.project_configuration.logging_dir = str(directory)
        os.environ.setdefault("WANDB_MODE", "offline")
        config = {k: v for k, v in dataclasses.asdict(cfg).items() if isinstance(v, (int, float, str, bool))}
        accelerator.init_trackers("lisa-bench", config=config,
                                  init_kwargs={"wandb": {"dir": str(directory), "name": Path(out).name}})

    def log(self, row: dict, step: int) -> None:
        if self.on:
            values = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                      and k != "step"}
            self.accelerator.log(values, step=step)

    def finish(self) -> None:
        if self.on:
            self.accelerator.end_training()
