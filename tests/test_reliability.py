"""What a hostile user found (issue 14): bad input ends in one line, stale outputs are redone, workers die
with their parent."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tests.conftest import REPO


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped by init, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


PARENT = """
import os, sys, time
sys.path.insert(0, {repo!r})

def main():
{body}
    print(worker_pid, flush=True)
    time.sleep(120)

if __name__ == "__main__":  # forkserver and spawn children import this file again
    main()
"""

LOADER = """
from torch.utils.data import Dataset
from {module} import {factory}

class Slow(Dataset):
    def __len__(self):
        return 1000
    def __getitem__(self, i):
        time.sleep(0.05)
        return os.getpid()

it = iter({call})
worker_pid = int(next(it){index})
"""

POOL = """
from concurrent.futures import ProcessPoolExecutor
import multiprocessing as mp
from misc.pyutils import exit_with
pool = ProcessPoolExecutor(1, mp_context=mp.get_context("forkserver"), initializer=exit_with, initargs=(os.getpid(),))
worker_pid = pool.submit(os.getpid).result()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
@pytest.mark.parametrize("kind", ["inference loader", "training loader", "CRF pool"])
def test_workers_die_with_a_killed_parent(kind, tmp_path):
    if kind == "inference loader":
        body = LOADER.format(module="step.kit.common", factory="loader", call="loader(Slow(), 1)", index="")
    elif kind == "training loader":  # the DataLoader fit() builds, with the same worker_init_fn
        body = LOADER.format(module="torch.utils.data", factory="DataLoader", index="",
                             call="DataLoader(Slow(), num_workers=1, worker_init_fn=__import__('functools').partial("
                                  "__import__('misc.pyutils').pyutils.die_with_parent, parent=os.getpid()))")
    else:
        body = POOL
    script = tmp_path / "parent.py"
    script.write_text(PARENT.format(repo=str(REPO), body=textwrap.indent(textwrap.dedent(body), '    ')))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        worker = int(parent.stdout.readline())
        assert worker != parent.pid and _alive(worker)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), f"the {kind} worker {worker} outlived its killed parent"
    finally:
        parent.kill()


def test_every_worker_pool_is_told_to_die_with_its_parent():
    assert "worker_init_fn=partial(die_with_parent" in (REPO / "misc" / "trainloop.py").read_text()
    assert "worker_init_fn=partial(die_with_parent" in (REPO / "step" / "kit" / "common.py").read_text()
    assert "initializer=exit_with, initargs=(os.getpid(),)" in (REPO / "misc" / "crf.py").read_text()


# ------------------------------------------------------------------------------------------ stale outputs

def _mtimes(folder, suffix=".npy") -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob(f"*{suffix}"))}


@pytest.fixture
def seeded(tiny_root, tmp_path, cpu_runtime):
    """S1 and S2 on the tiny dataset."""
    from step import make_cam, train_cam
    from tests.conftest import stage_args

    args = stage_args(tiny_root, tmp_path, "--cam_num_epoches", "1", "--num_cluster", "3", "--bac_num_samples", "0",
                      "--bac_select_thres", "0.5")
    train_cam.run(args)
    make_cam.run(args)
    return args


@pytest.mark.slow
def test_s3_refuses_seed_cams_of_an_earlier_classifier(seeded, tmp_path):
    from misc.errors import UserError
    from step import make_lpcam, train_cam

    seeded.seed = 1  # retrain S1, skip S2
    train_cam.run(seeded)
    with pytest.raises(UserError, match=r"--seed_cam_dir .*cam was made by another model .*--make_cam_pass True"):
        make_lpcam.run(seeded)


@pytest.mark.slow
def test_s2_redoes_its_maps_for_other_scales_or_a_changed_image(seeded, tiny_root, tmp_path):
    from misc import fileio
    from step import make_cam

    cam_dir = tmp_path / "result" / "cam"
    first = _mtimes(cam_dir)
    make_cam.run(seeded)  # nothing changed: all reused
    assert _mtimes(cam_dir) == first
    seeded.cam_scales = (1.0,)
    make_cam.run(seeded)
    second = _mtimes(cam_dir)
    assert all(second[n] != first[n] for n in first)
    positive = (tiny_root / "train_aug_building.txt").read_text().split()[0]
    image = tiny_root / "JPEGImages" / f"{positive}.png"
    fileio.save_png(image, np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(image))[::-1].copy())
    make_cam.run(seeded)
    assert all(v != second[n] for n, v in _mtimes(cam_dir).items())


