"""Logging, timing, flag parsing and naming helpers shared by every stage (STYLE B1, B5)."""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
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
