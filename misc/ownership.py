"""Which files in an output folder a stage may delete: only those it wrote, as its own stamp lists them.

A map or label stage records in its folder stamp (step/kit/stamps.py) the name of every file it will write,
before it writes the first (`OUTPUTS`). A rerun that must redo the folder deletes those names and nothing
else. A folder that holds anything the stamp does not list (a user's images, another stage's files, a
subfolder) is refused in one line before any work, and so is an output folder that is, contains or lies
inside a folder the stage reads (`--seg_out_dir` equal to `--seg_infer_dir`). Hidden entries (names
starting with ".": the stamp, the run lock, a user's .DS_Store) are never counted and never deleted, except
the temporary files of our own atomic writes (`.<owned name>.*.tmp`) that an interrupted run left behind.

Reads and writes nothing itself, except `stale_temporaries` listing a folder; docs/ARCHITECTURE.md, "Resume".
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from misc.errors import UserError

OUTPUTS = "outputs"  # the stamp's key: sorted names of the files the stage wrote (or is writing) there


def planned_files(names: Iterable[str], suffixes: Iterable[str]) -> set[str]:
    """The file names a stage writes for `names`: each name with each of its suffixes."""
    suffixes = tuple(suffixes)
    return {f"{name}{suffix}" for name in names for suffix in suffixes}


def listed(folder: str | os.PathLike) -> list[str]:
    """The visible entries (files and folders) of `folder`; none when it does not exist."""
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if not e.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return []


def foreign_entries(folder: str | os.PathLike, owned: set[str]) -> list[str]:
    """Visible entries of `folder` that are not in `owned` (sorted): what the stage must not touch."""
    return [name for name in listed(folder) if name not in owned]


def refuse_foreign(folder: str | os.PathLike, flag: str, foreign: list[str]) -> None:
    """One UserError line when `foreign` is not empty."""
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise UserError(f"{flag} {folder} holds {len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} this stage "
                        f"did not write ({shown}); nothing was changed: choose an empty or new folder for {flag}, or "
                        f"move those files out")


def overlaps(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when `a` and `b` are the same folder or one lies inside the other (links resolved)."""
    ra, rb = Path(a).resolve(), Path(b).resolve()
    return ra == rb or ra in rb.parents or rb in ra.parents


def check_outside_inputs(folder: str | os.PathLike, flag: str,
                         inputs: Mapping[str, Iterable[str | os.PathLike]]) -> None:
    """Refuse an output folder that is, contains or lies inside a folder the stage reads: `inputs` maps a flag
    to the folders it names."""
    for input_flag, paths in inputs.items():
        for path in paths:
            if path is not None and overlaps(folder, path):
                raise UserError(f"{flag} {folder} overlaps the input folder {path} ({input_flag}); nothing was "
                                f"changed: write the outputs to a folder of their own")


def stale_temporaries(folder: str | os.PathLike, owned: set[str]) -> list[Path]:
    """Temporary files of our atomic writes of `owned` names (`.<name>.<random>.tmp`, `.<name>.<random>.work.tif`)
    left by an interrupted run."""
    folder = Path(folder)
    try:
        with os.scandir(folder) as entries:
            hidden = [e.name for e in entries if e.name.startswith(".") and e.is_file(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    stems = {Path(name).stem for name in owned}
    found = []
    for name in hidden:
        if not (name.endswith(".tmp") or name.endswith(".work.tif")):
            continue
        body = name[1:]
        if any(body.startswith(f"{own}.") for own in owned) or any(body.startswith(f"{stem}.") for stem in stems):
            found.append(folder / name)
    return found


def folders_of(paths: Iterable[str | os.PathLike]) -> set[Path]:
    """The folders holding `paths` (the input folders of a stage that reads a list of images)."""
    return {Path(p).parent for p in paths}
