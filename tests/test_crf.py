"""Tests of `misc.crf` (dense CRF, the S5 1/255/0 rule, label quality) and of `step.cam_to_ir_label` on a
tiny generated dataset."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import run_sample
from misc import crf, fileio
from misc.errors import UserError
from misc.torchutils import setup_runtime
from step import cam_to_ir_label
from voc12.layout import LayoutWriter

REPO = Path(__file__).resolve().parents[1]


def _two_colour(size: int = 32, lo: int = 8, hi: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """A bright square on a dark background, and its {0,1} mask."""
    img = np.full((size, size, 3), 40, dtype=np.uint8)
    img[lo:hi, lo:hi] = (200, 180, 160)
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[lo:hi, lo:hi] = 1
    return img, mask


# ----------------------------------------------------------------------------- misc.crf

def test_crf_snaps_a_shifted_noisy_label_to_the_colour_edge():
    img, truth = _two_colour()
    noisy = np.roll(truth, (2, 2), axis=(0, 1)) ^ (np.random.default_rng(0).random(truth.shape) < 0.1)
    out = crf.crf_inference_label(img, noisy)
    assert out.dtype == np.uint8 and out.shape == truth.shape
    assert np.count_nonzero(noisy != truth) > 100
    assert np.count_nonzero(out != truth) <= 4


def test_crf_defaults_are_the_references():
    assert crf.CRF_PARAMS == {"t": 10, "gt_prob": 0.7, "gauss_sxy": 3, "gauss_compat": 3,
                              "bi_sxy": 60, "bi_srgb": 5, "bi_compat": 5}
    img, truth = _two_colour()
    np.testing.assert_array_equal(crf.crf_inference_label(img, truth),
                                  crf.crf_inference_label(img, truth, n_labels=2, **crf.CRF_PARAMS))


def test_confident_label_on_three_colour_regions():
    # core 0.9 (colour A), ring 0.2 (colour B), outside 0.0 (colour C); t_fg 0.5, t_bg 0.1
    img = np.full((40, 40, 3), 20, dtype=np.uint8)
    building = np.zeros((40, 40), dtype=np.float32)
    img[6:34, 6:34], building[6:34, 6:34] = 110, 0.2
    img[12:28, 12:28], building[12:28, 12:28] = 230, 0.9
    label = crf.confident_label(img, building, fg_thres=0.5, bg_thres=0.1)
    expected = np.zeros((40, 40), dtype=np.uint8)
    expected[6:34, 6:34], expected[12:28, 12:28] = 255, 1
    assert set(np.unique(label)) == {0, 1, 255}
    np.testing.assert_array_equal(label, expected)


def test_confident_label_combination_rule(monkeypatch):
    """1 where fg; 255 where not fg; 0 where neither (fg = 1, bg = 0 stays 1). Ties go to background."""
    masks = []
    monkeypatch.setattr(crf, "crf_inference_label", lambda img, labels: masks.append(labels) or labels)
    building = np.array([[0.9, 0.5, 0.3, 0.2, 0.1, 0.0]], dtype=np.float32)
    label = crf.confident_label(np.zeros((1, 6, 3), np.uint8), building, fg_thres=0.5, bg_thres=0.2)
    np.testing.assert_array_equal(masks[0], [[1, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(masks[1], [[1, 1, 1, 0, 0, 0]])
    np.testing.assert_array_equal(label, [[1, 255, 255, 0, 0, 0]])

    fg, bg = np.array([[1, 1, 0, 0]], np.uint8), np.array([[1, 0, 1, 0]], np.uint8)
    outputs = iter([fg, bg])
    monkeypatch.setattr(crf, "crf_inference_label", lambda img, labels: next(outputs))
    label = crf.confident_label(np.zeros((1, 4, 3), np.uint8), np.zeros((1, 4)), 0.5, 0.2)
    np.testing.assert_array_equal(label, [[1, 1, 255, 0]])
    assert label.dtype == np.uint8


def test_label_quality_counts_add_up_over_tiles():
    label = np.array([[1, 1, 255, 0], [0, 0, 255, 1]], dtype=np.uint8)
    gt = np.array([[1, 0, 1, 0], [0, 1, 1, 1]], dtype=np.uint8)
    counts = crf.label_quality(label, gt)
    assert counts == {"pixels": 8, "building": 3, "background": 3, "building_correct": 2, "background_correct": 2,
                      "building_scored": 3, "background_scored": 3}
    assert crf.label_quality(label) == {"pixels": 8, "building": 3, "background": 3}
    total = Counter(counts)
    total.update(crf.label_quality(np.zeros((2, 4), np.uint8), np.zeros((2, 4), np.uint8)))
    scores = crf.quality_scores(total)
    assert scores["coverage"] == pytest.approx(14 / 16)
    assert scores["building_precision"] == pytest.approx(2 / 3)
    assert scores["background_precision"] == pytest.approx((2 + 8) / (3 + 8))
    assert "building_precision" not in crf.quality_scores(crf.label_quality(label))
    assert crf.quality_scores(crf.label_quality(np.full((2, 2), 255, np.uint8), np.ones((2, 2))))[
        "building_precision"] is None


# ----------------------------------------------------------------------------- step.cam_to_ir_label

POSITIVES = ("tile_a", "tile_b", "tile_c")
NEGATIVES = ("tile_n1", "tile_n2")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """Five 64x64 tiles (three with a >= 25% building square, two empty) and fake BAC maps."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    writer = LayoutWriter(root / "data")
    maps = root / "ws" / "lpcam_mask"
    for i, name in enumerate(POSITIVES + NEGATIVES):
        img = rng.integers(30, 60, (64, 64, 3), dtype=np.uint8)
        mask = np.zeros((64, 64), dtype=np.uint8)
        if name in POSITIVES:
            top, left = 6 + 4 * i, 10 + 3 * i
            mask[top:top + 36, left:left + 36] = 1
            img[mask == 1] = rng.integers(170, 210, (int(mask.sum()), 3), dtype=np.uint8)
            yy, xx = np.mgrid[:64, :64]
            dist = np.hypot(yy - (top + 18), xx - (left + 18)) / 30
            fileio.save_npy_dict(maps / f"{name}.npy", {"keys": np.zeros(1, np.int64),
                                                        "high_res": np.clip(1 - dist, 0, 1)[None].astype(np.float32)})
        assert writer.add(name, "g0", img, mask) == (1 if name in POSITIVES else 0)
    writer.finish()
    return root


