"""S2: seed CAMs from the deployed single-head classifier (variant A).

Reads:  <cam_weights_name>_deploy.pt; the positives of --train_list under <voc12_root>/JPEGImages.
Writes: <cam_out_dir>/<name>.npy = {"keys": int64[1] = [0], "cam": float32[1, ceil(H/4), ceil(W/4)],
        "high_res": float32[1, H, W] in [0, 1)}. Negatives get no file.
Per scale s: A_s = ReLU(w*F(I_s)) + flip(ReLU(w*F(flip I_s))); M = sum_s crop(up(A_s)), M /= max M + 1e-5.

With --cam_network msg: the MSG-SR-Net baseline's maps (S2 variant B) from
<msg_weights_name>.pth, {"keys", "high_res"} only. Per scale and level i the building channel of
ReLU(W_i * g_i) (flips merged) is upsampled, cropped and divided by its maximum + 1e-5; the levels are
weighted (1/3, 1/3, 1/3, 1) and summed, then the scales, and the sum is normalised again.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from misc import fileio
from misc.ownership import folders_of
from misc.pyutils import Timer, progress, weights_paths
from misc.torchutils import barrier, runtime
from net import cam, msg_sr
from net.checkpoints import load_net
from step.kit.common import Split, inference_names, load_split, loader, same_size_groups
from step.kit.stages import stage_tag
from step.kit.stamps import images_digest, model_identity, reusable_outputs
from voc12.dataloader import ClassificationDatasetMSF

log = logging.getLogger(__name__)
TAG = stage_tag(__name__)


def run(args: argparse.Namespace) -> None:
    rt = runtime()
    msg = args.cam_network == "msg"
    if msg:  # the MSG maps come from the train-time network (no deploy step)
        weights_path, _ = weights_paths(args.msg_weights_name)
        model = load_net(msg_sr.Net, weights_path, device=rt.device)
    else:
        _, weights_path = weights_paths(args.cam_weights_name)
        model = load_net(cam.Net, weights_path, deploy=True, device=rt.device)
    kind = "MSG-SR-Net baseline maps" if msg else "seed CAMs"
    split = load_split(args, "train_list")
    write_maps(args, model, weights_path, msg, split, split.positives, args.cam_out_dir, "--cam_out_dir", kind)


def write_maps(args: argparse.Namespace, model: torch.nn.Module, weights_path: Path, msg: bool, split: Split,
               names: list[str], out_dir: str, flag: str, kind: str) -> None:
    """The maps of `names` in `out_dir` (this rank's share; those made before from the same inputs are kept)."""
    rt, timer = runtime(), Timer()
    fingerprint = {"weights": model_identity(weights_path), "images": images_digest(names, split.image_paths),
                   "scales": list(args.cam_scales), "amp": args.amp}
    done = reusable_outputs(out_dir, fingerprint, args.resume, stage="make_cam", variant="msg" if msg else "",
                            names=names, flag=flag, inputs={"--voc12_root": folders_of(split.image_paths.values())})
    names = inference_names(names, done)
    dataset = ClassificationDatasetMSF(names, split.image_paths, split.cls_labels, scales=args.cam_scales)
    bar = progress(total=len(names), desc=TAG, disable=not rt.is_main, iterable=None)
    for packs in same_size_groups(iter(loader(dataset, args.num_workers, batch_size=args.cam_infer_batch))):
        if msg:  # as in the reference, the MSG maps have no stride-4 'cam'
            maps = {"high_res": msg_sr.multiscale_msg_cam(model, packs, rt.device, args.amp)}
        else:
            maps = dict(zip(("high_res", "cam"), cam.multiscale_cam(model, packs, rt.device, args.amp)))
        for i, pack in enumerate(packs):
            fileio.save_npy_dict(f"{out_dir}/{pack['name']}.npy", {
                "keys": torch.zeros(1, dtype=torch.int64).numpy(), **{k: v[i].cpu().numpy() for k, v in maps.items()}})
        bar.update(len(packs))
    bar.close()
    barrier()
    log.info("[%s] %d %s in %.0fs (%.2f img/s), %d reused -> %s", TAG, len(names), kind, timer.elapsed,
             len(names) / max(timer.elapsed, 1e-9), len(done), out_dir)
