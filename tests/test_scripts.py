"""script/settings.sh: the profiles the shell scripts pass to run_sample.py (sourced in bash, nothing run)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import REPO


def _settings(cwd: Path, **env: str) -> tuple[int, dict[str, list[str]], str]:
    assignments = " ".join(f"{k}={v}" for k, v in env.items())
    script = (f'set -euo pipefail; PY=python; {assignments} source "{REPO}/script/settings.sh"; '
              'for a in COMMON S1_FLAGS S6_FLAGS S11_FLAGS SELF_TRAIN_FLAGS; do declare -n v=$a; echo "$a ${v[*]:-}"; done')
    out = subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True)
    arrays = {}
    for line in out.stdout.splitlines():
        name, _, rest = line.partition(" ")
        if name in ("COMMON", "S1_FLAGS", "S6_FLAGS", "S11_FLAGS", "SELF_TRAIN_FLAGS"):
            arrays[name] = rest.split()
    return out.returncode, arrays, out.stdout + out.stderr


def _flag(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


def test_without_the_paper_weights_user_data_gets_the_measured_lite0_profile(tmp_path):
    code, arrays, text = _settings(tmp_path, DATASET_ROOT="Dataset/mine")  # no weights/ in this folder
    assert code == 0, text
    assert "using the ImageNet-pretrained efficientnet-lite0" in text
    common = arrays["COMMON"]
    assert _flag(common, "--backbone") == "efficientnet-lite0"
    for flag in ("--cam_eval_thres", "--conf_fg_thres", "--conf_bg_thres", "--amn_eval_thres"):
        assert _flag(common, flag) == "auto"
    assert (_flag(arrays["S1_FLAGS"], "--cam_num_epoches"), _flag(arrays["S1_FLAGS"], "--cam_learning_rate")) == ("3", "0.003")
    assert _flag(arrays["S6_FLAGS"], "--amn_num_epoches") == "2"
    assert _flag(arrays["S11_FLAGS"], "--seg_num_epoches") == "3"
    assert _flag(common, "--augment") == "dihedral"  # overhead tiles have no "up" (README, "Results")
    # and the networks trained on the eight views predict on them
    assert _flag(common, "--amn_views") == _flag(common, "--seg_views") == "dihedral"
    code, arrays, text = _settings(tmp_path, DATASET_ROOT="Dataset/mine", AUGMENT="reference")
    assert code == 0 and "--seg_views" not in arrays["COMMON"] and "--amn_views" not in arrays["COMMON"], text


def test_with_the_paper_weights_the_defaults_stay_run_samples(tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "RepVGG-B1g2-train.pth").write_bytes(b"")
    code, arrays, text = _settings(tmp_path, DATASET_ROOT="Dataset/mine")
    assert code == 0, text
    assert "--backbone" not in arrays["COMMON"] and "--cam_eval_thres" not in arrays["COMMON"]
    assert not {"--augment", "--amn_views", "--seg_views"} & set(arrays["COMMON"])  # run_sample.py's: the paper's
    assert arrays["S1_FLAGS"] == [] and arrays["S6_FLAGS"] == []


def test_a_user_choice_wins_over_the_profile_and_a_bad_thresholds_value_is_one_line(tmp_path):
    code, arrays, text = _settings(tmp_path, DATASET_ROOT="Dataset/mine", CAM_EPOCHS="7")
    assert code == 0 and _flag(arrays["S1_FLAGS"], "--cam_num_epoches") == "7", text
    code, arrays, text = _settings(tmp_path, DATASET_ROOT="Dataset/mine", BACKBONE="RepVGG-A0", THRESHOLDS="auto")
    assert code == 0 and _flag(arrays["COMMON"], "--amn_eval_thres") == "auto", text
    code, _, text = _settings(tmp_path, DATASET_ROOT="Dataset/mine", THRESHOLDS="otsu")
    assert code == 2 and text.strip().splitlines()[-1].startswith("error: THRESHOLDS=otsu")


def test_the_demo_picks_its_thresholds_from_the_maps(tmp_path):
    code, arrays, text = _settings(tmp_path, PY="true")  # no DATASET_ROOT: the demo (PY=true: nothing is made)
    assert code == 0, text
    assert _flag(arrays["COMMON"], "--backbone") == "RepVGG-Tiny"
    assert _flag(arrays["COMMON"], "--cam_eval_thres") == "auto" and _flag(arrays["COMMON"], "--conf_fg_thres") == "auto"


def test_self_training_rounds_go_to_the_pseudo_mask_model_only(tmp_path):
    """SELF_TRAIN_ROUNDS reaches the S11 run on pseudo masks (SELF_TRAIN_FLAGS), never S11_FLAGS, which the
    ground-truth upper bound shares and which refuses self-training."""
    code, arrays, text = _settings(tmp_path, DATASET_ROOT="Dataset/mine", SELF_TRAIN_ROUNDS="2")
    assert code == 0, text
    assert _flag(arrays["SELF_TRAIN_FLAGS"], "--seg_self_train_rounds") == "2"
    assert "--seg_self_train_rounds" not in arrays["S11_FLAGS"]
    script = (REPO / "script" / "train_segmentation.sh").read_text()
    pseudo_run, gt_run = script.split('"$SESS/deeplabv3plus"')[0], script.split('"$SESS/deeplabv3plus_gt"')[0]
    assert "SELF_TRAIN_FLAGS" in pseudo_run.split("run ")[-1] and "SELF_TRAIN_FLAGS" not in gt_run.split("run ")[-1]