def _args(root: Path, *extra: str):
    argv = ["--voc12_root", str(root / "data"), "--work_space", str(root / "ws"), "--device", "cpu", *extra]
    return run_sample.resolve_paths(run_sample.build_parser().parse_args(argv))


def _labels(out_dir: Path) -> dict[str, np.ndarray]:
    return {name: np.asarray(Image.open(out_dir / f"{name}.png")) for name in POSITIVES + NEGATIVES}


def test_step_writes_labels_identical_for_one_and_two_workers(tiny):
    setup_runtime("cpu")
    results = {}
    for workers in (1, 2):
        out = tiny / "ws" / f"ir_label_w{workers}"
        cam_to_ir_label.run(_args(tiny, "--num_workers", str(workers), "--ir_label_out_dir", str(out)))
        results[workers] = _labels(out)
        for name in POSITIVES + NEGATIVES:
            palette = Image.open(out / f"{name}_palette.png")
            assert palette.mode == "P"
            np.testing.assert_array_equal(np.asarray(palette), results[workers][name])
    for name in POSITIVES + NEGATIVES:
        label = results[1][name]
        assert label.shape == (64, 64) and label.dtype == np.uint8
        assert set(np.unique(label)) <= {0, 1, 255}
        np.testing.assert_array_equal(label, results[2][name])
    for name in NEGATIVES:
        assert not results[1][name].any()
    for name in POSITIVES:
        assert {0, 1} <= set(np.unique(results[1][name]))
    summary = json.loads((tiny / "ws" / "metrics_ir_label.json").read_text())
    assert (summary["tiles"], summary["positives"], summary["reused"]) == (5, 3, 0)
    assert 0.5 < summary["coverage"] <= 1 and summary["building_precision"] > 0.9
    assert summary["background_precision"] > 0.9


def test_step_resume_reuses_labels_and_recomputes_on_new_thresholds(tiny):
    setup_runtime("cpu")
    out = tiny / "ws" / "ir_label_resume"
    args = _args(tiny, "--num_workers", "1", "--ir_label_out_dir", str(out))
    cam_to_ir_label.run(args)
    first = json.loads((tiny / "ws" / "metrics_ir_label.json").read_text())
    cam_to_ir_label.run(args)
    second = json.loads((tiny / "ws" / "metrics_ir_label.json").read_text())
    assert second["reused"] == 5 and second["counts"] == first["counts"]
    args.conf_fg_thres = 0.6
    cam_to_ir_label.run(args)
    assert json.loads((tiny / "ws" / "metrics_ir_label.json").read_text())["reused"] == 0


