"""S11 export: the trained DeepLabV3+ as ONNX, checked against torch with onnxruntime.

Reads:  <seg_weights_name>.pth; one tile for the check: the first of --seg_infer_list (default
        <voc12_root>/test.txt) when it exists, else a random 256 x 256 image.
Writes: <seg_weights_name>.onnx: re-parameterisable blocks folded, input "image" float32 [N, 3, H, W] (RGB,
        (x / 255 - mean) / std with ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225)),
        output "logits" float32 [N, 2, H, W] at the input's size (softmax over dim 1: background, building);
        N, H and W are dynamic. The file appears only once the check passed: the largest difference of the
        building probabilities of onnxruntime and torch on the tile is at most --onnx_check_tolerance (1e-3).
The network alone is exported: sliding windows and flips stay with the caller (README, "Map a new area").
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from misc import fileio, imutils
from misc.errors import UserError, brief
from misc.pyutils import Timer
from misc.torchutils import barrier, runtime
from net import deeplabv3plus
from net.checkpoints import load_net
from net.deeplabv3plus import DeepLabV3Plus
from step.kit.segmentation import seg_settings
from step.kit.stages import stage_tag
from voc12 import dataloader

log = logging.getLogger(__name__)
TAG = stage_tag(__name__)


def check_tile(infer_list: str, image_dir: Path) -> tuple[np.ndarray, str]:
    """(HxWx3 uint8 image, what it is) for the check: the list's first tile, or a random image."""
    if Path(infer_list).is_file():
        names = dataloader.read_list(infer_list, "--seg_infer_list")
        path = imutils.find_image(image_dir, names[0]) if names else None
        if path is not None:
            return imutils.read_image(path), str(path)
    return np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8), "a random 256x256 image"


def onnx_probability_gap(onnx_path: Path, model: torch.nn.Module, image: np.ndarray) -> float:
    """Largest |p_onnx - p_torch| of the class probabilities of `image` (one tile, batch 1)."""
    import onnxruntime

    x = imutils.hwc_to_chw(imutils.normalize(image))[None]
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"image": x})
    with torch.no_grad():
        expected = torch.softmax(model.cpu()(torch.from_numpy(x)), dim=1)
    return float((torch.softmax(torch.from_numpy(logits), dim=1) - expected).abs().max())


def export(checkpoint: Path, out: Path, image: np.ndarray, tolerance: float) -> float:
    """Export and check; returns the probability gap. The .onnx is renamed into place only after the check."""
    for package in ("onnx", "onnxruntime"):
        try:
            __import__(package)
        except ImportError as err:
            raise UserError(f"--export_seg_pass needs {package} ({brief(err)}); pip install -r requirements.txt") from None
    model = load_net(DeepLabV3Plus, checkpoint, fold=True)
    with fileio.atomic_path(out) as tmp:
        deeplabv3plus.export_onnx(model, tmp)
        gap = onnx_probability_gap(tmp, model, image)
        if not gap <= tolerance:
            raise UserError(f"{out}: ONNX and torch probabilities differ by {gap:.2e} on the check tile "
                            f"(> --onnx_check_tolerance {tolerance:g}); the file was not written")
    return gap


def run(args: argparse.Namespace) -> None:
    if runtime().is_main:
        timer, s = Timer(), seg_settings(args)
        out = s.checkpoint.with_suffix(".onnx")
        image, what = check_tile(args.seg_infer_list, Path(args.image_dir))
        gap = export(s.checkpoint, out, image, args.onnx_check_tolerance)
        log.info("[%s] %s -> %s; onnxruntime vs torch on %s: max probability difference %.2e in %.0fs", TAG,
                 s.checkpoint, out, what, gap, timer.elapsed)
    barrier()
