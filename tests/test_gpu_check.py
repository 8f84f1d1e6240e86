"""bench/gpu_check.sh without a GPU (one line, exit 0) and its comparison of two work spaces
(bench/gpu_compare.py) on small made-up outputs. The dry run of the whole check takes minutes: BENCHMARKS.md,
"GPU check"."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from misc import fileio
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import gpu_compare  # noqa: E402


def _work_space(root: Path, shift: float = 0.0, flipped: int = 0, iou: float = 0.5) -> Path:
    rng = np.random.default_rng(0)
    (root / "cam").mkdir(parents=True)
    (root / "pseudo_mask").mkdir()
    for i in range(2):
        high_res = (rng.random((1, 16, 16)) * 0.9 + shift).astype(np.float32)
        fileio.save_npy_dict(root / "cam" / f"t{i}.npy", {"keys": np.zeros(1, np.int64), "high_res": high_res})
        mask = np.zeros((16, 16), np.uint8)
        mask.flat[:flipped] = 1
        fileio.save_png(root / "pseudo_mask" / f"t{i}.png", mask)
    fileio.save_json(root / "metrics_cam.json", {"stage_flag": "make_cam", "scores": {"building_iou": iou}})
    fileio.save_json(root / "metrics_ir_label.json", {"stage_flag": "cam_to_ir_label", "coverage": 0.9})
    return root


def test_identical_work_spaces_pass_and_each_kind_of_difference_fails(tmp_path, capsys):
    ref = _work_space(tmp_path / "ref")
    assert gpu_compare.main(["--ref", str(ref), "--other", str(_work_space(tmp_path / "same"))]) == 0
    assert "4 passed, 0 failed" in capsys.readouterr().out

    other = _work_space(tmp_path / "other", shift=0.05, flipped=64, iou=0.45)
    assert gpu_compare.main(["--ref", str(ref), "--other", str(other)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("FAIL cam/: 2 maps, mean |diff| 0.05000") for line in lines), lines
    assert any(line.startswith("FAIL pseudo_mask/: 2 masks, 0.25000 of the pixels differ") for line in lines), lines
    assert any(line.startswith("FAIL metrics_cam.json: building_iou 0.5000 against 0.4500") for line in lines), lines
    assert any(line.startswith("PASS metrics_ir_label.json: coverage") for line in lines), lines
    # the stage table alone, at torchrun's looser tolerance
    assert gpu_compare.main(["--ref", str(ref), "--other", str(other), "--tables_only", "--iou_tol", "0.1"]) == 0


def test_a_missing_tile_is_a_failure_not_a_crash(tmp_path, capsys):
    ref, other = _work_space(tmp_path / "ref"), _work_space(tmp_path / "other")
    (other / "cam" / "t1.npy").unlink()
    assert gpu_compare.main(["--ref", str(ref), "--other", str(other)]) == 1
    assert "FAIL cam/: 2 files in" in capsys.readouterr().out


def test_without_cuda_the_check_says_so_in_one_line_and_succeeds(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PY": sys.executable, "OUT": str(tmp_path)}
    out = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\n") == 1 and out.stdout.startswith("gpu_check: no CUDA device visible"), out.stdout
    assert not list(tmp_path.iterdir())  # nothing written
