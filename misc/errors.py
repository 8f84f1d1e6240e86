"""The one exception type for user mistakes.

A `UserError` carries a single line that names the file or option at fault and the fix.
`run_sample.py` and the `python -m` entry points print it as `error: <message>` and exit 2,
without a traceback; so are a full disk or a read-only file system met while writing (`OSError`
ENOSPC, EDQUOT, EROFS). Ctrl-C (and SIGTERM, `Interrupted`) is one line saying what was kept, exit 130
(143). Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import errno
import signal
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class UserError(Exception):
    """A mistake in the user's input (paths, lists, images, checkpoints, flags)."""


KEPT = "every file written so far is complete and kept; rerun the same command to continue from them"
DISK_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
               errno.EROFS: "read-only file system"}


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, with the line to print (what was running, what was kept) and the exit status."""

    def __init__(self, message: str, status: int = 130) -> None:
        super().__init__(message)
        self.status = status


def raise_on_sigterm() -> None:
    """Turn SIGTERM into `Interrupted` (exit 143), so `finally` blocks remove work files as after Ctrl-C."""
    def handler(signum: int, frame: object) -> None:
        raise Interrupted(f"terminated (SIGTERM): {KEPT}", 128 + signum)

    signal.signal(signal.SIGTERM, handler)


def disk_error(err: BaseException) -> UserError | None:
    """The UserError line for a full disk, a quota or a read-only file system met while writing; None for
    any other error."""
    if isinstance(err, OSError) and err.errno in DISK_ERRORS:
        where = f" writing {err.filename}" if err.filename else ""
        return UserError(f"{DISK_ERRORS[err.errno]}{where}; free some space (or fix the file system) and rerun: "
                         f"{KEPT.split('; ')[0]}")
    return None


def brief(err: BaseException, limit: int = 160) -> str:
    """The first line of a library's exception, shortened, for the "(why)" part of a UserError (torch's and
    PIL's messages run over several lines)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    first = lines[0] if lines else type(err).__name__
    return first if len(first) <= limit else first[: limit - 3] + "..."


def one_line(err: UserError) -> str:
    """The message of `err` on one line; a UserError re-raised by a DataLoader worker carries the worker's
    traceback text, whose last line holds the original message."""
    text = str(err)
    if "Original Traceback" in text:
        last = text.strip().splitlines()[-1]
        text = last.split("UserError: ", 1)[-1]
    return " ".join(text.split())


def exit_on_user_error(main: Callable[[], T]) -> T:
    """Run `main`; a UserError (or a full disk) becomes one line on stderr and exit status 2, Ctrl-C one line
    and 130."""
    try:
        return main()
    except UserError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt as err:
        message = str(err) if isinstance(err, Interrupted) else f"interrupted (Ctrl-C): {KEPT}"
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(getattr(err, "status", 130)) from None
    except OSError as err:
        user = disk_error(err)
        if user is None:
            raise
        print(f"error: {one_line(user)}", file=sys.stderr)
        raise SystemExit(2) from None
