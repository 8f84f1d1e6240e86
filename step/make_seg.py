"""S11 prediction: building masks from the trained DeepLabV3+ (SPEC S11), for a list or any image folder.

Reads:  <seg_weights_name>.pth; the tiles of --seg_infer_list under <voc12_root>/JPEGImages (default
        <voc12_root>/test.txt), or every image in --seg_infer_dir (png/jpg/tif, any size; GeoTIFFs are
        read with rasterio, first 3 bands).
Writes: <seg_out_dir>/<name>.png, uint8 {0, 1} (argmax); for a georeferenced input also <name>.tif, a
        1-band uint8 GeoTIFF with the input's transform and CRS (written before the PNG, so a PNG means done);
        overlays of the first --num_vis images in <work_space>/vis/<seg_out_dir name>/.
Prediction: sliding windows of --seg_window with --seg_overlap (border windows shifted inward, logits
averaged where windows overlap), each window averaged with its horizontal flip; with --seg_scales the
image is resized by each scale (bilinear), predicted the same way, and the logits are averaged at full size.
Split by rank; a rerun skips images already predicted by the same model with the same settings.
"""
from __future__ import annotations

import argparse
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from misc import fileio, imutils, visutils
from misc.errors import UserError, brief
from misc.pyutils import Timer, progress
from misc.torchutils import autocast, barrier, iter_batches, runtime
from net import deeplabv3plus
from step.common import inference_names, reusable_outputs, source_fingerprint
from step.train_seg import seg_settings
from voc12 import dataloader

log = logging.getLogger(__name__)
TAG = "S11 make_seg"
GEOTIFF_SUFFIXES = (".tif", ".tiff")
VIS_MAX_SIDE = 1024


@dataclass
class Source:
    """Where an image comes from, and its ground truth when known."""
    path: Path
    gt: Path | None = None


# --- reading and writing ----------------------------------------------------------------------------


def read_input(path: str | Path) -> tuple[np.ndarray, dict[str, Any] | None]:
    """HxWx3 uint8 RGB, and for a georeferenced GeoTIFF {"crs", "transform"} (else None).

    GeoTIFFs: the first 3 bands (1 band is repeated); other dtypes are scaled by the image maximum
    to 0..255, as misc.imutils does for 16-bit PNGs."""
    path = Path(path)
    if path.suffix.lower() not in GEOTIFF_SUFFIXES:
        return imutils.read_image(path), None
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                if src.count == 2:
                    raise UserError(f"{path} has 2 bands; expected 1 (grey) or at least 3 (RGB first)")
                bands = src.read([1, 2, 3] if src.count >= 3 else [1, 1, 1])
                geo = {"crs": src.crs, "transform": src.transform}
                georeferenced = src.crs is not None or not src.transform.is_identity
    except RasterioIOError as err:
        raise UserError(f"{path} is not a readable image ({brief(err)}); remove it from --seg_infer_dir") from None
    if bands.dtype != np.uint8:
        bands = bands.astype(np.float32)
        bands = (bands / max(float(bands.max()), 1.0) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(bands.transpose(1, 2, 0)), geo if georeferenced else None


def write_mask(out_dir: Path, name: str, mask: np.ndarray, geo: dict[str, Any] | None) -> None:
    """<name>.tif (georeferenced inputs) then <name>.png; both atomic."""
    if geo is not None:
        import rasterio

        with fileio.atomic_path(out_dir / f"{name}.tif") as tmp:
            with rasterio.open(tmp, "w", driver="GTiff", height=mask.shape[0], width=mask.shape[1], count=1,
                               dtype="uint8", crs=geo["crs"], transform=geo["transform"], compress="deflate") as dst:
                dst.write(mask[None])
    fileio.save_png(out_dir / f"{name}.png", mask)


def infer_sources(args: argparse.Namespace, infer_list: str) -> dict[str, Source]:
    """{name: Source}: every image of --seg_infer_dir when given, else the tiles of --seg_infer_list."""
    if args.seg_infer_dir:
        folder = Path(args.seg_infer_dir)
        if not folder.is_dir():
            raise UserError(f"--seg_infer_dir {folder} is not a folder; point it at a folder of images")
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in imutils.IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"--seg_infer_dir {folder} holds no image ({', '.join(imutils.IMAGE_SUFFIXES)})")
        sources: dict[str, Source] = {}
        for path in files:
            if path.stem in sources:
                raise UserError(f"--seg_infer_dir {folder} has two images named {path.stem!r} "
                                f"({sources[path.stem].path.name}, {path.name}); rename one")
            sources[path.stem] = Source(path)
        return sources
    names = dataloader.read_list(infer_list, "--seg_infer_list")
    paths = dataloader.check_dataset(names, Path(args.voc12_root) / "JPEGImages", list_flag="--seg_infer_list",
                                     list_path=infer_list, decode=False, workers=args.pool_workers)
    gt_dir = Path(args.gt_dir)
    return {n: Source(paths[n], gt_dir / f"{n}.png" if (gt_dir / f"{n}.png").is_file() else None) for n in names}


# --- prediction -------------------------------------------------------------------------------------


