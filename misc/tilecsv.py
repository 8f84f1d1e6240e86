"""The two per-tile CSV files a person writes in the web app (webapp/) and the pipeline reads.

    labels CSV (python -m webapp --labels FILE):  name,label     1 = building, 0 = none; a skipped tile is absent
    <work_space>/review.csv:                      name,decision  accept or reject; S11 leaves rejected tiles out

`name` is the tile's image file name without its suffix. Both files are read whole and written whole, sorted
by name, through misc.fileio.atomic_path: a reader never sees half a file, and a killed writer leaves the
previous version. A row seen twice keeps its last value; anything else malformed is one UserError line
naming the file and the line.
"""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from pathlib import Path

from misc.errors import UserError
from misc.fileio import atomic_path

LABEL_FIELDS = ("name", "label")
LABEL_VALUES = ("0", "1")
REVIEW_FIELDS = ("name", "decision")
ACCEPT, REJECT = "accept", "reject"
DECISIONS = (ACCEPT, REJECT)


def read_tile_csv(path: str | os.PathLike, fields: tuple[str, str], values: tuple[str, ...]) -> dict[str, str]:
    """{name: value} of a two-column file with header `fields`; an absent file is empty."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not a readable UTF-8 text file ({err}); fix or delete it") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return {}
    if tuple(c.strip() for c in rows[0]) != fields:
        raise UserError(f"{path} starts with {','.join(rows[0])!r}; expected the header {','.join(fields)!r}")
    out: dict[str, str] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2 or row[1].strip() not in values or not valid_name(row[0].strip()):
            raise UserError(f"{path} line {number}: {','.join(row)!r} is not '<tile name>,<{'|'.join(values)}>'")
        out[row[0].strip()] = row[1].strip()
    return out


def write_tile_csv(path: str | os.PathLike, fields: tuple[str, str], rows: Mapping[str, str]) -> None:
    """Replace `path` atomically with the header and one row per name, sorted."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(fields)
    writer.writerows(sorted(rows.items()))
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")


def valid_name(name: str) -> bool:
    """A tile name is a plain file stem: no folder part, not hidden, no control characters."""
    return bool(name) and not name.startswith(".") and not any(c in name for c in "/\\\0\n\r")


def read_labels(path: str | os.PathLike) -> dict[str, int]:
    """{name: 1 | 0} of a labels CSV (absent: empty)."""
    return {name: int(value) for name, value in read_tile_csv(path, LABEL_FIELDS, LABEL_VALUES).items()}


def write_labels(path: str | os.PathLike, labels: Mapping[str, int]) -> None:
    write_tile_csv(path, LABEL_FIELDS, {name: str(int(value)) for name, value in labels.items()})


def read_review(path: str | os.PathLike) -> dict[str, str]:
    """{name: 'accept' | 'reject'} of a review file (absent: empty)."""
    return read_tile_csv(path, REVIEW_FIELDS, DECISIONS)


def write_review(path: str | os.PathLike, decisions: Mapping[str, str]) -> None:
    write_tile_csv(path, REVIEW_FIELDS, decisions)


def rejected_tiles(path: str | os.PathLike) -> set[str]:
    """The tiles a review rejected (none where the file is absent)."""
    return {name for name, decision in read_review(path).items() if decision == REJECT}
