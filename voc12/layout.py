"""Writing the RRDSD dataset layout, shared by `voc12.demo` and `voc12.prepare`.

    <root>/JPEGImages/<name>.png            RGB tile (<name>.tif: a georeferenced tile of a GeoTIFF scene,
                                            written by `voc12.prepare labels`, so S11/S12 place its mask)
    <root>/SegmentationClassAug/<name>.png  0 = background, 255 = building (absent for image-level labels only)
    <root>/cls_labels.npy                   {name: [0|1]} for every kept tile (np.save of a dict)
    <root>/train_aug.txt                    kept tiles of the train side (the S1 list)
    <root>/train_aug_building.txt           positives of the train side (the evaluation list)
    <root>/test.txt                         every tile of the test side (segmentation evaluation); for
                                            image-level labels also every unlabelled tile (S11 predicts it)
    <root>/all_tiles.txt                    every tile written
    <root>/tiles.csv                        name, group, building fraction (empty without a mask), label
                                            (1, 0, 'dropped' or 'unlabelled')

Label rule (the reference's write_numpy.py): 1 if at least 25% of the pixels are building (`positive_fraction`;
a small value emulates a person who says "building" for one small house), 0 if none, otherwise the tile is left
out of the image-level lists but kept for segmentation evaluation. Tiles added without a mask carry the label a
person gave (or none: unlabelled, kept for prediction only). Splits are by group (area or scene), or by spatial
block inside each area (voc12.splits), never by tile.
"""
from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from misc import fileio
from voc12.splits import BlockSplit, split_blocks

log = logging.getLogger(__name__)

POSITIVE_FRACTION = 0.25


def tile_label(mask: np.ndarray, positive_fraction: float = POSITIVE_FRACTION) -> int | None:
    """Image label of a {0,1} mask by the 25% rule (`positive_fraction`): 1, 0, or None (dropped)."""
    building = int(np.count_nonzero(mask))
    if building == 0:
        return 0
    if building >= positive_fraction * mask.size:
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
    unlabelled: int = 0
    masks: bool = True  # False: image-level labels only (no SegmentationClassAug)
    positive_fraction: float = POSITIVE_FRACTION
    blocks: str = ""  # with a block split: how many blocks and tiles each side got

    def line(self) -> str:
        if self.masks:
            head = (f"{self.tiles} tiles: {self.positives} positives, {self.negatives} negatives, "
                    f"{self.dropped} dropped by the {100 * self.positive_fraction:g}% rule; ")
        else:
            head = (f"{self.tiles} tiles: {self.positives} positives, {self.negatives} negatives, "
                    f"{self.unlabelled} unlabelled (no masks); ")
        blocks = f"; {self.blocks}" if self.blocks else ""
        return (head + f"train {self.train_kept} kept ({self.train_positives} positives), "
                f"test {self.test_tiles} tiles{blocks}")


