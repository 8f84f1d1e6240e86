"""What every stage does before its own work: read and check its list and images, and build its
inference loader. Stage modules stay thin by calling these (docs/ARCHITECTURE.md, "Stage kit")."""
from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from misc import fileio, thresholds
from misc.errors import UserError
from misc.pyutils import die_with_parent, progress
from misc.torchutils import runtime
from voc12 import dataloader

log = logging.getLogger(__name__)


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
    also that each tile has a training label mask there of its size, valued {0, 1, 255} (`mask_flag` names
    the flag or stage that makes them)."""
    list_path = getattr(args, list_flag)
    names = dataloader.read_list(list_path, f"--{list_flag}")
    cls_labels = dataloader.load_cls_labels(args.cls_labels)
    paths = dataloader.check_dataset(names, Path(args.image_dir), list_flag=f"--{list_flag}",
                                     list_path=list_path, cls_labels=cls_labels, mask_dir=mask_dir,
                                     mask_flag=mask_flag, decode=decode or mask_dir is not None,
                                     workers=args.pool_workers, mask_kind="labels" if mask_dir is not None else None)
    return Split(names, paths, cls_labels)


def loader(dataset: Dataset, num_workers: int, batch_size: int | None = None) -> DataLoader:
    """Inference loader: one item (or a list of `batch_size` items) at a time, in list order."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=(lambda items: items) if batch_size else None,
                      persistent_workers=False, prefetch_factor=4 if num_workers > 0 else None,
                      worker_init_fn=partial(die_with_parent, parent=os.getpid()) if num_workers > 0 else None)


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


def map_levels(map_dir: str | os.PathLike, names: Sequence[str], channel: int, map_stage: str,
               tag: str, kind: str = "positive") -> thresholds.MapLevels:
    """Value statistics of `high_res[channel]` of <map_dir>/<name>.npy over `names` (the positives, or with
    `kind` "negative" the negatives): what an 'auto' threshold is picked from. A missing map is a one-line
    error naming `map_stage`."""
    def maps() -> Iterator[np.ndarray]:
        for name in progress(names, desc=f"{tag} auto threshold", disable=not runtime().is_main):
            path = Path(map_dir) / f"{name}.npy"
            if not path.is_file():
                raise UserError(f"{path} is missing for the {kind} {name!r}; run {map_stage} first")
            yield fileio.load_npy_dict(path)["high_res"][channel]

    levels = thresholds.levels_of(maps())
    if not levels.count:
        raise UserError(f"an 'auto' threshold needs the maps of {kind} tiles, but the list has none with map values "
                        f"in {map_dir}; give the threshold as a number")
    return levels


@dataclass(frozen=True)
class NegativeMaps:
    """Where the negatives' maps of the same kind lie, for an 'auto_neg' threshold."""
    map_dir: str | os.PathLike
    names: Sequence[str]
    map_stage: str  # what makes them, for the one-line error


def pick_threshold(value: float | str, flag: str, map_dir: str | os.PathLike, names: Sequence[str], channel: int,
                   map_stage: str, tag: str, negatives: NegativeMaps | None = None) -> float:
    """`value` itself, or for 'auto' the operating point of the maps (misc.thresholds: the mean map value
    over the positives; no ground truth), or for 'auto_neg' the cut with the best building IoU implied by
    the negatives' maps as the model of background (`negatives`, misc.thresholds.negatives_cut); logged once
    with the flag it stands for."""
    if value not in (thresholds.AUTO, thresholds.AUTO_NEG):
        return float(value)
    levels = map_levels(map_dir, names, channel, map_stage, tag)
    if value == thresholds.AUTO:
        picked, how = thresholds.operating_point(levels), f"the mean map value of {len(names)} positives in {map_dir}"
    else:
        if negatives is None:
            raise UserError(f"{flag} auto_neg needs the maps of the negative tiles, which only the seed CAMs (S2) have; "
                            f"use auto (or a number) for the maps in {map_dir}")
        background = map_levels(negatives.map_dir, negatives.names, channel, negatives.map_stage, tag, "negative")
        picked = thresholds.negatives_cut(levels, background)
        how = (f"the best building IoU implied by {len(names)} positives in {map_dir} and {len(negatives.names)} "
               f"negatives in {negatives.map_dir}, building share {thresholds.building_share(levels, background):.3f}")
    if runtime().is_main:
        log.info("[%s] %s %s -> %.4f (%s; no ground truth read)", tag, flag, value, picked, how)
    return picked
