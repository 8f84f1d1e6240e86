"""S11: train DeepLabV3+ (net.deeplabv3plus) on the S9 pseudo masks, or on ground truth.

Reads:  --train_list tiles under <voc12_root>/JPEGImages (no image labels needed) less the tiles rejected in
        --review_file (python -m webapp; pseudo masks only, so a changed decision changes the tiles and retrains); their masks
        <pseudo_mask_out_dir>/<name>.png {0,1}, or with --seg_label_dir <dir>/<name>.png ground truth
        (0/255 or 0/1, mapped to {0,1}: the fully supervised upper bound); the encoder's ImageNet
        weights --seg_weights when the file exists.
Writes: <seg_weights_name>.pth (net.checkpoints format, network "DeepLabV3Plus", train-time blocks, plus
        "fingerprint" and "trained_on"), <seg_weights_name>.resume.pth after every epoch (removed at the end).
Self-training (--seg_self_train_rounds K > 0, pseudo masks only; also reads --cls_labels): round 0 learns from
        the pseudo masks as above, into <seg_weights_name>_round0.pth; round k = 1..K learns from round k - 1's
        predictions on the training tiles, <work_space>/seg_round<k>_labels/<name>.png {0, 1, 255} (positives:
        misc.self_training.round_label with --seg_self_train_band and --seg_self_train_crf; negatives all 0;
        stamped, so a rerun keeps labels made by the same model), into <seg_weights_name>_round<k>.pth, the
        last round into <seg_weights_name>.pth. Every round starts from the ImageNet encoder, not from the
        previous round's weights: a model started from its own weights already agrees with its own labels,
        learns little from them and keeps its mistakes; a fresh model learns the cleaned labels as a new task.
Loss: pixel cross-entropy, 255 ignored (crop padding). Optimiser: poly SGD, momentum 0.9, weight decay
--seg_weight_decay, decoder and head at 10x --seg_learning_rate. Augmentation: SegmentationDataset
(random scale 0.5-1.5, flip, crop --seg_crop_size; --augment dihedral: the 8 flips and rotations instead).
"""
# deviation: the reference trains DeepLabV3+ in PaddleSeg 2.9 with no configuration in the release; this is a
# plain-torch DeepLabV3+ with the usual recipe (poly SGD 0.01, momentum 0.9, 10x decoder lr), not PaddleSeg's.
from __future__ import annotations

import argparse
import hashlib
import logging
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from misc import augment, fileio, imutils, losses, metrics, self_training, tilecsv
from misc.errors import UserError
from misc.pyutils import Timer, progress
from misc.tilegrid import TileContext
from misc.torchutils import barrier, poly_sgd, runtime
from misc.trainloop import FitConfig, TrainJob, finished, train
from net.checkpoints import build_net, load_net, save_net
from net.deeplabv3plus import DeepLabV3Plus
from step.kit.common import inference_names
from step.kit.segmentation import (GROUND_TRUTH, PSEUDO, SegSettings, context_fingerprint, prediction_settings,
                                    seg_settings, tile_logits)
from step.kit.stages import stage_tag
from step.kit.stamps import images_digest, model_identity, reusable_outputs, training_data, training_fingerprint
from voc12 import dataloader

log = logging.getLogger(__name__)
TAG = stage_tag(__name__)
MOMENTUM = 0.9
FINGERPRINT_FLAGS = ("seg_backbone", "voc12_root", "train_list", "seg_batch_size", "seg_num_epoches", "seg_learning_rate",
                     "seg_weight_decay", "seg_crop_size", "seed")
# what a self-training round depends on beyond FINGERPRINT_FLAGS
ROUND_FLAGS = ("seg_self_train_band", "seg_self_train_crf", "seg_self_train_epochs")


