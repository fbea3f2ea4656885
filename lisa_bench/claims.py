"""One writer per place: a claim is a file recording the process that writes there (pid, host, what it runs),
held with ``flock`` on a descriptor kept open for the writer's lifetime.

The lock, not the file, says whether the writer lives: the kernel drops it when the process ends, however it
ends (SIGKILL and power loss included), and NFSv4 and Lustre (mounted with ``flock``) pass it between nodes,
so a claim file whose lock is free is stale whatever host wrote it. The recorded pid and host are for the
messages. A child started with the descriptor (``pass_fds``) keeps the claim held after its parent dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Holder:
    pid: int | None
    host: str
    what: str

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host} ({self.what})" if self.pid else "a process that is starting"


class Busy(Exception):
    """The place is claimed by a live process (``holder``)."""

    def __init__(self, path: Path, holder: Holder):
        super().__init__(f"{path} is held by {holder}")
        self.path, self.holder = path, holder


class Claim:
    """``acquire`` takes the claim or raises Busy; it returns the stale holder it took over, if any."""

    def __init__(self, path: str | os.PathLike, what: str):
        self.path, self.what, self.fd = Path(path), what, None
        self.stale: Holder | None = None  # the dead holder this claim took over

    def acquire(self) -> Holder | None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise Busy(self.path, holder) from None
            if _same_file(fd, self.path):  # else a releasing holder unlinked it between our open and flock
                break
            os.close(fd)
        stale = _read(fd)
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
                             "since": time.strftime("%Y-%m-%d %H:%M:%S")})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode() + b"\n", 0)
        os.fsync(fd)
        self.fd = fd
        self.stale = stale if stale.pid else None
        return self.stale

    def release(self) -> None:
        """Unlink while still holding the lock, so a waiting process never locks a file about to vanish."""
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _read(fd: int) -> Holder:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:  # a holder between creating the file and writing it
        data = {}
    return Holder(data.get("pid"), data.get("host", "?"), data.get("what", "?"))


def holder_of(path: str | os.PathLike) -> Holder | None:
    """The live holder of a claim file, or None (no file, or its process is gone)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read(fd)
    finally:
        os.close(fd)  # closing drops a lock we took
    return None


def recorded(path: str | os.PathLike) -> Holder | None:
    """The holder a claim file records, alive or not (None: no file, or nothing recorded yet)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        holder = _read(fd)
    finally:
        os.close(fd)
    return holder if holder.pid else None
