"""S7: AR maps from the deployed AR network.

Reads:  <amn_weights_name>_deploy.pt; positives of --train_list; their S5 labels in --ir_label_out_dir; with
        --amn_bac_weight > 0 their S3 BAC maps in --lpcam_out_dir.
Writes: <amn_cam_out_dir>/<name>.npy = {"keys": int64[1] = [0], "high_res": float32[2, H, W],
        "cam": float32[2, ceil(H/4), ceil(W/4)]}, channel 0 background, 1 building. Negatives: no file.
Z = mean over scales of up_{HxW}((z(I_s) + flip z(flip I_s)) / 2) (with --amn_views dihedral also over the four
90-degree rotations of both, each turned back); P = softmax(Z); P~_c = P_c / (max P_c + 1e-5);
out = P where the S5 label is confident background, else P~ (max-only normalisation, as the reference; AMN uses min-max).
With --amn_bac_weight w > 0 the map is mixed with the tile's S3 BAC map (<lpcam_out_dir>/<name>.npy), building
(1 - w) out + w BAC (net.amn.mix_bac): the AR network is trained on all areas' labels at once, and where an
area is a small share of them its AR map can fall below the BAC map it started from; the mix keeps part of
that map (README, "Results").
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from misc import fileio, imutils
from misc.camutils import strided_size
from misc.errors import UserError
from misc.ownership import folders_of
from misc.pyutils import Timer, progress, weights_paths
from misc.torchutils import barrier, runtime
from net import amn
from net.checkpoints import load_net
from step.kit.common import Split, inference_names, load_split, loader, same_size_groups
from step.kit.stages import stage_tag
from step.kit.stamps import files_digest, images_digest, made_from, model_identity, reusable_outputs
from voc12.dataloader import ClassificationDatasetMSF

log = logging.getLogger(__name__)
TAG = stage_tag(__name__)
BAC_MISSING = "BAC map {path} of {name!r} is missing; run --make_lpcam_pass True first or set --amn_bac_weight 0"


def run(args: argparse.Namespace) -> None:
    rt, timer = runtime(), Timer()
    _, deploy_path = weights_paths(args.amn_weights_name)
    model = load_net(amn.Net, deploy_path, deploy=True, device=rt.device)
    split = load_split(args, "train_list", decode=False)
    done = reusable_outputs(args.amn_cam_out_dir, fingerprint(args, split, deploy_path), args.resume,
                            stage="make_amn_cam", names=split.positives, flag="--amn_cam_out_dir",
                            inputs={"--ir_label_out_dir": [args.ir_label_out_dir],
                                    "--voc12_root": folders_of(split.image_paths.values()),
                                    **({"--lpcam_out_dir": [args.lpcam_out_dir]} if args.amn_bac_weight > 0 else {})})
    names = inference_names(split.positives, done)
    dataset = ClassificationDatasetMSF(names, split.image_paths, split.cls_labels, scales=args.cam_scales)
    bar = progress(None, total=len(names), desc=TAG, disable=not rt.is_main)
    for packs in same_size_groups(iter(loader(dataset, args.num_workers, batch_size=args.cam_infer_batch))):
        size = tuple(int(v) for v in packs[0]["size"])
        high = amn.multiscale_probs(model, packs, size, rt.device, args.amp, args.amn_views).cpu()
        low = F.interpolate(high, strided_size(size, 4), mode="bilinear", align_corners=False)
        for i, pack in enumerate(packs):
            label = torch.from_numpy(_ir_label(args.ir_label_out_dir, pack["name"], size))
            label4 = F.interpolate(label[None, None].float(), low.shape[-2:], mode="nearest")[0, 0]
            high_i, low_i = amn.gate_by_labels(high[i], label), amn.gate_by_labels(low[i], label4)
            if args.amn_bac_weight > 0:
                bac = torch.from_numpy(_bac_map(args.lpcam_out_dir, pack["name"], size))
                bac4 = F.interpolate(bac[None, None], low.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
                high_i = amn.mix_bac(high_i, bac, args.amn_bac_weight)
                low_i = amn.mix_bac(low_i, bac4, args.amn_bac_weight)
            fileio.save_npy_dict(f"{args.amn_cam_out_dir}/{pack['name']}.npy", {
                "keys": np.zeros(1, dtype=np.int64),
                "high_res": high_i.numpy().astype(np.float32),
                "cam": low_i.numpy().astype(np.float32)})
        bar.update(len(packs))
    bar.close()
    barrier()
    log.info("[%s] %d AR maps in %.0fs (%.2f img/s), %d reused -> %s", TAG, len(names), timer.elapsed,
             len(names) / max(timer.elapsed, 1e-9), len(done), args.amn_cam_out_dir)


def fingerprint(args: argparse.Namespace, split: Split, deploy_path: Path) -> dict:
    """The AR network, the confident labels (their folder's stamp and files), the images and the settings."""
    missing = "confident label {path} of {name!r} is missing; run --cam_to_ir_label_pass True first"
    label_dir = args.ir_label_out_dir
    stamp = {"weights": model_identity(deploy_path), "labels": made_from(label_dir),
             "label_files": files_digest(((n, f"{label_dir}/{n}.png") for n in split.positives), missing),
             "images": images_digest(split.positives, split.image_paths), "scales": list(args.cam_scales), "amp": args.amp}
    if args.amn_views != "flip":  # only then, as the mix below: maps made before the flag keep their stamp
        stamp["views"] = args.amn_views
    if args.amn_bac_weight > 0:  # only then: the maps of runs without the mix keep their stamp
        bac_dir = args.lpcam_out_dir
        stamp.update(bac_weight=args.amn_bac_weight, bac_maps=made_from(bac_dir),
                     bac_files=files_digest(((n, f"{bac_dir}/{n}.npy") for n in split.positives), BAC_MISSING))
    return stamp


def _bac_map(lpcam_dir: str, name: str, size: tuple[int, int]) -> np.ndarray:
    """The building channel of tile `name`'s S3 BAC map, float32 HxW."""
    path = Path(lpcam_dir) / f"{name}.npy"
    if not path.is_file():
        raise UserError(BAC_MISSING.format(path=path, name=name))
    bac = fileio.load_npy_dict(path)["high_res"]
    if bac.ndim != 3 or tuple(bac.shape[1:]) != tuple(size):
        raise UserError(f"BAC map {path} is {tuple(bac.shape)}, not [1, {size[0]}, {size[1]}] for its image; "
                        "rerun --make_lpcam_pass True")
    return np.ascontiguousarray(bac[0], dtype=np.float32)


def _ir_label(label_dir: str, name: str, size: tuple[int, int]) -> np.ndarray:
    path = f"{label_dir}/{name}.png"
    try:
        label = imutils.read_mask(path)
    except UserError:
        raise UserError(f"confident label {path} is missing; run --cam_to_ir_label_pass True first") from None
    return imutils.pil_resize(label, size, order=0)
