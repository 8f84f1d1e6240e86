"""The data layer: lists, image labels, dataset checks and the torch datasets.

The RRDSD layout (`voc12.layout`): `<root>/JPEGImages/<name>.png|.jpg|.tif`, ground truth
`<root>/SegmentationClassAug/<name>.png` (0/255), `cls_labels.npy` ({name: [0|1]}) and list files
(one tile name a line). Every path comes from flags; nothing is read at import time.

Randomness in the training sets is a pure function of (seed, epoch, index), so a resumed run
sees the same crops as an uninterrupted one, whatever the number of loader workers.
"""
from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from misc import augment, fileio, imutils
from misc.errors import UserError
from misc.tilegrid import TileContext

log = logging.getLogger(__name__)


_WARNED_DUPLICATES: set[str] = set()


def read_list(path: str | os.PathLike, flag: str = "--train_list") -> list[str]:
    """Tile names of a list file: one a line, extension-less; blank lines and '#' comments skipped.
    Extra columns (VOC style `name label`) are ignored. A name listed twice is kept once (first place),
    with one warning per list file, so no tile is trained on twice."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{flag} {path} does not exist; make it with `python -m voc12.prepare` or point {flag} at your list")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{flag} {path} is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
                        "save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
    names = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.append(line.split()[0])
    if not names:
        raise UserError(f"{flag} {path} lists no tiles")
    unique = list(dict.fromkeys(names))
    if len(unique) < len(names) and str(path) not in _WARNED_DUPLICATES:
        _WARNED_DUPLICATES.add(str(path))
        first = next(n for i, n in enumerate(names) if n in names[:i])
        log.warning("%s %s lists %d name(s) more than once (first: %r); each tile is used once", flag, path,
                    len(names) - len(unique), first)
    return unique


def load_cls_labels(path: str | os.PathLike) -> dict[str, int]:
    """{name: 0|1} from `cls_labels.npy` (np.save of a dict name -> [label], the reference's format), read
    without running code (misc.fileio.load_npy_object). This project is binary: a label is one value, 0 or 1."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"image labels {path} do not exist; make them with `python -m voc12.prepare` or set --cls_labels")
    remedy = "regenerate them with `python -m voc12.prepare` or fix --cls_labels"
    try:
        raw = fileio.load_npy_object(path, remedy)
    except fileio.UnreadableNpy as err:
        raise UserError(f"image labels {path} are not a dict name -> [0|1] ({err.reason}); {remedy}") from None
    if not isinstance(raw, dict):
        raise UserError(f"image labels {path} are not a dict name -> [0|1] (got {type(raw).__name__}); {remedy}")
    labels = {}
    for name, value in raw.items():
        labels[str(name)] = _binary_label(path, name, value, remedy)
    return labels


def _binary_label(path: Path, name: object, value: object, remedy: str) -> int:
    try:
        flat = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise UserError(f"image labels {path} give {name!r} the label {value!r}, not a number; {remedy}") from None
    if flat.size > 1:
        raise UserError(f"image labels {path} give {name!r} a {flat.size}-element vector; this project is binary "
                        f"(building or not): store [1] if any building class is present, else [0] ({remedy})")
    if flat.size == 0 or flat[0] not in (0.0, 1.0):
        raise UserError(f"image labels {path} give {name!r} the label {flat.tolist()}; only 0 (no building) and "
                        f"1 (building) are valid: {remedy}")
    return int(flat[0])


def check_dataset(names: Sequence[str], image_dir: str | os.PathLike, *, list_flag: str, list_path: str | os.PathLike,
                  cls_labels: dict[str, int] | None = None, mask_dir: str | os.PathLike | None = None,
                  mask_flag: str = "--gt_dir", decode: bool = True, workers: int = 4,
                  mask_kind: str | None = None) -> dict[str, Path]:
    """Check a list before a stage starts; return {name: image path}.

    Raises UserError (one line naming the file and the fix) for a list entry without image, an
    entry missing from `cls_labels`, an unreadable or truncated image, or a mask whose size differs
    from its image. `decode=False` skips the full decode (size from the header only). `mask_kind` also
    checks the mask values: "labels" {0, 1, 255} (training labels), "gt" (ground truth, `imutils.gt_to_binary`).
    """
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise UserError(f"image folder {image_dir} does not exist; check --voc12_root")
    paths: dict[str, Path] = {}
    for name in names:
        found = imutils.find_image(image_dir, name)
        if found is None:
            raise UserError(f"{list_flag} {list_path} names {name!r}, but {image_dir}/{name}.png (or .jpg/.tif) does not exist; "
                            f"fix the list or --voc12_root")
        if cls_labels is not None and name not in cls_labels:
            raise UserError(f"{list_flag} {list_path} names {name!r}, which has no entry in the image labels (--cls_labels); "
                            f"regenerate cls_labels.npy or remove the entry")
        paths[name] = found
    if mask_dir is not None and not Path(mask_dir).is_dir():
        raise UserError(f"mask folder {mask_dir} does not exist; check {mask_flag}")

    def check_one(name: str) -> None:
        size = _image_size(paths[name], decode, imutils.read_image)
        if mask_dir is not None:
            mask_path = Path(mask_dir) / f"{name}.png"
            if not mask_path.is_file():
                raise UserError(f"{list_flag} {list_path} names {name!r}, but its mask {mask_path} does not exist; check {mask_flag}")
            if mask_kind is None:
                mask_size = _image_size(mask_path, decode, imutils.read_mask)
            else:
                mask = imutils.read_mask(mask_path)
                if mask_kind == "gt":
                    imutils.gt_to_binary(mask, mask_path, mask_flag)
                else:
                    imutils.check_label_values(mask, mask_path, mask_flag)
                mask_size = mask.shape[:2]
            if mask_size != size:
                raise UserError(f"mask {mask_path} is {mask_size[1]}x{mask_size[0]} but image {paths[name]} is "
                                f"{size[1]}x{size[0]}; masks must match their images pixel for pixel")

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for _ in pool.map(check_one, names):  # the first error in list order is raised
            pass
    return paths


def _image_size(path: Path, decode: bool, reader) -> tuple[int, int]:
    """(H, W) of an image; decoding fully (with `reader`) catches truncated files."""
    return tuple(reader(path).shape[:2]) if decode else imutils.image_size(path)


class DecodedCache:
    """Decoded tiles kept in memory across the epochs of one training stage, so each file is decoded once
    rather than once an epoch (on the 2-core machines here PNG decoding was about 40% of S1's data time;
    it runs in the training process when there is no loader worker). Bounded by `max_bytes` (files past it
    are read each time); keyed by path, size and mtime, so an edited file is read again. Cached arrays
    are read-only: an augmentation that wrote into one would fail instead of spoiling later epochs."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes, self.used = max_bytes, 0
        self._arrays: dict[tuple[str, int, int], np.ndarray] = {}

    def read(self, path: str | os.PathLike, reader) -> np.ndarray:
        stat = os.stat(path)
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        array = self._arrays.get(key)
        if array is None:
            array = reader(path)
            if self.used + array.nbytes <= self.max_bytes:
                array.setflags(write=False)
                self._arrays[key] = array
                self.used += array.nbytes
        return array


def _aug_rng(seed: int, epoch: int, index: int) -> random.Random:
    return random.Random((seed * 1_000_003 + epoch) * 10_000_019 + index)


def _check_recipe(recipe: str) -> str:
    if recipe not in augment.RECIPES:
        raise ValueError(f"augmentation recipe {recipe!r} is not one of {augment.RECIPES}")
    return recipe


def _flip_or_dihedral(arrays: list[np.ndarray], recipe: str, rng: random.Random) -> list[np.ndarray]:
    """The reference's horizontal flip (p = 0.5), or with a dihedral recipe one of the eight D4 elements."""
    if recipe == augment.REFERENCE:
        return [a[:, ::-1] for a in arrays] if rng.random() < 0.5 else arrays
    return augment.random_dihedral(arrays, rng)


class ClassificationDataset(Dataset):
    """S1 training set: random_resize_long(192, 320) -> normalise -> hflip -> random crop (fill 0) -> CHW.
    `augment` (misc.augment.RECIPES): "dihedral" replaces the rescale and flip by a D4 element,
    "dihedral_rescale" only the flip."""

    def __init__(self, names: Sequence[str], image_paths: dict[str, Path], cls_labels: dict[str, int],
                 crop_size: int = 256, resize_long: tuple[int, int] = (192, 320), seed: int = 0,
                 augment: str = "reference") -> None:
        self.names = list(names)
        self.image_paths = image_paths
        self.labels = np.array([[cls_labels[n]] for n in self.names], dtype=np.float32)
        self.crop_size, self.resize_long, self.seed, self.epoch = crop_size, resize_long, seed, 0
        self.augment = _check_recipe(augment)
        self.cache = DecodedCache()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        rng = _aug_rng(self.seed, self.epoch, index)
        img = self.cache.read(self.image_paths[self.names[index]], imutils.read_image)
        if augment.rescales(self.augment):
            img = imutils.random_resize_long(img, *self.resize_long, rng=rng)
        img = imutils.normalize(img)
        (img,) = _flip_or_dihedral([img], self.augment, rng)
        (img,) = imutils.random_crop([img], self.crop_size, fills=[0.0], rng=rng)
        return {"name": self.names[index], "img": torch.from_numpy(imutils.hwc_to_chw(img)),
                "label": torch.from_numpy(self.labels[index])}


class ClassificationDatasetMSF(Dataset):
    """Multi-scale + flip inference set: per scale a [2, 3, h, w] tensor (image, its flip)."""

    def __init__(self, names: Sequence[str], image_paths: dict[str, Path], cls_labels: dict[str, int] | None,
                 scales: Sequence[float] = (1.0, 0.5, 1.5, 2.0)) -> None:
        self.names = list(names)
        self.image_paths = image_paths
        self.cls_labels = cls_labels
        self.scales = tuple(scales)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        name = self.names[index]
        img = imutils.read_image(self.image_paths[name])
        pyramid = []
        for scale in self.scales:
            scaled = img if scale == 1.0 else imutils.pil_rescale(img, scale, order=3)
            chw = imutils.hwc_to_chw(imutils.normalize(scaled))
            pyramid.append(torch.from_numpy(np.stack([chw, chw[:, :, ::-1].copy()])))
        label = float(self.cls_labels[name]) if self.cls_labels is not None else 1.0
        return {"name": name, "img": pyramid, "size": img.shape[:2], "label": torch.tensor([label]),
                "raw": img}


class SegmentationDataset(Dataset):
    """Pixel-label training set (S6, S10, S11): [`context`: the tile grown by its neighbours] -> random scale
    (image bicubic, label nearest) -> normalise -> hflip -> random crop (image fill 0, label fill 255). Labels
    {0,1,255}; `gt_labels=True` maps 0/255 ground truth to {0,1} first. `augment` as ClassificationDataset's:
    the same D4 element for the image and its labels."""

    def __init__(self, names: Sequence[str], image_paths: dict[str, Path], label_dir: str | os.PathLike,
                 cls_labels: dict[str, int] | None = None, crop_size: int = 256,
                 scale_range: tuple[float, float] = (0.5, 1.5), gt_labels: bool = False, seed: int = 0,
                 augment: str = "reference", context: TileContext | None = None) -> None:
        self.names = list(names)
        self.image_paths = image_paths
        self.label_dir = Path(label_dir)
        self.cls_labels = cls_labels
        self.crop_size, self.scale_range, self.gt_labels, self.seed, self.epoch = crop_size, scale_range, gt_labels, seed, 0
        self.augment = _check_recipe(augment)
        self.context = context or TileContext(0, "", {})
        self.listed = set(self.names)
        self.cache = DecodedCache()
        # ground truth is converted to {0, 1, 255} once, as it is decoded (the cache keeps the converted mask)
        self.read_label = partial(imutils.read_gt, flag="--seg_label_dir") if gt_labels else imutils.read_mask

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        rng = _aug_rng(self.seed, self.epoch, index)
        name = self.names[index]
        img = self.cache.read(self.image_paths[name], imutils.read_image)
        label = self.cache.read(self.label_dir / f"{name}.png", self.read_label)
        if self.context.margin:
            img, label = self.with_neighbours(self.image_paths[name], img, label)
        if augment.rescales(self.augment):
            scale = rng.uniform(*self.scale_range)
            img = imutils.pil_rescale(img, scale, order=3)
            label = imutils.pil_rescale(label, scale, order=0)
        img = imutils.normalize(img)
        img, label = _flip_or_dihedral([img, label], self.augment, rng)
        img, label = imutils.random_crop([img, label], self.crop_size, fills=[0.0, 255], rng=rng)
        label_cls = float(self.cls_labels[name]) if self.cls_labels is not None else float((label == 1).any())
        return {"name": name, "img": torch.from_numpy(imutils.hwc_to_chw(img)),
                "label": torch.from_numpy(label.astype(np.int64)), "label_cls": torch.tensor([label_cls])}

    def with_neighbours(self, path: Path, img: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The tile and its labels grown by the context's margin: from each neighbouring tile of the list (checked
        with its labels by check_dataset, and in the training fingerprint), mirrored elsewhere; the crop then
        falls anywhere in it, so a tile's edge is not always the input's edge."""
        listed = {offset: p.stem for offset, p in self.context.neighbours(path).items() if p.stem in self.listed}
        images = {offset: self.cache.read(self.image_paths[n], imutils.read_image) for offset, n in listed.items()}
        labels = {offset: self.cache.read(self.label_dir / f"{n}.png", self.read_label) for offset, n in listed.items()}
        return (imutils.with_margin(img, images, self.context.margin),
                imutils.with_margin(label, labels, self.context.margin))
