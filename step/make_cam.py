"""S2: seed CAMs from the deployed classifier (SPEC S2 variant A).

Reads:  <cam_weights_name>_deploy.pt; the positives of --train_list under <voc12_root>/JPEGImages.
Writes: <cam_out_dir>/<name>.npy = {"keys": int64[1] = [0], "cam": float32[1, ceil(H/4), ceil(W/4)],
        "high_res": float32[1, H, W] in [0, 1)}. Negatives get no file.
Per scale s: A_s = ReLU(w*F(I_s)) + flip(ReLU(w*F(flip I_s))); M = sum_s crop(up(A_s)), M /= max M + 1e-5.

With --cam_network net.RepVGG_MSG_SR: the MSG-SR-Net baseline's maps (SPEC S2 variant B) from
<msg_weights_name>.pth, {"keys", "high_res"} only. Per scale and level i the building channel of
ReLU(W_i * g_i) (flips merged) is upsampled, cropped and divided by its maximum + 1e-5; the levels are
weighted (1/3, 1/3, 1/3, 1) and summed, then the scales, and the sum is normalised again.
"""
from __future__ import annotations

import argparse
import logging

import torch
import torch.nn.functional as F

from misc import fileio
from misc.camutils import max_normalise, merge_flips, stack_pyramids, strided_size, upsample_crop
from misc.pyutils import Timer, progress, weights_paths
from misc.torchutils import autocast, barrier, runtime
from net import RepVGG_cam, RepVGG_MSG_SR
from step.common import inference_names, load_split, loader, reusable_outputs, same_size_groups, source_fingerprint
from voc12.dataloader import ClassificationDatasetMSF

log = logging.getLogger(__name__)
TAG = "S2 make_cam"


@torch.no_grad()
def multiscale_cam(model: RepVGG_cam.Net, packs: list[dict], device: torch.device, amp: str = "none"
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Seed CAMs of B same-size tiles: (high_res [B, 1, H, W], cam [B, 1, ceil(H/4), ceil(W/4)]), both
    max-normalised with eps 1e-5."""
    size = tuple(int(v) for v in packs[0]["size"])
    size4 = strided_size(size, 4)
    high_res = torch.zeros(len(packs), 1, *size, device=device)
    stride4 = torch.zeros(len(packs), 1, *size4, device=device)
    for s in range(len(packs[0]["img"])):
        x = stack_pyramids(packs, s).to(device)
        with autocast(device, amp):
            cams = model.cam(model.features(x))
        cams = merge_flips(cams.float())
        high_res += upsample_crop(cams, size)
        stride4 += F.interpolate(cams, size4, mode="bilinear", align_corners=False)
    return max_normalise(high_res), max_normalise(stride4)


@torch.no_grad()
def multiscale_msg_cam(model: RepVGG_MSG_SR.Net, packs: list[dict], device: torch.device, amp: str = "none"
                       ) -> torch.Tensor:
    """MSG baseline maps of B same-size tiles: high_res [B, 1, H, W], max-normalised with eps 1e-5."""
    size = tuple(int(v) for v in packs[0]["size"])
    high_res = torch.zeros(len(packs), 1, *size, device=device)
    for s in range(len(packs[0]["img"])):
        x = stack_pyramids(packs, s).to(device)
        with autocast(device, amp):
            levels = model.cams(x)
        for weight, cams in zip(RepVGG_MSG_SR.MAP_WEIGHTS, levels):
            building = merge_flips(cams.float())[:, RepVGG_MSG_SR.BUILDING:RepVGG_MSG_SR.BUILDING + 1]
            high_res += weight * max_normalise(upsample_crop(building, size))
    return max_normalise(high_res)


def run(args: argparse.Namespace) -> None:
    rt, timer = runtime(), Timer()
    msg = args.cam_network == RepVGG_MSG_SR.CAM_NETWORK
    if msg:  # the MSG maps come from the train-time network (SPEC S2 variant B)
        weights_path, _ = weights_paths(args.msg_weights_name)
        model = RepVGG_MSG_SR.load_msg_net(weights_path, device=rt.device)
    else:
        _, weights_path = weights_paths(args.cam_weights_name)
        model = RepVGG_cam.load_cam_net(weights_path, deploy=True, device=rt.device)
    kind = "MSG-SR-Net baseline maps" if msg else "seed CAMs"
    split = load_split(args, "train_list")
    done = reusable_outputs(args.cam_out_dir, source_fingerprint(weights_path), args.resume)
    names = inference_names(split.positives, done)
    dataset = ClassificationDatasetMSF(names, split.image_paths, split.cls_labels, scales=args.cam_scales)
    bar = progress(total=len(names), desc=TAG, disable=not rt.is_main, iterable=None)
    for packs in same_size_groups(iter(loader(dataset, args.num_workers, batch_size=args.cam_infer_batch))):
        if msg:  # SPEC S2 variant B has no stride-4 'cam'
            maps = {"high_res": multiscale_msg_cam(model, packs, rt.device, args.amp)}
        else:
            maps = dict(zip(("high_res", "cam"), multiscale_cam(model, packs, rt.device, args.amp)))
        for i, pack in enumerate(packs):
            fileio.save_npy_dict(f"{args.cam_out_dir}/{pack['name']}.npy", {
                "keys": torch.zeros(1, dtype=torch.int64).numpy(), **{k: v[i].cpu().numpy() for k, v in maps.items()}})
        bar.update(len(packs))
    bar.close()
    barrier()
    log.info("[%s] %d %s in %.0fs (%.2f img/s), %d reused -> %s", TAG, len(names), kind, timer.elapsed,
             len(names) / max(timer.elapsed, 1e-9), len(done), args.cam_out_dir)
