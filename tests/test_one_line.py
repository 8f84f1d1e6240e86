"""What used to end in a traceback ends in one `error:` line (issue 21, item 7): a full disk, unwritable output
locations, a list file in a legacy encoding, a very large PNG, Ctrl-C during S5, an interrupted scene."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

import run_sample
from misc import fileio, geoio, imutils
from misc.errors import UserError, exit_on_user_error
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("cpu_runtime")


def one_error_line(capsys, argv, status=2) -> str:
    with pytest.raises(SystemExit) as exit_info:
        exit_on_user_error(lambda: run_sample.main(argv))
    assert exit_info.value.code == status
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err) and err[-1].startswith("error: ")
    return err[-1]


def seg_argv(tmp_path, scenes, *extra):
    return ["--voc12_root", str(tmp_path / "unused_root"), "--work_space", str(tmp_path / "ws"), "--device", "cpu",
            "--backbone", "RepVGG-Tiny", "--MODEL_WEIGHTS", "none",
            "--seg_weights_name", str(tmp_path / "sess" / "seg"),
            "--seg_infer_dir", str(scenes), "--seg_window", "32", "--num_vis", "0", *extra]


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_no_half_file(tmp_path, scenes, capsys, monkeypatch):
    def full(self, fp, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    line = one_error_line(capsys, seg_argv(tmp_path, scenes, "--make_seg_pass", "True"))
    assert "no space left on the device writing" in line and line.rstrip().endswith("kept")
    out = tmp_path / "ws" / "seg"
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp") or p.suffix == ".png"]


def test_a_full_disk_outside_our_writers_is_one_line_too(capsys):
    def main():
        raise OSError(errno.ENOSPC, "No space left on device", "/data/x.tif")

    with pytest.raises(SystemExit) as exit_info:
        exit_on_user_error(main)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: no space left on the device writing /data/x.tif")


def test_torch_save_failing_on_a_full_disk_is_one_line(tmp_path, monkeypatch):
    def failed(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:595] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(torch, "save", failed)
    with pytest.raises(UserError, match=r"writing .*w.pth failed .*is the disk full"):
        with fileio.atomic_path(tmp_path / "w.pth") as tmp:
            torch.save({}, tmp)
    assert os.listdir(tmp_path) == []


OUTPUTS = [  # (flag, value under a file where a folder should be, the stage writing it)
    ("--cam_out_dir", "cam", "--make_cam_pass"),
    ("--seg_out_dir", "seg", "--make_seg_pass"),
    ("--footprints_out", "footprints.geojson", "--make_footprints_pass"),
    ("--seg_weights_name", "seg", "--export_seg_pass"),
    ("--ir_label_out_dir", "ir", "--cam_to_ir_label_pass"),
]


@pytest.mark.parametrize("flag, leaf, stage", OUTPUTS)
def test_every_output_location_is_checked_before_any_work(tiny_root, tmp_path, capsys, flag, leaf, stage):
    (tmp_path / "blocker").write_text("a file where a folder must be")
    argv = ["--voc12_root", str(tiny_root), "--work_space", str(tmp_path / "ws"), "--device", "cpu",
            flag, str(tmp_path / "blocker" / leaf), stage, "True"]
    line = one_error_line(capsys, argv)
    assert line.startswith(f"error: {flag} ") and "is a file, not a folder" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("flag, leaf, stage", OUTPUTS)
def test_read_only_output_locations_are_one_line(tiny_root, tmp_path, capsys, flag, leaf, stage):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    argv = ["--voc12_root", str(tiny_root), "--work_space", str(tmp_path / "ws"), "--device", "cpu",
            flag, str(tmp_path / "ro" / leaf), stage, "True"]
    assert one_error_line(capsys, argv).startswith(f"error: {flag} ")


def test_a_list_file_in_a_legacy_encoding_is_one_line(tiny_root, tmp_path, capsys):
    listed = tiny_root / "latin1.txt"
    listed.write_bytes("# tuiles d'\u00e9t\u00e9\ntile_00\n".encode("latin-1"))
    line = one_error_line(capsys, ["--voc12_root", str(tiny_root), "--work_space", str(tmp_path / "ws"),
                                   "--device", "cpu", "--train_list", str(listed), "--make_pseudo_mask_pass", "True"])
    assert f"--train_list {listed} is not UTF-8 text (byte 0xe9" in line


def test_a_very_large_png_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    fileio.save_png(path, np.zeros((64, 64, 3), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 4,096 pixels: above twice the limit, PIL's error
    for read in (imutils.read_image, imutils.image_size, imutils.read_mask):
        with pytest.raises(UserError, match=r"huge.png is larger than PIL decodes whole .*GeoTIFF"):
            read(path)


def test_an_interrupted_scene_leaves_no_work_file(tmp_path):
    import rasterio

    scene = tmp_path / "scene.tif"
    from rasterio.transform import from_origin

    with rasterio.open(scene, "w", driver="GTiff", height=600, width=40, count=3, dtype="uint8", crs="EPSG:32633",
                       transform=from_origin(500_000, 4_600_000, 0.5, 0.5)) as dst:
        dst.write(np.zeros((3, 600, 40), np.uint8))

    def blocks(read, height, width):
        yield 0, 0, torch.zeros(2, 520, width)
        raise KeyboardInterrupt

    out = tmp_path / "seg"
    out.mkdir()
    with pytest.raises(KeyboardInterrupt):
        geoio.predict_geotiff(scene, out, "scene", blocks)
    assert os.listdir(out) == []


CTRL_C = """
import signal, sys, time
# as in a terminal: a shell that starts a job in the background (nohup, `&`) hands it SIGINT ignored
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {repo!r})
from misc import crf
slow_label = crf.confident_label
calls = []

def confident_label(*args, **kwargs):
    # the first positive's label is written, the next one waits for the Ctrl-C however loaded the machine is
    calls.append(1)
    time.sleep(0.4 if len(calls) == 1 else 600)
    return slow_label(*args, **kwargs)

crf.confident_label = confident_label
import run_sample
from misc.errors import exit_on_user_error
sys.argv = ["run_sample.py", *{argv!r}]
exit_on_user_error(run_sample.main)
"""


def test_ctrl_c_during_s5_is_one_line_exit_130_and_keeps_the_labels(tiny_root, tmp_path):
    from voc12 import dataloader

    maps = tmp_path / "ws" / "lpcam_mask"
    labels = dataloader.load_cls_labels(tiny_root / "cls_labels.npy")
    rng = np.random.default_rng(0)
    for name in dataloader.read_list(tiny_root / "train_aug.txt"):
        if labels[name] == 1:
            fileio.save_npy_dict(maps / f"{name}.npy", {"keys": np.zeros(1, np.int64),
                                                        "high_res": rng.random((1, 64, 64), dtype=np.float32)})
    argv = ["--voc12_root", str(tiny_root), "--work_space", str(tmp_path / "ws"), "--device", "cpu",
            "--num_workers", "1", "--cam_to_ir_label_pass", "True"]
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C.format(repo=str(REPO), argv=argv)], cwd=REPO,
                            stderr=subprocess.PIPE, text=True)
    out = tmp_path / "ws" / "ir_label"
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(p.name.endswith("_palette.png") for p in out.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: interrupted (Ctrl-C) during S5 cam_to_ir_label: every file written so far is "
                           "complete and kept")
    kept = [p for p in out.iterdir() if p.suffix == ".png"]
    assert kept and all(imutils.read_mask(p).shape == (64, 64) for p in kept)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
