"""What the web app may read and write: files inside its roots only, and its two CSV files.

`safe_file` is the one gate for reading: a request names a file relative to a root (the images folder, the
dataset or the work space), and gets it only if the name is plain (no `..`, no absolute path, no backslash,
no hidden part) and the file, symbolic links followed, lies inside that root. `CsvStore` is the one way to
write: the labels CSV and the review decisions, each changed one answer at a time under a lock.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from misc import imutils, tilecsv


def safe_file(root: Path, relative: str) -> Path | None:
    """The regular file `relative` (a '/'-separated path) inside `root`, or None where it is absent or the name
    could leave the root: empty, absolute, with '..', '.', a hidden part, a backslash or a NUL, or a file whose
    real path (after symbolic links) lies outside the root's real path."""
    if not relative or relative.startswith("/") or any(c in relative for c in "\\\0"):
        return None
    if any(part in ("", ".", "..") or part.startswith(".") for part in relative.split("/")):
        return None
    try:
        real_root = root.resolve(strict=True)
        real = (real_root / relative).resolve(strict=True)
    except (OSError, RuntimeError):  # absent, or a symlink loop
        return None
    if not real.is_relative_to(real_root) or not real.is_file():
        return None
    return real


def image_index(folder: Path) -> dict[str, Path]:
    """{stem: path} of the images directly in `folder` (imutils.IMAGE_SUFFIXES), sorted by name; hidden files
    and files whose real path leaves the folder are left out; of two images with one stem the first suffix in
    IMAGE_SUFFIXES wins."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        suffix = path.suffix.lower()
        if suffix not in imutils.IMAGE_SUFFIXES or not tilecsv.valid_name(path.stem):
            continue
        real = safe_file(folder, path.name)
        if real is None:
            continue
        known = found.get(path.stem)
        if known is None or imutils.IMAGE_SUFFIXES.index(suffix) < imutils.IMAGE_SUFFIXES.index(known.suffix.lower()):
            found[path.stem] = path
    return dict(sorted(found.items()))


class CsvStore:
    """One per-tile CSV file (labels or review decisions) that several browser tabs change at once.

    Every change takes the lock, re-reads the file, applies the one answer and writes the file back
    atomically (misc.tilecsv): two tabs answering at the same time both land, and so does a hand edit made
    between two answers.
    """

    def __init__(self, path: Path, read: Callable[[Path], dict], write: Callable[[Path, Mapping], None]) -> None:
        self.path = path
        self._read, self._write = read, write
        self._lock = threading.Lock()

    def snapshot(self) -> dict:
        with self._lock:
            return self._read(self.path)

    def set(self, name: str, value: object | None) -> dict:
        """Record `value` for tile `name` (None removes its answer) and return the whole file's content."""
        with self._lock:
            rows = self._read(self.path)
            if value is None:
                if rows.pop(name, None) is None:
                    return rows  # nothing to remove: no write
            else:
                rows[name] = value
            self._write(self.path, rows)
            return rows
