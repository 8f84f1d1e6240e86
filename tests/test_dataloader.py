"""The data layer: each user mistake ends in one line naming the file and the fix."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from misc import imutils
from misc.errors import UserError
from tests.conftest import REPO
from voc12 import dataloader


def check(root, names, **kw):
    return dataloader.check_dataset(names, root / "JPEGImages", list_flag="--train_list",
                                    list_path=root / "train_aug.txt", **kw)


def test_valid_dataset_passes(tiny_root):
    names = dataloader.read_list(tiny_root / "train_aug.txt")
    paths = check(tiny_root, names, cls_labels=dataloader.load_cls_labels(tiny_root / "cls_labels.npy"),
                  mask_dir=tiny_root / "SegmentationClassAug")
    assert set(paths) == set(names)


def test_list_entry_without_image(tiny_root):
    with pytest.raises(UserError, match=r"--train_list .* names 'ghost', but .*ghost\.png .* does not exist"):
        check(tiny_root, ["tile_00", "ghost"])


def test_entry_missing_from_cls_labels(tiny_root):
    labels = dataloader.load_cls_labels(tiny_root / "cls_labels.npy")
    del labels["tile_01"]
    with pytest.raises(UserError, match=r"'tile_01', which has no entry in the image labels"):
        check(tiny_root, ["tile_00", "tile_01"], cls_labels=labels)


def test_truncated_image(tiny_root):
    path = tiny_root / "JPEGImages" / "tile_02.png"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UserError, match=r"tile_02\.png is unreadable or truncated"):
        check(tiny_root, ["tile_01", "tile_02"])


def test_not_an_image(tiny_root):
    (tiny_root / "JPEGImages" / "tile_03.png").write_text("hello")
    with pytest.raises(UserError, match=r"tile_03\.png is unreadable"):
        check(tiny_root, ["tile_03"])


def test_mask_size_differs_from_image(tiny_root):
    Image.fromarray(np.zeros((32, 48), np.uint8)).save(tiny_root / "SegmentationClassAug" / "tile_04.png")
    with pytest.raises(UserError, match=r"mask .*tile_04\.png is 48x32 but image .*tile_04\.png is 64x64"):
        check(tiny_root, ["tile_04"], mask_dir=tiny_root / "SegmentationClassAug")


def test_missing_mask(tiny_root):
    (tiny_root / "SegmentationClassAug" / "tile_05.png").unlink()
    with pytest.raises(UserError, match=r"its mask .*tile_05\.png does not exist; check --gt_dir"):
        check(tiny_root, ["tile_05"], mask_dir=tiny_root / "SegmentationClassAug")


def test_missing_list_and_labels(tmp_path):
    with pytest.raises(UserError, match=r"--train_list .*nope\.txt does not exist"):
        dataloader.read_list(tmp_path / "nope.txt")
    with pytest.raises(UserError, match=r"image labels .*cls\.npy do not exist"):
        dataloader.load_cls_labels(tmp_path / "cls.npy")
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"not a dict name -> \[0\|1\]"):
        dataloader.load_cls_labels(tmp_path / "bad.npy")


def test_missing_image_folder(tmp_path):
    with pytest.raises(UserError, match=r"image folder .* does not exist; check --voc12_root"):
        dataloader.check_dataset(["a"], tmp_path / "JPEGImages", list_flag="--train_list", list_path="x")


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "I;16"])
def test_rgba_grayscale_palette_and_16bit_become_rgb(tmp_path, mode):
    rng = np.random.default_rng(0)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 4000, (8, 8)).astype(np.uint16))
    else:
        img = Image.fromarray(rng.integers(0, 255, (8, 8, 3)).astype(np.uint8)).convert(mode)
    img.save(tmp_path / "x.png")
    out = imutils.read_image(tmp_path / "x.png")
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8


def test_classification_dataset_sample(tiny_root):
    names = dataloader.read_list(tiny_root / "train_aug.txt")
    labels = dataloader.load_cls_labels(tiny_root / "cls_labels.npy")
    paths = check(tiny_root, names, cls_labels=labels)
    ds = dataloader.ClassificationDataset(names, paths, labels, crop_size=48, resize_long=(40, 80))
    a, b = ds[0], ds[0]
    assert a["img"].shape == (3, 48, 48) and a["label"].shape == (1,)
    assert (a["img"] == b["img"]).all()  # augmentation is a function of (seed, epoch, index)
    ds.set_epoch(1)
    assert not (ds[0]["img"] == a["img"]).all()


def test_msf_dataset_pyramid(tiny_root):
    names = ["tile_00"]
    labels = dataloader.load_cls_labels(tiny_root / "cls_labels.npy")
    paths = check(tiny_root, names)
    pack = dataloader.ClassificationDatasetMSF(names, paths, labels, scales=(1.0, 0.5, 1.5))[0]
    assert [tuple(x.shape) for x in pack["img"]] == [(2, 3, 64, 64), (2, 3, 32, 32), (2, 3, 96, 96)]
    assert (pack["img"][0][1] == pack["img"][0][0].flip(-1)).all()


def test_segmentation_dataset_labels(tiny_root):
    names = dataloader.read_list(tiny_root / "train_aug.txt")
    labels = dataloader.load_cls_labels(tiny_root / "cls_labels.npy")
    paths = check(tiny_root, names)
    ds = dataloader.SegmentationDataset(names, paths, tiny_root / "SegmentationClassAug", labels, crop_size=80,
                                        scale_range=(0.9, 1.1), gt_labels=True)
    sample = ds[0]
    assert sample["img"].shape == (3, 80, 80) and sample["label"].shape == (80, 80)
    assert set(sample["label"].unique().tolist()) <= {0, 1, 255}
    assert 255 in sample["label"].unique().tolist()  # the crop is larger than the tile: padding is ignore


def test_missing_weights_error_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "run_sample.py", "--voc12_root", str(tmp_path / "none"),
                           "--make_cam_pass", "True", "--device", "cpu", "--work_space", str(tmp_path / "w"),
                           "--cam_weights_name", str(tmp_path / "missing")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: RepVGG_cam weights")


def test_user_error_from_a_loader_worker_stays_one_line(tiny_root, tmp_path):
    # the image disappears after the check, so the DataLoader worker raises
    import torch.utils.data

    from misc.errors import one_line

    names = ["tile_00", "tile_01"]
    paths = check(tiny_root, names)
    paths["tile_01"].unlink()
    ds = dataloader.ClassificationDatasetMSF(names, paths, None, scales=(1.0,))
    with pytest.raises(UserError) as info:
        list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=1))
    assert one_line(info.value) == f"image {paths['tile_01']} does not exist"


@pytest.mark.parametrize("labels, match", [
    ({"tile_00": np.array([2])}, r"give 'tile_00' the label \[2\.0\]; only 0 \(no building\) and 1"),
    ({"tile_00": np.array([-1])}, r"the label \[-1\.0\]"),
    ({"tile_00": np.zeros(20)}, r"a 20-element vector; this project is binary .*store \[1\] if any building"),
    ({"tile_00": "yes"}, r"not a number"),
])
def test_image_labels_are_binary(tmp_path, labels, match):
    np.save(tmp_path / "cls.npy", labels, allow_pickle=True)
    with pytest.raises(UserError, match=match):
        dataloader.load_cls_labels(tmp_path / "cls.npy")


@pytest.mark.parametrize("values, expected", [
    ((0, 255), [0, 1]),             # the usual 0/255 ground truth
    ((0, 1), [0, 1]),               # 0/1 ground truth
    ((0, 1, 255), [0, 1, 255]),     # 0/1 with void pixels: 255 stays "ignore" (SegmentationClassAug)
])
def test_ground_truth_encodings(values, expected):
    mask = np.array([values], np.uint8)
    assert imutils.gt_to_binary(mask).reshape(-1).tolist() == expected


@pytest.mark.parametrize("values", [(0, 3, 7), (0, 128, 255), (0, 2)])
def test_other_ground_truth_values_are_refused(tmp_path, values):
    fileio_png = tmp_path / "gt.png"
    Image.fromarray(np.array([values], np.uint8)).save(fileio_png)
    with pytest.raises(UserError, match=r"gt\.png holds the values \{" + ", ".join(map(str, values)) + r"\}; ground truth"):
        imutils.read_gt(fileio_png)


def test_training_labels_outside_0_1_255_are_refused(tiny_root):
    label_dir = tiny_root / "labels"
    label_dir.mkdir()
    for name in ("tile_00", "tile_01"):
        size = Image.open(tiny_root / "JPEGImages" / f"{name}.png").size
        Image.fromarray(np.full(size[::-1], 2 if name == "tile_01" else 1, np.uint8)).save(label_dir / f"{name}.png")
    with pytest.raises(UserError, match=r"label mask .*tile_01\.png holds the values \{2\}; training labels must be 0"):
        check(tiny_root, ["tile_00", "tile_01"], mask_dir=label_dir, mask_kind="labels", mask_flag="--ir_label_out_dir")
