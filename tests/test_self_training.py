"""Self-training of the map model (S11 rounds): labels with an ignore band from a model's probabilities
(misc.self_training), and train_seg's rounds on the tiny dataset, with resume."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from misc import fileio, imutils, self_training, trainloop
from misc.errors import UserError
from net import deeplabv3plus
from step import train_seg
from tests.conftest import stage_args
from voc12 import dataloader

pytestmark = pytest.mark.usefixtures("cpu_runtime", "one_thread")


def test_band_labels_leave_the_uncertain_band_unlabelled():
    prob = np.array([[0.0, 0.29, 0.3, 0.5], [0.7, 0.71, 1.0, 0.65]])
    np.testing.assert_array_equal(self_training.band_labels(prob, 0.3, 0.7),
                                  [[0, 0, 255, 255], [255, 1, 1, 255]])
    np.testing.assert_array_equal(self_training.band_labels(prob, 0.5, 0.5), [[0, 0, 0, 255], [1, 1, 1, 1]])


def test_round_label_negatives_are_background_and_the_crf_gives_labels():
    prob = np.zeros((32, 32), np.float32)
    prob[8:24, 8:24] = 0.9
    prob[4:8, 8:24] = 0.5
    assert not self_training.round_label(None, prob, (0.3, 0.7), negative=True).any()
    image = np.full((32, 32, 3), 60, np.uint8)
    image[8:24, 8:24] = (200, 80, 60)
    label = self_training.round_label(image, prob, (0.3, 0.7), crf=True)
    assert set(np.unique(label)) <= {0, 1, 255} and label[16, 16] == 1 and label[0, 0] == 0
    with pytest.raises(ValueError, match="needs the image"):
        self_training.round_label(None, prob, (0.3, 0.7), crf=True)
    assert self_training.label_fractions(self_training.band_labels(prob, 0.3, 0.7)) == (32 * 32 - 16 * 20, 16 * 16, 64)


@pytest.mark.parametrize("value, ok", [("0.3,0.7", (0.3, 0.7)), ("0.5,0.5", (0.5, 0.5)), ("0.7,0.3", None),
                                       ("0.3", None), ("a,b", None), ("-0.1,0.5", None)])
def test_the_band_flag(value, ok):
    if ok is None:
        with pytest.raises(argparse.ArgumentTypeError):
            self_training.probability_band(value)
    else:
        assert self_training.probability_band(value) == ok


def seg_args(root, work, *extra):
    return stage_args(root, work, "--seg_weights_name", str(work / "sess" / "seg"), "--seg_batch_size", "4",
                      "--seg_num_epoches", "1", "--seg_crop_size", "64", "--seg_window", "64", *extra)


def write_pseudo_masks(root, out_dir):
    for name in (root / "train_aug.txt").read_text().split():
        fileio.save_png(out_dir / f"{name}.png", imutils.read_gt(root / "SegmentationClassAug" / f"{name}.png"))


def test_two_rounds_make_labels_and_models_and_resume(tiny_root, tmp_path, monkeypatch):
    write_pseudo_masks(tiny_root, tmp_path / "result" / "pseudo_mask")
    args = seg_args(tiny_root, tmp_path, "--seg_self_train_rounds", "2", "--augment", "dihedral")
    train_seg.run(args)
    sess = tmp_path / "sess"
    assert sorted(p.name for p in sess.glob("*.pth")) == ["seg.pth", "seg_round0.pth", "seg_round1.pth"]
    final = torch.load(sess / "seg.pth", weights_only=True)
    assert final["self_train_round"] == 2 and final["trained_on"] == "pseudo masks"
    assert final["fingerprint"]["augment"] == "dihedral" and tuple(final["fingerprint"]["seg_self_train_band"]) == (0.3, 0.7)
    names = (tiny_root / "train_aug.txt").read_text().split()
    cls_labels = dataloader.load_cls_labels(tiny_root / "cls_labels.npy")
    for k in (1, 2):
        labels = {n: imutils.read_mask(tmp_path / "result" / f"seg_round{k}_labels" / f"{n}.png") for n in names}
        for name, label in labels.items():
            assert label.shape == (64, 64) and set(np.unique(label)) <= {0, 1, 255}
            if cls_labels[name] == 0:
                assert not label.any(), f"negative {name} got building or unlabelled pixels in round {k}"

    # a rerun keeps every round's model and labels
    stamps = {p: p.stat().st_mtime_ns for p in [*sess.glob("*.pth"), *(tmp_path / "result").glob("seg_round*/*.png")]}
    monkeypatch.setattr(trainloop, "fit", lambda *a, **k: pytest.fail("a finished round was retrained"))
    monkeypatch.setattr(deeplabv3plus, "predict", lambda *a, **k: pytest.fail("finished round labels were redone"))
    train_seg.run(args)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_a_model_trained_without_rounds_becomes_round_0(tiny_root, tmp_path, monkeypatch):
    write_pseudo_masks(tiny_root, tmp_path / "result" / "pseudo_mask")
    train_seg.run(seg_args(tiny_root, tmp_path))
    first = torch.load(tmp_path / "sess" / "seg.pth", weights_only=True)
    fits = []
    real_fit = trainloop.fit
    monkeypatch.setattr(trainloop, "fit", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    train_seg.run(seg_args(tiny_root, tmp_path, "--seg_self_train_rounds", "1"))
    assert len(fits) == 1  # round 1 only
    round0 = torch.load(tmp_path / "sess" / "seg_round0.pth", weights_only=True)
    assert round0["fingerprint"] == first["fingerprint"] and "self_train_round" not in round0
    assert torch.load(tmp_path / "sess" / "seg.pth", weights_only=True)["self_train_round"] == 1


def test_self_training_refuses_ground_truth_labels(tiny_root, tmp_path):
    args = seg_args(tiny_root, tmp_path, "--seg_label_dir", str(tiny_root / "SegmentationClassAug"),
                    "--seg_self_train_rounds", "1")
    with pytest.raises(UserError, match="--seg_self_train_rounds .* leave it at 0"):
        train_seg.run(args)
