"""What every stage does before its own work: read and check its list, and decide which outputs
a rerun can keep (STYLE B2, B4). Stage modules stay thin by calling these."""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from misc import fileio, imutils, metrics
from misc.errors import UserError
from misc.pyutils import progress
from misc.torchutils import barrier, runtime
from voc12 import dataloader

log = logging.getLogger(__name__)
STAMP = ".source.json"  # what a map folder was made from (reusable_outputs)


@dataclass
class Split:
    names: list[str]
    image_paths: dict[str, Path]
    cls_labels: dict[str, int]

    @property
    def positives(self) -> list[str]:
        return [n for n in self.names if self.cls_labels[n] == 1]


def load_split(args: argparse.Namespace, list_flag: str = "train_list", decode: bool = True,
               mask_dir: str | os.PathLike | None = None, mask_flag: str = "--gt_dir") -> Split:
    """Read --<list_flag> and the image labels, and check every entry (one-line errors); with `mask_dir`,
    also that each tile has a mask there of its size (`mask_flag` names the flag or stage that makes them)."""
    list_path = getattr(args, list_flag)
    names = dataloader.read_list(list_path, f"--{list_flag}")
    cls_labels = dataloader.load_cls_labels(args.cls_labels)
    paths = dataloader.check_dataset(names, Path(args.voc12_root) / "JPEGImages", list_flag=f"--{list_flag}",
                                     list_path=list_path, cls_labels=cls_labels, mask_dir=mask_dir,
                                     mask_flag=mask_flag, decode=decode or mask_dir is not None,
                                     workers=args.pool_workers)
    return Split(names, paths, cls_labels)


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


def reusable_outputs(out_dir: str | os.PathLike, fingerprint: dict, resume: bool, suffix: str = ".npy") -> set[str]:
    """Names whose output already exists in `out_dir` and was made from the same inputs.

    A rerun with --resume True skips them. When the inputs changed (a retrained model) or resume is
    off, the old outputs are deleted before the new fingerprint is recorded, so an interrupted rerun
    can never mix outputs of two models. Rank 0 does the bookkeeping; every rank gets the same answer.
    """
    out_dir = Path(out_dir)
    stamp = out_dir / STAMP
    previous = json.loads(stamp.read_text()) if stamp.is_file() else None
    same = resume and previous == json.loads(json.dumps(fingerprint))
    existing = {p.name[: -len(suffix)] for p in out_dir.glob(f"*{suffix}")} if out_dir.is_dir() else set()
    barrier()
    if runtime().is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not same:
            stamp.unlink(missing_ok=True)
            for name in existing:
                (out_dir / f"{name}{suffix}").unlink(missing_ok=True)
        fileio.save_json(stamp, fingerprint)
    barrier()
    return existing if same else set()


def loader(dataset: Dataset, num_workers: int, batch_size: int | None = None) -> DataLoader:
    """Inference loader: one item (or a list of `batch_size` items) at a time, in list order."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=(lambda items: items) if batch_size else None,
                      persistent_workers=False, prefetch_factor=4 if num_workers > 0 else None)


def same_size_groups(packs: Iterator[list[dict]]) -> Iterator[list[dict]]:
    """Split each list of packs into runs of equal image size, so each run is one forward batch."""
    for batch in packs:
        group: list[dict] = []
        for pack in batch:
            if group and tuple(group[0]["size"]) != tuple(pack["size"]):
                yield group
                group = []
            group.append(pack)
        if group:
            yield group


def inference_names(split_names: Sequence[str], done: set[str]) -> list[str]:
    """This rank's share of the names still to do."""
    rt = runtime()
    todo = [n for n in split_names if n not in done]
    return todo[rt.rank::rt.world_size]


def mask_confusion(names: Sequence[str], pred_dir: Path, gt_dir: Path, list_flag: str, make_flag: str,
                   desc: str) -> tuple[np.ndarray, int]:
    """Dataset-level confusion [2, 2] of the {0, 1} PNG masks in `pred_dir` against the ground truth, and the
    number of tiles whose ground truth has no building. `list_flag` names the list the tiles come from,
    `make_flag` the stage that writes the masks (both for the one-line errors)."""
    meter, empty = metrics.ConfusionMeter(), 0
    for name in progress(names, desc=desc):
        pred_path, gt_path = pred_dir / f"{name}.png", gt_dir / f"{name}.png"
        if not pred_path.is_file():
            raise UserError(f"{pred_path} is missing for {name!r} of {list_flag}; run {make_flag} with the same list")
        if not gt_path.is_file():
            raise UserError(f"ground truth {gt_path} is missing for {name!r} of {list_flag}; set --gt_dir")
        pred, gt = imutils.read_mask(pred_path), imutils.gt_to_binary(imutils.read_mask(gt_path))
        if pred.shape != gt.shape:
            raise UserError(f"{pred_path} is {pred.shape[1]}x{pred.shape[0]} but its ground truth is "
                            f"{gt.shape[1]}x{gt.shape[0]}; the masks were made from other images")
        if pred.max(initial=0) > 1:
            raise UserError(f"{pred_path} holds values other than 0/1; rerun {make_flag}")
        meter.add(gt, pred)
        empty += int(not gt.any())
    return meter.matrix, empty
