"""misc.augment: the dihedral group D4 on images and masks, and the --augment recipes of the training sets."""
from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

import run_sample
from misc import augment, imutils
from voc12 import dataloader
from voc12.layout import LayoutWriter


def test_each_element_is_a_bijection_that_keeps_image_and_mask_aligned():
    image = np.arange(3 * 5 * 3).reshape(3, 5, 3)       # every pixel distinct; not square
    mask = image[..., 0] // 3                           # a label that is a function of the pixel
    for element in range(8):
        img, lab = augment.random_dihedral([image, mask], _FixedDraw(element))
        assert img.shape[:2] in ((3, 5), (5, 3)) and img.shape[:2] == lab.shape
        np.testing.assert_array_equal(lab, img[..., 0] // 3)            # aligned pixel for pixel
        assert sorted(img.reshape(-1, 3).tolist()) == sorted(image.reshape(-1, 3).tolist())  # a permutation
        assert (img.shape[:2] == (5, 3)) == (element in (1, 3, 6, 7))


def test_the_eight_elements_are_distinct_and_named_right():
    a = np.arange(16).reshape(4, 4)
    out = [augment.dihedral(a, e) for e in range(8)]
    assert len({o.tobytes() for o in out}) == 8
    expected = [a, np.rot90(a), np.rot90(a, 2), np.rot90(a, 3), np.fliplr(a), np.flipud(a), a.T, np.rot90(a, 2).T]
    for e, want in enumerate(expected):
        np.testing.assert_array_equal(out[e], want, err_msg=augment.D4[e])
    # a group: every composition is one of the eight
    for e1, e2 in itertools.product(range(8), repeat=2):
        composed = augment.dihedral(augment.dihedral(a, e1), e2)
        assert any(np.array_equal(composed, o) for o in out)
    with pytest.raises(ValueError, match="8 elements"):
        augment.dihedral(a, 8)


class _FixedDraw(random.Random):
    def __init__(self, element: int) -> None:
        super().__init__(0)
        self.element = element

    def randrange(self, *args, **kwargs) -> int:
        return self.element


def test_the_draw_is_uniform_over_the_eight():
    rng = random.Random(0)
    seen = [augment.random_dihedral([np.arange(4).reshape(2, 2)], rng)[0].tobytes() for _ in range(400)]
    counts = sorted(seen.count(v) for v in set(seen))
    assert len(counts) == 8 and counts[0] > 25


def test_fingerprint_records_only_a_new_recipe():
    assert augment.fingerprint_entry("reference") == {}
    assert augment.fingerprint_entry("dihedral") == {"augment": "dihedral"}
    assert augment.rescales("reference") and augment.rescales("dihedral_rescale") and not augment.rescales("dihedral")


# ----------------------------------------------------------------------------- the datasets

def write_striped(root, count=4, size=32):
    """Tiles whose red channel is 250 exactly where the mask is 1 (an asymmetric L), so alignment is checkable."""
    writer = LayoutWriter(root, test_groups=frozenset({"t"}))
    for i in range(count):
        mask = np.zeros((size, size), np.uint8)
        mask[2:20, 3:9] = 1
        mask[14:20, 3 + i:28] = 1
        image = np.full((size, size, 3), 20, np.uint8)
        image[mask == 1, 0] = 250
        writer.add(f"tile_{i}", "t" if i == 0 else "a", image, mask)
    writer.finish()
    return root


def seg_dataset(root, recipe, seed=0):
    names = [f"tile_{i}" for i in range(4)]
    paths = {n: root / "JPEGImages" / f"{n}.png" for n in names}
    return dataloader.SegmentationDataset(names, paths, root / "SegmentationClassAug", crop_size=32, seed=seed,
                                          gt_labels=True, augment=recipe)


def test_dihedral_segmentation_items_stay_aligned_and_vary(tmp_path):
    root = write_striped(tmp_path / "d")
    dataset = seg_dataset(root, "dihedral")
    red_high = (250 / 255 - imutils.IMAGENET_MEAN[0]) / imutils.IMAGENET_STD[0]
    views = set()
    for epoch in range(6):
        dataset.set_epoch(epoch)
        for i in range(len(dataset)):
            item = dataset[i]
            label, red = item["label"].numpy(), item["img"][0].numpy()
            np.testing.assert_array_equal(label == 1, np.isclose(red, red_high, atol=1e-4))
            if i == 0:
                views.add(label.tobytes())
    assert len(views) >= 4  # tile 0 is seen in several orientations


@pytest.mark.parametrize("recipe", augment.RECIPES)
def test_same_seed_epoch_and_index_give_the_same_item(tmp_path, recipe):
    root = write_striped(tmp_path / "d")
    a, b = seg_dataset(root, recipe), seg_dataset(root, recipe)
    a.set_epoch(3)
    b.set_epoch(3)
    for i in (2, 0, 3):  # any order: the draw depends on (seed, epoch, index) only
        np.testing.assert_array_equal(a[i]["img"].numpy(), b[i]["img"].numpy())
        np.testing.assert_array_equal(a[i]["label"].numpy(), b[i]["label"].numpy())
    names = [f"tile_{i}" for i in range(4)]
    paths = {n: root / "JPEGImages" / f"{n}.png" for n in names}
    c1, c2 = (dataloader.ClassificationDataset(names, paths, dict.fromkeys(names, 1), crop_size=32, augment=recipe)
              for _ in range(2))
    np.testing.assert_array_equal(c1[1]["img"].numpy(), c2[1]["img"].numpy())


def test_the_reference_recipe_is_unchanged(tmp_path):
    """The reference recipe draws exactly as before --augment existed: rescale, flip, crop from one generator."""
    root = write_striped(tmp_path / "d")
    names = [f"tile_{i}" for i in range(4)]
    paths = {n: root / "JPEGImages" / f"{n}.png" for n in names}
    dataset = dataloader.ClassificationDataset(names, paths, dict.fromkeys(names, 1), crop_size=24, seed=5)
    dataset.set_epoch(2)
    rng = dataloader._aug_rng(5, 2, 1)
    img = imutils.random_resize_long(imutils.read_image(paths["tile_1"]), 192, 320, rng=rng)
    img = imutils.normalize(img)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    (img,) = imutils.random_crop([img], 24, fills=[0.0], rng=rng)
    np.testing.assert_array_equal(dataset[1]["img"].numpy(), imutils.hwc_to_chw(img))


def test_the_flag_defaults_to_the_reference_and_refuses_others(capsys):
    parser = run_sample.build_parser()
    assert parser.parse_args([]).augment == "reference"
    assert parser.parse_args(["--augment", "dihedral"]).augment == "dihedral"
    with pytest.raises(SystemExit):
        parser.parse_args(["--augment", "rotate"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not one of"):
        dataloader.SegmentationDataset([], {}, ".", augment="rotate")
