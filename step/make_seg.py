"""S11 prediction: building masks from the trained DeepLabV3+, for a list or any image folder.

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from misc import fileio, geoio, imutils, visutils
from misc.errors import UserError
from misc.pyutils import Timer, progress
from misc.torchutils import barrier, runtime
from net import deeplabv3plus
from step.common import inference_names
from step.segmentation import seg_settings, trained_on
from step.stages import stage_tag
from step.stamps import files_digest, model_identity, reusable_outputs
from voc12 import dataloader

log = logging.getLogger(__name__)
TAG = stage_tag(__name__)


@dataclass
class Source:
    """Where an image comes from, and its ground truth when known."""
    path: Path
    gt: Path | None = None


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
    paths = dataloader.check_dataset(names, Path(args.image_dir), list_flag="--seg_infer_list",
                                     list_path=infer_list, decode=False, workers=args.pool_workers)
    gt_dir = Path(args.gt_dir)
    return {n: Source(paths[n], gt_dir / f"{n}.png" if (gt_dir / f"{n}.png").is_file() else None) for n in names}


def check_window(window: int, overlap: float, scales: Sequence[float]) -> None:
    if window < 16:
        raise UserError(f"--seg_window {window} is too small; use at least 16 (the training crop, e.g. 256)")
    if not 0 <= overlap < 1:
        raise UserError(f"--seg_overlap {overlap} must be in [0, 1) (e.g. 0.25)")
    if any(s <= 0 for s in scales):
        raise UserError(f"--seg_scales {','.join(map(str, scales))} must all be positive (e.g. 1.0 or 0.75,1.0,1.25)")


def run(args: argparse.Namespace) -> None:
    rt, timer, s = runtime(), Timer(), seg_settings(args)
    check_window(args.seg_window, args.seg_overlap, args.seg_scales)
    model = deeplabv3plus.load_seg_net(s.checkpoint, rt.device)
    sources = infer_sources(args, s.infer_list)
    settings = {"window": args.seg_window, "overlap": args.seg_overlap, "scales": list(args.seg_scales), "amp": args.amp}
    fingerprint = {"weights": model_identity(s.checkpoint), "settings": settings,
                   "images": files_digest((name, src.path) for name, src in sources.items())}
    done = reusable_outputs(s.out_dir, fingerprint, args.resume, ".png",
                            also=(".tif",), stage="make_seg", variant=trained_on(s.checkpoint, s.trained_on))
    names = inference_names(list(sources), done)
    vis_left, pixels = (args.num_vis if rt.is_main else 0), 0
    for name in progress(names, desc=TAG, disable=not rt.is_main):
        image, geo = geoio.read_image(sources[name].path)
        logits = deeplabv3plus.predict(model, image, args.seg_window, args.seg_overlap, args.seg_scales, args.seg_infer_batch,
                         rt.device, args.amp)
        mask = logits.argmax(0).numpy().astype(np.uint8)
        geoio.write_mask(s.out_dir, name, mask, geo)
        pixels += mask.size
        if vis_left > 0:
            fileio.save_png(Path(args.work_space) / "vis" / s.out_dir.name / f"{name}.png",
                            visutils.seg_overlay(image, logits, mask, sources[name].gt))
            vis_left -= 1
    barrier()
    log.info("[%s] %d masks (%.2f MP/s on this rank), %d reused, in %.0fs -> %s", TAG, len(names),
             pixels / 1e6 / max(timer.elapsed, 1e-9), len(done), timer.elapsed, s.out_dir)