def training_set(args: argparse.Namespace, s: SegSettings) -> dataloader.SegmentationDataset:
    """The checked --train_list with its masks (every tile needs one of the same size)."""
    rejected = tilecsv.rejected_tiles(args.review_file) if s.trained_on == PSEUDO else set()
    names = [n for n in dataloader.read_list(args.train_list, "--train_list") if n not in rejected]
    paths = dataloader.check_dataset(names, Path(args.image_dir), list_flag="--train_list",
                                     list_path=args.train_list, mask_dir=s.label_dir, mask_flag=s.label_flag,
                                     decode=True, workers=args.pool_workers,
                                     mask_kind="gt" if s.trained_on == GROUND_TRUTH else "labels")
    context = TileContext.beside(paths.values(), args.seg_train_context, args.xyz_name_pattern)
    return dataloader.SegmentationDataset(names, paths, s.label_dir, cls_labels=None, crop_size=args.seg_crop_size,
                                          scale_range=(0.5, 1.5), gt_labels=s.trained_on == GROUND_TRUTH,
                                          seed=args.seed, augment=args.augment, context=context)


def context_entry(dataset: dataloader.SegmentationDataset) -> dict[str, int]:
    """The training context in a fingerprint, only when used (so models trained before it existed stay valid);
    the neighbours it takes are tiles of the list, whose images and labels the fingerprint already holds."""
    return {"seg_train_context": dataset.context.margin} if dataset.context.margin else {}


def check_batch(batch_size: int, world_size: int) -> None:
    if batch_size // max(world_size, 1) < 2:
        raise UserError(f"--seg_batch_size {batch_size} gives {batch_size // max(world_size, 1)} tile(s) per rank; "
                        f"batch norm (ASPP image pooling) needs at least 2: raise --seg_batch_size")


def run(args: argparse.Namespace) -> None:
    rt, s = runtime(), seg_settings(args)
    check_batch(args.seg_batch_size, rt.world_size)
    rounds = args.seg_self_train_rounds
    if rounds and s.trained_on == GROUND_TRUTH:
        raise UserError("--seg_self_train_rounds learns from the model's own predictions of pseudo-mask training; "
                        "with --seg_label_dir (ground truth) leave it at 0")
    dataset = training_set(args, s)
    fingerprint = training_fingerprint(
        args, FINGERPRINT_FLAGS, weights={"seg_weights": args.seg_weights},
        data=training_data(dataset.names, dataset.image_paths, label_dir=s.label_dir),
        labels=s.label_dir, trained_on=s.trained_on, **augment.fingerprint_entry(args.augment),
        **context_entry(dataset))
    negatives = training_negatives(args, dataset.names) if rounds else set()
    first = round_checkpoint(s.checkpoint, 0, rounds)
    if rounds and rt.is_main and not first.is_file() and finished(s.checkpoint, fingerprint):
        os.replace(s.checkpoint, first)  # the model of an earlier run without rounds is this run's round 0
    barrier()
    curve = EpochCurve(args) if args.seg_curve_lists else None
    fit_seg(args, s, dataset, fingerprint, first, args.seg_num_epoches,
            f"DeepLabV3+ ({args.seg_backbone}) on {s.trained_on}", on_epoch_end=curve)
    if curve is not None and not curve.rows and rt.is_main:
        log.warning("[%s] --seg_curve_lists: no epoch was trained in this run (the model was already trained), so "
                    "there is no curve; pass --resume False to retrain and score each epoch", TAG)
    for k in range(1, rounds + 1):
        label_dir = Path(args.work_space) / f"seg_round{k}_labels"
        make_round_labels(args, round_checkpoint(s.checkpoint, k - 1, rounds), dataset, negatives, label_dir, k)
        round_set = dataloader.SegmentationDataset(dataset.names, dataset.image_paths, label_dir,
                                                   crop_size=dataset.crop_size, scale_range=dataset.scale_range,
                                                   seed=dataset.seed, augment=dataset.augment, context=dataset.context)
        round_fingerprint = training_fingerprint(
            args, FINGERPRINT_FLAGS + ROUND_FLAGS, weights={"seg_weights": args.seg_weights},
            data=training_data(dataset.names, dataset.image_paths, label_dir=label_dir),
            labels=str(label_dir), trained_on=s.trained_on, self_train_round=k,
            **augment.fingerprint_entry(args.augment), **context_entry(dataset))
        fit_seg(args, s, round_set, round_fingerprint, round_checkpoint(s.checkpoint, k, rounds),
                args.seg_self_train_epochs,
                f"DeepLabV3+ ({args.seg_backbone}) self-training round {k}/{rounds}", {"self_train_round": k})


