"""Resumable checkpoints under every launcher: everything needed to continue a run exactly (weights,
optimizer, method state, every process's RNG, progress), used only when the run's configuration equals
the one that wrote it. The data position is the step itself (the plan of batches is a function of it).

- one process: ``state.pt`` holds it all;
- DDP: process 0 writes ``state.pt`` (the replicas are equal), every process reads it;
- FSDP2: every process writes its shards of the model and optimizer through torch.distributed.checkpoint
  (``dcp-<step>/``) and process 0 writes the rest into ``state.pt``, with the shards' file sizes.

Faults (docs/faults.md): ``state.pt`` is written to a temporary file, flushed to disk and renamed into place,
and the checkpoint before it stays as ``previous.pt`` until the next one is complete, so a run killed while
saving resumes from the last complete checkpoint. One that cannot be read (truncated, a shard missing or cut)
is reported in one line and the previous one is used, or the run starts from step 0, said so. One written
with other settings is reported with the settings that differ, and the run starts anew (its first checkpoint
replaces the old ones): a changed setting is usually meant, as when Snakemake reruns a job whose parameters
changed. A full disk while saving ends in one line (faults.Unwritable), the last complete checkpoint kept.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
import torch.distributed as dist

from .faults import say, storage_failure, unwritable


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


class Unreadable(Exception):
    """A checkpoint file that cannot be loaded (the reason, in one line)."""


class Checkpoint:
    def __init__(self, directory: Path, config: dict, sharded: bool = False):
        self.dir = Path(directory)
        self.path, self.previous, self.tmp = self.dir / "state.pt", self.dir / "previous.pt", self.dir / "state.pt.tmp"
        self.config = config
        self.sharded = sharded
        self.rank, self.world = _world()
        self.ours = False  # state.pt is this run's (read or written by it); else the first save discards it
        self.current = None  # the shard directory state.pt refers to
        self.step = 0  # the step of this run's last complete checkpoint

    def load(self, model, optimizer, method) -> dict | None:
        """Restore model, optimizer, method and RNG from the newest readable checkpoint with this run's
        settings; its remaining state, or None (start from step 0)."""
        failed = []
        for path in (self.path, self.previous):
            if not path.exists():
                continue
            try:
                state = self._read(path)
            except Unreadable as exc:
                failed.append(f"{path} ({path.stat().st_size} bytes) cannot be read ({exc})")  # the size shows a cut
                continue
            differ = self._differences(state)
            if differ:
                say(f"{'; '.join(failed + [''])}the checkpoint in {self.dir} was written with other settings "
                    f"({differ}); starting anew from step 0")
                return None
            self._apply(state, model, optimizer, method)
            if failed:
                say(f"checkpoint {failed[0]}; resuming from the previous complete one (step {state['step']})")
            self._adopt(path, state)
            return state
        if failed:
            say(f"checkpoint {'; '.join(failed)}; no earlier complete checkpoint: starting from step 0")
        return None

    def _read(self, path: Path) -> dict:
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # torch words a truncated file in several ways; any of them means unreadable
            raise Unreadable(_first_line(exc)) from None
        if not isinstance(state, dict) or "step" not in state:
            raise Unreadable("not a lisa-bench checkpoint")
        if self.sharded:
            _check_files(self.dir / state["dcp"], state.get("dcp_files", {}))
        return state

    def _differences(self, state: dict) -> str:
        saved = {**(state.get("config") or {}), "processes": state.get("world")}
        now = {**self.config, "processes": self.world}
        return ", ".join(f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(saved) | set(now))
                         if saved.get(k) != now.get(k))

    def _apply(self, state: dict, model, optimizer, method) -> None:
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

    def _adopt(self, path: Path, state: dict) -> None:
        """The checkpoint resumed from becomes state.pt (an unreadable newer one goes)."""
        self.ours, self.current, self.step = True, state.get("dcp"), state["step"]
        _barrier()  # every process has read it before process 0 renames it
        if path == self.previous and self.rank == 0:
            os.replace(self.previous, self.path)
        _barrier()

    def save(self, step: int, model, optimizer, method, extra: dict) -> None:
        """A complete checkpoint of the state before ``step`` (a collective: every process calls it)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        rngs = _gather(torch.get_rng_state())
        state = {"step": step, "method": method.state_dict(), "rng": rngs, "config": self.config, "world": self.world,
                 **extra}
        if self.rank == 0:
            self._make_room()
        _barrier()
        try:
            if self.sharded:
                self._save_shards(state, model, optimizer)
            elif self.rank == 0:
                state.update(model=model.state_dict(), optimizer=optimizer.state_dict())
            if self.rank == 0:
                self._write(state)
        except Exception as exc:
            code = storage_failure(exc)
            if code is None:
                raise
            self._discard(state)
            resume = f"it resumes from step {self.step}" if self.step else "with no checkpoint yet it starts from step 0"
            needed = _tensor_bytes(state) + state.get("shard_bytes", 0) * self.world
            raise unwritable(self.dir, code, needed=needed, resume=resume) from None
        self.ours, self.current, self.step = True, state.get("dcp"), step
        _barrier()

    def _make_room(self) -> None:
        """Before writing: keep only state.pt (if this run's) and its shards; the previous one goes now, so a
        full disk needs room for one checkpoint beside the last complete one, not two."""
        self.previous.unlink(missing_ok=True)
        self.tmp.unlink(missing_ok=True)
        if not self.ours:
            self.path.unlink(missing_ok=True)
        for d in self.dir.glob("dcp-*"):
            if d.name != self.current:
                shutil.rmtree(d, ignore_errors=True)

    def _save_shards(self, state: dict, model, optimizer) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_state, optim_state = get_state_dict(model, optimizer)
        state["dcp"] = f"dcp-{state['step']}"
        state["held"] = [n for n, p in model.named_parameters() if p in optimizer.state]
        state["shard_bytes"] = _tensor_bytes([model_state, optim_state])
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(self.dir / state["dcp"]))
        if self.rank == 0:  # dcp.save returns once every process wrote its shards and process 0 the metadata
            shards = self.dir / state["dcp"]
            state["dcp_files"] = {str(f.relative_to(shards)): f.stat().st_size for f in shards.rglob("*") if f.is_file()}

    def _write(self, state: dict) -> None:
        """state.pt replaced in one rename, after its bytes are on disk; the one it replaces becomes previous.pt."""
        torch.save(state, self.tmp)
        _fsync(self.tmp)
        if self.path.exists():
            os.replace(self.path, self.previous)
        os.replace(self.tmp, self.path)
        _fsync(self.dir)

    def _discard(self, state: dict) -> None:
        if self.rank == 0:
            self.tmp.unlink(missing_ok=True)
            if "dcp" in state:
                shutil.rmtree(self.dir / state["dcp"], ignore_errors=True)

    def remove(self) -> None:
        _barrier()
        if self.rank == 0:
            shutil.rmtree(self.dir, ignore_errors=True)


def _check_files(shards: Path, sizes: dict) -> None:
    """Every shard file there, at the size it was written (a copy or a full disk cuts files short)."""
    if not sizes:
        raise Unreadable(f"{shards} lists no shard files")
    for name, size in sizes.items():
        f = shards / name
        if not f.is_file():
            raise Unreadable(f"{f} is missing")
        if f.stat().st_size != size:
            raise Unreadable(f"{f} has {f.stat().st_size} bytes, {size} when written")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tensor_bytes(obj) -> int:
    """Bytes of the tensors in a nested state (what saving it needs, near enough)."""
    if hasattr(obj, "to_local"):  # a DTensor: this process's shard
        return _tensor_bytes(obj.to_local())
    if isinstance(obj, torch.Tensor):
        return obj.untyped_storage().nbytes() if obj.device.type != "meta" else 0
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0
