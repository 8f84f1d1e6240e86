"""S4 (and S2e): evaluate CAM-type maps against the ground truth.

Reads:  <map dir>/<name>.npy for every positive of --infer_list (map dir: --eval_cam_dir, else the
        BAC maps --lpcam_out_dir if they exist, else the seed CAMs --cam_out_dir); --gt_dir masks.
Writes: <work_space>/metrics_<map dir name>.json; overlays <work_space>/vis/<map dir name>/*.png.
Prediction: building iff map > t (--cam_eval_thres, the reference's effective 0.08, or 'auto': the mean map
value of the positives, picked without ground truth); with --cam_eval_sweep True also t = 0.05..0.60 (step
0.01), reported as best (it uses ground truth).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from misc.torchutils import barrier, runtime
from step.kit.evaluation import report
from step.kit.stages import stage_tag

TAG = stage_tag(__name__)


def default_map_dir(args: argparse.Namespace) -> str:
    if args.eval_cam_dir:
        return args.eval_cam_dir
    lpcam = Path(args.lpcam_out_dir)
    return str(lpcam) if lpcam.is_dir() and any(lpcam.glob("*.npy")) else args.cam_out_dir


def run(args: argparse.Namespace) -> None:
    if runtime().is_main:  # evaluation is cheap and writes one file: rank 0 alone
        report(args, default_map_dir(args), (args.cam_eval_thres,), channel=0, tag=TAG, sweep=args.cam_eval_sweep,
               flag="--cam_eval_thres", map_stage="the stage that writes the maps (S2 or S3)")
    barrier()
