"""S11 prediction: building masks from the trained DeepLabV3+, for a list or any image folder.

Reads:  <seg_weights_name>.pth; the tiles of --seg_infer_list under <voc12_root>/JPEGImages (default
        <voc12_root>/test.txt), or every image in --seg_infer_dir (png/jpg/tif).
Writes: <seg_out_dir>/<name>.png, uint8 {0, 1} (argmax), for every PNG/JPEG image. An image named as an XYZ
        tile in --seg_infer_dir (the fAIr form OAM-x-y-z, or --xyz_name_pattern, with x and y inside zoom z)
        also gets <name>.tif, georeferenced from its name (EPSG:3857), written before the PNG, so a PNG means
        done; any other name stays in pixel coordinates, with one warning.
        GeoTIFFs, of any size, are predicted window by window (misc.geoio.predict_geotiff): <name>.tif, a tiled
        deflate (Cloud-Optimised where GDAL can) GeoTIFF with the input's CRS and transform, band 1 the mask
        {0, 1}, band 2 with --seg_prob_band True the building probability in percent, 255 where the input has
        no data, and the RADIOMETRY tag: how bands other than 8-bit became 8-bit (misc/radiometry.py); and
        <name>.png as well when its long side is at most 4096 pixels (nodata as 0). The .tif is written last,
        so it means done.
        Overlays of the first --num_vis images in <work_space>/vis/<seg_out_dir name>/.
Prediction: each PNG/JPEG image grown by --seg_context pixels (step.kit.segmentation.tile_logits): the
neighbouring XYZ tiles found beside it on disk (the same folder, names of --xyz_name_pattern), mirrored where
there is none, so pixels near a tile's edge see the ground beyond it as the middle's do (alone, the building
share predicted in the outer 4 pixels of the fAIr test tiles was a quarter of the middle's); the grown tile
is one window when the tile fits in --seg_window; each tile is decoded once (a DecodedCache of PREDICT_CACHE
bytes) though it serves as context to eight others. Sliding windows of --seg_window with --seg_overlap (border
windows shifted inward, logits averaged where windows overlap), each window averaged with its horizontal
flip, or with --seg_views dihedral over its eight flips and rotations (about 4x the time). With --seg_scales, a PNG/JPEG image is resized by each scale (bilinear), predicted the same way, and the logits are averaged at full
size; a GeoTIFF's windows are each resized instead (its scene is never whole in memory). At scale 1 both
give the same logits. Split by rank; a rerun skips images already predicted by the same model with the same
settings.
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from misc import fileio, geodata, geoio, imutils, radiometry, visutils
from misc.errors import UserError
from misc.ownership import folders_of
from misc.pyutils import Timer, progress
from misc.tilegrid import TileContext
from misc.torchutils import barrier, runtime
from net import deeplabv3plus
from net.checkpoints import load_net
from net.deeplabv3plus import DeepLabV3Plus
from step.kit.common import inference_names
from step.kit.segmentation import context_fingerprint, prediction_settings, seg_settings, tile_logits, trained_on
from step.kit.stages import stage_tag
from step.kit.stamps import files_digest, model_identity, reusable_outputs
from voc12 import dataloader

log = logging.getLogger(__name__)
TAG = stage_tag(__name__)
PREDICT_CACHE = 256 << 20  # decoded tiles kept for the neighbours' context (about 1,300 RGB tiles of 256 px)


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


def done_names(out_dir: Path, sources: dict[str, Source], existing: set[str]) -> set[str]:
    """Of the names with outputs from the same model and settings, those finished: a GeoTIFF scene's .tif
    is written last, any other image's .png."""
    return {n for n in existing if n in sources
            and (out_dir / f"{n}{'.tif' if geodata.is_geotiff(sources[n].path) else '.png'}").is_file()}


def warn_not_tiles(sources: dict[str, Source], args: argparse.Namespace) -> None:
    """One warning for the PNG/JPEG images of --seg_infer_dir not named as XYZ tiles: their masks stay in pixel
    coordinates (a PNG, no GeoTIFF); nothing is placed on the map by a guess from a name."""
    if not args.seg_infer_dir or not runtime().is_main:
        return
    plain = [n for n, src in sources.items() if not geodata.is_geotiff(src.path)
             and geodata.match_xyz_name(n, args.xyz_name_pattern) is None]
    if plain:
        log.warning("[%s] %d image(s) of --seg_infer_dir are neither GeoTIFFs nor XYZ tiles of --xyz_name_pattern "
                    "with x, y inside their zoom (first: %s): their masks stay in pixel coordinates (PNG only)",
                    TAG, len(plain), sources[plain[0]].path.name)


