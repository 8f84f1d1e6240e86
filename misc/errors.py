"""The one exception type for user mistakes.

A `UserError` carries a single line that names the file or option at fault and the fix.
`run_sample.py` and the `python -m` entry points print it as `error: <message>` and exit 2,
without a traceback; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class UserError(Exception):
    """A mistake in the user's input (paths, lists, images, checkpoints, flags)."""


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
    """Run `main`; a UserError becomes one line on stderr and exit status 2."""
    try:
        return main()
    except UserError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None
