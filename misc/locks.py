"""One run at a time per output: a lock file for each folder and weights file a run writes.

`RunLocks.take(target, flag)` creates `<folder>/.run.lock` (for a folder) or `.<name>.lock` beside a file and
holds an exclusive `fcntl.flock` on it until `release`. The holder writes its pid, host, start time and
command line into the file, so a second run is refused in one line that names the first. A lock whose
holder died is free again by itself: the kernel drops a dead process's flock (even after `kill -9`), and
the file left behind is simply taken over. Where the file system refuses flock, the lock falls back to the
file's content: a holder whose pid is alive on this host keeps it, any other (a dead pid here) is taken
over. Under torchrun only rank 0 takes the locks: the ranks of one run are one holder (run_sample.py).

Reads and writes only the lock files; docs/ARCHITECTURE.md, "Resume".
"""
from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from pathlib import Path

from misc import fileio
from misc.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no flock; the content check below still refuses a live holder on this host
    fcntl = None

FOLDER_LOCK = ".run.lock"


def lock_file(target: str | os.PathLike, folder: bool) -> Path:
    """Where the lock of `target` lives: inside a folder, beside a file (hidden in both cases)."""
    target = Path(target)
    return target / FOLDER_LOCK if folder else target.parent / f".{target.name}.lock"


def holder_record(started: float | None = None) -> dict:
    """What a lock file says about its holder: this process."""
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started or time.time())),
            "command": " ".join(Path(sys.argv[0]).name if i == 0 else a for i, a in enumerate(sys.argv))[:300]}


def describe(holder: dict | None) -> str:
    if not holder:
        return "holder unknown"
    return (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}: "
            f"{holder.get('command', '')}").rstrip(": ")


def pid_alive(pid: int) -> bool:
    """True while `pid` runs on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _holder_record(path: Path, wait_s: float = 0.5) -> dict | None:
    """The record of the run holding `path`. The holder writes it just after taking the lock, so a run refused
    in that instant waits briefly for it instead of naming an unknown holder."""
    deadline = time.monotonic() + wait_s
    while (holder := fileio.read_json_object(path)) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return holder


def _live_elsewhere(holder: dict | None) -> bool:
    """For file systems without flock: a holder counts as live unless it is a dead pid on this host."""
    if not holder:
        return False
    if holder.get("host") != socket.gethostname():
        return True
    return holder.get("pid") != os.getpid() and pid_alive(int(holder.get("pid", 0)))


class RunLocks:
    """The locks one run holds; `release` (or leaving the `with` block) frees them all."""

    def __init__(self) -> None:
        self.held: dict[Path, int | None] = {}
        self.started = time.time()

    def __enter__(self) -> RunLocks:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def take(self, target: str | os.PathLike, flag: str, folder: bool = True) -> None:
        """Lock `target` (a folder, or with `folder=False` a file) for this run, or refuse in one UserError line
        naming `flag` and the other run. Taking the same target twice is a no-op."""
        path = lock_file(Path(target).resolve(), folder)
        if path in self.held:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                locked = self._flock(fd, path)
            except BaseException:
                os.close(fd)
                raise
            if not locked:
                holder = _holder_record(path)
                os.close(fd)
                raise UserError(f"{flag} {target} is in use by another run ({describe(holder)}); wait for it to end "
                                f"or choose another {flag} (two runs writing one folder would mix their outputs)")
            try:  # its last holder may have removed the file between our open and our lock: lock the new one
                if os.path.samestat(os.fstat(fd), os.stat(path)):
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder_record(self.started)) + "\n").encode(), 0)
        self.held[path] = fd

    @staticmethod
    def _flock(fd: int, path: Path) -> bool:
        """True when this process now holds `path`; False when another live run does."""
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except OSError as err:
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    return False
                # ENOLCK, EOPNOTSUPP: a file system without flock; judge by the holder's record
        return not _live_elsewhere(fileio.read_json_object(path))

    def release(self) -> None:
        for path, fd in self.held.items():
            try:
                path.unlink(missing_ok=True)  # while still holding it, so no one locks the removed file for good
            except OSError:
                pass
            os.close(fd)
        self.held.clear()
