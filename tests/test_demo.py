"""voc12/demo.py: the synthetic dataset is deterministic, complete in the RRDSD layout (voc12/layout.py), and not trivial."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from misc.errors import UserError
from voc12 import demo
from voc12.layout import LayoutSummary, tile_label

SCENES = 5  # 45 tiles, about 3 s; the default 30 scenes take about 15 s


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LayoutSummary]:
    out = tmp_path_factory.mktemp("demo")
    return out, demo.make_demo(out, seed=0, num_scenes=SCENES)


@pytest.fixture
def root(generated: tuple[Path, LayoutSummary]) -> Path:
    return generated[0]


def _lines(path: Path) -> list[str]:
    return path.read_text().split()


def _labels(root: Path) -> dict[str, int]:
    return {k: int(v[0]) for k, v in np.load(root / "cls_labels.npy", allow_pickle=True).item().items()}


def _groups(root: Path) -> dict[str, str]:
    with open(root / "tiles.csv", newline="") as f:
        return {row["name"]: row["group"] for row in csv.DictReader(f)}


def test_same_seed_gives_identical_files_and_scenes_do_not_depend_on_the_count(root: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    demo.make_demo(a, seed=0, num_scenes=2)
    demo.make_demo(b, seed=0, num_scenes=2)
    for name in ("cls_labels.npy", "tiles.csv", "train_aug.txt", "test.txt"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    names = _lines(a / "all_tiles.txt")
    assert len(names) == 18
    for name in names:
        for folder in ("JPEGImages", "SegmentationClassAug"):
            assert (a / folder / f"{name}.png").read_bytes() == (b / folder / f"{name}.png").read_bytes(), name
    # scene 0 of a 2-scene run is scene 0 of the 5-scene fixture, byte for byte
    for name in [n for n in names if n.startswith("demo_s00_")]:
        assert (a / "JPEGImages" / f"{name}.png").read_bytes() == (root / "JPEGImages" / f"{name}.png").read_bytes()


def test_other_seed_gives_other_images() -> None:
    image0, _ = demo.render_scene(0, 0)
    image1, _ = demo.render_scene(1, 0)
    assert image0.shape == image1.shape == (demo.SCENE_SIZE, demo.SCENE_SIZE, 3)
    assert not np.array_equal(image0, image1)


def test_layout_is_complete_and_labels_follow_the_25_percent_rule(root: Path) -> None:
    names = _lines(root / "all_tiles.txt")
    assert len(names) == SCENES * (demo.SCENE_SIZE // demo.TILE_SIZE) ** 2
    labels = _labels(root)
    for name in names:
        image = np.asarray(Image.open(root / "JPEGImages" / f"{name}.png"))
        mask = np.asarray(Image.open(root / "SegmentationClassAug" / f"{name}.png"))
        assert image.shape == (demo.TILE_SIZE, demo.TILE_SIZE, 3) and image.dtype == np.uint8, name
        assert mask.shape == image.shape[:2] and mask.dtype == np.uint8, name
        assert set(np.unique(mask)) <= {0, 255}, name
        expected = tile_label(mask > 0)
        if expected is None:
            assert name not in labels, f"{name} covers 0-25% building and must be dropped"
        else:
            assert labels[name] == expected, name


def test_lists_follow_the_groups(root: Path) -> None:
    groups, labels = _groups(root), _labels(root)
    test_groups = demo.split_test_groups(SCENES)
    train = _lines(root / "train_aug.txt")
    test = _lines(root / "test.txt")
    assert {groups[n] for n in train}.isdisjoint({groups[n] for n in test})
    assert {groups[n] for n in test} == set(test_groups)
    assert set(test) == {n for n, g in groups.items() if g in test_groups}
    assert train == sorted(n for n in labels if groups[n] not in test_groups)
    assert _lines(root / "train_aug_building.txt") == [n for n in train if labels[n] == 1]


def test_train_holds_both_classes_and_few_tiles_are_dropped(root: Path) -> None:
    labels = _labels(root)
    train = _lines(root / "train_aug.txt")
    positives = sum(labels[n] for n in train)
    assert positives >= 8 and len(train) - positives >= 8
    assert len(labels) >= 0.7 * len(_lines(root / "all_tiles.txt"))


def test_colour_alone_does_not_separate_the_classes(root: Path) -> None:
    """Grey roads and plazas sit in negatives: no threshold on a tile's mean colour or greyness gets 85%."""
    labels = _labels(root)
    names = sorted(labels)
    y = np.array([labels[n] for n in names])
    features, grey_share = [], []
    for name in names:
        rgb = np.asarray(Image.open(root / "JPEGImages" / f"{name}.png")).astype(np.float32)
        spread, level = rgb.max(-1) - rgb.min(-1), rgb.mean(-1)
        grey = float(((spread < 20) & (level > 90) & (level < 200)).mean())
        features.append([*rgb.mean((0, 1)), level.mean(), grey])
        grey_share.append(grey)
    features = np.array(features)
    best = 0.0
    for column in features.T:
        for t in np.unique(column):
            above = (column >= t) == y
            best = max(best, above.mean(), 1 - above.mean())
    assert best < 0.85
    assert np.mean(np.array(grey_share)[y == 0] >= 0.05) >= 0.3, "too few negatives carry grey confusers"


