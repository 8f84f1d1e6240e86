"""S11: train DeepLabV3+ (net.deeplabv3plus) on the S9 pseudo masks, or on ground truth (SPEC S11).

Reads:  --train_list tiles under <voc12_root>/JPEGImages (no image labels needed); their masks
        <pseudo_mask_out_dir>/<name>.png {0,1}, or with --seg_label_dir <dir>/<name>.png ground truth
        (0/255 or 0/1, mapped to {0,1}: the fully supervised upper bound); the encoder's ImageNet
        weights --seg_weights when the file exists.
Writes: <seg_weights_name>.pth (net.checkpoints format, network "DeepLabV3Plus", train-time blocks, plus
        "fingerprint" and "trained_on"), <seg_weights_name>.resume.pth after every epoch (removed at the end).
Loss: pixel cross-entropy, 255 ignored (crop padding). Optimiser: poly SGD, momentum 0.9, weight decay
--seg_weight_decay, decoder and head at 10x --seg_learning_rate. Augmentation: SegmentationDataset
(random scale 0.5-1.5, flip, crop --seg_crop_size).
"""
# deviation: SPEC S11 trains DeepLabV3+ in PaddleSeg 2.9 with no configuration in the release; this is a
# plain-torch DeepLabV3+ with the usual recipe (poly SGD 0.01, momentum 0.9, 10x decoder lr), not PaddleSeg's.
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from misc.errors import UserError
from misc.metrics import IGNORE
from misc.pyutils import Timer, weights_paths
from misc.torchutils import PolyOptimizer, barrier, runtime
from misc.trainloop import FitConfig, finished, fit, resume_path
from net import deeplabv3plus
from step.common import training_data
from voc12 import dataloader

log = logging.getLogger(__name__)
TAG = "S11 train_seg"
MOMENTUM = 0.9
PSEUDO, GROUND_TRUTH = "pseudo masks", "ground truth"


@dataclass(frozen=True)
class SegSettings:
    """The S11 flags left at None, resolved (shared by train_seg, make_seg and eval_seg)."""
    backbone: str
    imagenet_weights: str
    checkpoint: Path
    label_dir: str
    label_flag: str
    trained_on: str
    infer_list: str
    out_dir: Path


def seg_settings(args: argparse.Namespace) -> SegSettings:
    backbone = deeplabv3plus.check_backbone(args.seg_backbone or args.backbone)
    weights = args.seg_weights
    if weights is None:
        if backbone == args.backbone:
            weights = args.MODEL_WEIGHTS
        else:
            weights = f"weights/{backbone}.pth" if backbone == deeplabv3plus.RESNET50 else f"weights/{backbone}-train.pth"
    gt = args.seg_label_dir is not None
    return SegSettings(
        backbone=backbone, imagenet_weights=weights, checkpoint=weights_paths(args.seg_weights_name)[0],
        label_dir=args.seg_label_dir if gt else args.pseudo_mask_out_dir,
        label_flag="--seg_label_dir" if gt else "--pseudo_mask_out_dir (run --make_pseudo_mask_pass True)",
        trained_on=GROUND_TRUTH if gt else PSEUDO,
        infer_list=args.seg_infer_list or str(Path(args.voc12_root) / "test.txt"),
        out_dir=Path(args.seg_out_dir or Path(args.work_space) / "seg"))


def segmentation_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """Mean cross-entropy over the labelled pixels (255 ignored); 0 for a batch without any."""
    logits = model(batch["img"]).float()                                   # [B, 2, H, W]
    label = batch["label"]                                                 # [B, H, W] int64 in {0, 1, 255}
    total = F.cross_entropy(logits, label, ignore_index=IGNORE, reduction="sum")
    return total / (label != IGNORE).sum().clamp(min=1)