def test_step_missing_map_names_it_and_the_stage(tiny, tmp_path):
    setup_runtime("cpu")
    maps = tmp_path / "maps"
    shutil.copytree(tiny / "ws" / "lpcam_mask", maps)
    (maps / "tile_b.npy").unlink()
    args = _args(tiny, "--lpcam_out_dir", str(maps), "--ir_label_out_dir", str(tmp_path / "out"))
    with pytest.raises(UserError, match=r"tile_b\.npy is missing .*'tile_b'.*make_lpcam_pass"):
        cam_to_ir_label.run(args)


def test_step_worker_user_error_surfaces(tiny, tmp_path):
    setup_runtime("cpu")
    maps = tmp_path / "maps"
    shutil.copytree(tiny / "ws" / "lpcam_mask", maps)
    fileio.save_npy_dict(maps / "tile_c.npy", {"keys": np.zeros(1, np.int64), "high_res": np.zeros((1, 32, 32), np.float32)})
    args = _args(tiny, "--num_workers", "2", "--lpcam_out_dir", str(maps), "--ir_label_out_dir", str(tmp_path / "out"))
    with pytest.raises(UserError, match=r"tile_c\.npy is 32x32 but image .*tile_c\.png is 64x64"):
        cam_to_ir_label.run(args)


def test_run_sample_prints_a_worker_user_error_as_one_line(tiny, tmp_path):
    maps = tmp_path / "maps"
    shutil.copytree(tiny / "ws" / "lpcam_mask", maps)
    fileio.save_npy_dict(maps / "tile_a.npy", {"keys": np.zeros(1, np.int64), "high_res": np.zeros((64, 64), np.float32)})
    argv = ["--voc12_root", str(tiny / "data"), "--work_space", str(tmp_path / "ws"), "--device", "cpu",
            "--lpcam_out_dir", str(maps), "--num_workers", "2", "--cam_to_ir_label_pass", "True"]
    proc = subprocess.run([sys.executable, str(REPO / "run_sample.py"), *argv], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "tile_a.npy has high_res of shape (64, 64)" in proc.stderr


def test_step_auto_thresholds_come_from_the_maps_and_are_recorded(tiny, tmp_path, caplog):
    """--conf_fg_thres/--conf_bg_thres auto: the picked pair is misc.thresholds.confident_levels of the
    positives' maps (negatives play no part), logged, written to the summary and part of the stamp."""
    from misc import thresholds

    setup_runtime("cpu")
    out = tmp_path / "auto"
    args = _args(tiny, "--num_workers", "1", "--ir_label_out_dir", str(out),
                 "--conf_fg_thres", "auto", "--conf_bg_thres", "auto")
    with caplog.at_level("INFO"):
        cam_to_ir_label.run(args)
    maps = [fileio.load_npy_dict(tiny / "ws" / "lpcam_mask" / f"{n}.npy")["high_res"][0] for n in POSITIVES]
    fg, bg = thresholds.confident_levels(thresholds.levels_of(maps))
    summary = json.loads((tiny / "ws" / "metrics_ir_label.json").read_text())
    assert (summary["conf_fg_thres"], summary["conf_bg_thres"]) == (fg, bg)
    assert bg < fg and (fg, bg) != (0.25, 0.15)
    assert "--conf_fg_thres auto -> " in caplog.text and "no ground truth read" in caplog.text
    explicit = tmp_path / "explicit"  # the numbers themselves give the same labels
    cam_to_ir_label.run(_args(tiny, "--num_workers", "1", "--ir_label_out_dir", str(explicit),
                              "--conf_fg_thres", str(fg), "--conf_bg_thres", str(bg)))
    assert all(np.array_equal(a, b) for a, b in zip(_labels(out).values(), _labels(explicit).values()))
    # the same 'auto' on the same maps is the same setting: everything is reused
    cam_to_ir_label.run(args)  # (the explicit run wrote the summary in between)
    assert json.loads((tiny / "ws" / "metrics_ir_label.json").read_text())["reused"] == 5
