"""S6 + S6d: train the activation-refinement network on the confident labels, then fold it.

Reads:  --train_list tiles (negatives too), their S5 labels <ir_label_out_dir>/<name>.png {0,1,255},
        --cls_labels; the ImageNet --amn_backbone (--amn_model_weights) when present (not the S1 classifier).
Writes: <amn_weights_name>.pth (the last epoch; --amn_select_by_gt keeps the best epoch by pixel
        ground truth, as the released code did), <amn_weights_name>_deploy.pt, .resume.pth per epoch.
Loss: PCL + Lambda1 * MCL (SPEC S6); Adam, backbone 5e-5, new layers 1e-3, no schedule.
"""
from __future__ import annotations

import argparse
import copy
import logging
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from misc import losses, metrics
from misc.pyutils import Timer, weights_paths
from misc.torchutils import barrier, runtime
from misc.trainloop import FitConfig, finished, fit, resume_path
from net import RepVGG_amn
from step.common import load_split, training_data
from voc12 import dataloader

log = logging.getLogger(__name__)
TAG = "S6 train_amn"


def refinement_loss(model: nn.Module, batch: dict, eps: float, lambda1: float, scale_small: float,
                    scale_large: float, threshold: float, pixel_gate: bool) -> torch.Tensor:
    """PCL on the labels resized to the logit grid, plus lambda1 * multi-scale JSD (when > 0)."""
    img, label_cls = batch["img"], batch["label_cls"]
    logits = model(img, label_cls)
    size = logits.shape[-2:]
    # PIL NEAREST samples pixel centres, which is torch's 'nearest-exact'
    labels = F.interpolate(batch["label"][:, None].float(), size, mode="nearest-exact")[:, 0].long()
    loss = losses.balanced_cross_entropy(logits, labels, eps)
    if lambda1 > 0:
        probs = [torch.softmax(logits.float(), dim=1)]
        for factor in (scale_small, scale_large):
            scaled = F.interpolate(img, scale_factor=factor, mode="bilinear", align_corners=True)
            other = F.interpolate(model(scaled, label_cls).float(), size, mode="bilinear", align_corners=True)
            probs.append(torch.softmax(other, dim=1))
        loss = loss + lambda1 * losses.multiscale_jsd(probs, labels, threshold, pixel_gate)
    return loss


def run(args: argparse.Namespace) -> None:
    rt, timer = runtime(), Timer()
    train_path, deploy_path = weights_paths(args.amn_weights_name)
    split = load_split(args, "train_list", mask_dir=args.ir_label_out_dir,
                       mask_flag="--ir_label_out_dir (run --cam_to_ir_label_pass True)")
    dataset = dataloader.SegmentationDataset(split.names, split.image_paths, args.ir_label_out_dir, split.cls_labels,
                                             crop_size=args.amn_crop_size, scale_range=(0.5, 1.5), seed=args.seed)
    fingerprint = {k: getattr(args, k) for k in (
        "amn_backbone", "amn_model_weights", "amn_batch_size", "amn_num_epoches", "amn_crop_size", "amn_backbone_lr",
        "amn_new_lr", "amn_weight_decay", "eps", "Lambda1", "scale_factor", "scale_factor2", "threshold",
        "mcl_pixel_gate", "seed", "voc12_root", "train_list", "amn_select_by_gt")}
    fingerprint.update(training_data(split.names, split.image_paths, split.cls_labels, args.ir_label_out_dir))
    if args.resume and finished(train_path, fingerprint):
        log.info("[%s] %s already trained with these settings; pass --resume False to retrain", TAG, train_path)
        if rt.is_main and not deploy_path.is_file():
            RepVGG_amn.deploy_amn_net(train_path, deploy_path)
        barrier()
        return
    torch.manual_seed(args.seed)
    model = RepVGG_amn.build_amn_net(args.amn_backbone, args.amn_model_weights).to(rt.device)
    backbone, new = model.param_groups()
    optimizer = torch.optim.Adam([{"params": backbone, "lr": args.amn_backbone_lr},
                                  {"params": new, "lr": args.amn_new_lr}], weight_decay=args.amn_weight_decay)
    loss_fn = partial(refinement_loss, eps=args.eps, lambda1=args.Lambda1, scale_small=args.scale_factor,
                      scale_large=args.scale_factor2, threshold=args.threshold, pixel_gate=args.mcl_pixel_gate)
    best = {"miou": -1.0, "state": None, "epoch": 0}
    on_epoch_end = None
    if args.amn_select_by_gt:
        log.warning("[%s] --amn_select_by_gt True picks the epoch with pixel ground truth: this leaks labels "
                    "into a weakly supervised method (reproduces the released code only)", TAG)
        on_epoch_end = partial(_keep_best_by_gt, model=model, args=args, split=split, best=best)
    log.info("[%s] tiles=%d batch=%d epochs=%d Lambda1=%.2f device=%s ranks=%d", TAG, len(split.names),
             args.amn_batch_size, args.amn_num_epoches, args.Lambda1, rt.device, rt.world_size)
    cfg = FitConfig(epochs=args.amn_num_epoches, batch_size=args.amn_batch_size, seed=args.seed, amp=args.amp,
                    num_workers=args.num_workers, resume=args.resume, fingerprint=fingerprint, tag=TAG,
                    sync_bn=args.sync_bn)
    epoch_losses = fit(model, dataset, optimizer, loss_fn, cfg, rt, train_path, on_epoch_end=on_epoch_end)
    if rt.is_main:
        if best["state"] is not None:
            model.load_state_dict(best["state"])
            log.info("[%s] kept epoch %d (ground-truth mIoU %.4f)", TAG, best["epoch"], best["miou"])
        RepVGG_amn.save_amn_net(model.cpu(), train_path, deploy=False, extra={"fingerprint": fingerprint})
        resume_path(train_path).unlink(missing_ok=True)
        RepVGG_amn.deploy_amn_net(train_path, deploy_path)
    barrier()
    log.info("[%s] trained %d tiles for %d epochs in %.0fs, final loss %s -> %s", TAG, len(split.names),
             args.amn_num_epoches, timer.elapsed, f"{epoch_losses[-1]:.4f}" if epoch_losses else "n/a", deploy_path)


@torch.no_grad()
def _keep_best_by_gt(epoch: int, model: RepVGG_amn.Net, args: argparse.Namespace, split, best: dict) -> None:
    """The reference's per-epoch validation: full tile, one scale, argmax, mIoU against pixel GT."""
    from misc import imutils

    rt = runtime()
    model.eval()
    meter = metrics.ConfusionMeter()
    for name in dataloader.read_list(args.infer_list, "--infer_list"):
        img = imutils.read_image(split.image_paths[name])
        x = torch.from_numpy(imutils.hwc_to_chw(imutils.normalize(img)))[None].to(rt.device)
        logits = model(x, torch.ones(1, 1, device=rt.device))
        up = F.interpolate(logits.float(), img.shape[:2], mode="bilinear", align_corners=False)
        gt = imutils.gt_to_binary(imutils.read_mask(f"{args.gt_dir}/{name}.png"))
        meter.add(gt, up.argmax(1)[0].cpu().numpy().astype("uint8"))
    miou = meter.scores()["miou"]
    log.info("[%s] epoch %d ground-truth mIoU %.4f", TAG, epoch, miou)
    if miou > best["miou"]:
        best.update(miou=miou, epoch=epoch, state=copy.deepcopy(model.state_dict()))
