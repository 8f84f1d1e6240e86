"""Only XYZ tile names are georeferenced from their name (issue 21, item 4): the fAIr form OAM-x-y-z, or the
user's --xyz_name_pattern, with x and y inside the zoom; anything else stays in pixel coordinates, with a
warning, and no name ends in a traceback."""
from __future__ import annotations

import json

import numpy as np
import pytest

import run_sample
from misc import fileio, geodata, geoio
from step import make_footprints
from tests.test_maps import footprint_args

pytestmark = pytest.mark.usefixtures("cpu_runtime")

NOT_TILES = ["survey-2024-03-15", "roofs", "OAM-5-1-2", "OAM-1-1-31", "OAM-1-1-5000", "OAM-1-2", "tile-1-2-3",
             "OAM-1-2-3-4", "oam-1-1-1", f"OAM-{10 ** 30}-1-{10 ** 4}", "OAM--1-1-3", "xOAM-1-1-3"]


@pytest.mark.parametrize("name", NOT_TILES)
def test_names_that_are_not_tiles_are_never_placed(name):
    assert geodata.match_xyz_name(f"{name}.png") is None
    assert geoio.xyz_geo(name, 256, 256) is None


@pytest.mark.parametrize("name, pattern, tile", [
    ("OAM-1277168-1083840-21", geodata.FAIR_XYZ_NAME, (1277168, 1083840, 21)),
    ("OAM-0-0-0", geodata.FAIR_XYZ_NAME, (0, 0, 0)),
    ("OAM-3-3-2.PNG", geodata.FAIR_XYZ_NAME, (3, 3, 2)),
    ("tile_21_1277168_1083840", r"tile_(?P<z>\d+)_(?P<x>\d+)_(?P<y>\d+)", (1277168, 1083840, 21)),
])
def test_tile_names_fit_their_zoom(name, pattern, tile):
    assert geodata.match_xyz_name(name, pattern)[1:] == tile
    assert geodata.parse_xyz_name(name, pattern) == tile


@pytest.mark.parametrize("name", ["survey-2024-03-15", "OAM-1-1-5000", f"OAM-{10 ** 30}-1-{10 ** 4}"])
def test_s12_keeps_a_mask_not_named_as_a_tile_in_pixel_coordinates(tmp_path, caplog, name):
    mask = np.zeros((64, 64), np.uint8)
    mask[10:30, 10:30] = 1
    fileio.save_png(tmp_path / "seg" / f"{name}.png", mask)
    with caplog.at_level("WARNING"):
        result = make_footprints.write_all(footprint_args(tmp_path))
    assert result["buildings"] == 1
    data = json.loads((tmp_path / "result" / "footprints.geojson").read_text())
    xs, ys = np.asarray(data["features"][0]["geometry"]["coordinates"][0]).T
    assert xs.min() >= 9 and xs.max() <= 31 and ys.min() >= 9 and ys.max() <= 31  # pixels, not near 85 degrees N
    assert any("stay in pixel coordinates" in r.getMessage() and name in r.getMessage() for r in caplog.records)


def test_s12_places_a_user_pattern_by_its_name(tmp_path):
    mask = np.zeros((256, 256), np.uint8)
    mask[100:140, 100:140] = 1
    fileio.save_png(tmp_path / "seg" / "tile_21_1277168_1083840.png", mask)
    args = footprint_args(tmp_path, "--xyz_name_pattern", r"tile_(?P<z>\d+)_(?P<x>\d+)_(?P<y>\d+)")
    make_footprints.write_all(args)
    data = json.loads((tmp_path / "result" / "footprints.geojson").read_text())
    lon, lat = np.asarray(data["features"][0]["geometry"]["coordinates"][0]).T
    west, south, east, north = geodata.xyz_tile_bounds(1277168, 1083840, 21)
    assert -180 < lon.min() and lat.max() < 80  # on the map, in the tile's place


def test_s11_writes_no_geotiff_for_a_name_that_is_not_a_tile(tmp_path, caplog):
    from net.checkpoints import save_net
    from net.deeplabv3plus import DeepLabV3Plus
    from step import make_seg
    from tests.test_ownership import seg_args

    scenes = tmp_path / "scenes"
    rng = np.random.default_rng(0)
    for name in ("survey-2024-03-15", "OAM-0-0-1"):
        fileio.save_png(scenes / f"{name}.png", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    save_net(DeepLabV3Plus("RepVGG-Tiny"), tmp_path / "sess" / "seg.pth")
    with caplog.at_level("WARNING"):
        make_seg.run(seg_args(tmp_path, scenes, tmp_path / "seg"))
    assert (tmp_path / "seg" / "OAM-0-0-1.tif").is_file() and not (tmp_path / "seg" / "survey-2024-03-15.tif").exists()
    assert any("survey-2024-03-15.png" in r.getMessage() and "pixel coordinates" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("pattern", ["OAM-(\\d+", "OAM-(?P<x>\\d+)-(?P<y>\\d+)"])
def test_a_bad_pattern_is_refused_at_parse_time(capsys, pattern):
    with pytest.raises(SystemExit) as exit_info:
        run_sample.build_parser().parse_args(["--xyz_name_pattern", pattern])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: argument --xyz_name_pattern")