def make_optimizer(model: deeplabv3plus.DeepLabV3Plus, lr: float, weight_decay: float, max_step: int) -> PolyOptimizer:
    encoder, decoder = model.param_groups()
    groups = [{"params": encoder, "lr": lr}, {"params": decoder, "lr": 10 * lr}]
    return PolyOptimizer(groups, lr=lr, weight_decay=weight_decay, max_step=max_step, momentum=MOMENTUM)


def training_set(args: argparse.Namespace, s: SegSettings) -> dataloader.SegmentationDataset:
    """The checked --train_list with its masks (every tile needs one of the same size)."""
    names = dataloader.read_list(args.train_list, "--train_list")
    paths = dataloader.check_dataset(names, Path(args.voc12_root) / "JPEGImages", list_flag="--train_list",
                                     list_path=args.train_list, mask_dir=s.label_dir, mask_flag=s.label_flag,
                                     decode=True, workers=args.pool_workers)
    return dataloader.SegmentationDataset(names, paths, s.label_dir, cls_labels=None, crop_size=args.seg_crop_size,
                                          scale_range=(0.5, 1.5), gt_labels=s.trained_on == GROUND_TRUTH, seed=args.seed)


def check_batch(batch_size: int, world_size: int) -> None:
    if batch_size // max(world_size, 1) < 2:
        raise UserError(f"--seg_batch_size {batch_size} gives {batch_size // max(world_size, 1)} tile(s) per rank; "
                        f"batch norm (ASPP image pooling) needs at least 2: raise --seg_batch_size")


def run(args: argparse.Namespace) -> None:
    rt, timer, s = runtime(), Timer(), seg_settings(args)
    check_batch(args.seg_batch_size, rt.world_size)
    dataset = training_set(args, s)
    fingerprint = {"seg_backbone": s.backbone, "weights": s.imagenet_weights, "labels": s.label_dir,
                   "trained_on": s.trained_on, **{k: getattr(args, k) for k in (
                       "voc12_root", "train_list", "seg_batch_size", "seg_num_epoches", "seg_learning_rate",
                       "seg_weight_decay", "seg_crop_size", "seed")},
                   **training_data(dataset.names, dataset.image_paths, label_dir=s.label_dir)}
    if args.resume and finished(s.checkpoint, fingerprint):
        log.info("[%s] %s already trained with these settings; pass --resume False to retrain", TAG, s.checkpoint)
        return
    torch.manual_seed(args.seed)  # same decoder init on every rank and rerun
    model = deeplabv3plus.build_seg_net(s.backbone, s.imagenet_weights).to(rt.device)
    steps = len(dataset) // args.seg_batch_size * args.seg_num_epoches
    optimizer = make_optimizer(model, args.seg_learning_rate, args.seg_weight_decay, steps)
    log.info("[%s] DeepLabV3+ (%s) on %s: tiles=%d batch=%d epochs=%d device=%s ranks=%d", TAG, s.backbone,
             s.trained_on, len(dataset), args.seg_batch_size, args.seg_num_epoches, rt.device, rt.world_size)
    cfg = FitConfig(epochs=args.seg_num_epoches, batch_size=args.seg_batch_size, seed=args.seed, amp=args.amp,
                    num_workers=args.num_workers, resume=args.resume, fingerprint=fingerprint, tag=TAG,
                    sync_bn=args.sync_bn)
    losses = fit(model, dataset, optimizer, segmentation_loss, cfg, rt, s.checkpoint)
    if rt.is_main:
        deeplabv3plus.save_seg_net(model.cpu(), s.checkpoint, extra={"fingerprint": fingerprint,
                                                                     "trained_on": s.trained_on})
        resume_path(s.checkpoint).unlink(missing_ok=True)
    barrier()
    log.info("[%s] trained %d tiles for %d epochs in %.0fs, final loss %s -> %s", TAG, len(dataset),
             args.seg_num_epoches, timer.elapsed, f"{losses[-1]:.4f}" if losses else "n/a", s.checkpoint)