@pytest.fixture
def ar_inputs(seeded, tmp_path):
    """A random AR network (deployed) and two folders of confident labels, for S7."""
    import torch
    from misc import fileio
    from net import amn
    from net.checkpoints import deploy_net, save_net

    torch.manual_seed(0)
    save_net(amn.Net("RepVGG-Tiny").eval(), tmp_path / "sess" / "amn.pth")
    deploy_net(amn.Net, tmp_path / "sess" / "amn.pth", tmp_path / "sess" / "amn_deploy.pt")
    seeded.amn_weights_name = str(tmp_path / "sess" / "amn")
    for folder, value in (("labels_a", 1), ("labels_b", 0)):
        for name in (tmp_path / "result" / "cam").glob("*.npy"):
            fileio.save_png(tmp_path / folder / f"{name.stem}.png", np.full((64, 64), value, np.uint8))
    seeded.ir_label_out_dir = str(tmp_path / "labels_a")
    return seeded


@pytest.mark.slow
@pytest.mark.parametrize("change", ["--cam_scales", "--ir_label_out_dir"])
def test_s7_redoes_its_maps_when_scales_or_labels_change(ar_inputs, tmp_path, change):
    from step import make_amn_cam

    out = tmp_path / "result" / "amn_cam"
    make_amn_cam.run(ar_inputs)
    first = _mtimes(out)
    make_amn_cam.run(ar_inputs)
    assert _mtimes(out) == first
    if change == "--cam_scales":
        ar_inputs.cam_scales = (1.0,)
    else:
        ar_inputs.ir_label_out_dir = str(tmp_path / "labels_b")
    make_amn_cam.run(ar_inputs)
    assert all(v != first[n] for n, v in _mtimes(out).items()) and len(first) > 0


