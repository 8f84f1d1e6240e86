"""Never delete what we did not write, never let two runs write one folder (issue 21, items 1 and 2)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import run_sample
from misc import fileio, locks, ownership
from misc.errors import UserError
from step.kit import stamps
from step.kit.stages import STAGES
from tests.conftest import REPO, stage_args

pytestmark = pytest.mark.usefixtures("cpu_runtime")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def user_files(folder: Path) -> dict[str, bytes]:
    """A user's images: a PNG, a GeoTIFF-named file and a note, which no stage wrote."""
    folder.mkdir(parents=True, exist_ok=True)
    fileio.save_png(folder / "holiday.png", np.full((8, 8, 3), 7, np.uint8))
    (folder / "survey.tif").write_bytes(b"not ours")
    (folder / "notes.txt").write_text("keep me")
    return snapshot(folder)


# ----------------------------------------------------------------------------- S11, the cases

def seg_args(tmp_path, scenes, out_dir, *extra):
    return stage_args(tmp_path / "unused_root", tmp_path, "--seg_weights_name", str(tmp_path / "sess" / "seg"),
                      "--seg_infer_dir", str(scenes), "--seg_out_dir", str(out_dir), "--seg_window", "32",
                      "--num_vis", "0", *extra)


def test_s11_refuses_an_output_folder_holding_foreign_files_and_they_survive(tmp_path, scenes):
    from step import make_seg

    out = tmp_path / "mine"
    before = user_files(out)
    with pytest.raises(UserError, match=r"--seg_out_dir .*mine holds 3 entries this stage did not write"):
        make_seg.run(seg_args(tmp_path, scenes, out))
    assert snapshot(out) == before
    # the same refusal up front, before any stage of the run starts
    with pytest.raises(UserError, match="holds 3 entries"):
        run_sample.check_writable(seg_args(tmp_path, scenes, out), [run_sample.STAGES[15]])
    assert snapshot(out) == before


@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_s11_refuses_an_output_folder_overlapping_its_input_folder(tmp_path, scenes, where):
    from step import make_seg

    out = {"same": scenes, "inside": scenes / "masks", "around": tmp_path}[where]
    before = snapshot(scenes)
    with pytest.raises(UserError, match=r"--seg_out_dir|overlaps"):
        make_seg.run(seg_args(tmp_path, scenes, out))
    assert snapshot(scenes) == before and not (scenes / stamps.STAMP).exists()


def test_s11_rerun_with_new_settings_deletes_only_its_own_masks(tmp_path, scenes):
    from step import make_seg

    out = tmp_path / "seg"
    make_seg.run(seg_args(tmp_path, scenes, out))
    assert {"a.png", "b.png"} <= set(os.listdir(out))
    stamp = json.loads((out / stamps.STAMP).read_text())
    assert stamp["outputs"] == ["a.png", "a.tif", "b.png", "b.tif"]
    assert "outputs" not in stamps.made_from(out)  # later fingerprints do not carry the list
    (scenes / "b.png").unlink()
    make_seg.run(seg_args(tmp_path, scenes, out, "--seg_overlap", "0.5"))  # new settings: redone
    assert sorted(os.listdir(out)) == [stamps.STAMP, "a.png"]


def test_s11_views_remake_the_masks_and_the_reference_views_keep_older_ones(tmp_path, scenes):
    from step import make_seg

    out = tmp_path / "seg"
    make_seg.run(seg_args(tmp_path, scenes, out))
    before, mtime = stamps.made_from(out), (out / "a.png").stat().st_mtime_ns
    assert "views" not in before["settings"]  # masks made before --seg_views existed stay valid
    make_seg.run(seg_args(tmp_path, scenes, out, "--seg_views", "flip"))
    assert stamps.made_from(out) == before and (out / "a.png").stat().st_mtime_ns == mtime
    make_seg.run(seg_args(tmp_path, scenes, out, "--seg_views", "dihedral"))
    assert stamps.made_from(out)["settings"]["views"] == "dihedral"
    assert (out / "a.png").stat().st_mtime_ns != mtime


# ----------------------------------------------------------------------------- the stamp's bookkeeping

