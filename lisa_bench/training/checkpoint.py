"""Resumable checkpoints under every launcher: everything needed to continue a run exactly (weights,
optimizer, method state, every process's RNG, progress), used only when the run's configuration equals
the one that wrote it. The data position is the step itself (the plan of batches is a function of it).

- one process: ``state.pt`` holds it all;
- DDP: process 0 writes ``state.pt`` (the replicas are equal), every process reads it;
- FSDP2: every process writes its shards of the model and optimizer through torch.distributed.checkpoint
  (``dcp-<step>/``) and process 0 writes the rest into ``state.pt``, renamed into place last, so a run
  killed while saving resumes from the previous complete checkpoint.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
import torch.distributed as dist


def _world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)


def _gather(obj) -> list:
    rank, world = _world()
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _barrier() -> None:
    if _world()[1] > 1:
        dist.barrier()


class Checkpoint:
    def __init__(self, directory: Path, config: dict, sharded: bool = False):
        self.dir = Path(directory)
        self.path = self.dir / "state.pt"
        self.config = config
        self.sharded = sharded
        self.rank, self.world = _world()

    def load(self, model, optimizer, method) -> dict | None:
        """Restore model, optimizer, method and RNG; the checkpoint's remaining state, or None."""
        if not self.path.exists():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        if state.get("config") != self.config or state.get("world") != self.world:
            return None
        method.load_state_dict(state["method"], model, optimizer)  # the optimizer's groups then match the saved ones
        if self.sharded:
            import torch.distributed.checkpoint as dcp
            from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

            model_state, optim_state = get_state_dict(model, optimizer)
            payload = {"model": model_state, "optim": optim_state}
            dcp.load(payload, checkpoint_id=str(self.dir / state["dcp"]))
            set_state_dict(model, optimizer, model_state_dict=payload["model"], optim_state_dict=payload["optim"])
            held = set(state["held"])  # parameters that had optimizer state when it was saved
            for name, p in model.named_parameters():
                if name not in held:
                    optimizer.state.pop(p, None)
        else:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"][self.rank])
        return state

    def save(self, step: int, model, optimizer, method, extra: dict) -> None:
        """A complete checkpoint of the state before ``step`` (a collective: every process calls it)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        rngs = _gather(torch.get_rng_state())
        state = {"step": step, "method": method.state_dict(), "rng": rngs, "config": self.config, "world": self.world,
                 **extra}
        previous = None
        if self.sharded:
            import torch.distributed.checkpoint as dcp
            from torch.distributed.checkpoint.state_dict import get_state_dict

            model_state, optim_state = get_state_dict(model, optimizer)
            state["dcp"] = f"dcp-{step}"
            state["held"] = [n for n, p in model.named_parameters() if p in optimizer.state]
            dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(self.dir / state["dcp"]))
            if self.path.exists() and self.rank == 0:
                previous = torch.load(self.path, map_location="cpu", weights_only=False).get("dcp")
        elif self.rank == 0:
            state.update(model=model.state_dict(), optimizer=optimizer.state_dict())
        if self.rank == 0:
            tmp = self.path.with_suffix(".tmp")
            torch.save(state, tmp)
            os.replace(tmp, self.path)
            if previous and previous != state.get("dcp"):
                shutil.rmtree(self.dir / previous, ignore_errors=True)
        _barrier()

    def remove(self) -> None:
        _barrier()
        if self.rank == 0:
            shutil.rmtree(self.dir, ignore_errors=True)