@pytest.mark.slow
def test_s1_retrains_when_an_image_changes_at_the_same_size_and_not_when_only_touched(tiny_root, tmp_path, cpu_runtime):
    from PIL import Image

    from step import train_cam
    from tests.conftest import stage_args

    # an uncompressed TIFF: new content, same size (the case a size-only digest missed)
    png = tiny_root / "JPEGImages" / f"{(tiny_root / 'train_aug.txt').read_text().split()[0]}.png"
    tif = png.with_suffix(".tif")
    Image.open(png).save(tif)
    png.unlink()
    args = stage_args(tiny_root, tmp_path, "--cam_num_epoches", "1")
    train_cam.run(args)
    checkpoint = tmp_path / "sess" / "cam.pth"
    first = checkpoint.stat().st_mtime_ns
    for image in (tiny_root / "JPEGImages").iterdir():  # a copied dataset: new mtimes, same bytes
        os.utime(image)
    train_cam.run(args)
    assert checkpoint.stat().st_mtime_ns == first
    size, stat = tif.stat().st_size, tif.stat()
    Image.fromarray(np.asarray(Image.open(tif))[::-1].copy()).save(tif)
    os.utime(tif, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert tif.stat().st_size == size
    train_cam.run(args)
    assert checkpoint.stat().st_mtime_ns != first


# ------------------------------------------------------------------------------------------ bad input

def _write_maps(folder, names, truncate=False):
    from misc import fileio

    for name in names:
        path = folder / f"{name}.npy"
        fileio.save_npy_dict(path, {"keys": np.zeros(1, np.int64), "high_res": np.full((1, 64, 64), 0.5, np.float32)})
        if truncate:
            path.write_bytes(path.read_bytes()[:150])


def _positives(root):
    return (root / "train_aug_building.txt").read_text().split()


def _cls_labels(root, tmp, value):
    labels = {n: value for n in (root / "all_tiles.txt").read_text().split()}
    np.save(tmp / "cls.npy", labels, allow_pickle=True)
    return ["--cls_labels", str(tmp / "cls.npy"), "--train_cam_pass", "True"]


def _crafted_labels(root, tmp):
    from tests.test_fileio import _Marker, _crafted_npy

    _crafted_npy(tmp / "cls.npy", {"tile_01": _Marker(tmp / "marker")})
    return ["--cls_labels", str(tmp / "cls.npy"), "--train_cam_pass", "True"]


def _truncated_maps(root, tmp):
    _write_maps(tmp / "maps", _positives(root), truncate=True)
    return ["--eval_cam_dir", str(tmp / "maps"), "--eval_cam_pass", "True"]


def _bad_ground_truth(root, tmp):
    from misc import fileio

    _write_maps(tmp / "maps", _positives(root))
    for name in _positives(root):
        fileio.save_png(tmp / "gt" / f"{name}.png", np.tile(np.array([0, 3, 7, 7], np.uint8), (64, 16)))
    return ["--eval_cam_dir", str(tmp / "maps"), "--gt_dir", str(tmp / "gt"), "--eval_cam_pass", "True"]


def _bad_training_labels(root, tmp):
    from misc import fileio

    for name in (root / "train_aug.txt").read_text().split():
        fileio.save_png(tmp / "labels" / f"{name}.png", np.full((64, 64), 2, np.uint8))
    return ["--ir_label_out_dir", str(tmp / "labels"), "--train_amn_pass", "True"]


def _work_space_is_a_file(root, tmp):
    (tmp / "file").write_text("x")
    return ["--work_space", str(tmp / "file"), "--train_cam_pass", "True"]


def _file_in_the_way(root, tmp):
    (tmp / "file").write_text("x")
    return ["--cam_weights_name", str(tmp / "file" / "cam"), "--train_cam_pass", "True"]


def _read_only_work_space(root, tmp):
    (tmp / "ro").mkdir()
    (tmp / "ro").chmod(0o555)
    return ["--work_space", str(tmp / "ro" / "result"), "--train_cam_pass", "True"]


def _flag(*argv):
    return lambda root, tmp: [*argv, "--train_cam_pass", "True"]


BAD_INPUT = [  # (setup returning extra flags, what the one error line must name, whether stderr holds nothing else)
    pytest.param(_flag("--cam_num_epoches", "0"), "--cam_num_epoches", True, id="epochs 0"),
    pytest.param(_flag("--cam_num_epoches", "-1"), "--cam_num_epoches", True, id="epochs -1"),
    pytest.param(_flag("--amn_num_epoches", "0"), "--amn_num_epoches", True, id="AR epochs 0"),
    pytest.param(_flag("--cam_batch_size", "0"), "--cam_batch_size", True, id="batch 0"),
    pytest.param(_flag("--amn_batch_size", "-4"), "--amn_batch_size", True, id="batch -4"),
    pytest.param(_flag("--cam_crop_size", "0"), "--cam_crop_size", True, id="crop 0"),
    pytest.param(_flag("--num_cluster", "0"), "--num_cluster", True, id="k 0"),
    pytest.param(_flag("--cam_scales", "1.0,0"), "--cam_scales", True, id="scale 0"),
    pytest.param(_flag("--cam_infer_batch", "0"), "--cam_infer_batch", True, id="infer batch 0"),
    pytest.param(_flag("--num_workers", "-1"), "--num_workers", True, id="workers -1"),
    pytest.param(_flag("--cam_learning_rate", "0"), "--cam_learning_rate", True, id="lr 0"),
    pytest.param(_flag("--cam_eval_thres", "1.5"), "--cam_eval_thres", True, id="threshold 1.5"),
    pytest.param(_flag("--seg_overlap", "1"), "--seg_overlap", True, id="overlap 1"),
    pytest.param(_flag("--MODEL_WEIGHTS", "no/such.pth"), "--MODEL_WEIGHTS no/such.pth does not exist", True,
                 id="named weights missing"),
    pytest.param(_work_space_is_a_file, "--work_space", True, id="work space is a file"),
    pytest.param(_file_in_the_way, "--cam_weights_name", True, id="weights folder is a file"),
    pytest.param(_read_only_work_space, "--work_space", True, id="read-only work space",
                 marks=pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")),
    pytest.param(_crafted_labels, "holds a pickled posix.system", False, id="crafted cls_labels.npy"),
    pytest.param(lambda root, tmp: _cls_labels(root, tmp, np.zeros(20)), "20-element vector; this project is binary",
                 False, id="VOC label vector"),
    pytest.param(lambda root, tmp: _cls_labels(root, tmp, np.array([2])), "the label [2.0]", False, id="label 2"),
    pytest.param(lambda root, tmp: _cls_labels(root, tmp, np.array([-1])), "the label [-1.0]", False, id="label -1"),
    pytest.param(lambda root, tmp: ["--train_list", str(root / "train_aug_building.txt"), "--train_cam_pass", "True"],
                 "all positives; the classifier needs both classes", False, id="only positives"),
    pytest.param(_truncated_maps, "is not a readable .npy file", False, id="truncated map"),
    pytest.param(_bad_ground_truth, "holds the values {0, 3, 7}; ground truth", False, id="ground truth 3 and 7"),
    pytest.param(_bad_training_labels, "holds the values {2}; training labels", False, id="label mask 2"),
    pytest.param(_flag("--cam_learning_rate", "1e30"), "lower the learning rate (--cam_learning_rate)", False,
                 id="NaN loss"),
]


@pytest.mark.slow
@pytest.mark.parametrize("setup, names, alone", BAD_INPUT)
def test_bad_input_ends_in_one_line(tiny_root, tmp_path, setup, names, alone):
    argv = ["--voc12_root", str(tiny_root), "--work_space", str(tmp_path / "result"), "--cam_weights_name",
            str(tmp_path / "sess" / "cam"), "--amn_weights_name", str(tmp_path / "sess" / "amn"), "--backbone",
            "RepVGG-Tiny", "--MODEL_WEIGHTS", "none", "--device", "cpu", "--num_workers", "0", "--cam_batch_size",
            "4", "--cam_num_epoches", "1", "--amn_batch_size", "4", "--amn_crop_size", "64"]
    proc = subprocess.run([sys.executable, str(REPO / "run_sample.py"), *argv, *setup(tiny_root, tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert len(errors) == 1 and lines[-1] == errors[0] and names in errors[0], proc.stderr[-2000:]
    if alone:  # refused before any work started: nothing else was printed
        assert lines == errors
    assert not (tmp_path / "marker").exists()
    print(errors[0])  # the messages, for a reader of `pytest -s`


# ------------------------------------------------------------------------------------------ small ones

def test_duplicated_list_entries_are_warned_once_and_dropped(tmp_path, caplog):
    from voc12 import dataloader

    (tmp_path / "list.txt").write_text("a\nb\na\nc\nb\n")
    with caplog.at_level("WARNING"):
        assert dataloader.read_list(tmp_path / "list.txt") == ["a", "b", "c"]
        assert dataloader.read_list(tmp_path / "list.txt") == ["a", "b", "c"]
    warnings = [r.getMessage() for r in caplog.records if "more than once" in r.getMessage()]
    assert len(warnings) == 1 and "2 name(s) more than once (first: 'a')" in warnings[0]


@pytest.mark.slow
def test_training_finished_in_the_resume_file_logs_no_training(tiny_root, tmp_path, monkeypatch, caplog, cpu_runtime):
    from misc import trainloop
    from step import train_cam
    from tests.conftest import stage_args

    class Killed(Exception):
        pass

    def killed_after_last_epoch(*a, **k):  # the resume file holds the last epoch, the final checkpoint is not written
        trainloop_fit(*a, **k)
        raise Killed

    trainloop_fit = trainloop.fit
    monkeypatch.setattr(trainloop, "fit", killed_after_last_epoch)
    args = stage_args(tiny_root, tmp_path, "--cam_num_epoches", "1")
    with pytest.raises(Killed):
        train_cam.run(args)
    monkeypatch.setattr(trainloop, "fit", trainloop_fit)
    with caplog.at_level("INFO"):
        train_cam.run(args)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "all 1 epochs were done before" in text and "trained " not in text
    assert (tmp_path / "sess" / "cam.pth").is_file()


def test_a_rejected_checkpoint_is_the_projects_one_line(tmp_path):
    import torch

    from misc import fileio
    from misc.errors import UserError
    from net import cam
    from net.checkpoints import load_net

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'marker'}",))

    torch.save({"model": Evil()}, tmp_path / "evil.pth")
    for load in (lambda: fileio.read_state_dict(tmp_path / "evil.pth", "an official RepVGG -train.pth checkpoint"),
                 lambda: load_net(cam.Net, tmp_path / "evil.pth", deploy=True)):
        with pytest.raises(UserError) as info:
            load()
        message = str(info.value)
        assert "\n" not in message and "weights_only" not in message and "Weights only load failed" not in message
        assert "it names posix.system, which is not a tensor or a plain value" in message
    assert not (tmp_path / "marker").exists()


def test_weights_none_starts_from_scratch_without_a_warning(tiny_root, tmp_path, caplog):
    from net import backbones
    from tests.conftest import stage_args

    args = stage_args(tiny_root, tmp_path)
    assert args.MODEL_WEIGHTS == "" and args.amn_model_weights == ""
    model = backbones.build_backbone("RepVGG-Tiny")
    with caplog.at_level("WARNING"):
        assert not backbones.load_pretrained(model, "RepVGG-Tiny", args.MODEL_WEIGHTS)
    assert not [r for r in caplog.records if "starts from scratch" in r.getMessage()]


def test_an_unreadable_stamp_means_unknown_inputs_not_a_traceback(tmp_path, cpu_runtime):
    from step.kit import stamps

    out = tmp_path / "maps"
    out.mkdir()
    (out / "a.npy").write_bytes(b"old")
    (out / stamps.STAMP).write_text("{not json")
    assert stamps.made_from(out) == str(out) and stamps.made_by(out) == (None, "")
    assert stamps.reusable_outputs(out, {"weights": "x"}, resume=True, stage="make_cam") == set()
    assert not (out / "a.npy").exists()  # made from unknown inputs: redone
    assert stamps.made_by(out) == ("make_cam", "")


# ------------------------------------------------------------------------------------------ training fingerprints

def _s1_fingerprint(tiny_root, tmp_path, *extra):
    import run_sample
    from step import train_cam
    from step.kit.common import load_split

    argv = ["--voc12_root", str(tiny_root), "--work_space", str(tmp_path / "result"), "--backbone", "RepVGG-Tiny",
            "--device", "cpu", "--num_workers", "0", *extra]
    args = run_sample.resolve_paths(run_sample.build_parser().parse_args(argv))
    return train_cam.training_fingerprint_of(args, load_split(args, "train_list", decode=False))


def test_s1_fingerprint_follows_the_content_of_the_imagenet_weights(tiny_root, tmp_path, monkeypatch):
    """S1 retrains (its kept checkpoint's fingerprint no longer matches) when the ImageNet file it reads changes,
    appears at the default path, or is switched off with none; the same flags and files keep it."""
    from net import backbones

    default = tmp_path / "weights" / "RepVGG-Tiny-train.pth"
    monkeypatch.setattr(backbones, "default_weights", lambda name: str(default))
    absent = _s1_fingerprint(tiny_root, tmp_path)
    assert absent == _s1_fingerprint(tiny_root, tmp_path)            # same flags, same files
    assert absent["weights"] == {"MODEL_WEIGHTS": "absent"}
    default.parent.mkdir()
    default.write_bytes(b"imagenet weights, first download")
    appeared = _s1_fingerprint(tiny_root, tmp_path)
    assert appeared != absent                                         # the default file appeared
    stat = default.stat()
    default.write_bytes(b"imagenet weights, other download")          # same size, same mtime, new bytes
    os.utime(default, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    replaced = _s1_fingerprint(tiny_root, tmp_path)
    assert replaced not in (appeared, absent)
    copy = tmp_path / "copy.pth"
    copy.write_bytes(default.read_bytes())
    assert _s1_fingerprint(tiny_root, tmp_path, "--MODEL_WEIGHTS", str(copy)) == replaced  # content, not path
    scratch = _s1_fingerprint(tiny_root, tmp_path, "--MODEL_WEIGHTS", "none")
    assert scratch["weights"] == {"MODEL_WEIGHTS": "none"} and scratch not in (absent, replaced)
    assert _s1_fingerprint(tiny_root, tmp_path, "--cam_learning_rate", "0.5") != replaced  # a flag still counts


def test_training_fingerprint_records_weights_by_content_only(tmp_path):
    import argparse

    from step.kit.stamps import file_sha256, training_fingerprint

    weights = tmp_path / "w.pth"
    weights.write_bytes(b"w")
    args = argparse.Namespace(seed=3, MODEL_WEIGHTS=str(weights))
    found = training_fingerprint(args, ("seed",), weights={"MODEL_WEIGHTS": weights, "previous": tmp_path / "no.pth"},
                                 data={"images_content_sha256": "x"}, trained_on="labels")
    assert found == {"seed": 3, "trained_on": "labels", "images_content_sha256": "x",
                     "weights": {"MODEL_WEIGHTS": {"sha256": file_sha256(weights)}, "previous": "absent"}}
    with pytest.raises(ValueError, match="MODEL_WEIGHTS"):
        training_fingerprint(args, ("seed", "MODEL_WEIGHTS"), weights={}, data={})