def test_reusable_outputs_deletes_only_listed_files(tmp_path):
    out = tmp_path / "maps"
    assert stamps.reusable_outputs(out, {"w": 1}, True, stage="make_cam", names=["a", "b"], flag="--cam_out_dir") == set()
    for name in ("a", "b"):
        (out / f"{name}.npy").write_bytes(b"map")
    assert stamps.reusable_outputs(out, {"w": 1}, True, stage="make_cam", names=["a", "b"]) == {"a", "b"}
    # an interrupted atomic write of ours is cleaned, a user's hidden file is not
    (out / ".a.npy.x1y2.tmp").write_bytes(b"half")
    (out / ".DS_Store").write_bytes(b"finder")
    assert stamps.reusable_outputs(out, {"w": 2}, True, stage="make_cam", names=["a"]) == set()
    assert sorted(os.listdir(out)) == [".DS_Store", stamps.STAMP]
    assert json.loads((out / stamps.STAMP).read_text())["outputs"] == ["a.npy"]

    (out / "c.npy").write_bytes(b"someone else's")  # same suffix, not listed
    with pytest.raises(UserError, match=r"--cam_out_dir .* holds 1 entry this stage did not write \(c.npy\)"):
        stamps.reusable_outputs(out, {"w": 3}, True, stage="make_cam", names=["a", "c"], flag="--cam_out_dir")
    assert (out / "c.npy").read_bytes() == b"someone else's"


@pytest.mark.parametrize("stamp", ["none", "unreadable", "other stage"])
def test_a_folder_we_cannot_prove_ours_is_refused_untouched(tmp_path, stamp):
    out = tmp_path / "maps"
    out.mkdir()
    (out / "a.npy").write_bytes(b"old")
    if stamp == "unreadable":
        (out / stamps.STAMP).write_text("{not json")
    elif stamp == "other stage":
        fileio.save_json(out / stamps.STAMP, {"stage": "make_lpcam", "outputs": ["a.npy"]})
    with pytest.raises(UserError, match="did not write"):
        stamps.reusable_outputs(out, {"w": 1}, resume=True, stage="make_cam", names=["a"])
    assert (out / "a.npy").read_bytes() == b"old"


def test_a_stamp_of_an_earlier_version_owns_its_own_suffix_only(tmp_path):
    out = tmp_path / "labels"
    out.mkdir()
    fileio.save_json(out / stamps.STAMP, {"stage": "cam_to_ir_label", "variant": "", "w": 1})  # no file list
    for name in ("a.png", "a_palette.png"):
        (out / name).write_bytes(b"label")
    assert stamps.reusable_outputs(out, {"w": 1}, True, suffix=".png", also=("_palette.png",),
                                   stage="cam_to_ir_label", names=["a"]) == {"a"}
    (out / "b.txt").write_text("user")
    with pytest.raises(UserError, match="b.txt"):
        stamps.reusable_outputs(out, {"w": 2}, True, suffix=".png", stage="cam_to_ir_label", names=["a"])


@pytest.mark.parametrize("flag, stage", sorted((s.writes_folder, s.flag) for s in STAGES if s.writes_folder))
def test_every_map_and_label_stage_refuses_foreign_files_before_any_work(tiny_root, tmp_path, flag, stage):
    """The whole class: S2, S3, S5, S7, S9, S9b, S10 and S11, refused up front by run_sample."""
    out = tmp_path / "out"
    before = user_files(out)
    argv = ["--voc12_root", str(tiny_root), "--work_space", str(tmp_path / "ws"), f"--{flag}", str(out),
            f"--{stage}_pass", "True", "--device", "cpu"]
    with pytest.raises(UserError, match=f"--{flag} .* did not write"):
        run_sample.main(argv)
    assert snapshot(out) == before
    # an output folder that is the dataset's image folder is refused too
    images = tiny_root / "JPEGImages"
    before = snapshot(images)
    argv[argv.index(str(out))] = str(images)
    with pytest.raises(UserError, match="overlaps|did not write"):
        run_sample.main(argv)
    assert snapshot(images) == before


def test_ownership_overlap_rule():
    assert ownership.overlaps("/a/b", "/a/b") and ownership.overlaps("/a/b/c", "/a/b") and ownership.overlaps("/a", "/a/b")
    assert not ownership.overlaps("/a/b", "/a/bc")


# ----------------------------------------------------------------------------- two runs, one folder

HOLDER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from misc.locks import RunLocks
locks = RunLocks()
locks.take({target!r}, "--cam_out_dir")
print("held", flush=True)
while not Path({release!r}).exists():
    time.sleep(0.05)
