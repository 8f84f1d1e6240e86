"""The Review page's data: the positive tiles, each stage's picture of one tile, thresholds and IoU.

Reads:  <dataset>/train_aug_building.txt (the positives the maps are made for), <dataset>/JPEGImages,
        <dataset>/SegmentationClassAug (ground truth, where present); in the work space (run_sample.py's default
        folder names) the seed CAMs cam/, BAC maps lpcam_mask/, AR maps amn_cam/ (.npy, read only through
        misc.fileio.load_npy_dict), the pseudo masks pseudo_mask/ and the metrics_*.json of the evaluations.
Writes: nothing (decisions go through webapp.files.CsvStore into <work_space>/review.csv).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from misc import fileio, imutils, visutils
from misc.errors import UserError
from voc12.layout import default_paths
from webapp.files import safe_file


@dataclass(frozen=True)
class Stage:
    """One picture of a tile on the Review page."""
    key: str
    title: str
    folder: str      # under the work space; "" = the image itself
    channel: int     # building channel of the .npy map (-1: a {0,1} PNG mask)
    metrics: str     # the evaluation's metrics file in the work space, "" = none


STAGES = (
    Stage("image", "Image", "", 0, ""),
    Stage("seed", "Seed CAM (S2)", "cam", 0, "metrics_cam.json"),
    Stage("bac", "BAC map (S3)", "lpcam_mask", 0, "metrics_lpcam_mask.json"),
    Stage("ar", "AR map (S7)", "amn_cam", 1, "metrics_amn_cam.json"),
    Stage("pseudo", "Pseudo mask (S9)", "pseudo_mask", -1, ""),
)
STAGE_BY_KEY = {s.key: s for s in STAGES}


class ReviewData:
    """The positives of a dataset and what the stages in a work space made of them."""

    def __init__(self, dataset: Path, work_space: Path) -> None:
        self.dataset, self.work_space = dataset, work_space
        paths = default_paths(dataset)
        self.gt_dir = paths["gt_dir"]
        self.images = paths["image_dir"]
        listed = paths["infer_list"]
        self.names = _read_names(listed) if listed.is_file() else []
        self._iou: dict[str, tuple[tuple, float | None]] = {}

    def image_path(self, name: str) -> Path | None:
        found = imutils.find_image(self.images, name)
        return safe_file(self.images, found.name) if found is not None else None

    def work_file(self, folder: str, filename: str) -> Path | None:
        """A file of the work space, through the same gate as served files (a symbolic link out is refused)."""
        return safe_file(self.work_space, f"{folder}/{filename}")

    def thresholds(self) -> list[dict]:
        """Each stage's cut as its metrics file records it: [{stage, threshold, rule}] (absent files left out)."""
        out = []
        for stage in STAGES:
            metrics = fileio.read_json_object(self.work_space / stage.metrics) if stage.metrics else None
            if metrics and isinstance(metrics.get("threshold"), (int, float)):
                out.append({"stage": stage.title, "threshold": metrics["threshold"],
                            "rule": metrics.get("threshold_rule", "fixed")})
        labels = fileio.read_json_object(self.work_space / "metrics_ir_label.json")
        if labels and isinstance(labels.get("conf_fg_thres"), (int, float)):
            out.append({"stage": "Confident labels (S5)", "threshold": labels["conf_fg_thres"],
                        "background": labels.get("conf_bg_thres"), "rule": "building above, background below"})
        return out

    def available(self) -> dict[str, bool]:
        """Which stage folders exist in the work space."""
        return {s.key: (not s.folder) or (self.work_space / s.folder).is_dir() for s in STAGES}

    def pseudo_mask_path(self, name: str) -> Path | None:
        return self.work_file("pseudo_mask", f"{name}.png")

    def iou(self, name: str) -> float | None:
        """Building IoU of the tile's pseudo mask against its ground truth (None without either); cached
        by the two files' size and mtime."""
        mask, gt = self.pseudo_mask_path(name), safe_file(self.gt_dir, f"{name}.png")
        if mask is None or gt is None:
            return None
        try:
            key = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in (mask, gt))
        except OSError:
            return None
        cached = self._iou.get(name)
        if cached is not None and cached[0] == key:
            return cached[1]
        pred, truth = imutils.read_mask(mask) > 0, imutils.read_gt(gt)
        if pred.shape != truth.shape:
            value = None
        else:
            valid = truth != imutils.IGNORE
            union = np.count_nonzero((pred | (truth == 1)) & valid)
            value = round(np.count_nonzero(pred & (truth == 1) & valid) / union, 4) if union else 1.0
        self._iou[name] = (key, value)
        return value

    def picture(self, stage_key: str, name: str) -> bytes | None:
        """PNG of one stage's picture of the tile (maps as a heat blend over the image, the pseudo mask tinted
        red with the ground truth outlined in green), or None where the tile or the stage's file is absent."""
        stage = STAGE_BY_KEY.get(stage_key)
        image_path = self.image_path(name) if name in self.names else None
        if stage is None or image_path is None:
            return None
        image = imutils.read_image(image_path)
        if not stage.folder:
            return png_bytes(image)
        if stage.channel < 0:
            mask_path = self.pseudo_mask_path(name)
            if mask_path is None:
                return None
            gt_path = safe_file(self.gt_dir, f"{name}.png")
            gt = imutils.read_gt(gt_path) if gt_path is not None else None
            mask = _fit(imutils.read_mask(mask_path), image.shape[:2], cv2.INTER_NEAREST)
            gt = _fit(gt, image.shape[:2], cv2.INTER_NEAREST) if gt is not None else None
            return png_bytes(visutils.mask_tint(image, mask, gt))
        map_path = self.work_file(stage.folder, f"{name}.npy")
        if map_path is None:
            return None
        high_res = fileio.load_npy_dict(map_path).get("high_res")
        if high_res is None or high_res.ndim != 3 or high_res.shape[0] <= stage.channel:
            raise UserError(f"{map_path} has no building channel {stage.channel} in 'high_res'; rerun its stage")
        building = _fit(high_res[stage.channel].astype(np.float32), image.shape[:2], cv2.INTER_LINEAR)
        return png_bytes(visutils.heat_blend(image, building))


def _fit(array: np.ndarray, shape: tuple[int, int], interpolation: int) -> np.ndarray:
    if array.shape[:2] == shape:
        return array
    return cv2.resize(array, (shape[1], shape[0]), interpolation=interpolation)


def _read_names(path: Path) -> list[str]:
    """Tile names of a list file (first column; blank lines and '#' comments skipped), each once."""
    names: dict[str, None] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.setdefault(line.split()[0])
    return list(names)


def png_bytes(array: np.ndarray) -> bytes:
    """A uint8 HxW, HxWx3 or HxWx4 array encoded as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return buffer.getvalue()


