"""Atomic writers: all or nothing, usual permissions, readable back."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from misc import fileio
from misc.errors import UserError


def test_interrupted_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind


def test_written_files_have_umask_permissions(tmp_path):
    fileio.save_text(tmp_path / "b.txt", "x")
    mode = stat.S_IMODE(os.stat(tmp_path / "b.txt").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_npy_dict_round_trip_and_errors(tmp_path):
    fileio.save_npy_dict(tmp_path / "m.npy", {"keys": np.zeros(1, np.int64), "high_res": np.ones((1, 2, 2), np.float32)})
    back = fileio.load_npy_dict(tmp_path / "m.npy")
    assert back["keys"].dtype == np.int64 and back["high_res"].shape == (1, 2, 2)
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(UserError, match=r"plain\.npy does not hold a dict"):
        fileio.load_npy_dict(tmp_path / "plain.npy")
    with pytest.raises(UserError, match=r"gone\.npy does not exist"):
        fileio.load_npy_dict(tmp_path / "gone.npy")


def test_palette_png(tmp_path):
    from PIL import Image

    label = np.array([[0, 1], [255, 1]], np.uint8)
    fileio.save_png(tmp_path / "p.png", label, palette=True)
    img = Image.open(tmp_path / "p.png")
    assert img.mode == "P" and np.array_equal(np.asarray(img), label)
