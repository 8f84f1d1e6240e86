"""The in-area split (voc12/splits.py, `voc12.prepare --block_zoom/--block_m`): blocks never straddle it, the
same seed gives the same split, an area of one block is one clear line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from misc.errors import UserError
from voc12 import prepare
from voc12.splits import BlockSplit, grid_block, split_blocks, tiles_per_block, xyz_block


def _tiles(areas: int = 2, side: int = 16) -> dict[str, tuple[str, tuple]]:
    """XYZ tiles of zoom 21 in `side` x `side` squares, one per area, with their zoom-18 blocks."""
    tiles = {}
    for a in range(areas):
        for dx in range(side):
            for dy in range(side):
                x, y = 1000 * 8 + dx + 3, 2000 * 8 + dy + 5  # not aligned to the blocks
                tiles[f"a{a}-{x}-{y}"] = (f"area{a}", xyz_block(x, y, 21, 18))
    return tiles


def test_blocks_never_straddle_the_split_and_each_area_gets_its_fraction():
    tiles = _tiles()
    test, line = split_blocks(tiles, BlockSplit(0.25, seed=0, unit="--block_zoom 18"))
    sides: dict[tuple, set[bool]] = {}
    for name, (group, block) in tiles.items():
        sides.setdefault((group, block), set()).add(name in test)
    assert all(len(s) == 1 for s in sides.values())  # a block is wholly train or wholly test
    for area in ("area0", "area1"):
        blocks = {b for (g, b), s in sides.items() if g == area}
        assert len(blocks) == 9  # 16 tiles from offset 3 span 3 blocks of 8 each way
        assert sum(True in sides[(area, b)] for b in blocks) == 2  # round(0.25 * 9)
    assert line.startswith("2 areas in blocks of --block_zoom 18: train 14 blocks (")


def test_same_seed_same_split_other_seed_other_split():
    tiles = _tiles()
    a = split_blocks(tiles, BlockSplit(0.25, seed=3))[0]
    assert split_blocks(dict(reversed(list(tiles.items()))), BlockSplit(0.25, seed=3))[0] == a  # order-free
    assert any(split_blocks(tiles, BlockSplit(0.25, seed=s))[0] != a for s in range(4, 8))


def test_an_area_of_one_block_is_one_line():
    tiles = {"t1": ("big", (0, 0)), "t2": ("big", (0, 1)), "t3": ("small", (0, 0)), "t4": ("small", (0, 0))}
    with pytest.raises(UserError, match=r"area 'small' has 1 block at --block_zoom 18 \(2 tiles\), too few to split"):
        split_blocks(tiles, BlockSplit(0.25, unit="--block_zoom 18"))


def test_block_helpers():
    assert xyz_block(1772464, 966380, 21, 18) == (1772464 // 8, 966380 // 8, 18)
    with pytest.raises(UserError, match="--block_zoom 22 must be between 0 and the tiles' zoom 21"):
        xyz_block(0, 0, 21, 22)
    assert tiles_per_block(150, 256, 0.3) == 2 and tiles_per_block(10, 256, 0.3) == 1
    # the last tile, shifted inward to end at the border, falls in the block of the tile it overlaps
    assert grid_block(0, 0, 32, 2) == grid_block(32, 32, 32, 2) == (0, 0)
    assert grid_block(64, 0, 32, 2) == (1, 0) and grid_block(120, 0, 32, 2) == (1, 0)


def _xyz_area(folder: Path, side: int = 8) -> Path:
    folder.mkdir(parents=True)
    (folder / "labels.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    for dx in range(side):
        for dy in range(side):
            Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / f"OAM-{8000 + dx}-{16000 + dy}-21.png")
    return folder


def test_prepare_xyz_in_area_split(tmp_path, capsys):
    area = _xyz_area(tmp_path / "area1")
    argv = ["xyz", "--src", str(area), "--zoom", "21", "--tile_size", "16", "--block_zoom", "19"]
    prepare.run(prepare.parse_args([*argv, "--out", str(tmp_path / "a")]))
    prepare.run(prepare.parse_args([*argv, "--out", str(tmp_path / "b")]))
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("; 1 area in blocks of --block_zoom 19: train 3 blocks (48 tiles), test 1 blocks (16 tiles)")
    test = (tmp_path / "a" / "test.txt").read_text().split()
    assert test == (tmp_path / "b" / "test.txt").read_text().split() and len(test) == 16
    blocks = {}
    for name in (tmp_path / "a" / "all_tiles.txt").read_text().split():
        _, x, y, _ = name.split("-")
        blocks.setdefault((int(x) // 4, int(y) // 4), set()).add(name in test)
    assert all(len(s) == 1 for s in blocks.values())


def test_the_two_splits_are_refused_together_and_a_single_block_area_is_one_line(tmp_path, capsys):
    area = _xyz_area(tmp_path / "area1", side=2)
    base = ["xyz", "--src", str(area), "--zoom", "21", "--tile_size", "16", "--out", str(tmp_path / "out")]
    for extra, match in ((["--block_zoom", "18", "--test_groups", "area1"], "--test_groups area1 and --block_zoom 18 "
                          "are two different splits"),
                         (["--block_zoom", "18"], "area 'area1' has 1 block at --block_zoom 18 (4 tiles), too few")):
        with pytest.raises(SystemExit) as exit_info:
            prepare.main([*base, *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1 and match in err[0], err


def test_geotiff_scenes_split_by_metre_blocks(tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    scenes = tmp_path / "scenes"
    scenes.mkdir()
    with rasterio.open(scenes / "s.tif", "w", driver="GTiff", height=128, width=128, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500000, 4000000, 0.5, 0.5)) as dst:
        dst.write(np.zeros((3, 128, 128), np.uint8))
    names = [f"s_{r}_{c}" for r in range(0, 128, 32) for c in range(0, 128, 32)]
    (tmp_path / "labels.csv").write_text("".join(f"{n},{i % 2}\n" for i, n in enumerate(names)))
    prepare.run(prepare.parse_args(["labels", "--images", str(scenes), "--labels", str(tmp_path / "labels.csv"),
                                    "--tile_size", "32", "--block_m", "32", "--out", str(tmp_path / "out")]))
    # 16 m tiles, 32 m blocks: 2x2 tiles a block, 4 blocks, one of them test
    test = (tmp_path / "out" / "test.txt").read_text().split()
    assert len(test) == 4
    blocks = {(int(n.split("_")[1]) // 64, int(n.split("_")[2]) // 64) for n in test}
    assert len(blocks) == 1
    with pytest.raises(UserError, match="--block_m needs GeoTIFF scenes"):
        images = tmp_path / "plain"
        images.mkdir()
        for n in ("a", "b"):
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / f"{n}.png")
        (tmp_path / "ab.csv").write_text("a,1\nb,0\n")
        prepare.run(prepare.parse_args(["labels", "--images", str(images), "--labels", str(tmp_path / "ab.csv"),
                                        "--block_m", "32", "--out", str(tmp_path / "out2")]))