def run(args: argparse.Namespace) -> None:
    rt, timer, s = runtime(), Timer(), seg_settings(args)
    out_dir = Path(args.seg_out_dir)
    model = load_net(DeepLabV3Plus, s.checkpoint, device=rt.device, fold=True)
    sources = infer_sources(args, args.seg_infer_list)
    context = TileContext.beside((src.path for src in sources.values()), args.seg_context, args.xyz_name_pattern)
    settings = {**prediction_settings(args), "prob_band": args.seg_prob_band, "radiometry": radiometry.RULE,
                "xyz_name_pattern": args.xyz_name_pattern if args.seg_infer_dir else None,
                "context": context_fingerprint(context)}
    read = partial(dataloader.DecodedCache(PREDICT_CACHE).read, reader=imutils.read_image)
    fingerprint = {"weights": model_identity(s.checkpoint), "settings": settings,
                   "images": files_digest((name, src.path) for name, src in sources.items())}
    image_flag = "--seg_infer_dir" if args.seg_infer_dir else "--voc12_root"
    inputs = {image_flag: folders_of(src.path for src in sources.values()),
              "--gt_dir": [None if args.seg_infer_dir else args.gt_dir]}
    existing = reusable_outputs(out_dir, fingerprint, args.resume, (".png", ".tif"), stage="make_seg",
                                variant=trained_on(s.checkpoint, s.trained_on), names=list(sources),
                                flag="--seg_out_dir", inputs=inputs)
    done = done_names(out_dir, sources, existing)
    names = inference_names(list(sources), done)
    warn_not_tiles(sources, args)
    vis_left, pixels = (args.num_vis if rt.is_main else 0), 0
    for name in progress(names, desc=TAG, disable=not rt.is_main):
        vis = Path(args.work_space) / "vis" / out_dir.name / f"{name}.png" if vis_left > 0 else None
        if geodata.is_geotiff(sources[name].path):
            pixels += predict_scene(model, sources[name].path, out_dir, name, args, rt.device, vis)
        else:
            pixels += predict_image(model, sources[name], out_dir, name, args, rt.device, vis,
                                    xyz=bool(args.seg_infer_dir), context=context, read=read)
        vis_left -= vis is not None
    barrier()
    log.info("[%s] %d masks (%.2f MP/s on this rank), %d reused, in %.0fs -> %s", TAG, len(names),
             pixels / 1e6 / max(timer.elapsed, 1e-9), len(done), timer.elapsed, out_dir)


def predict_image(model: torch.nn.Module, source: Source, out_dir: Path, name: str, args: argparse.Namespace,
                  device: torch.device, vis: Path | None, xyz: bool, context: TileContext,
                  read: Callable[[Path], np.ndarray] = imutils.read_image) -> int:
    """A PNG/JPEG image, whole in memory, with its `context` margin; an XYZ tile name (with `xyz`) gives a
    georeferenced GeoTIFF too."""
    image, logits = tile_logits(model, source.path, context, args, device, read)
    mask = logits.argmax(0).numpy().astype(np.uint8)
    geo = geoio.xyz_geo(name, *mask.shape, args.xyz_name_pattern) if xyz else None
    geoio.write_mask(out_dir, name, mask, geo)
    if vis is not None:
        fileio.save_png(vis, visutils.seg_overlay(image, logits, mask, source.gt))
    return mask.size


def predict_scene(model: torch.nn.Module, path: Path, out_dir: Path, name: str, args: argparse.Namespace,
                  device: torch.device, vis: Path | None) -> int:
    """A GeoTIFF of any size, by windows (misc.geoio.predict_geotiff); its overlay from shrunk reads."""
    def blocks(read, height, width):
        return deeplabv3plus.scene_logits(model, read, height, width, args.seg_window, args.seg_overlap,
                                          args.seg_scales, args.seg_infer_batch, device, args.amp, views=args.seg_views)

    out_dir.mkdir(parents=True, exist_ok=True)
    result = geoio.predict_geotiff(path, out_dir, name, blocks, prob_band=args.seg_prob_band)
    if vis is not None:
        fileio.save_png(vis, scene_overlay(path, out_dir / f"{name}.tif"))
    return result.height * result.width


def scene_overlay(image_path: Path, mask_path: Path) -> np.ndarray:
    """visutils.overlay_panel of a scene from reads shrunk to visutils.VIS_MAX_SIDE (nodata as background)."""
    image = geoio.preview_rgb(image_path, visutils.VIS_MAX_SIDE)
    bands = geoio.read_preview(mask_path, visutils.VIS_MAX_SIDE)
    mask = np.where(bands[..., 0] == geoio.NODATA, 0, bands[..., 0])
    prob = np.where(bands[..., 1] == geoio.NODATA, 0, bands[..., 1]) / 100.0 if bands.shape[2] > 1 else mask.astype(float)
    return visutils.overlay_panel(np.ascontiguousarray(image[: mask.shape[0], : mask.shape[1]]), prob, mask, None)
