"""Issue 21, item 6 (implemented with issue 19's single training-fingerprint helper): a training's fingerprint
covers the content of every weights file it reads, so other ImageNet weights (or none, or a file appearing at
the default path) retrain instead of keeping the old classifier. Strict xfail until that helper lands: remove
the marker after the merge."""
from __future__ import annotations

import pytest

from step import train_cam
from tests.conftest import stage_args

pytestmark = pytest.mark.usefixtures("cpu_runtime")


def s1_fingerprint(monkeypatch, args) -> dict:
    seen = {}
    monkeypatch.setattr(train_cam, "train", lambda job: seen.setdefault("fingerprint", job.cfg.fingerprint))
    monkeypatch.setattr(train_cam, "barrier", lambda: None)
    args.cam_network = "msg"  # no deploy step after the (skipped) training
    train_cam.run(args)
    return seen["fingerprint"]


def test_s1_fingerprint_follows_the_imagenet_weights_content(tiny_root, tmp_path, monkeypatch):
    weights = tmp_path / "imagenet.pth"
    weights.write_bytes(b"first weights")
    first = s1_fingerprint(monkeypatch, stage_args(tiny_root, tmp_path, "--MODEL_WEIGHTS", str(weights)))
    weights.write_bytes(b"other weights")  # same path, other content
    second = s1_fingerprint(monkeypatch, stage_args(tiny_root, tmp_path, "--MODEL_WEIGHTS", str(weights)))
    scratch = s1_fingerprint(monkeypatch, stage_args(tiny_root, tmp_path, "--MODEL_WEIGHTS", "none"))
    assert first != second and scratch not in (first, second)
