"""Logging, timing, flag parsing and naming helpers shared by every stage."""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def str2bool(value: str | bool) -> bool:
    """`--x_pass True` / `False` (the reference's flag style), also yes/no/1/0."""
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("true", "t", "yes", "y", "1"):
        return True
    if lowered in ("false", "f", "no", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")


def float_list(value: str) -> tuple[float, ...]:
    """'1.0,0.5,1.5' -> (1.0, 0.5, 1.5)."""
    try:
        out = tuple(float(v) for v in value.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("expected at least one number")
    return out


def _number(kind: type, value: str, what: str):
    try:
        number = kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}") from None
    if number != number:  # NaN passes every comparison below
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
    return number


def _checked(kind: type, what: str, ok) -> Callable[[str], float | int]:
    def parse(value: str):
        number = _number(kind, value, what)
        if not ok(number):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
        return number
    parse.__name__ = what  # argparse names the type in its own messages
    return parse


# argparse types for counts, sizes, rates and thresholds: a bad value fails at parse time with one line
positive_int = _checked(int, "a whole number >= 1", lambda v: v >= 1)
nonneg_int = _checked(int, "a whole number >= 0", lambda v: v >= 0)
positive_float = _checked(float, "a number > 0", lambda v: 0 < v < float("inf"))
nonneg_float = _checked(float, "a number >= 0", lambda v: 0 <= v < float("inf"))
unit_interval = _checked(float, "a number in [0, 1]", lambda v: 0 <= v <= 1)
unit_interval_open = _checked(float, "a number in [0, 1)", lambda v: 0 <= v < 1)
window_side = _checked(int, "a whole number >= 16", lambda v: v >= 16)


def positive_float_list(value: str) -> tuple[float, ...]:
    """'1.0,0.5,1.5' -> (1.0, 0.5, 1.5), every number > 0 (scales)."""
    out = float_list(value)
    if not all(0 < v < float("inf") for v in out):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers > 0, got {value!r}")
    return out


def workers_count(value: str) -> int | None:
    """A count of threads or processes: a whole number >= 0, or 'auto' (None: chosen from the cores)."""
    if value.strip().lower() == "auto":
        return None
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0 or auto, got {value!r}") from None
    if count < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0 or auto, got {value!r}")
    return count


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(*_: object, parent: int | None = None) -> None:
    """Make the calling process (a loader or pool worker) receive SIGKILL when its parent dies, so a parent
    killed with kill -9 leaves no worker holding memory behind. Linux only (prctl); elsewhere a no-op.

    Usable as a DataLoader `worker_init_fn` (it ignores the worker id) or a pool `initializer`. With `parent`,
    a worker whose parent is already gone exits at once (the parent may die before prctl runs)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no libc prctl (e.g. a static or unusual libc): best effort
        return
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def exit_with(pid: int) -> None:
    """Pool `initializer` for workers whose parent is not `pid`: a fork server's children outlive the process
    that asked for them (they hold the fork server open, and it them), so a daemon thread waits for `pid`
    to exit and then ends this worker."""
    import threading

    die_with_parent()  # and with the fork server, should it die first
    threading.Thread(target=_exit_when_gone, args=(pid,), daemon=True, name=f"exit-with-{pid}").start()


def _exit_when_gone(pid: int) -> None:
    import select

    try:
        fd = os.pidfd_open(pid)  # Linux >= 5.3: readable once the process has exited
        select.select([fd], [], [])
    except (AttributeError, OSError):  # older kernels, other systems, or `pid` already gone
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:  # alive, owned by someone else (cannot happen for our parent)
                pass
            time.sleep(1.0)
    os._exit(1)


def setup_logging(log_file: str | os.PathLike | None = None, rank: int = 0) -> None:
    """Log to the console and append to `log_file`; ranks other than 0 log warnings only."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    fmt = logging.Formatter(LOG_FORMAT if rank == 0 else f"%(asctime)s [rank {rank}] %(message)s", DATE_FORMAT)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(fmt)
    root.addHandler(console)
    if log_file is not None and rank == 0:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(fmt)
        root.addHandler(file_handler)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


@contextlib.contextmanager
def stage_timer(tag: str) -> Iterator[Timer]:
    """Log start and end of a stage with its wall time."""
    log = logging.getLogger("stage")
    log.info("[%s] start", tag)
    timer = Timer()
    yield timer
    log.info("[%s] done in %s", tag, format_duration(timer.elapsed))


def weights_paths(name: str) -> tuple[Path, Path]:
    """One naming scheme for weights: `sess/repvgg_cam` -> (`.pth`, `_deploy.pt`).

    A name given with a `.pth` suffix is accepted and the suffix dropped.
    """
    stem = name[:-4] if name.endswith(".pth") else name
    return Path(f"{stem}.pth"), Path(f"{stem}_deploy.pt")


def progress(iterable, total: int | None = None, desc: str = "", unit: str = "img", disable: bool = False):
    """A tqdm bar with throughput on stderr; redrawn every second on a terminal, every 30 s into a log file."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True,
                mininterval=1.0 if sys.stderr.isatty() else 30.0, file=sys.stderr)