locks.release()
"""

WRITER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from misc.errors import UserError
from misc.locks import RunLocks
Path({ready!r}).touch()
while not Path({go!r}).exists():
    time.sleep(0.01)
try:
    with RunLocks() as locks:
        locks.take({target!r}, "--cam_out_dir")
        start = time.monotonic()
        for i in range(30):
            (Path({target!r}) / f"{tag}-{{i}}").write_text({tag!r})
            time.sleep(0.02)
        print("wrote", start, time.monotonic(), flush=True)
except UserError as err:
    print("refused:", err, flush=True)
"""


def start_holder(tmp_path, target):
    release = tmp_path / "release"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(repo=str(REPO), target=str(target), release=str(release))],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc, release


def test_two_concurrent_writers_never_interleave(tmp_path):
    target, go = tmp_path / "cam", tmp_path / "go"
    procs = []
    for tag in ("first", "second"):
        ready = tmp_path / f"ready-{tag}"
        code = WRITER.format(repo=str(REPO), target=str(target), go=str(go), ready=str(ready), tag=tag)
        procs.append(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True))
    while not all((tmp_path / f"ready-{tag}").exists() for tag in ("first", "second")):
        time.sleep(0.01)
    go.touch()
    outs = [p.communicate(timeout=60)[0] for p in procs]
    refused = [o for o in outs if o.startswith("refused:")]
    spans = sorted(tuple(map(float, o.split()[1:])) for o in outs if o.startswith("wrote"))
    assert len(refused) + len(spans) == 2
    # one was refused while the other wrote, or (on a very slow machine) one started after the other ended
    assert len(spans) == 1 or spans[0][1] <= spans[1][0]
    for out in refused:
        assert "is in use by another run (pid" in out and len(out.strip().splitlines()) == 1
    written = sorted(f.name for f in target.iterdir() if not f.name.startswith("."))
    assert len(written) == 30 * len(spans) and not (target / locks.FOLDER_LOCK).exists()


def test_a_second_run_sample_is_refused_in_one_line_naming_the_first(tiny_root, tmp_path):
    cam = tmp_path / "ws" / "cam"
    holder, release = start_holder(tmp_path, cam)
    try:
        proc = subprocess.run([sys.executable, "run_sample.py", "--voc12_root", str(tiny_root), "--work_space",
                               str(tmp_path / "ws"), "--make_cam_pass", "True", "--device", "cpu"], cwd=REPO,
                              capture_output=True, text=True, timeout=300)
    finally:
        release.touch()
        holder.wait(timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --cam_out_dir")
    assert f"pid {holder.pid} on " in lines[0]
    assert not any(p.suffix == ".npy" for p in cam.iterdir())


def test_a_lock_whose_holder_died_is_taken_over(tmp_path):
    target = tmp_path / "cam"
    holder, _ = start_holder(tmp_path, target)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=60)
    assert (target / locks.FOLDER_LOCK).exists()  # left behind by kill -9
    with locks.RunLocks() as held:
        held.take(target, "--cam_out_dir")
        assert json.loads((target / locks.FOLDER_LOCK).read_text())["pid"] == os.getpid()
    assert not (target / locks.FOLDER_LOCK).exists()


def test_without_flock_a_dead_pid_here_is_taken_over_and_a_live_one_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "fcntl", None)  # a file system without flock: the record decides
    target = tmp_path / "cam"
    target.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = {**locks.holder_record(), "pid": int(dead.stdout)}
    (target / locks.FOLDER_LOCK).write_text(json.dumps(record))
    with locks.RunLocks() as held:
        held.take(target, "--cam_out_dir")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (target / locks.FOLDER_LOCK).write_text(json.dumps({**record, "pid": live.pid}))
        with pytest.raises(UserError, match=f"pid {live.pid}"):
            locks.RunLocks().take(target, "--cam_out_dir")
    finally:
        live.kill()
        live.wait()


def test_weights_files_are_locked_beside_them(tmp_path):
    weights = tmp_path / "sess" / "cam"
    other = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from misc.errors import UserError
from misc.locks import RunLocks
try:
    RunLocks().take({str(weights)!r}, "--cam_weights_name", folder=False)
except UserError as err:
    print(err)
"""
    with locks.RunLocks() as first:
        first.take(weights, "--cam_weights_name", folder=False)
        first.take(weights, "--cam_weights_name", folder=False)  # the same run may name it twice
        assert (tmp_path / "sess" / ".cam.lock").is_file()
        out = subprocess.run([sys.executable, "-c", other], capture_output=True, text=True).stdout
        assert out.startswith(f"--cam_weights_name {weights} is in use by another run (pid {os.getpid()} on ")
    assert not (tmp_path / "sess" / ".cam.lock").exists()
