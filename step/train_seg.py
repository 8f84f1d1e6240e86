"""S11: train DeepLabV3+ (net.deeplabv3plus) on the S9 pseudo masks, or on ground truth.

Reads:  --train_list tiles under <voc12_root>/JPEGImages (no image labels needed); their masks
        <pseudo_mask_out_dir>/<name>.png {0,1}, or with --seg_label_dir <dir>/<name>.png ground truth
        (0/255 or 0/1, mapped to {0,1}: the fully supervised upper bound); the encoder's ImageNet
        weights --seg_weights when the file exists.
Writes: <seg_weights_name>.pth (net.checkpoints format, network "DeepLabV3Plus", train-time blocks, plus
        "fingerprint" and "trained_on"), <seg_weights_name>.resume.pth after every epoch (removed at the end).
Loss: pixel cross-entropy, 255 ignored (crop padding). Optimiser: poly SGD, momentum 0.9, weight decay
--seg_weight_decay, decoder and head at 10x --seg_learning_rate. Augmentation: SegmentationDataset
(random scale 0.5-1.5, flip, crop --seg_crop_size; --augment dihedral: the 8 flips and rotations instead).
"""
# deviation: the reference trains DeepLabV3+ in PaddleSeg 2.9 with no configuration in the release; this is a
# plain-torch DeepLabV3+ with the usual recipe (poly SGD 0.01, momentum 0.9, 10x decoder lr), not PaddleSeg's.
from __future__ import annotations

import argparse
import logging
from functools import partial
from pathlib import Path

from misc import augment, losses
from misc.errors import UserError
from misc.torchutils import poly_sgd, runtime
from misc.trainloop import FitConfig, TrainJob, train
from net.checkpoints import build_net, save_net
from net.deeplabv3plus import DeepLabV3Plus
from step.segmentation import GROUND_TRUTH, SegSettings, seg_settings
from step.stages import stage_tag
from step.stamps import training_data
from voc12 import dataloader

log = logging.getLogger(__name__)
TAG = stage_tag(__name__)
MOMENTUM = 0.9


def training_set(args: argparse.Namespace, s: SegSettings) -> dataloader.SegmentationDataset:
    """The checked --train_list with its masks (every tile needs one of the same size)."""
    names = dataloader.read_list(args.train_list, "--train_list")
    paths = dataloader.check_dataset(names, Path(args.image_dir), list_flag="--train_list",
                                     list_path=args.train_list, mask_dir=s.label_dir, mask_flag=s.label_flag,
                                     decode=True, workers=args.pool_workers,
                                     mask_kind="gt" if s.trained_on == GROUND_TRUTH else "labels")
    return dataloader.SegmentationDataset(names, paths, s.label_dir, cls_labels=None, crop_size=args.seg_crop_size,
                                          scale_range=(0.5, 1.5), gt_labels=s.trained_on == GROUND_TRUTH, seed=args.seed,
                                          augment=args.augment)


def check_batch(batch_size: int, world_size: int) -> None:
    if batch_size // max(world_size, 1) < 2:
        raise UserError(f"--seg_batch_size {batch_size} gives {batch_size // max(world_size, 1)} tile(s) per rank; "
                        f"batch norm (ASPP image pooling) needs at least 2: raise --seg_batch_size")


def run(args: argparse.Namespace) -> None:
    rt, s = runtime(), seg_settings(args)
    check_batch(args.seg_batch_size, rt.world_size)
    dataset = training_set(args, s)
    fingerprint = {"seg_backbone": s.backbone, "weights": s.imagenet_weights, "labels": s.label_dir,
                   "trained_on": s.trained_on, **{k: getattr(args, k) for k in (
                       "voc12_root", "train_list", "seg_batch_size", "seg_num_epoches", "seg_learning_rate",
                       "seg_weight_decay", "seg_crop_size", "seed")},
                   **augment.fingerprint_entry(args.augment),
                   **training_data(dataset.names, dataset.image_paths, label_dir=s.label_dir)}
    train(TrainJob(
        checkpoint=s.checkpoint, dataset=dataset,
        build=partial(build_net, DeepLabV3Plus, s.backbone, s.imagenet_weights),
        optimizer=lambda model, steps: poly_sgd(model, args.seg_learning_rate, args.seg_weight_decay, MOMENTUM, steps),
        loss=losses.segmentation_loss,
        save=lambda model, path, extra: save_net(model, path, extra={**extra, "trained_on": s.trained_on}),
        cfg=FitConfig(epochs=args.seg_num_epoches, batch_size=args.seg_batch_size, seed=args.seed, amp=args.amp,
                      num_workers=args.num_workers, resume=args.resume, fingerprint=fingerprint, tag=TAG,
                      lr_flags="--seg_learning_rate",
                      sync_bn=args.sync_bn),
        describe=f"DeepLabV3+ ({s.backbone}) on {s.trained_on}"))
