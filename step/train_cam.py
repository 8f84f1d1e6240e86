"""S1 + S1d: train the single-head building classifier, then fold it for deployment.

Reads:  --train_list tiles (positives and negatives) under <voc12_root>/JPEGImages, --cls_labels,
        the ImageNet backbone --MODEL_WEIGHTS when present.
Writes: <cam_weights_name>.pth (train-time), <cam_weights_name>_deploy.pt (re-parameterised),
        <cam_weights_name>.resume.pth after every epoch (removed at the end).
Loss: BCE with logits on the image label (the single head, variant A). Optimiser: poly SGD, head at 10x lr,
momentum 1e-4 by default (the reference's effective value: its weight decay landed in the momentum slot).

With --cam_network msg it trains the MSG-SR-Net baseline instead (S1 variant B: four
two-channel heads, 0.3 (L1 + L2 + L3) + L4 cross-entropy, same data and optimiser) and writes
<msg_weights_name>.pth only (its maps come from the train-time network, S2 variant B).
"""
from __future__ import annotations

import argparse
import logging
from functools import partial

from misc import augment, losses
from misc.errors import UserError
from misc.pyutils import weights_paths
from misc.torchutils import barrier, poly_sgd, runtime
from misc.trainloop import FitConfig, TrainJob, train
from net import cam, msg_sr
from net.checkpoints import build_net, deploy_net, save_net
from step.kit.common import Split, load_split
from step.kit.stages import stage_tag
from step.kit.stamps import training_data, training_fingerprint
from voc12.dataloader import ClassificationDataset

log = logging.getLogger(__name__)
TAG = stage_tag(__name__)

FINGERPRINT_FLAGS = ("cam_network", "backbone", "voc12_root", "train_list", "cam_batch_size", "cam_num_epoches",
                     "cam_learning_rate", "cam_weight_decay", "cam_momentum", "cam_crop_size", "seed")

# --cam_network -> (network, batch loss)
CLASSIFIERS = {
    "single": (cam.Net, losses.classification_loss),
    "msg": (msg_sr.Net, msg_sr.msg_batch_loss),
}


def check_both_classes(split: Split, list_path: str) -> None:
    """A classifier needs positives and negatives; with one class only it learns nothing useful and S3
    fails much later."""
    positives = len(split.positives)
    if positives in (0, len(split.names)):
        kind, missing = ("positives", "negatives (label 0)") if positives else ("negatives", "positives (label 1)")
        raise UserError(f"--train_list {list_path} has {len(split.names)} tiles, all {kind}; the classifier needs "
                        f"both classes: add {missing} to the list (and --cls_labels)")


def training_fingerprint_of(args: argparse.Namespace, split: Split) -> dict:
    """What a kept classifier must have been trained from: the flags, the ImageNet file's content, the data."""
    return training_fingerprint(args, FINGERPRINT_FLAGS, weights={"MODEL_WEIGHTS": args.MODEL_WEIGHTS},
                                data=training_data(split.names, split.image_paths, split.cls_labels),
                                **augment.fingerprint_entry(args.augment))


def run(args: argparse.Namespace) -> None:
    rt = runtime()
    msg = args.cam_network == "msg"
    net, loss = CLASSIFIERS[args.cam_network]
    train_path, deploy_path = weights_paths(args.msg_weights_name if msg else args.cam_weights_name)
    split = load_split(args, "train_list")
    check_both_classes(split, args.train_list)
    dataset = ClassificationDataset(split.names, split.image_paths, split.cls_labels,
                                    crop_size=args.cam_crop_size, seed=args.seed, augment=args.augment)
    fingerprint = training_fingerprint_of(args, split)
    train(TrainJob(
        checkpoint=train_path, dataset=dataset,
        build=partial(build_net, net, args.backbone, args.MODEL_WEIGHTS),
        optimizer=lambda model, steps: poly_sgd(model, args.cam_learning_rate, args.cam_weight_decay,
                                                args.cam_momentum, steps),
        loss=loss, save=lambda model, path, extra: save_net(model, path, extra=extra),
        cfg=FitConfig(epochs=args.cam_num_epoches, batch_size=args.cam_batch_size, seed=args.seed, amp=args.amp,
                      num_workers=args.num_workers, resume=args.resume, fingerprint=fingerprint, tag=TAG,
                      lr_flags="--cam_learning_rate",
                      sync_bn=args.sync_bn),
        describe=f"({len(split.positives)} positives)"))
    if msg:  # no deploy file: the MSG maps come from the train-time network
        return
    # re-deploy only when stale: rewriting it would make later stages redo their maps
    if rt.is_main and (not deploy_path.is_file() or deploy_path.stat().st_mtime_ns < train_path.stat().st_mtime_ns):
        deploy_net(cam.Net, train_path, deploy_path)
        log.info("[%s] deploy network -> %s", TAG, deploy_path)
    barrier()