class EpochCurve:
    """--seg_curve_lists: building IoU of the model after every epoch on tile lists with ground truth, predicted
    as make_seg predicts (tile_logits), logged and written to <work_space>/metrics_seg_curve.json (rank 0). The
    poly learning rate decays over all --seg_num_epoches, so epoch e < E is not what an e-epoch schedule ends
    at: the curve says whether the last epochs still add. Nothing of it enters the weights or their fingerprint."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.rows, self.lists, images = args, [], {}, {}
        for list_path in args.seg_curve_lists.split(","):
            names = dataloader.read_list(list_path, "--seg_curve_lists")
            if Path(list_path).stem in self.lists:
                raise UserError(f"--seg_curve_lists names two lists called {Path(list_path).stem!r}; the curve keys "
                                "them by file name: rename one")
            self.lists[Path(list_path).stem] = names
            images.update(dataloader.check_dataset(names, Path(args.image_dir), list_flag="--seg_curve_lists",
                                                   list_path=list_path, mask_dir=args.gt_dir, decode=False,
                                                   workers=args.pool_workers, mask_kind="gt"))
        self.images = images
        # every rank checks the lists (one error everywhere), rank 0 alone scores: only it reads the ground truth
        gt_dir = Path(args.gt_dir)
        self.gts = {name: imutils.read_gt(gt_dir / f"{name}.png") for name in images} if runtime().is_main else {}
        self.read = partial(dataloader.DecodedCache().read, reader=imutils.read_image)  # decoded once, not per epoch
        self.context = TileContext.beside(images.values(), args.seg_context, args.xyz_name_pattern)

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, epoch: int) -> None:
        rt = runtime()
        if not rt.is_main:
            return
        model.eval()
        ious = {}
        for list_name, names in self.lists.items():
            meter = metrics.ConfusionMeter()
            for name in names:
                logits = tile_logits(model, self.images[name], self.context, self.args, rt.device, self.read)[1]
                meter.add(self.gts[name], logits.argmax(0).numpy())
            ious[list_name] = meter.scores()["building_iou"]
        model.train()
        self.rows.append({"epoch": epoch, "building_iou": ious})
        log.info("[%s] epoch %d building IoU: %s", TAG, epoch, "  ".join(f"{k} {v:.4f}" for k, v in ious.items()))
        fileio.save_json(Path(self.args.work_space) / "metrics_seg_curve.json",
                         {"stage": "S11 building IoU after each epoch", "epochs": self.args.seg_num_epoches,
                          "seg_context": self.args.seg_context, "curve": self.rows})


def fit_seg(args: argparse.Namespace, s: SegSettings, dataset: dataloader.SegmentationDataset, fingerprint: dict,
            checkpoint: Path, epochs: int, describe: str, extra: dict | None = None,
            on_epoch_end: Callable[[torch.nn.Module, int], None] | None = None) -> None:
    """Train one DeepLabV3+ from the ImageNet encoder on `dataset` into `checkpoint` (or keep it when finished);
    `on_epoch_end(model, epoch)` sees the model after each epoch (`EpochCurve` scores it)."""
    train(TrainJob(
        checkpoint=checkpoint, dataset=dataset,
        build=partial(build_net, DeepLabV3Plus, args.seg_backbone, args.seg_weights),
        optimizer=lambda model, steps: poly_sgd(model, args.seg_learning_rate, args.seg_weight_decay, MOMENTUM, steps),
        loss=losses.segmentation_loss,
        save=lambda model, path, saved: save_net(model, path, extra={**saved, "trained_on": s.trained_on,
                                                                     **(extra or {})}),
        cfg=FitConfig(epochs=epochs, batch_size=args.seg_batch_size, seed=args.seed, amp=args.amp,
                      num_workers=args.num_workers, resume=args.resume, fingerprint=fingerprint, tag=TAG,
                      lr_flags="--seg_learning_rate",
                      sync_bn=args.sync_bn),
        describe=describe, on_epoch_end=on_epoch_end))


def round_checkpoint(final: Path, k: int, rounds: int) -> Path:
    """Where round k's model goes: the final weights for the last round (and without rounds), else
    <name>_round<k>.pth beside them."""
    return final if k == rounds else final.with_name(f"{final.stem}_round{k}{final.suffix}")


def training_negatives(args: argparse.Namespace, names: list[str]) -> set[str]:
    """The training tiles whose image label (--cls_labels) is 0: their round labels stay all background."""
    cls_labels = dataloader.load_cls_labels(args.cls_labels)
    missing = [n for n in names if n not in cls_labels]
    if missing:
        raise UserError(f"--train_list {args.train_list} names {missing[0]!r}, which has no entry in --cls_labels "
                        f"{args.cls_labels}; self-training needs every tile's image label (regenerate cls_labels.npy)")
    return {n for n in names if cls_labels[n] == 0}


@torch.no_grad()
def make_round_labels(args: argparse.Namespace, model_path: Path, dataset: dataloader.SegmentationDataset,
                      negatives: set[str], out_dir: Path, k: int) -> None:
    """Round k's labels of every training tile from the model of round k - 1 (this rank's share; a rerun keeps
    the labels this model made with the same settings)."""
    rt, timer = runtime(), Timer()
    names, band = dataset.names, args.seg_self_train_band
    context = TileContext.beside(dataset.image_paths.values(), args.seg_context, args.xyz_name_pattern)
    settings = {**prediction_settings(args), "band": list(band), "crf": args.seg_self_train_crf, "context": context_fingerprint(context)}
    fingerprint = {"weights": model_identity(model_path), "settings": settings,
                   "images": images_digest(names, dataset.image_paths),
                   "negatives": hashlib.sha256("\n".join(sorted(negatives)).encode()).hexdigest()}
    done = reusable_outputs(out_dir, fingerprint, args.resume, ".png", stage="train_seg",
                            variant=f"self-training round {k}", names=names, flag="--seg_self_train_rounds",
                            inputs={"--voc12_root": [args.image_dir]})
    todo = inference_names(names, done)
    model = load_net(DeepLabV3Plus, model_path, device=rt.device, fold=True) if todo else None
    read = partial(dataset.cache.read, reader=imutils.read_image)  # the tiles training already decoded
    counts = np.zeros(3, np.int64)  # background, building, no label (this rank's positives)
    for name in progress(todo, desc=f"{TAG} round {k} labels", disable=not rt.is_main):
        if name in negatives:  # all background, whatever the model says: no need to decode or predict
            size = imutils.image_size(dataset.image_paths[name])
            label = self_training.round_label(None, np.zeros(size, np.float32), band, negative=True)
        else:
            image, logits = tile_logits(model, dataset.image_paths[name], context, args, rt.device, read)
            prob = torch.softmax(logits, dim=0)[1].numpy()
            label = self_training.round_label(image, prob, band, crf=args.seg_self_train_crf)
            counts += self_training.label_fractions(label)
        fileio.save_png(out_dir / f"{name}.png", label)
    barrier()
    share = counts / max(int(counts.sum()), 1)
    log.info("[%s] round %d labels: %d made, %d kept, positives %.1f%% building, %.1f%% no label (band %.2f-%.2f%s) "
             "in %.0fs -> %s", TAG, k, len(todo), len(done), 100 * share[1], 100 * share[2], band[0], band[1],
             ", CRF" if args.seg_self_train_crf else "", timer.elapsed, out_dir)