@dataclass
class LayoutWriter:
    """Collects tiles one by one, then writes the labels and lists in `finish()`."""

    root: Path
    test_groups: frozenset[str] = frozenset()
    positive_fraction: float = POSITIVE_FRACTION
    block_split: BlockSplit | None = None  # split by spatial blocks inside each group instead of by group
    _rows: list[tuple[str, str, float, int | None]] = field(default_factory=list)
    _blocks: dict[str, tuple] = field(default_factory=dict)
    _masks: bool = True

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.paths = default_paths(self.root)
        self.paths["image_dir"].mkdir(parents=True, exist_ok=True)

    def add(self, name: str, group: str, image: np.ndarray, mask: np.ndarray, block: tuple | None = None) -> int | None:
        """Write one tile (`mask` in {0,1}, same HxW as `image`) and return its image label; `block` is the
        tile's spatial block inside its group (needed with a block split)."""
        if image.shape[:2] != mask.shape:
            raise ValueError(f"tile {name}: image {image.shape[:2]} and mask {mask.shape} differ in size")
        mask = (mask > 0).astype(np.uint8)
        fileio.save_png(self.paths["image_dir"] / f"{name}.png", np.ascontiguousarray(image[..., :3]))
        self.paths["gt_dir"].mkdir(parents=True, exist_ok=True)
        fileio.save_png(self.paths["gt_dir"] / f"{name}.png", mask * 255)
        label = tile_label(mask, self.positive_fraction)
        self._rows.append((name, group, float(mask.mean()), label))
        self._blocks[name] = block
        return label

    def add_labelled(self, name: str, group: str, image: np.ndarray, label: int | None,
                     geo: dict | None = None, block: tuple | None = None) -> None:
        """Write one tile with the image-level label a person gave (None: unlabelled, kept for prediction), and
        no mask. With `geo` ({"crs", "transform"}) the tile is written as a GeoTIFF <name>.tif."""
        self._masks = False
        image = np.ascontiguousarray(image[..., :3])
        if geo is None:
            fileio.save_png(self.paths["image_dir"] / f"{name}.png", image)
        else:
            save_geotiff_rgb(self.paths["image_dir"] / f"{name}.tif", image, geo)
        self._rows.append((name, group, float("nan"), label))
        self._blocks[name] = block

    def finish(self) -> LayoutSummary:
        rows = sorted(self._rows)
        names = [r[0] for r in rows]
        if len(set(names)) != len(names):
            raise ValueError("two tiles share a name; names must be unique across groups")
        blocks_line = ""
        if self.block_split is not None:
            test_names, blocks_line = split_blocks({r[0]: (r[1], self._blocks[r[0]]) for r in rows}, self.block_split)
            is_test = {n: n in test_names for n in names}
        else:
            is_test = {r[0]: r[1] in self.test_groups for r in rows}
        labels = {r[0]: r[3] for r in rows}
        kept = [n for n in names if labels[n] is not None]
        cls_labels = {n: [int(labels[n])] for n in kept}
        with fileio.atomic_path(self.paths["cls_labels"]) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, cls_labels, allow_pickle=True)
        train_kept = [n for n in kept if not is_test[n]]
        # without masks, an unlabelled tile is never trained on: S11 predicts it with the test side
        predicted = [n for n in names if is_test[n] or (not self._masks and labels[n] is None)]
        if not self._masks and not predicted:  # nothing held out: S11 maps the whole area (scored on nothing)
            predicted = names
        lists = {
            "all_tiles.txt": names,
            self.paths["train_list"].name: train_kept,
            self.paths["infer_list"].name: [n for n in train_kept if labels[n] == 1],
            self.paths["test_list"].name: predicted,
            "test_aug.txt": [n for n in kept if is_test[n]],
        }
        for filename, entries in lists.items():
            fileio.save_lines(self.root / filename, entries)
        missing = "unlabelled" if not self._masks else "dropped"
        csv = ["name,group,building_fraction,label"] + [
            f"{n},{g},{'' if np.isnan(frac) else f'{frac:.6f}'},{missing if lab is None else lab}"
            for n, g, frac, lab in rows]
        fileio.save_lines(self.root / "tiles.csv", csv)
        unlabelled = len(names) - len(kept)
        return LayoutSummary(
            tiles=len(names),
            positives=sum(1 for n in kept if labels[n] == 1),
            negatives=sum(1 for n in kept if labels[n] == 0),
            dropped=unlabelled if self._masks else 0,
            train_kept=len(train_kept),
            train_positives=len(lists[self.paths["infer_list"].name]),
            test_tiles=len(lists[self.paths["test_list"].name]),
            unlabelled=0 if self._masks else unlabelled,
            masks=self._masks,
            positive_fraction=self.positive_fraction,
            blocks=blocks_line,
        )


def save_geotiff_rgb(path: Path, image: np.ndarray, geo: dict) -> None:
    """An HxWx3 uint8 tile as an RGB GeoTIFF with `geo`'s CRS and transform, written atomically (deflate; PIL
    reads it like any image, rasterio and GDAL with its place on the ground)."""
    import rasterio

    height, width = image.shape[:2]
    with fileio.atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", driver="GTiff", height=height, width=width, count=3, dtype="uint8",
                           crs=geo["crs"], transform=geo["transform"], compress="deflate",
                           photometric="RGB") as dst:
            dst.write(np.moveaxis(image, -1, 0))


def default_paths(root: str | os.PathLike) -> dict[str, Path]:
    """The one spelling of the layout: where each part of a dataset root lives."""
    root = Path(root)
    return {
        "image_dir": root / "JPEGImages",
        "gt_dir": root / "SegmentationClassAug",
        "cls_labels": root / "cls_labels.npy",
        "radiometry": root / "radiometry.json",  # GeoTIFF scenes: how their bands became 8-bit (misc/radiometry.py)
        "train_list": root / "train_aug.txt",
        "infer_list": root / "train_aug_building.txt",
        "test_list": root / "test.txt",
        "tiles": root / "tiles.csv",
    }


def read_tile_groups(root: str | os.PathLike) -> dict[str, str]:
    """{tile name: group} from <root>/tiles.csv (the area or scene each tile was cut from); {} without the file
    (a dataset laid out by hand), so scores per group are simply not given."""
    path = default_paths(root)["tiles"]
    if not path.is_file():
        return {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return {row["name"]: row["group"] for row in csv.DictReader(f) if row.get("name") and row.get("group")}
    except (OSError, UnicodeDecodeError, csv.Error):  # a file edited by hand: scores are pooled, as without it
        return {}
