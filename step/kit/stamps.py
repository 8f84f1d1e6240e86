"""What an output was made from, so that a rerun keeps what is still valid and redoes the rest.

Map and label stages keep a stamp (`.source.json`) in their output folder: the fingerprint of every input
and setting the outputs depend on, and the flag of the stage that made them. A rerun with the same
fingerprint skips the files already there; any difference deletes them first. Training stages put the
same kind of digest in their checkpoint's fingerprint (`training_data`). docs/ARCHITECTURE.md, "Resume".

What a fingerprint holds:
- a model: the sha256 of its file (`model_identity`; the files are at most a few hundred MB, hashed once
  per process), so a retrained model makes every map stale whatever its size and mtime;
- the map or label folders a stage reads: their stamps (`made_from`), so the chain reaches back to S1;
- images and masks a map stage reads: (name, size, mtime_ns) of each (`files_digest`, cheap);
- images and masks a training stage learns from: (name, size, sha256 of the content) of each
  (`content_digest`: 30 ms for the 270 demo tiles), so replaced content retrains and a copied dataset
  (new mtimes, same bytes) still resumes;
- every flag that changes the output (scales, thresholds, precision, ...).

A training fingerprint is built by one helper, `training_fingerprint`: the stage's flags, the content of every
weights file the training reads (`weights_identity`) and `training_data`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from misc import fileio
from misc.errors import UserError
from misc.torchutils import barrier, runtime

STAMP = ".source.json"
_CHUNK = 1 << 20
# (path, inode, size, mtime_ns, ctime_ns) -> sha256, for this process; ctime changes on every write and no
# utime can set it back, so a rewritten file is hashed again
_HASHES: dict[tuple, str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, remembered for this process while the file is not rewritten."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key not in _HASHES:
        sha = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(_CHUNK), b""):
                sha.update(block)
        _HASHES[key] = sha.hexdigest()
    return _HASHES[key]


def model_identity(path: str | os.PathLike) -> dict[str, str]:
    """What a stage's model is: its file's content, not its size and mtime (two trainings can give files
    of the same size, and a copy keeps the identity)."""
    return {"sha256": file_sha256(path)}


def _stat_line(name: str, path: str | os.PathLike, missing: str | None) -> str:
    try:
        stat = Path(path).stat()
    except FileNotFoundError:
        if missing is None:
            raise
        raise UserError(missing.format(name=name, path=path)) from None
    return f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}\n"


def files_digest(named_paths: Iterable[tuple[str, str | os.PathLike]], missing: str | None = None) -> str:
    """sha256 of (name, size, mtime_ns) of each file: what a map stage read. Any rewrite of a file changes it.
    `missing` ("... {name} ... {path} ...") turns a missing file into that UserError."""
    sha = hashlib.sha256()
    for name, path in named_paths:
        sha.update(_stat_line(name, path, missing).encode())
    return sha.hexdigest()


def content_digest(named_paths: Iterable[tuple[str, str | os.PathLike]]) -> str:
    """sha256 of (name, size, content sha256) of each file: what a training stage learnt from. It changes when
    a file's bytes change (even at the same size) but not when the files are copied, so a resume
    fingerprint survives an rsync to another machine."""
    sha = hashlib.sha256()
    for name, path in named_paths:
        sha.update(f"{name}\t{Path(path).stat().st_size}\t{file_sha256(path)}\n".encode())
    return sha.hexdigest()


def training_data(names: Sequence[str], image_paths: dict[str, Path], cls_labels: dict[str, int] | None = None,
                  label_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """The part of a training fingerprint that says what it learns from: the tiles, their image labels, images
    and (with `label_dir`) masks. A regenerated dataset or new labels then retrain instead of being reused."""
    labels = cls_labels or {}
    out = {"images_content_sha256": content_digest((f"{n}:{labels.get(n, '')}", image_paths[n]) for n in names)}
    if label_dir is not None:
        out["masks_content_sha256"] = content_digest((n, Path(label_dir) / f"{n}.png") for n in names)
    return out


def weights_identity(path: str | os.PathLike | None) -> dict[str, str] | str:
    """What a weights file a training reads is: {"sha256": ...} of its content (a copy keeps the identity, new
    bytes at the same path do not); "none" for the user's explicit `none` (an empty path, run_sample.py);
    "absent" where no file is there (a default path without its file, or no default at all), so the file
    appearing later retrains."""
    if path == "":
        return "none"
    if path is None or not Path(path).is_file():
        return "absent"
    return model_identity(path)


def training_fingerprint(args: argparse.Namespace, flags: Sequence[str], weights: Mapping[str, Any],
                         data: Mapping[str, str], **resolved: Any) -> dict[str, Any]:
    """A training stage's fingerprint (what must match for a finished checkpoint to be kept): the values of
    `flags` in `args`, `resolved` settings that no single flag holds, the content of every weights file the
    training reads (`weights`: {name: path}, each a `weights_identity`) and `data` (`training_data`).

    Weights are recorded by content only, never by path: a flag in `flags` naming a weights file (--MODEL_WEIGHTS,
    --amn_model_weights, --seg_weights: the names ending in "weights") is refused (ValueError), so a stage cannot
    record a path where it reads a file."""
    paths = [f for f in flags if f.lower().endswith("weights")]
    if paths:
        raise ValueError(f"training_fingerprint: {paths} name weights files; pass them in `weights` (by content)")
    return {**{flag: getattr(args, flag) for flag in flags}, **resolved,
            "weights": {name: weights_identity(path) for name, path in weights.items()}, **data}


def images_digest(names: Sequence[str], image_paths: dict[str, Path]) -> str:
    """The images a map stage reads (size and mtime of each)."""
    return files_digest((n, image_paths[n]) for n in names)


def _read_stamp(out_dir: Path) -> dict | None:
    """The stamp in `out_dir`, or None where there is none or it is unreadable (then the outputs count as
    made from unknown inputs and are redone, never a traceback)."""
    try:
        stamp = json.loads((out_dir / STAMP).read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def made_from(out_dir: str | os.PathLike) -> dict | str:
    """What the outputs in `out_dir` were made from: the stamp `reusable_outputs` keeps there (its content, not
    its mtime, which every rerun renews), or the folder's name where there is none. A later stage puts it in
    its own fingerprint, so new inputs upstream make its outputs stale."""
    stamp = _read_stamp(Path(out_dir))
    return stamp if stamp is not None else str(out_dir)


def reusable_outputs(out_dir: str | os.PathLike, fingerprint: dict, resume: bool, suffix: str | tuple[str, ...] = ".npy",
                     stage: str | None = None, variant: str = "", also: tuple[str, ...] = ()) -> set[str]:
    """Names whose output already exists in `out_dir` and was made from the same inputs.

    A rerun with --resume True skips them. When the inputs changed (a retrained model) or resume is
    off, the old outputs are deleted before the new fingerprint is recorded, so an interrupted rerun
    can never mix outputs of two models (`also`: other suffixes written per name, deleted with them).
    The stamp also records `stage`, the flag of the stage that writes the folder (and its `variant`),
    so an evaluation knows what it scores whatever the folder is called. With several suffixes, a name
    counts as existing when any of its files does (the caller checks which one means "done"). Rank 0 does the bookkeeping;
    every rank gets the same answer.
    """
    if stage is not None:
        fingerprint = {"stage": stage, "variant": variant, **fingerprint}
    out_dir = Path(out_dir)
    stamp = out_dir / STAMP
    previous = _read_stamp(out_dir)
    same = resume and previous == json.loads(json.dumps(fingerprint))
    suffixes = (suffix,) if isinstance(suffix, str) else tuple(suffix)
    existing = ({p.name[: -len(end)] for end in suffixes for p in out_dir.glob(f"*{end}") if not p.name.startswith(".")}
                if out_dir.is_dir() else set())
    barrier()
    if runtime().is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not same:
            stamp.unlink(missing_ok=True)
            for name in existing:
                for ending in (*suffixes, *also):
                    (out_dir / f"{name}{ending}").unlink(missing_ok=True)
        fileio.save_json(stamp, fingerprint)
    barrier()
    return existing if same else set()


def check_made_with(map_dir: str | os.PathLike, model: dict, flag: str, stage: str, fix: str) -> None:
    """Refuse maps that `stage` made in `map_dir` with a model other than `model` (a `model_identity`): a stage
    that reads them with the current model would mix two models. A folder without a stamp (made elsewhere),
    or made by another stage or variant, is not checked."""
    stamp = _read_stamp(Path(map_dir)) or {}
    if stamp.get("stage") == stage and not stamp.get("variant") and stamp.get("weights") != model:
        raise UserError(f"{flag} {map_dir} was made by another model than the current one (it was retrained since); "
                        f"{fix}")


def made_by(out_dir: str | os.PathLike) -> tuple[str | None, str]:
    """(flag, variant) of the stage that made the outputs in `out_dir`, from its stamp; (None, "") if unknown."""
    stamp = _read_stamp(Path(out_dir)) or {}
    return stamp.get("stage"), stamp.get("variant", "")
