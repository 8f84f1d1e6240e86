"""torchrun --nproc_per_node=2 on CPU (gloo): S1 and S2 against a single process, S3 prototypes
identical for 1 and 2 ranks."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from misc import fileio
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _cli(root, work, *extra):
    return ["--voc12_root", str(root), "--work_space", str(work / "result"), "--cam_weights_name",
            str(work / "sess" / "cam"), "--backbone", "RepVGG-Tiny", "--MODEL_WEIGHTS", "none",
            "--device", "cpu", "--num_workers", "0", "--cam_batch_size", "4", "--cam_num_epoches", "2",
            "--cam_infer_batch", "2", *extra]


def _run(cmd, ranks: int):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
                if ranks > 1 else [sys.executable])
    proc = subprocess.run(launcher + ["run_sample.py", *cmd], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_torchrun_two_ranks_s1_s2_s3(tiny_root, tmp_path):
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    bac = ["--num_cluster", "3", "--bac_num_samples", "0", "--bac_select_thres", "0.5"]
    _run(_cli(tiny_root, ddp, "--train_cam_pass", "True", "--make_cam_pass", "True", "--make_lpcam_pass", "True",
              *bac), ranks=2)
    assert (ddp / "sess" / "cam.pth").is_file() and (ddp / "sess" / "cam_deploy.pt").is_file()
    assert not (ddp / "sess" / "cam.resume.pth").exists()
    # the ranks split the cores (torchrun's own OMP_NUM_THREADS=1 is not taken as the user's)
    cores = len(os.sched_getaffinity(0))
    assert f"threads={max(1, cores // 2)} ({cores} cores / 2 local ranks)" in (ddp / "result" / "run.log").read_text()
    positives = (tiny_root / "train_aug_building.txt").read_text().split()
    cams = sorted(p.stem for p in (ddp / "result" / "cam").glob("*.npy"))
    assert cams == sorted(positives)  # exactly one CAM per positive, none for negatives

    # one process, the same weights: the same CAMs and the same BAC prototypes
    (single / "sess").mkdir(parents=True)
    shutil.copy2(ddp / "sess" / "cam_deploy.pt", single / "sess" / "cam_deploy.pt")
    _run(_cli(tiny_root, single, "--make_cam_pass", "True", "--make_lpcam_pass", "True", *bac), ranks=1)
    for name in positives:
        a = fileio.load_npy_dict(ddp / "result" / "cam" / f"{name}.npy")
        b = fileio.load_npy_dict(single / "result" / "cam" / f"{name}.npy")
        np.testing.assert_allclose(a["high_res"], b["high_res"], atol=1e-5)
        np.testing.assert_allclose(a["cam"], b["cam"], atol=1e-5)
    with np.load(ddp / "result" / "cluster_result" / "prototypes_k3.npz") as p2, \
            np.load(single / "result" / "cluster_result" / "prototypes_k3.npz") as p1:
        np.testing.assert_array_equal(p2["P"], p1["P"])
        np.testing.assert_array_equal(p2["Q"], p1["Q"])


def test_torchrun_two_ranks_every_stage_s1_to_s11(tiny_root, tmp_path):
    """The whole chain, the optional IRN stage included, in one torchrun launch of 2 CPU ranks: every
    training stage leaves its final checkpoint (no resume file) and every map stage one file per tile."""
    work = tmp_path / "ddp"
    stages = ["train_cam", "make_cam", "make_lpcam", "cam_to_ir_label", "train_amn", "make_amn_cam",
              "make_pseudo_mask", "amn_cam_to_ir_label", "train_irn", "make_sem_seg", "train_seg", "make_seg"]
    flags = [x for stage in stages for x in (f"--{stage}_pass", "True")]
    _run(_cli(tiny_root, work, *flags, "--num_cluster", "3", "--bac_num_samples", "0", "--bac_select_thres", "0.5",
              "--amn_weights_name", str(work / "sess" / "amn"), "--amn_batch_size", "4", "--amn_num_epoches", "1",
              "--amn_crop_size", "64", "--irn_weights_name", str(work / "sess" / "irn"), "--irn_batch_size", "4",
              "--irn_num_epoches", "1", "--irn_crop_size", "64", "--seg_weights_name", str(work / "sess" / "seg"),
              "--seg_batch_size", "4", "--seg_num_epoches", "1", "--seg_crop_size", "64", "--seg_window", "64"),
         ranks=2)
    sess, result = work / "sess", work / "result"
    for name in ("cam.pth", "cam_deploy.pt", "amn.pth", "amn_deploy.pt", "irn.pth", "seg.pth"):
        assert (sess / name).is_file(), name
    assert not list(sess.glob("*.resume.pth"))
    train = sorted((tiny_root / "train_aug.txt").read_text().split())
    positives = sorted((tiny_root / "train_aug_building.txt").read_text().split())
    test = sorted((tiny_root / "test.txt").read_text().split())
    listing = {folder: sorted(p.stem for p in (result / folder).glob(pattern) if not p.stem.endswith("_palette"))
               for folder, pattern in (("amn_cam", "*.npy"), ("pseudo_mask", "*.png"), ("sem_seg", "*.png"),
                                       ("seg", "*.png"), ("ir_label", "*.png"))}
    assert listing["amn_cam"] == positives
    assert listing["pseudo_mask"] == listing["sem_seg"] == listing["ir_label"] == train
    assert listing["seg"] == test
