"""What a training run does when its environment fails it (docs/faults.md): a second writer, a full or
unwritable disk, and preemption (SIGTERM, SIGUSR1). Each ends in one line that names the next command."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import sys
from pathlib import Path

from ..atomic import partial_dir
from ..claims import Busy, Claim
from ..errors import BadInput

NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}
# torch's zip writer and safetensors report a full disk in their own words, without an errno
NO_SPACE_WORDS = ("No space left on device", "StorageFull", "unexpected pos", "file write failed")
REQUEUE = 75  # EX_TEMPFAIL: "try again later"; the exit status of a run stopped by SIGTERM or SIGUSR1


def say(line: str) -> None:
    """One line on stderr, from one process of a launch."""
    if os.environ.get("RANK", "0") == "0":
        print(f"lisa-bench: {line}", file=sys.stderr, flush=True)


class Unwritable(BadInput):
    """The run's directory cannot take what it must write (full disk, quota, permissions): the user's
    environment, so exit 2 like bad input, and the checkpoint on disk stays the last complete one."""


def storage_failure(exc: BaseException) -> int | None:
    """ENOSPC, EACCES, ... if ``exc`` (or what it wraps) is a failed write to storage, else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in NO_SPACE | NOT_WRITABLE:
            return exc.errno
        if any(w in str(exc) for w in NO_SPACE_WORDS):
            return errno.ENOSPC
        exc = exc.__cause__ or exc.__context__
    return None


def unwritable(directory: Path, code: int, needed: int | None = None, resume: str = "") -> Unwritable:
    where = str(directory)
    if code in NO_SPACE:
        free = _free(directory)
        need = f"needs about {_size(needed)}, " if needed else ""
        return Unwritable(f"no space left in {where} ({need}{_size(free)} free); free space and rerun the same "
                          f"command: {resume or 'it resumes from its last complete checkpoint'}")
    return Unwritable(f"cannot write in {where} ({os.strerror(code)}); fix its permissions or give another "
                      f"--output-dir and rerun: {resume or 'it resumes from its last complete checkpoint'}")


def _free(directory: Path) -> int | None:
    for d in (directory, *directory.parents):
        with contextlib.suppress(OSError):
            return shutil.disk_usage(d).free
    return None


def _size(n: int | None) -> str:
    if n is None:
        return "? bytes"
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


@contextlib.contextmanager
def storage_errors(output_dir: str | os.PathLike):
    """A failed write of the run (a full disk anywhere; permissions where it writes, beside ``output_dir``)
    becomes one line naming the directory, not a traceback."""
    try:
        yield
    except BadInput:
        raise
    except Exception as exc:
        code, filename = storage_failure(exc), getattr(exc, "filename", None)
        ours = Path(output_dir).resolve().parent
        if code is None or (code in NOT_WRITABLE and filename and ours not in Path(filename).resolve().parents):
            raise  # e.g. a dataset the run may not read: not a place it writes
        where = Path(filename) if filename else partial_dir(output_dir)
        raise unwritable(where if where.is_dir() else where.parent, code) from None


def claim_path(output_dir: str | os.PathLike) -> Path:
    out = Path(output_dir)
    return out.parent / f".{out.name}.claim"


@contextlib.contextmanager
def one_writer(output_dir: str | os.PathLike):
    """Process 0 of a launch claims the output directory for the run's lifetime; a second live writer is
    refused before it writes anything, a claim left by a dead process is taken over with a line."""
    if os.environ.get("RANK", "0") != "0":  # one claim per run, not per process
        yield
        return
    claim = Claim(claim_path(output_dir), "lisa-bench train")
    made = [d for d in (claim.path.parent, *claim.path.parent.parents) if not d.exists()]
    try:
        stale = claim.acquire()
    except Busy as exc:
        raise BadInput(f"output directory {str(output_dir)!r} is being written by another run, {exc.holder}; "
                       f"wait for it to end (or stop it), then rerun to resume from its checkpoint") from None
    except OSError as exc:
        raise unwritable(Path(output_dir).parent, exc.errno, resume="nothing was written") from None
    if stale:
        say(f"taking over output directory {str(output_dir)!r} from {stale}, which is no longer running")
    try:
        yield
    finally:
        claim.release()
        for d in made:  # bad input leaves no trace: directories made for the claim go if nothing else came
            with contextlib.suppress(OSError):
                d.rmdir()


class Preempted(SystemExit):
    """Raised at a step boundary after SIGTERM or SIGUSR1 (and the checkpoint): exit status REQUEUE."""

    def __init__(self):
        super().__init__(REQUEUE)


class Preemption:
    """SIGTERM and SIGUSR1 (SLURM's preemption and its warning before the time limit) only raise a flag;
    the loop checks it at each step boundary, where a checkpoint is consistent."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.signum, self._old = 0, {}

    def __enter__(self):
        with contextlib.suppress(ValueError):  # not the main thread: leave the signals alone
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _note(self, signum, frame):
        self.signum = signum

    def requested(self, accelerator) -> str | None:
        """The signal's name once any process got one: every process then stops at the same step (SLURM
        signals them all, but not at the same instant; a launcher may signal only some)."""
        signum = self.signum
        if accelerator.num_processes > 1:
            import torch

            flag = torch.tensor(signum, device=accelerator.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            signum = int(flag)
        return signal.Signals(signum).name if signum else None
