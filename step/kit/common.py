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

from misc import fileio, imutils, thresholds
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
               tag: str) -> thresholds.MapLevels:
    """Value statistics of `high_res[channel]` of <map_dir>/<name>.npy over the positives `names`: what an
    'auto' threshold is picked from. A missing map is a one-line error naming `map_stage`."""
    def maps() -> Iterator[np.ndarray]:
        for name in progress(names, desc=f"{tag} auto threshold", disable=not runtime().is_main):
            yield _map_of(map_dir, name, channel, map_stage)

    levels = thresholds.levels_of(maps())
    if not levels.count:
        raise UserError(f"an 'auto' threshold needs the maps of positive tiles, but the list has none with map values "
                        f"in {map_dir}; give the threshold as a number")
    return levels


def _map_of(map_dir: str | os.PathLike, name: str, channel: int, map_stage: str) -> np.ndarray:
    path = Path(map_dir) / f"{name}.npy"
    if not path.is_file():
        raise UserError(f"{path} is missing for the positive {name!r}; run {map_stage} first")
    return fileio.load_npy_dict(path)["high_res"][channel]


def labelled_levels(map_dir: str | os.PathLike, names: Sequence[str], channel: int, map_stage: str,
                    labels_dir: str | os.PathLike, flag: str, tag: str) -> thresholds.LabelledLevels:
    """Map values of the positives `names` split by the confident labels in <labels_dir>/<name>.png (1 building,
    0 background, 255 unknown): what the 'auto' cut of a map trained on those labels is picked from."""
    levels = thresholds.LabelledLevels()
    for name in progress(names, desc=f"{tag} auto threshold", disable=not runtime().is_main):
        building_map = _map_of(map_dir, name, channel, map_stage)
        path = Path(labels_dir) / f"{name}.png"
        if not path.is_file():
            raise UserError(f"{flag} auto cuts the maps in {map_dir} where they best reproduce the confident labels "
                            f"they were trained on, but {path} is missing: run --cam_to_ir_label_pass True (or give "
                            f"the threshold as a number)")
        label = imutils.read_mask(path)
        imutils.check_label_values(label, path, "--ir_label_out_dir")
        if label.shape != building_map.shape:
            raise UserError(f"{path} is {label.shape[1]}x{label.shape[0]} but the map {Path(map_dir) / name}.npy is "
                            f"{building_map.shape[1]}x{building_map.shape[0]}: the labels were made from other "
                            f"images; rerun --cam_to_ir_label_pass True")
        levels.add(building_map, label)
    return levels


def pick_threshold(value: float | str, flag: str, map_dir: str | os.PathLike, names: Sequence[str], channel: int,
                   map_stage: str, tag: str, labels_dir: str | os.PathLike | None = None) -> float:
    """`value` itself, or for 'auto' a value picked without ground truth (misc.thresholds): with `labels_dir`
    (the confident labels the maps' network was trained on: the AR maps and S5's labels) the cut that best
    reproduces those labels, else the operating point of the maps (the mean map value over the positives);
    logged once with the flag it stands for."""
    if value != thresholds.AUTO:
        return float(value)
    picked = None
    if labels_dir is not None:
        picked = thresholds.labels_cut(labelled_levels(map_dir, names, channel, map_stage, labels_dir, flag, tag))
        how = f"the cut that best reproduces the confident labels in {labels_dir} on {len(names)} positives"
        if picked is None and runtime().is_main:
            log.warning("[%s] the confident labels in %s hold no building or no background pixel; %s auto falls "
                        "back to the mean map value", tag, labels_dir, flag)
    if picked is None:
        levels = map_levels(map_dir, names, channel, map_stage, tag)
        picked, how = thresholds.operating_point(levels), f"the mean map value of {len(names)} positives in {map_dir}"
    if runtime().is_main:
        log.info("[%s] %s %s -> %.4f (%s; no ground truth read)", tag, flag, value, picked, how)
    return picked
