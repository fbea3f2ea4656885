"""Provenance recorded in every result file: versions, git commit, config, seed, device."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

_PACKAGES = ("lisa-bench", "torch", "transformers", "peft", "accelerate", "datasets", "gguf",
             "galore-torch", "badam", "apollo-torch", "lm-eval", "snakemake", "numpy")


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def device_info(device) -> dict:
    import torch

    info = {"device": str(device), "python": sys.version.split()[0], "platform": platform.platform(),
            "cpu_count": __import__("os").cpu_count()}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        idx = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(idx)
        info.update(gpu_name=props.name, gpu_memory_bytes=props.total_memory, cuda=torch.version.cuda)
    return info


def provenance(config: dict, device) -> dict:
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "packages": package_versions(),
        "config": config,
        "seed": config.get("seed"),
        "device": device_info(device),
        "command": sys.argv,
    }