def test_buildings_are_large_and_positives_are_not_mostly_roof(root: Path) -> None:
    """Roofs are big enough for a stride-16 CAM (median footprint above 50 px a side), and positives keep
    enough yards, gardens and streets that predicting 'building everywhere' stays a weak baseline."""
    labels = _labels(root)
    fractions, sides = [], []
    for name in (n for n, label in labels.items() if label == 1):
        mask = (np.asarray(Image.open(root / "SegmentationClassAug" / f"{name}.png")) > 0).astype(np.uint8)
        fractions.append(mask.mean())
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        sides.extend(np.sqrt(stats[1:, cv2.CC_STAT_AREA]))
    assert 0.28 <= np.mean(fractions) <= 0.48
    assert np.median(sides) >= 50


def test_roof_colours_are_spread_evenly() -> None:
    """No roof colour is typical of buildings: red, brown, grey, dark, white and blue / green each get a
    sixth or so of the roofs in every district style."""
    groups = {"red": ("terracotta",), "brown": ("brown",), "grey": ("grey_concrete", "grey_metal"),
              "dark": ("dark",), "white": ("white",), "blue_green": ("blue_metal", "green_metal")}
    for style, mix in demo.ROOF_MIX.items():
        total = sum(mix.values())
        assert set(mix) <= set(demo.ROOFS), style
        for group, materials in groups.items():
            assert 0.12 <= sum(mix.get(m, 0.0) for m in materials) / total <= 0.22, (style, group)


def test_negatives_carry_confusers_of_the_roof_colours(root: Path) -> None:
    """Red courts and earth, white polytunnels and concrete, dark ponds and asphalt, blue courts and pools sit
    in negative tiles: each colour covers at least 2% of a good share of them."""
    labels = _labels(root)
    shares: dict[str, list[float]] = {"red": [], "white": [], "dark": [], "blue": []}
    for name in (n for n, label in labels.items() if label == 0):
        rgb = np.asarray(Image.open(root / "JPEGImages" / f"{name}.png")).astype(np.int32)
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        shares["red"].append(float(((r > g + 40) & (r > 130)).mean()))
        shares["white"].append(float(((rgb.max(-1) - rgb.min(-1) < 25) & (rgb.min(-1) > 180)).mean()))
        shares["dark"].append(float((rgb.max(-1) < 80).mean()))
        shares["blue"].append(float(((b > r + 25) & (b > g)).mean()))
    minimum = {"red": 0.2, "white": 0.2, "dark": 0.4, "blue": 0.1}
    for colour, values in shares.items():
        assert np.mean(np.array(values) >= 0.02) >= minimum[colour], colour


def test_existing_dataset_is_not_regenerated(generated: tuple[Path, LayoutSummary],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    root, written = generated
    before = {p.name: p.stat().st_mtime_ns for p in root.iterdir() if p.is_file()}
    summary = demo.make_demo(root, seed=0, num_scenes=SCENES)
    assert {p.name: p.stat().st_mtime_ns for p in root.iterdir() if p.is_file()} == before
    assert summary == written  # recounted from tiles.csv
    demo.main(["--out", str(root), "--scenes", str(SCENES)])
    out = capsys.readouterr().out
    assert "already there" in out and summary.line() in out


def test_changed_parameters_regenerate_without_stale_tiles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    demo.main(["--out", str(tmp_path), "--scenes", "3"])
    assert "wrote" in capsys.readouterr().out
    demo.make_demo(tmp_path, seed=0, num_scenes=2)
    names = _lines(tmp_path / "all_tiles.txt")
    assert len(names) == 18
    assert sorted(p.stem for p in (tmp_path / "JPEGImages").glob("*.png")) == sorted(names)


@pytest.mark.parametrize("kwargs, match", [({"num_scenes": 1}, "--scenes 1"), ({"seed": -1}, "--seed -1")])
def test_bad_arguments_are_user_errors(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(UserError, match=match):
        demo.make_demo(tmp_path, **kwargs)
