"""What an output was made from, so that a rerun keeps what is still valid and redoes the rest.

Map and label stages keep a stamp (`.source.json`) in their output folder: the fingerprint of every input
and setting the outputs depend on, and the flag of the stage that made them. A rerun with the same
fingerprint skips the files already there; any difference deletes them first. Training stages put the
same kind of digest in their checkpoint's fingerprint (`training_data`). docs/ARCHITECTURE.md, "Resume".
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from misc import fileio
from misc.torchutils import barrier, runtime

STAMP = ".source.json"


def files_digest(named_paths: Iterable[tuple[str, str | os.PathLike]]) -> str:
    """sha256 of each (name, file size). It changes when files are regenerated or edited (a PNG's size follows
    its content) but not when they are copied, so a resume fingerprint survives an rsync to another machine."""
    sha = hashlib.sha256()
    for name, path in named_paths:
        sha.update(f"{name}\t{Path(path).stat().st_size}\n".encode())
    return sha.hexdigest()


def training_data(names: Sequence[str], image_paths: dict[str, Path], cls_labels: dict[str, int] | None = None,
                  label_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """The part of a training fingerprint that says what it learns from: the tiles, their image labels, images
    and (with `label_dir`) masks. A regenerated dataset or new labels then retrain instead of being reused."""
    labels = cls_labels or {}
    out = {"images_sha256": files_digest((f"{n}:{labels.get(n, '')}", image_paths[n]) for n in names)}
    if label_dir is not None:
        out["masks_sha256"] = files_digest((n, Path(label_dir) / f"{n}.png") for n in names)
    return out


def source_fingerprint(*paths: str | os.PathLike) -> dict[str, list]:
    """What an output folder was made from: size and mtime of each input file."""
    out = {}
    for path in paths:
        stat = Path(path).stat()
        out[str(path)] = [stat.st_size, stat.st_mtime_ns]
    return out


def made_from(out_dir: str | os.PathLike) -> dict | str:
    """What the outputs in `out_dir` were made from: the stamp `reusable_outputs` keeps there (its content, not
    its mtime, which every rerun renews), or the folder's name where there is none. A later stage puts it in
    its own fingerprint, so new inputs upstream make its outputs stale."""
    stamp = Path(out_dir) / STAMP
    return json.loads(stamp.read_text()) if stamp.is_file() else str(out_dir)


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
    previous = json.loads(stamp.read_text()) if stamp.is_file() else None
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


def made_by(out_dir: str | os.PathLike) -> tuple[str | None, str]:
    """(flag, variant) of the stage that made the outputs in `out_dir`, from its stamp; (None, "") if unknown."""
    stamp = made_from(out_dir)
    if isinstance(stamp, dict):
        return stamp.get("stage"), stamp.get("variant", "")
    return None, ""
