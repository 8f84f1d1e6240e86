"""S1 + S1d: train the single-head building classifier, then fold it for deployment.

Reads:  --train_list tiles (positives and negatives) under <voc12_root>/JPEGImages, --cls_labels,
        the ImageNet backbone --MODEL_WEIGHTS when present.
Writes: <cam_weights_name>.pth (train-time), <cam_weights_name>_deploy.pt (re-parameterised),
        <cam_weights_name>.resume.pth after every epoch (removed at the end).
Loss: BCE with logits on the image label (SPEC S1 variant A). Optimiser: poly SGD, head at 10x lr,
momentum 1e-4 by default (the reference's effective value, SPEC S1 "momentum quirk").

With --cam_network net.RepVGG_MSG_SR it trains the MSG-SR-Net baseline instead (SPEC S1 variant B: four
two-channel heads, 0.3 (L1 + L2 + L3) + L4 cross-entropy, same data and optimiser) and writes
<msg_weights_name>.pth only (its maps come from the train-time network, S2 variant B).
"""
from __future__ import annotations

import argparse
import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

from misc.pyutils import Timer, weights_paths
from misc.torchutils import PolyOptimizer, runtime, barrier
from misc.trainloop import FitConfig, finished, fit, resume_path
from net import RepVGG_cam, RepVGG_MSG_SR
from step.common import load_split, training_data
from voc12.dataloader import ClassificationDataset

log = logging.getLogger(__name__)
TAG = "S1 train_cam"


def classification_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """ICL: mean BCE-with-logits of the building logit against the image label."""
    logits = model(batch["img"])
    return F.binary_cross_entropy_with_logits(logits.float(), batch["label"])


def msg_classification_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """The MSG baseline's multi-level cross-entropy (SPEC S1 variant B)."""
    return RepVGG_MSG_SR.msg_loss(model(batch["img"]), batch["label"])


# --cam_network -> (constructor, batch loss, checkpoint writer)
CLASSIFIERS = {
    RepVGG_cam.__name__: (RepVGG_cam.build_cam_net, classification_loss, RepVGG_cam.save_cam_net),
    RepVGG_MSG_SR.CAM_NETWORK: (RepVGG_MSG_SR.build_msg_net, msg_classification_loss, RepVGG_MSG_SR.save_msg_net),
}


def make_optimizer(model: RepVGG_cam.Net | RepVGG_MSG_SR.Net, lr: float, weight_decay: float, momentum: float,
                   max_step: int) -> PolyOptimizer:
    backbone, head = model.param_groups()
    groups = [{"params": backbone, "lr": lr}, {"params": head, "lr": 10 * lr}]
    return PolyOptimizer(groups, lr=lr, weight_decay=weight_decay, max_step=max_step, momentum=momentum)


def run(args: argparse.Namespace) -> None:
    rt = runtime()
    timer = Timer()
    msg = args.cam_network == RepVGG_MSG_SR.CAM_NETWORK
    build, loss, save = CLASSIFIERS[args.cam_network]
    train_path, deploy_path = weights_paths(args.msg_weights_name if msg else args.cam_weights_name)
    split = load_split(args, "train_list")
    dataset = ClassificationDataset(split.names, split.image_paths, split.cls_labels,
                                    crop_size=args.cam_crop_size, seed=args.seed)
    fingerprint = {"network": args.cam_network, "backbone": args.backbone, "voc12_root": args.voc12_root,
                   "train_list": args.train_list, "tiles": len(split.names), "batch": args.cam_batch_size,
                   "epochs": args.cam_num_epoches, "lr": args.cam_learning_rate, "wd": args.cam_weight_decay,
                   "momentum": args.cam_momentum, "seed": args.seed, "crop": args.cam_crop_size,
                   **training_data(split.names, split.image_paths, split.cls_labels)}
    if args.resume and finished(train_path, fingerprint):
        log.info("[%s] %s already trained with these settings; pass --resume False to retrain", TAG, train_path)
    else:
        torch.manual_seed(args.seed)  # same initial head (and scratch backbone) on every rank and rerun
        model = build(args.backbone, args.MODEL_WEIGHTS).to(rt.device)
        steps = len(dataset) // args.cam_batch_size * args.cam_num_epoches
        optimizer = make_optimizer(model, args.cam_learning_rate, args.cam_weight_decay, args.cam_momentum, steps)
        log.info("[%s] tiles=%d (%d positives) batch=%d epochs=%d device=%s ranks=%d", TAG, len(split.names),
                 len(split.positives), args.cam_batch_size, args.cam_num_epoches, rt.device, rt.world_size)
        cfg = FitConfig(epochs=args.cam_num_epoches, batch_size=args.cam_batch_size, seed=args.seed, amp=args.amp,
                        num_workers=args.num_workers, resume=args.resume, fingerprint=fingerprint, tag=TAG,
                        sync_bn=args.sync_bn)
        losses = fit(model, dataset, optimizer, loss, cfg, rt, train_path)
        if rt.is_main:
            model.cpu()
            save(model, train_path, deploy=False, extra={"fingerprint": fingerprint})
            resume_path(train_path).unlink(missing_ok=True)
        log.info("[%s] final loss %s", TAG, f"{losses[-1]:.4f}" if losses else "n/a (resumed after the last epoch)")
    barrier()
    if msg:  # no deploy file: the MSG maps come from the train-time network
        log.info("[%s] trained %d tiles for %d epochs in %.0fs -> %s (MSG-SR-Net baseline)", TAG, len(split.names),
                 args.cam_num_epoches, timer.elapsed, train_path)
        return
    # re-deploy only when stale: rewriting it would make later stages redo their maps
    if rt.is_main and (not deploy_path.is_file() or deploy_path.stat().st_mtime_ns < train_path.stat().st_mtime_ns):
        RepVGG_cam.deploy_cam_net(train_path, deploy_path)
    barrier()
    log.info("[%s] trained %d tiles for %d epochs in %.0fs -> %s, %s", TAG, len(split.names), args.cam_num_epoches,
             timer.elapsed, train_path, deploy_path)