def check_window(window: int, overlap: float, scales: Sequence[float]) -> None:
    if window < 16:
        raise UserError(f"--seg_window {window} is too small; use at least 16 (the training crop, e.g. 256)")
    if not 0 <= overlap < 1:
        raise UserError(f"--seg_overlap {overlap} must be in [0, 1) (e.g. 0.25)")
    if any(s <= 0 for s in scales):
        raise UserError(f"--seg_scales {','.join(map(str, scales))} must all be positive (e.g. 1.0 or 0.75,1.0,1.25)")


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window offsets along one axis covering [0, size); the last window is shifted inward to end at size."""
    if size <= window:
        return [0]
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


@torch.no_grad()
def flip_logits(model: nn.Module, x: torch.Tensor, amp: str = "none") -> torch.Tensor:
    """Mean of the logits of x [B, 3, h, w] and of its horizontal flip, flipped back: [B, C, h, w] float32."""
    with autocast(x.device, amp):
        logits = model(torch.cat([x, x.flip(-1)])).float()
    return (logits[: len(x)] + logits[len(x):].flip(-1)) / 2


@torch.no_grad()
def sliding_window_logits(model: nn.Module, x: torch.Tensor, window: int, overlap: float, batch: int = 8,
                          device: torch.device | str = "cpu", amp: str = "none") -> torch.Tensor:
    """Logits [C, H, W] (on the CPU) of one normalised image x [3, H, W], averaged over overlapping windows."""
    height, width = x.shape[-2:]
    wh, ww = min(window, height), min(window, width)
    stride = max(1, int(round(window * (1 - overlap))))
    boxes = [(t, l) for t in window_starts(height, window, stride) for l in window_starts(width, window, stride)]
    total = count = None
    for chunk in iter_batches(boxes, max(1, batch)):
        crops = torch.stack([x[:, t:t + wh, l:l + ww] for t, l in chunk]).to(device)
        logits = flip_logits(model, crops, amp).cpu()                                  # [b, C, wh, ww]
        if total is None:
            total, count = torch.zeros(logits.shape[1], height, width), torch.zeros(1, height, width)
        for (t, l), lg in zip(chunk, logits):
            total[:, t:t + wh, l:l + ww] += lg
            count[:, t:t + wh, l:l + ww] += 1
    return total / count


@torch.no_grad()
def predict(model: nn.Module, image: np.ndarray, window: int = 256, overlap: float = 0.25,
            scales: Sequence[float] = (1.0,), batch: int = 8, device: torch.device | str = "cpu",
            amp: str = "none") -> torch.Tensor:
    """Logits [C, H, W] (CPU, float32) of an HxWx3 uint8 image: sliding window + flip, averaged over scales."""
    x = torch.from_numpy(imutils.hwc_to_chw(imutils.normalize(image)))
    size = x.shape[-2:]
    total = None
    for scale in scales:
        scaled = x
        if scale != 1.0:
            scaled_size = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
            scaled = F.interpolate(x[None], size=scaled_size, mode="bilinear", align_corners=False)[0]
        logits = sliding_window_logits(model, scaled, window, overlap, batch, device, amp)
        if scale != 1.0:
            logits = F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)[0]
        total = logits if total is None else total + logits
    return total / len(scales)


def overlay(image: np.ndarray, logits: torch.Tensor, mask: np.ndarray, gt_path: Path | None) -> np.ndarray:
    """visutils.overlay_panel (image | building probability | mask with the GT outline), each panel
    shrunk so its long side is at most VIS_MAX_SIDE."""
    prob = torch.softmax(logits, dim=0)[1].numpy()
    gt = imutils.gt_to_binary(imutils.read_mask(gt_path)) if gt_path is not None else None
    scale = VIS_MAX_SIDE / max(image.shape[:2])
    if scale < 1:
        dsize = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, dsize, interpolation=cv2.INTER_AREA)
        prob = cv2.resize(prob, dsize, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, dsize, interpolation=cv2.INTER_NEAREST)
        gt = cv2.resize(gt, dsize, interpolation=cv2.INTER_NEAREST) if gt is not None else None
    return visutils.overlay_panel(image, prob, mask, gt)


def run(args: argparse.Namespace) -> None:
    rt, timer, s = runtime(), Timer(), seg_settings(args)
    check_window(args.seg_window, args.seg_overlap, args.seg_scales)
    model = deeplabv3plus.load_seg_net(s.checkpoint, rt.device)
    sources = infer_sources(args, s.infer_list)
    settings = {"window": args.seg_window, "overlap": args.seg_overlap, "scales": list(args.seg_scales), "amp": args.amp}
    done = reusable_outputs(s.out_dir, {**source_fingerprint(s.checkpoint), "settings": settings}, args.resume, ".png")
    names = inference_names(list(sources), done)
    vis_left, pixels = (args.num_vis if rt.is_main else 0), 0
    for name in progress(names, desc=TAG, disable=not rt.is_main):
        image, geo = read_input(sources[name].path)
        logits = predict(model, image, args.seg_window, args.seg_overlap, args.seg_scales, args.seg_infer_batch,
                         rt.device, args.amp)
        mask = logits.argmax(0).numpy().astype(np.uint8)
        write_mask(s.out_dir, name, mask, geo)
        pixels += mask.size
        if vis_left > 0:
            fileio.save_png(Path(args.work_space) / "vis" / s.out_dir.name / f"{name}.png",
                            overlay(image, logits, mask, sources[name].gt))
            vis_left -= 1
    barrier()
    log.info("[%s] %d masks (%.2f MP/s on this rank), %d reused, in %.0fs -> %s", TAG, len(names),
             pixels / 1e6 / max(timer.elapsed, 1e-9), len(done), timer.elapsed, s.out_dir)
