"""S6 + S6d: train the activation-refinement network on the confident labels, then fold it.

Reads:  --train_list tiles (negatives too), their S5 labels <ir_label_out_dir>/<name>.png {0,1,255},
        --cls_labels; the ImageNet --amn_backbone (--amn_model_weights) when present (not the S1 classifier).
Writes: <amn_weights_name>.pth (the last epoch; --amn_select_by_gt keeps the best epoch by pixel
        ground truth, as the released code did), <amn_weights_name>_deploy.pt, .resume.pth per epoch.
Loss: PCL + Lambda1 * MCL; Adam, backbone 5e-5, new layers 1e-3, no schedule. PCL compares the logits with the
labels resized to their grid (the reference) or, with --amn_pcl_at pixels, the logits upsampled to the labels
(measured the same on fAIr: README, "Results").
"""
from __future__ import annotations

import argparse
import copy
import logging
from functools import partial

import torch
import torch.nn.functional as F

from misc import augment, losses, metrics
from misc.pyutils import weights_paths
from misc.torchutils import barrier, runtime
from misc.trainloop import FitConfig, TrainJob, train
from net import amn
from net.checkpoints import build_net, deploy_net, save_net
from step.kit.common import load_split
from step.kit.stages import stage_tag
from step.kit.stamps import training_data, training_fingerprint
from voc12 import dataloader

log = logging.getLogger(__name__)
TAG = stage_tag(__name__)
FINGERPRINT_FLAGS = ("amn_backbone", "amn_batch_size", "amn_num_epoches", "amn_crop_size", "amn_backbone_lr", "amn_new_lr",
                     "amn_weight_decay", "eps", "Lambda1", "scale_factor", "scale_factor2", "threshold", "mcl_pixel_gate",
                     "seed", "voc12_root", "train_list", "amn_select_by_gt")


def run(args: argparse.Namespace) -> None:
    rt = runtime()
    train_path, deploy_path = weights_paths(args.amn_weights_name)
    split = load_split(args, "train_list", mask_dir=args.ir_label_out_dir,
                       mask_flag="--ir_label_out_dir (run --cam_to_ir_label_pass True)")
    dataset = dataloader.SegmentationDataset(split.names, split.image_paths, args.ir_label_out_dir, split.cls_labels,
                                             crop_size=args.amn_crop_size, scale_range=(0.5, 1.5), seed=args.seed,
                                             augment=args.augment)
    fingerprint = training_fingerprint(
        args, FINGERPRINT_FLAGS, weights={"amn_model_weights": args.amn_model_weights},
        data=training_data(split.names, split.image_paths, split.cls_labels, args.ir_label_out_dir),
        **augment.fingerprint_entry(args.augment),
        # only where not the reference's, as --augment: models trained before the flag existed stay valid
        **({"amn_pcl_at": args.amn_pcl_at} if args.amn_pcl_at != "logits" else {}))
    best = {"miou": -1.0, "state": None, "epoch": 0}
    on_epoch_end = None
    if args.amn_select_by_gt:
        log.warning("[%s] --amn_select_by_gt True picks the epoch with pixel ground truth: this leaks labels "
                    "into a weakly supervised method (reproduces the released code only)", TAG)
        on_epoch_end = partial(_keep_best_by_gt, args=args, split=split, best=best)

    def keep_best(model: amn.Net) -> None:
        if rt.is_main and best["state"] is not None:
            model.load_state_dict(best["state"])
            log.info("[%s] kept epoch %d (ground-truth mIoU %.4f)", TAG, best["epoch"], best["miou"])

    def adam(model: amn.Net, steps: int) -> torch.optim.Adam:  # no schedule: `steps` unused
        backbone, new = model.param_groups()
        return torch.optim.Adam([{"params": backbone, "lr": args.amn_backbone_lr},
                                 {"params": new, "lr": args.amn_new_lr}], weight_decay=args.amn_weight_decay)

    result = train(TrainJob(
        checkpoint=train_path, dataset=dataset,
        build=partial(build_net, amn.Net, args.amn_backbone, args.amn_model_weights), optimizer=adam,
        loss=partial(losses.refinement_loss, eps=args.eps, lambda1=args.Lambda1, scale_small=args.scale_factor,
                     scale_large=args.scale_factor2, threshold=args.threshold, pixel_gate=args.mcl_pixel_gate,
                     pcl_at=args.amn_pcl_at),
        save=lambda model, path, extra: save_net(model, path, extra=extra),
        cfg=FitConfig(epochs=args.amn_num_epoches, batch_size=args.amn_batch_size, seed=args.seed, amp=args.amp,
                      num_workers=args.num_workers, resume=args.resume, fingerprint=fingerprint, tag=TAG,
                      lr_flags="--amn_backbone_lr, --amn_new_lr",
                      sync_bn=args.sync_bn),
        describe=f"Lambda1={args.Lambda1:.2f}", on_epoch_end=on_epoch_end, after_fit=keep_best))
    if rt.is_main and (result.trained or not deploy_path.is_file()):
        deploy_net(amn.Net, train_path, deploy_path)
        log.info("[%s] deploy network -> %s", TAG, deploy_path)
    barrier()


@torch.no_grad()
def _keep_best_by_gt(model: amn.Net, epoch: int, args: argparse.Namespace, split, best: dict) -> None:
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
        gt = imutils.read_gt(f"{args.gt_dir}/{name}.png")
        meter.add(gt, up.argmax(1)[0].cpu().numpy().astype("uint8"))
    miou = meter.scores()["miou"]
    log.info("[%s] epoch %d ground-truth mIoU %.4f", TAG, epoch, miou)
    if miou > best["miou"]:
        best.update(miou=miou, epoch=epoch, state=copy.deepcopy(model.state_dict()))
