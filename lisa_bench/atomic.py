"""Write files and directories so that a crash never leaves a half-written result behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def _move_into_place(work: Path, final: Path) -> None:
    """Rename a finished working directory to ``final``, replacing an older result."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(work, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, final)


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike):
    """Yield a temporary sibling directory; on success it replaces ``final`` in one rename.

    On any exception the temporary directory is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _move_into_place(tmp, final)


def partial_dir(final: str | os.PathLike) -> Path:
    """The persistent working directory of an unfinished run: a hidden sibling of ``final``."""
    final = Path(final)
    return final.parent / f".{final.name}.partial"


@contextlib.contextmanager
def resumable_dir(final: str | os.PathLike):
    """Like ``staged_dir`` but the working directory survives a crash (holding the checkpoint to
    resume from); ``final`` itself appears only complete, in one rename."""
    final = Path(final)
    work = partial_dir(final)
    work.mkdir(parents=True, exist_ok=True)
    yield work
    _move_into_place(work, final)
