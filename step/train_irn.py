"""S10 (optional): train the IRN boundary and displacement branches on AMN's confident labels.

Reads:  --train_list tiles (negatives too) and their labels <amn_ir_label_out_dir>/<name>.png
        {0, 1, 255} (from --amn_cam_to_ir_label_pass; all zeros for negatives);
        --cls_labels; the ImageNet --amn_backbone (--amn_model_weights) when present, else the backbone of the
        trained AR network <amn_weights_name>.pth when present (kept frozen either way).
Writes: <irn_weights_name>.pth with `mean_shift.running_mean` set to the mean displacement over the
        positives of --infer_list; <irn_weights_name>.resume.pth after every epoch (removed at the end).
Loss: AffinityDisplacementLoss with PathIndex radius --irn_radius (5) on the labels at stride 4.
Optimiser: poly SGD, boundary branch at --irn_learning_rate, displacement branch at 10x, weight decay
--irn_weight_decay, momentum --irn_momentum (default 1e-4, the reference's effective value, as S1's).
Crops --irn_crop_size (256, the tile size; the reference's default was 512), random rescale (0.5, 1.5) and horizontal flip (--augment: or the 8 flips and rotations).
"""
from __future__ import annotations

import argparse
import logging
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from misc import augment
from misc.pyutils import progress, weights_paths
from misc.torchutils import poly_sgd, runtime, shard
from misc.trainloop import FitConfig, TrainJob, train
from net import irn
from net.checkpoints import save_net
from step.kit.common import load_split, loader
from step.kit.stages import stage_tag
from step.kit.stamps import training_data, training_fingerprint
from voc12 import dataloader

log = logging.getLogger(__name__)
TAG = stage_tag(__name__)
FINGERPRINT_FLAGS = ("amn_backbone", "irn_batch_size", "irn_num_epoches", "irn_crop_size", "irn_learning_rate",
                     "irn_weight_decay", "irn_radius", "irn_momentum", "seed", "voc12_root", "train_list",
                     "amn_ir_label_out_dir")


def irn_loss(model: nn.Module, batch: dict, criterion: irn.AffinityDisplacementLoss) -> torch.Tensor:
    """The IRN loss of one batch; the labels are resized to the stride-4 edge grid."""
    edge, dp = model(batch["img"])
    # PIL NEAREST samples pixel centres, which is torch's 'nearest-exact' (as in S6)
    labels = F.interpolate(batch["label"][:, None].float(), edge.shape[-2:], mode="nearest-exact")[:, 0].long()
    return irn.total_loss(criterion(edge, dp, labels))


def run(args: argparse.Namespace) -> None:
    train_path, _ = weights_paths(args.irn_weights_name)
    split = load_split(args, "train_list", mask_dir=args.amn_ir_label_out_dir,
                       mask_flag="--amn_ir_label_out_dir (run --amn_cam_to_ir_label_pass True first)")
    amn_path = weights_paths(args.amn_weights_name)[0]  # the frozen backbone without ImageNet weights
    # the AR network is the fallback backbone (used when the ImageNet weights are absent): retrained, IRN retrains
    fingerprint = training_fingerprint(
        args, FINGERPRINT_FLAGS, weights={"amn_model_weights": args.amn_model_weights, "amn_weights": amn_path},
        data=training_data(split.names, split.image_paths, split.cls_labels, args.amn_ir_label_out_dir),
        **augment.fingerprint_entry(args.augment))
    dataset = dataloader.SegmentationDataset(split.names, split.image_paths, args.amn_ir_label_out_dir,
                                             split.cls_labels, crop_size=args.irn_crop_size, scale_range=(0.5, 1.5),
                                             seed=args.seed, augment=args.augment)
    criterion = irn.AffinityDisplacementLoss(args.irn_radius)

    def set_mean_shift(model: irn.Net) -> None:
        model.eval()
        model.mean_shift.running_mean.copy_(mean_displacement(model, args))
        log.info("[%s] mean displacement (%.3f, %.3f)", TAG, *model.mean_shift.running_mean.tolist())

    train(TrainJob(
        checkpoint=train_path, dataset=dataset,
        build=partial(irn.build_irn_net, args.amn_backbone, args.amn_model_weights, fallback=amn_path),
        optimizer=lambda model, steps: poly_sgd(model, args.irn_learning_rate, args.irn_weight_decay,
                                                args.irn_momentum, steps),
        loss=partial(irn_loss, criterion=criterion),
        save=lambda model, path, extra: save_net(model, path, extra=extra),
        cfg=FitConfig(epochs=args.irn_num_epoches, batch_size=args.irn_batch_size, seed=args.seed, amp=args.amp,
                      num_workers=args.num_workers, resume=args.resume, fingerprint=fingerprint, tag=TAG,
                      lr_flags="--irn_learning_rate",
                      sync_bn=False),  # GroupNorm heads and a frozen backbone: nothing to synchronise
        describe=f"crop={args.irn_crop_size} radius={args.irn_radius}", after_fit=set_mean_shift))


@torch.no_grad()
def mean_displacement(model: irn.Net, args: argparse.Namespace) -> torch.Tensor:
    """Mean over the positives of --infer_list of each tile's mean displacement (full tile, one scale).

    Each rank takes its share; the sums are added over ranks, so every rank gets the same vector.
    """
    rt = runtime()
    split = load_split(args, "infer_list", decode=False)
    names = shard(split.positives, rt.rank, rt.world_size)
    dataset = dataloader.ClassificationDatasetMSF(names, split.image_paths, split.cls_labels, scales=(1.0,))
    total = torch.zeros(3, device=rt.device)  # (sum dy, sum dx, tiles)
    packs = loader(dataset, args.num_workers, batch_size=1)
    for (pack,) in progress(packs, total=len(names), desc=f"{TAG} mean shift", disable=not rt.is_main):
        dp = irn.displacement_map(model, pack["img"][0].to(rt.device), args.irn_crop_size)
        total += torch.cat([dp.mean(dim=(1, 2)), torch.ones(1, device=rt.device)])
    if rt.distributed:
        torch.distributed.all_reduce(total)
    return (total[:2] / total[2].clamp(min=1)).cpu()
