"""Writing the RRDSD dataset layout, shared by `voc12.demo` and `voc12.prepare`.

    <root>/JPEGImages/<name>.png            RGB tile
    <root>/SegmentationClassAug/<name>.png  0 = background, 255 = building
    <root>/cls_labels.npy                   {name: [0|1]} for every kept tile (np.save of a dict)
    <root>/train_aug.txt                    kept tiles of the train groups (the S1 list)
    <root>/train_aug_building.txt           positives of the train groups (the evaluation list)
    <root>/test.txt                         every tile of the test groups (segmentation evaluation)
    <root>/all_tiles.txt                    every tile written
    <root>/tiles.csv                        name, group, building fraction, label (1, 0 or 'dropped')

Label rule (the reference's write_numpy.py): 1 if at least 25% of the pixels are building, 0 if none, otherwise
the tile is left out of the image-level lists but kept for segmentation evaluation. Splits are by
group (area or scene), never by tile.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from misc import fileio

log = logging.getLogger(__name__)

POSITIVE_FRACTION = 0.25


def tile_label(mask: np.ndarray) -> int | None:
    """Image label of a {0,1} mask by the 25% rule: 1, 0, or None (dropped)."""
    building = int(np.count_nonzero(mask))
    if building == 0:
        return 0
    if building >= POSITIVE_FRACTION * mask.size:
        return 1
    return None


@dataclass
class LayoutSummary:
    tiles: int = 0
    positives: int = 0
    negatives: int = 0
    dropped: int = 0
    train_kept: int = 0
    train_positives: int = 0
    test_tiles: int = 0

    def line(self) -> str:
        return (f"{self.tiles} tiles: {self.positives} positives, {self.negatives} negatives, "
                f"{self.dropped} dropped by the 25% rule; train {self.train_kept} kept "
                f"({self.train_positives} positives), test {self.test_tiles} tiles")


@dataclass
class LayoutWriter:
    """Collects tiles one by one, then writes the labels and lists in `finish()`."""

    root: Path
    test_groups: frozenset[str] = frozenset()
    _rows: list[tuple[str, str, float, int | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.paths = default_paths(self.root)
        self.paths["image_dir"].mkdir(parents=True, exist_ok=True)
        self.paths["gt_dir"].mkdir(parents=True, exist_ok=True)

    def add(self, name: str, group: str, image: np.ndarray, mask: np.ndarray) -> int | None:
        """Write one tile (`mask` in {0,1}, same HxW as `image`) and return its image label."""
        if image.shape[:2] != mask.shape:
            raise ValueError(f"tile {name}: image {image.shape[:2]} and mask {mask.shape} differ in size")
        mask = (mask > 0).astype(np.uint8)
        fileio.save_png(self.paths["image_dir"] / f"{name}.png", np.ascontiguousarray(image[..., :3]))
        fileio.save_png(self.paths["gt_dir"] / f"{name}.png", mask * 255)
        label = tile_label(mask)
        self._rows.append((name, group, float(mask.mean()), label))
        return label

    def finish(self) -> LayoutSummary:
        rows = sorted(self._rows)
        names = [r[0] for r in rows]
        if len(set(names)) != len(names):
            raise ValueError("two tiles share a name; names must be unique across groups")
        is_test = {r[0]: r[1] in self.test_groups for r in rows}
        labels = {r[0]: r[3] for r in rows}
        kept = [n for n in names if labels[n] is not None]
        cls_labels = {n: [int(labels[n])] for n in kept}
        with fileio.atomic_path(self.paths["cls_labels"]) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, cls_labels, allow_pickle=True)
        train_kept = [n for n in kept if not is_test[n]]
        lists = {
            "all_tiles.txt": names,
            self.paths["train_list"].name: train_kept,
            self.paths["infer_list"].name: [n for n in train_kept if labels[n] == 1],
            self.paths["test_list"].name: [n for n in names if is_test[n]],
            "test_aug.txt": [n for n in kept if is_test[n]],
        }
        for filename, entries in lists.items():
            fileio.save_lines(self.root / filename, entries)
        csv = ["name,group,building_fraction,label"] + [
            f"{n},{g},{frac:.6f},{'dropped' if lab is None else lab}" for n, g, frac, lab in rows]
        fileio.save_lines(self.root / "tiles.csv", csv)
        return LayoutSummary(
            tiles=len(names),
            positives=sum(1 for n in kept if labels[n] == 1),
            negatives=sum(1 for n in kept if labels[n] == 0),
            dropped=len(names) - len(kept),
            train_kept=len(train_kept),
            train_positives=len(lists[self.paths["infer_list"].name]),
            test_tiles=len(lists[self.paths["test_list"].name]),
        )


def default_paths(root: str | os.PathLike) -> dict[str, Path]:
    """The one spelling of the layout: where each part of a dataset root lives."""
    root = Path(root)
    return {
        "image_dir": root / "JPEGImages",
        "gt_dir": root / "SegmentationClassAug",
        "cls_labels": root / "cls_labels.npy",
        "train_list": root / "train_aug.txt",
        "infer_list": root / "train_aug_building.txt",
        "test_list": root / "test.txt",
    }
