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


class _Marker:
    """Unpickling this runs `touch <path>`: what a crafted .npy would do with np.load(allow_pickle=True)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _crafted_npy(path, payload):
    import pickle

    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump(payload, f, protocol=3)


@pytest.mark.parametrize("reader", ["map", "cls_labels"])
def test_a_crafted_pickle_runs_no_code(tmp_path, reader):
    from voc12 import dataloader

    marker = tmp_path / "marker"
    _crafted_npy(tmp_path / "evil.npy", {"tile_00": _Marker(marker)})
    load = fileio.load_npy_dict if reader == "map" else dataloader.load_cls_labels
    with pytest.raises(UserError, match=r"evil\.npy holds a pickled posix\.system") as info:
        load(tmp_path / "evil.npy")
    assert not marker.exists()
    assert "\n" not in str(info.value)


def test_legacy_and_reference_pickles_still_load(tmp_path):
    import pickle

    _crafted_npy(tmp_path / "p2.npy", {"a": np.array([1]), "b": [0], "c": np.int64(1), "d": (1.5, "x", True)})
    np.save(tmp_path / "p3.npy", {"a": np.ones((2, 2), np.float32)}, allow_pickle=True)
    with open(tmp_path / "proto2.npy", "wb") as f:  # what numpy 1 under protocol 2 wrote
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump({"k": np.arange(3)}, f, protocol=2)
    assert fileio.load_npy_object(tmp_path / "p2.npy", "x")["d"] == (1.5, "x", True)
    assert fileio.load_npy_dict(tmp_path / "p3.npy")["a"].shape == (2, 2)
    assert fileio.load_npy_dict(tmp_path / "proto2.npy")["k"].tolist() == [0, 1, 2]


def test_truncated_map_is_one_line(tmp_path):
    fileio.save_npy_dict(tmp_path / "m.npy", {"keys": np.zeros(1, np.int64), "high_res": np.ones((1, 8, 8), np.float32)})
    data = (tmp_path / "m.npy").read_bytes()
    (tmp_path / "m.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"m\.npy is not a readable \.npy file .*delete it and rerun its stage"):
        fileio.load_npy_dict(tmp_path / "m.npy")


def test_atomic_path_fsyncs_the_file_and_the_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd)))
    fileio.save_text(tmp_path / "c.txt", "x")
    assert any(p.endswith(".tmp") for p in synced) and str(tmp_path) in synced
