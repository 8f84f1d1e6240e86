"""S10 (optional): random-walk masks from the AR maps and the IRN boundaries.

Reads:  <irn_weights_name>.pth; --train_list tiles; for each positive <amn_cam_out_dir>/<name>.npy,
        its stride-4 `cam` (building channel: [1] of a [2, h, w] map, [0] of a [1, h, w] one).
Writes: <sem_seg_out_dir>/<name>.png, uint8 {0, 1}, for every tile of --train_list (all zeros for
        negatives). With --resume True, tiles made from the same weights, maps and settings are kept.
Mask: c = cam^1.3; edge = sigmoid of the flip-averaged IRN edge logits at stride 4; the walk
T^(2^exp_times) with T = D^-1 A, A = affinity^beta (misc.indexing), applied to c * (1 - edge);
upsampled x4 (bilinear) and cropped to the tile, divided by its maximum, building iff > --sem_seg_bg_thres
(the background plane of argmax; a tie goes to background).
The release skipped every tile, read a missing `cam` key and moved a numpy array to a hard-wired GPU.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from misc import fileio, imutils, indexing, metrics
from misc.errors import UserError
from misc.pyutils import Timer, progress, weights_paths
from misc.torchutils import barrier, runtime
from net import irn
from net.checkpoints import load_net
from step.kit.common import inference_names, load_split, loader
from step.kit.stages import stage_tag
from step.kit.stamps import images_digest, made_from, model_identity, reusable_outputs
from voc12.dataloader import ClassificationDatasetMSF

log = logging.getLogger(__name__)
TAG = stage_tag(__name__)
CAM_POWER = 1.3  # AMN's value (IRN: 1.5)
# Above this many stride-4 pixels the dense T (N^2 floats, N^3 per squaring) costs more on a CPU than
# 2^exp_times sparse products; a GPU squares densely at any tile size used here.
DENSE_MAX_PIXELS_CPU = 1024


def sem_seg_mask(cam: torch.Tensor, edge: torch.Tensor, size: tuple[int, int], index: indexing.PathIndex,
                 beta: float, exp_times: int, bg_thres: float, dense: bool) -> np.ndarray:
    """{0, 1} mask [H, W] of a building map `cam` [h, w] walked within the boundaries `edge` [h, w]."""
    walked = indexing.propagate_to_edge(cam.float().clamp(min=0).pow(CAM_POWER)[None], edge.float(), index,
                                        beta=beta, exp_times=exp_times, dense=dense)
    up = F.interpolate(walked[None], scale_factor=4, mode="bilinear", align_corners=False)[0, 0, : size[0], : size[1]]
    # deviation: + 1e-5, so a tile whose walk is all zero gives background rather than NaN
    up = up / (up.max() + 1e-5)
    return metrics.threshold_building(up.cpu().numpy(), bg_thres)


def run(args: argparse.Namespace) -> None:
    rt, timer = runtime(), Timer()
    weights, _ = weights_paths(args.irn_weights_name)
    model = load_net(irn.Net, weights, device=rt.device)
    split = load_split(args, "train_list", decode=False)
    out_dir, map_dir = Path(args.sem_seg_out_dir), Path(args.amn_cam_out_dir)
    fingerprint = {"weights": model_identity(weights), "maps": made_from(map_dir),
                   "images": images_digest(split.names, split.image_paths), "amp": args.amp, "beta": args.beta,
                   "exp_times": args.exp_times, "bg_thres": args.sem_seg_bg_thres, "radius": args.irn_radius,
                   "crop": args.irn_crop_size, "train_list": args.train_list}
    done = reusable_outputs(out_dir, fingerprint, args.resume, suffix=".png", stage="make_sem_seg")
    names = inference_names(split.names, done)
    positives = [n for n in names if split.cls_labels[n] == 1]
    for name in names:
        if split.cls_labels[name] != 1:
            fileio.save_png(out_dir / f"{name}.png", np.zeros(imutils.image_size(split.image_paths[name]), np.uint8))
    index = indexing.PathIndex(args.irn_radius)
    dataset = ClassificationDatasetMSF(positives, split.image_paths, split.cls_labels, scales=(1.0,))
    building_px = total_px = 0
    packs = loader(dataset, args.num_workers, batch_size=1)
    for (pack,) in progress(packs, total=len(positives), desc=TAG, disable=not rt.is_main):
        name, size = pack["name"], tuple(int(v) for v in pack["size"])
        edge = irn.edge_map(model, pack["img"][0].to(rt.device), args.irn_crop_size)
        cam = torch.from_numpy(_building_cam(map_dir / f"{name}.npy", tuple(edge.shape))).to(rt.device)
        dense = rt.device.type == "cuda" or edge.numel() <= DENSE_MAX_PIXELS_CPU
        mask = sem_seg_mask(cam, edge, size, index, args.beta, args.exp_times, args.sem_seg_bg_thres, dense)
        fileio.save_png(out_dir / f"{name}.png", mask)
        building_px += int(mask.sum())
        total_px += mask.size
    barrier()
    log.info("[%s] %d masks (%d positives, %.1f%% of their pixels building, this rank), %d reused, in %.0fs -> %s", TAG,
             len(names), len(positives), 100 * building_px / max(total_px, 1), len(done), timer.elapsed, out_dir)


def _building_cam(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """The stride-4 building map [h, w] of an AR map file, checked against the edge grid."""
    if not path.is_file():
        raise UserError(f"{path} is missing for a positive of --train_list; run --make_amn_cam_pass True first")
    cam = fileio.load_npy_dict(path).get("cam")
    if cam is None or cam.ndim != 3 or cam.shape[0] not in (1, 2):
        raise UserError(f"{path} has no stride-4 'cam' of shape [2, h, w] or [1, h, w]; "
                        f"rerun --make_amn_cam_pass True")
    building = cam[-1]  # channel 1 of [background, building], channel 0 of a single building map
    if building.shape != shape:
        raise UserError(f"{path} holds a {building.shape[1]}x{building.shape[0]} cam but the tile's stride-4 grid is "
                        f"{shape[1]}x{shape[0]}; the maps were made from other images, rerun --make_amn_cam_pass True")
    return building.astype(np.float32)
