"""`python -m voc12.prepare labels` (voc12/image_labels.py): tiles and yes/no labels, no masks."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from misc.errors import UserError
from voc12 import image_labels, prepare

NAMES = [f"t{i}" for i in range(6)]  # t0, t1 building; t2, t3 none; t4, t5 unlabelled
LABELS = {"t0": 1, "t1": 1, "t2": 0, "t3": 0}


def _tiles(folder: Path, names=NAMES, size: int = 32) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(np.full((size, size, 3), 10 * i, np.uint8)).save(folder / f"{name}.png")
    return folder


def _prepare(tmp_path: Path, *argv: str, out: str = "out") -> Path:
    prepare.run(prepare.parse_args(["labels", "--out", str(tmp_path / out), *argv]))
    return tmp_path / out


def _dataset(root: Path) -> dict:
    """Everything a dataset says, except the image bytes."""
    labels = np.load(root / "cls_labels.npy", allow_pickle=True).item()
    lists = {p.name: p.read_text() for p in sorted(root.glob("*.txt"))}
    images = sorted(p.name for p in (root / "JPEGImages").iterdir())
    return {"labels": {k: int(v[0]) for k, v in labels.items()}, "lists": lists,
            "tiles": (root / "tiles.csv").read_text(), "images": images}


CSV_FORMATS = {
    "header, 1/0": "name,label\nt0,1\nt1,1\nt2,0\nt3,0\n",
    "no header, suffixes, yes/no": "t0.png,yes\nt1.png,Yes\nt2.png,no\nt3.png,NO\n",
    "building/none, spaces, CRLF, BOM": "\ufeffname , label\r\n t0 , building\r\nt1,BUILDING\r\nt2, none\r\n"
                                        "t3,None\r\n",
    "true/false and y/n, blank lines": "name,label\n\nt0,true\nt1,y\n\nt2,false\nt3,n\n",
}


def test_every_label_format_and_the_class_folders_give_the_same_dataset(tmp_path):
    images = _tiles(tmp_path / "images")
    made = []
    for i, text in enumerate(CSV_FORMATS.values()):
        csv = tmp_path / f"labels{i}.csv"
        csv.write_bytes(text.encode("utf-8"))
        made.append(_dataset(_prepare(tmp_path, "--images", str(images), "--labels", str(csv), out=f"out{i}")))
    folders = tmp_path / "sorted" / "images"  # the same tiles in class folders, the rest in unlabelled/
    for name in NAMES:
        sub = {1: "building", 0: "none"}.get(LABELS.get(name), "unlabelled")
        _tiles(folders / sub, [name])
    # same pixel values as in images/: t<i> is 10 * i everywhere
    for name in NAMES:
        src = np.asarray(Image.open(images / f"{name}.png"))
        found = next(folders.glob(f"*/{name}.png"))
        Image.fromarray(src).save(found)
    made.append(_dataset(_prepare(tmp_path, "--images", str(folders), out="out_folders")))
    assert all(m == made[0] for m in made[1:])
    first = made[0]
    assert first["labels"] == LABELS
    assert first["lists"]["train_aug.txt"].split() == ["t0", "t1", "t2", "t3"]
    assert first["lists"]["train_aug_building.txt"].split() == ["t0", "t1"]
    assert first["lists"]["test.txt"].split() == ["t4", "t5"]  # unlabelled tiles are predicted, never trained on
    assert first["lists"]["all_tiles.txt"].split() == NAMES
    assert "t4,images,,unlabelled" in first["tiles"]  # group: the folder's name
    assert not (tmp_path / "out0" / "SegmentationClassAug").exists()


def test_summary_counts_and_group_column_with_test_groups(tmp_path, capsys):
    images = _tiles(tmp_path / "images")
    csv = tmp_path / "labels.csv"
    csv.write_text("name,label,group\nt0,1,a\nt1,1,b\nt2,0,a\nt3,0,b\nt4,1,b\n")
    root = _prepare(tmp_path, "--images", str(images), "--labels", str(csv), "--test_groups", "b")
    assert capsys.readouterr().out.splitlines()[0] == (
        "6 tiles: 3 positives, 2 negatives, 1 unlabelled (no masks); train 2 kept (1 positives), test 4 tiles")
    assert (root / "train_aug.txt").read_text().split() == ["t0", "t2"]
    assert (root / "test.txt").read_text().split() == ["t1", "t3", "t4", "t5"]  # group b + the unlabelled t5
    assert (root / "test_aug.txt").read_text().split() == ["t1", "t3", "t4"]


def test_geotiff_scenes_are_cut_into_georeferenced_tiles(tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    scenes = tmp_path / "scenes"
    scenes.mkdir()
    data = np.random.default_rng(0).integers(0, 256, (3, 40, 60), dtype=np.uint8)
    with rasterio.open(scenes / "s.tif", "w", driver="GTiff", height=40, width=60, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500000, 4000000, 0.5, 0.5)) as dst:
        dst.write(data)
    csv = tmp_path / "labels.csv"
    csv.write_text("name,label\ns_0_0,1\ns_0_28,0\n")
    root = _prepare(tmp_path, "--images", str(scenes), "--labels", str(csv), "--tile_size", "32")
    assert (root / "all_tiles.txt").read_text().split() == ["s_0_0", "s_0_28", "s_8_0", "s_8_28"]
    with rasterio.open(root / "JPEGImages" / "s_8_28.tif") as tile:
        assert tile.crs.to_epsg() == 32633
        assert tile.transform.c == pytest.approx(500000 + 28 * 0.5) and tile.transform.f == pytest.approx(4000000 - 4)
        np.testing.assert_array_equal(tile.read(), data[:, 8:40, 28:60])
    assert np.asarray(Image.open(root / "JPEGImages" / "s_8_28.tif")).shape == (32, 32, 3)  # PIL reads it too


def test_xyz_tiles_keep_their_names(tmp_path):
    names = ["OAM-100-200-19", "OAM-101-200-19", "OAM-100-201-19"]
    images = _tiles(tmp_path / "area1", names)
    csv = tmp_path / "labels.csv"
    csv.write_text("OAM-100-200-19,1\nOAM-101-200-19,0\n")
    root = _prepare(tmp_path, "--images", str(images), "--labels", str(csv))
    assert (root / "test.txt").read_text().split() == ["OAM-100-201-19"]
    assert "OAM-100-200-19,area1,,1" in (root / "tiles.csv").read_text()


@pytest.mark.parametrize("text, match", [
    ("name,label\nt0,1\nt2,maybe\n", r"labels.csv row 3: label 'maybe' of 't2' is not one of"),
    ("name,label\nt0,1\nt9,0\n", r"labels.csv row 3: 't9' has no image"),
    ("name,label\nt0,1\nt2,0\nt0.png,no\n", r"labels.csv row 4: 't0' is labelled 'no' here but 1 in row 2"),
    ("name,label\nt0,1\nt1,yes\n", r"labels.csv labels every tile building: no tile is none"),
    ("name,label\n", r"labels.csv has no name,label row"),
    ("t0\n", r"labels.csv row 1: expected name,label"),
])
def test_bad_labels_are_one_line_naming_the_file_and_row(tmp_path, capsys, text, match):
    images = _tiles(tmp_path / "images")
    csv = tmp_path / "labels.csv"
    csv.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        prepare.main(["labels", "--images", str(images), "--labels", str(csv), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert re.search(match, lines[0]), lines[0]


def test_the_same_label_twice_is_a_warning(tmp_path, caplog):
    images = _tiles(tmp_path / "images")
    csv = tmp_path / "labels.csv"
    csv.write_text("t0,1\nt2,0\nt0,yes\n")
    _prepare(tmp_path, "--images", str(images), "--labels", str(csv))
    assert "row 3: 't0' is listed again (first in row 1, same label)" in caplog.text


@pytest.mark.parametrize("layout, match", [
    ("empty", r"holds no image"),
    ("no class folders", r"has neither a building/ nor a none/ sub-folder"),
    ("building only", r"labels every tile building"),
])
def test_bad_folders_are_one_line(tmp_path, capsys, layout, match):
    images = tmp_path / "images"
    images.mkdir()
    if layout == "no class folders":
        _tiles(images)
    elif layout == "building only":
        _tiles(images / "building", ["t0"])
        _tiles(images / "other", ["t1"])
    with pytest.raises(SystemExit) as exit_info:
        prepare.main(["labels", "--images", str(images), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1, err
    assert re.search(match, err[0]), err[0]


def test_parse_label_words():
    assert [image_labels.parse_label(w) for w in (" Yes", "Y", "building", "TRUE", "1")] == [1] * 5
    assert [image_labels.parse_label(w) for w in ("no ", "n", "None", "false", "0")] == [0] * 5
    assert image_labels.parse_label("2") is None and image_labels.parse_label("") is None


def test_masks_left_in_out_are_refused(tmp_path):
    images = _tiles(tmp_path / "images")
    csv = tmp_path / "labels.csv"
    csv.write_text("t0,1\nt2,0\n")
    _tiles(tmp_path / "out" / "SegmentationClassAug", ["t0"])
    with pytest.raises(UserError, match="already holds masks"):
        _prepare(tmp_path, "--images", str(images), "--labels", str(csv))
