"""Tests of `voc12.prepare`: XYZ geometry, real fAIr tiles against shapely, GeoTIFF and folder tiling, errors."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from misc import geodata
from misc.errors import UserError
from voc12 import prepare
from voc12.layout import POSITIVE_FRACTION

REPO = Path(__file__).resolve().parents[1]
FAIR = Path(os.environ.get("FAIR_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "fair"))
HALF = 20037508.342789244  # pi * 6378137


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def _read_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line]


def _csv(root: Path) -> dict[str, tuple[str, float, str]]:
    rows = _read_lines(root / "tiles.csv")[1:]
    return {n: (g, float(f), lab) for n, g, f, lab in (r.split(",") for r in rows)}


def _gt(root: Path, name: str) -> np.ndarray:
    return np.asarray(Image.open(root / "SegmentationClassAug" / f"{name}.png"))


# ----------------------------------------------------------------------------- pure helpers

def test_xyz_tile_bounds_zoom0_covers_the_world():
    assert geodata.xyz_tile_bounds(0, 0, 0) == pytest.approx((-HALF, -HALF, HALF, HALF), abs=1e-6)
    assert HALF == pytest.approx(20037508.34, abs=0.01)


@pytest.mark.parametrize("x, y, expected", [
    (0, 0, (-HALF, 0.0, 0.0, HALF)),   # north-west quadrant: rows count down from the north
    (1, 0, (0.0, 0.0, HALF, HALF)),
    (0, 1, (-HALF, -HALF, 0.0, 0.0)),
    (1, 1, (0.0, -HALF, HALF, 0.0)),
])
def test_xyz_tile_bounds_zoom1_quadrants(x, y, expected):
    assert geodata.xyz_tile_bounds(x, y, 1) == pytest.approx(expected, abs=1e-6)


def test_xyz_tile_bounds_zoom21_size_and_nesting():
    minx, miny, maxx, maxy = geodata.xyz_tile_bounds(1772464, 966380, 21)
    assert maxx - minx == pytest.approx(2 * HALF / 2**21) and maxy - miny == pytest.approx(2 * HALF / 2**21)
    parent = geodata.xyz_tile_bounds(1772464 // 4, 966380 // 4, 19)  # a z19 tile holds 4x4 z21 tiles
    assert parent[0] <= minx and maxx <= parent[2] and parent[1] <= miny and maxy <= parent[3]


@pytest.mark.parametrize("height, width, tile, expected", [
    (512, 512, 256, [(0, 0), (0, 256), (256, 0), (256, 256)]),
    (500, 600, 256, [(0, 0), (0, 256), (0, 344), (244, 0), (244, 256), (244, 344)]),
    (100, 300, 256, [(0, 0), (0, 44)]),
    (100, 80, 256, [(0, 0)]),
])
def test_tile_grid(height, width, tile, expected):
    grid = prepare.tile_grid(height, width, tile)
    assert grid == expected
    covered = np.zeros((height, width), bool)
    for r, c in grid:
        covered[r:r + tile, c:c + tile] = True
    assert covered.all()


def test_rasterize_footprints_pixel_centres_and_empty():
    from rasterio.transform import from_origin
    from shapely.geometry import box

    transform = from_origin(0, 10, 1, 1)  # 10x10 grid of 1 m pixels, origin top-left at (0, 10)
    mask = prepare.rasterize_footprints([box(2, 3, 5, 8)], transform, (10, 10))
    expected = np.zeros((10, 10), np.uint8)
    expected[2:7, 2:5] = 1  # rows: y from 8 down to 3; cols: x from 2 to 5
    np.testing.assert_array_equal(mask, expected)
    assert mask.dtype == np.uint8
    assert not prepare.rasterize_footprints([], transform, (10, 10)).any()


def test_colour_mask_exact_colour_only():
    rgb = np.array([[[0, 0, 255], [0, 0, 254]], [[255, 255, 255], [0, 0, 255]]], np.uint8)
    np.testing.assert_array_equal(prepare.colour_mask(rgb, (0, 0, 255)), [[1, 0], [0, 1]])


@pytest.mark.parametrize("text", ["0,0", "0,0,256", "a,b,c", "-1,0,0", "0,0,255,1", ""])
def test_parse_color_rejects(text):
    with pytest.raises(UserError, match="--building_color"):
        prepare.parse_color(text)


def test_parse_color_accepts_spaces():
    assert prepare.parse_color(" 0, 0,255") == (0, 0, 255)


def test_stretch_to_uint8_percentiles():
    band = np.arange(1000, dtype=np.uint16).reshape(10, 100)
    out = prepare.stretch_to_uint8(band)
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    lo, hi = np.percentile(band, [2, 98])
    assert out[band <= lo].max() == 0 and out[band >= hi].min() == 255


# ----------------------------------------------------------------------------- real fAIr data (area4, zoom 21)

def _mercator(lonlat: np.ndarray) -> np.ndarray:
    """(N, 2) lon/lat degrees -> spherical web mercator metres, written out independently of rasterio/PROJ."""
    r = 6378137.0
    lon, lat = np.radians(lonlat[:, 0]), np.radians(lonlat[:, 1])
    return np.column_stack([r * lon, r * np.log(np.tan(np.pi / 4 + lat / 2))])


def _independent_fraction(union, name: str) -> float:
    from shapely.geometry import box

    _, x, y, z = name.split("-")
    size = 2 * HALF / 2 ** int(z)
    minx, maxy = -HALF + int(x) * size, HALF - int(y) * size
    tile = box(minx, maxy - size, minx + size, maxy)
    return union.intersection(tile).area / tile.area


@pytest.fixture(scope="module")
def area4(tmp_path_factory):
    src = FAIR / "area4"
    if not (src / "labels.geojson").is_file():
        pytest.skip(f"fAIr data not found at {src} (set FAIR_DATA to the folder holding area4)")
    out = tmp_path_factory.mktemp("fair_area4")
    summary = prepare.prepare_xyz([src], 21, out)
    return src, out, summary


def test_area4_fractions_match_shapely(area4):
    from shapely import transform, union_all
    from shapely.geometry import shape

    src, out, summary = area4
    features = json.loads((src / "labels.geojson").read_text())["features"]
    polys = [transform(shape(f["geometry"]), _mercator).buffer(0) for f in features]
    union = union_all(polys)
    names = _read_lines(out / "all_tiles.txt")
    assert len(names) == 64
    fractions = {n: _independent_fraction(union, n) for n in names}
    partial = [n for n, f in fractions.items() if 0.0 < f < 0.99]
    assert len(partial) >= 5, "area4 should hold tiles with partial buildings"
    for name, expected in fractions.items():  # every tile, the partial ones included
        got = np.count_nonzero(_gt(out, name)) / (256 * 256)
        assert got == pytest.approx(expected, abs=0.01), name


def test_area4_layout_complete_and_25_percent_rule(area4):
    _, out, summary = area4
    names = _read_lines(out / "all_tiles.txt")
    rows = _csv(out)
    assert sorted(rows) == names and summary.tiles == 64 == len(names)
    cls = np.load(out / "cls_labels.npy", allow_pickle=True).item()
    for name in names:
        image = np.asarray(Image.open(out / "JPEGImages" / f"{name}.png"))
        gt = _gt(out, name)
        assert image.shape == (256, 256, 3) and gt.shape == (256, 256) and set(np.unique(gt)) <= {0, 255}
        group, fraction, label = rows[name]
        assert group == "area4"
        assert fraction == pytest.approx(np.count_nonzero(gt) / gt.size, abs=1e-6)
        expected = 0 if fraction == 0 else 1 if fraction >= POSITIVE_FRACTION else None
        assert label == ("dropped" if expected is None else str(expected))
        assert cls.get(name) == (None if expected is None else [expected])
    kept = [n for n in names if rows[n][2] != "dropped"]
    assert _read_lines(out / "train_aug.txt") == kept
    assert _read_lines(out / "train_aug_building.txt") == [n for n in kept if rows[n][2] == "1"]
    assert _read_lines(out / "test.txt") == []
    assert summary.positives > 0 and summary.negatives > 0 and summary.dropped > 0


def test_area4_images_are_the_source_tiles(area4):
    src, out, _ = area4
    name = _read_lines(out / "all_tiles.txt")[0]
    source = np.asarray(Image.open(src / f"{name}.png").convert("RGB"))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "JPEGImages" / f"{name}.png")), source)


# ----------------------------------------------------------------------------- synthetic XYZ (split and errors)

def _xyz_area(folder: Path, tiles: list[tuple[int, int, int]], features: list | None = None) -> Path:
    for x, y, z in tiles:
        _png(folder / f"OAM-{x}-{y}-{z}.png", np.full((256, 256, 3), 90, np.uint8))
    if features is not None:
        (folder / "labels.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return folder


def test_xyz_test_groups_split(tmp_path):
    a = _xyz_area(tmp_path / "north", [(0, 0, 1), (1, 0, 1)], [])
    b = _xyz_area(tmp_path / "south", [(0, 1, 1), (1, 1, 1)], [])
    summary = prepare.prepare_xyz([a, b], 1, tmp_path / "out", test_groups={"south"})
    assert summary.tiles == 4 and summary.test_tiles == 2 and summary.train_kept == 2
    assert _read_lines(tmp_path / "out" / "test.txt") == ["OAM-0-1-1", "OAM-1-1-1"]


def test_xyz_building_over_a_whole_quadrant(tmp_path):
    # a "building" over the north-east quadrant of the world, z1 tile (1, 0): lon 0..180, lat 0..85.05
    lat_max = math.degrees(math.atan(math.sinh(math.pi)))
    square = {"type": "Polygon", "coordinates": [[[0, 0], [179.999, 0], [179.999, lat_max], [0, lat_max], [0, 0]]]}
    area = _xyz_area(tmp_path / "world", [(1, 0, 1), (0, 1, 1)], [{"type": "Feature", "geometry": square}])
    prepare.prepare_xyz([area], 1, tmp_path / "out")
    assert (_gt(tmp_path / "out", "OAM-1-0-1") == 255).all()
    assert not _gt(tmp_path / "out", "OAM-0-1-1").any()


def test_xyz_errors(tmp_path):
    with pytest.raises(UserError, match=r"nowhere does not exist"):
        prepare.prepare_xyz([tmp_path / "nowhere"], 21, tmp_path / "out")
    other_zoom = _xyz_area(tmp_path / "z19", [(1, 1, 19), (2, 1, 20)], [])
    with pytest.raises(UserError, match=r"z19 has no tiles at zoom 21 \(zooms present: 19, 20\)"):
        prepare.prepare_xyz([other_zoom], 21, tmp_path / "out")
    no_labels = _xyz_area(tmp_path / "nolabels", [(1, 1, 2)])
    with pytest.raises(UserError, match=r"nolabels/labels.geojson does not exist"):
        prepare.prepare_xyz([no_labels], 2, tmp_path / "out")
    bad = _xyz_area(tmp_path / "badjson", [(1, 1, 2)])
    (bad / "labels.geojson").write_text("{not json")
    with pytest.raises(UserError, match=r"badjson/labels.geojson is not valid GeoJSON"):
        prepare.prepare_xyz([bad], 2, tmp_path / "out")
    (bad / "labels.geojson").write_text(json.dumps({"type": "Feature", "geometry": None}))
    with pytest.raises(UserError, match=r"badjson/labels.geojson is not a GeoJSON FeatureCollection"):
        prepare.prepare_xyz([bad], 2, tmp_path / "out")
    (bad / "labels.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": "oops"}}]}))
    with pytest.raises(UserError, match=r"feature 0 has an invalid geometry"):
        prepare.prepare_xyz([bad], 2, tmp_path / "out")
    good = _xyz_area(tmp_path / "good", [(1, 1, 2)], [])
    with pytest.raises(UserError, match=r"--test_groups names area9, which is not among the groups found \(good\)"):
        prepare.prepare_xyz([good], 2, tmp_path / "out", test_groups={"area9"})
    with pytest.raises(UserError, match=r"not --tile_size 512"):
        prepare.prepare_xyz([good], 2, tmp_path / "out", tile_size=512)


# ----------------------------------------------------------------------------- GeoTIFF

UTM_ORIGIN = (500000.0, 5000000.0)  # top-left corner of the synthetic scene in EPSG:32633
PIXEL = 0.5  # metres


def _geotiff(path: Path, data: np.ndarray, crs: str | None = "EPSG:32633") -> Path:
    import rasterio
    from rasterio.transform import from_origin

    count, height, width = data.shape
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=count, dtype=data.dtype,
                       crs=crs, transform=from_origin(*UTM_ORIGIN, PIXEL, PIXEL)) as dst:
        dst.write(data)
    return path


def _building_lonlat(rows: tuple[int, int], cols: tuple[int, int]) -> dict:
    """A GeoJSON square (lon/lat) whose UTM corners lie on the given pixel edges of the synthetic scene."""
    from rasterio.warp import transform

    x0, y0 = UTM_ORIGIN
    xs = [x0 + cols[0] * PIXEL, x0 + cols[1] * PIXEL]
    ys = [y0 - rows[0] * PIXEL, y0 - rows[1] * PIXEL]
    corners = [(xs[0], ys[0]), (xs[1], ys[0]), (xs[1], ys[1]), (xs[0], ys[1]), (xs[0], ys[0])]
    lon, lat = transform("EPSG:32633", "EPSG:4326", [c[0] for c in corners], [c[1] for c in corners])
    ring = [[a, b] for a, b in zip(lon, lat)]
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}


def _stitch(root: Path, stem: str, height: int, width: int, tile: int = 256) -> tuple[np.ndarray, np.ndarray]:
    image = np.zeros((height, width, 3), np.uint8)
    mask = np.zeros((height, width), np.uint8)
    for r, c in prepare.tile_grid(height, width, tile):
        name = f"{stem}_{r}_{c}"
        image[r:r + tile, c:c + tile] = np.asarray(Image.open(root / "JPEGImages" / f"{name}.png"))[:height - r, :width - c]
        mask[r:r + tile, c:c + tile] = _gt(root, name)[:height - r, :width - c]
    return image, mask


def test_geotiff_footprint_mask_and_tiling(tmp_path):
    height, width = 500, 600
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (4, height, width), dtype=np.uint8)  # 4 bands: the first 3 are RGB
    scene = _geotiff(tmp_path / "scene.tif", data)
    labels = tmp_path / "labels.geojson"
    labels.write_text(json.dumps(_building_lonlat(rows=(230, 290), cols=(240, 370))))
    summary = prepare.prepare_geotiff([scene], labels, tmp_path / "out", test_groups={"scene"})
    names = _read_lines(tmp_path / "out" / "all_tiles.txt")
    assert names == sorted(f"scene_{r}_{c}" for r, c in [(0, 0), (0, 256), (0, 344), (244, 0), (244, 256), (244, 344)])
    assert summary.tiles == 6 and summary.test_tiles == 6 and summary.train_kept == 0
    image, mask = _stitch(tmp_path / "out", "scene", height, width)
    np.testing.assert_array_equal(image, np.moveaxis(data[:3], 0, -1))
    expected = np.zeros((height, width), bool)
    expected[230:290, 240:370] = True
    inner = np.zeros_like(expected)
    inner[231:289, 241:369] = True
    outer = np.zeros_like(expected)
    outer[229:291, 239:371] = True
    assert (mask[inner] == 255).all() and not mask[~outer].any()  # within one pixel at the edges
    assert abs(int(np.count_nonzero(mask)) - int(expected.sum())) <= 2 * (60 + 130)


def test_geotiff_uint16_is_stretched_and_crs_member_is_honoured(tmp_path):
    from rasterio.warp import transform_geom

    height, width = 300, 200
    ramp = np.broadcast_to(np.arange(width, dtype=np.uint16) * 100, (height, width))
    scene = _geotiff(tmp_path / "wide.tif", np.stack([ramp, ramp, ramp]))
    lonlat = _building_lonlat(rows=(10, 50), cols=(20, 60))
    geom = lonlat["features"][0]["geometry"]
    utm = transform_geom("EPSG:4326", "EPSG:32633", geom)  # the same square, written in the scene's CRS
    labels = tmp_path / "utm.geojson"
    labels.write_text(json.dumps({"type": "FeatureCollection",
                                  "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}},
                                  "features": [{"type": "Feature", "geometry": utm}]}))
    prepare.prepare_geotiff([scene], labels, tmp_path / "out")
    image, mask = _stitch(tmp_path / "out", "wide", height, width)
    assert image.dtype == np.uint8 and image[:, 0].max() == 0 and image[:, -1].min() == 255
    assert np.all(np.diff(image[0, :, 0].astype(int)) >= 0)
    assert (mask[11:49, 21:59] == 255).all() and np.count_nonzero(mask) <= 42 * 42


def test_geotiff_errors(tmp_path):
    labels = tmp_path / "labels.geojson"
    labels.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    with pytest.raises(UserError, match=r"missing.tif does not exist"):
        prepare.prepare_geotiff([tmp_path / "missing.tif"], labels, tmp_path / "out")
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a tiff at all")
    with pytest.raises(UserError, match=r"junk.tif is unreadable"):
        prepare.prepare_geotiff([junk], labels, tmp_path / "out")
    nocrs = _geotiff(tmp_path / "nocrs.tif", np.zeros((3, 8, 8), np.uint8), crs=None)
    with pytest.raises(UserError, match=r"nocrs.tif has no CRS"):
        prepare.prepare_geotiff([nocrs], labels, tmp_path / "out")
    good = _geotiff(tmp_path / "good.tif", np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(UserError, match=r"nolabels.geojson does not exist"):
        prepare.prepare_geotiff([good], tmp_path / "nolabels.geojson", tmp_path / "out")
    with pytest.raises(UserError, match=r"--test_groups names other, which is not among the groups found \(good\)"):
        prepare.prepare_geotiff([good], labels, tmp_path / "out", test_groups={"other"})


# ----------------------------------------------------------------------------- folder mode

def test_folder_binary_masks_01_and_0255(tmp_path):
    rng = np.random.default_rng(1)
    big = rng.integers(0, 256, (500, 600, 3), dtype=np.uint8)  # a 600x500 scene
    mask01 = np.zeros((500, 600), np.uint8)
    mask01[:300, :300] = 1
    small = rng.integers(0, 256, (100, 80, 3), dtype=np.uint8)  # smaller than a tile: padded
    mask255 = np.zeros((100, 80), np.uint8)
    mask255[:, :40] = 255
    _png(tmp_path / "img" / "big.png", big)
    _png(tmp_path / "msk" / "big.png", mask01)
    Image.fromarray(small).save(tmp_path / "img" / "small.jpg", quality=100)
    _png(tmp_path / "msk" / "small.png", mask255)
    out = tmp_path / "out"
    summary = prepare.prepare_folder(tmp_path / "img", tmp_path / "msk", out, test_groups={"small"})
    assert summary.tiles == 7 and summary.test_tiles == 1
    image, mask = _stitch(out, "big", 500, 600)
    np.testing.assert_array_equal(image, big)
    np.testing.assert_array_equal(mask, mask01 * 255)
    rows = _csv(out)
    assert rows["big_0_0"][2] == "1" and rows["big_244_344"][2] == "0" and rows["small_0_0"][0] == "small"
    padded = _gt(out, "small_0_0")
    assert padded.shape == (256, 256) and (padded[:100, :40] == 255).all() and not padded[:, 40:].any()
    assert not padded[100:].any()
    assert not np.asarray(Image.open(out / "JPEGImages" / "small_0_0.png"))[100:, :].any()
    assert _read_lines(out / "test.txt") == ["small_0_0"]


def test_folder_colour_coded_masks(tmp_path):
    labels = np.zeros((300, 260, 3), np.uint8)
    labels[...] = (255, 255, 255)            # impervious surfaces
    labels[:150, :130] = (0, 0, 255)          # building
    labels[150:, 130:] = (0, 255, 255)        # low vegetation
    _png(tmp_path / "img" / "top_potsdam_2_10.tif", np.full((300, 260, 3), 50, np.uint8))
    _png(tmp_path / "msk" / "top_potsdam_2_10.png", labels)
    out = tmp_path / "out"
    prepare.prepare_folder(tmp_path / "img", tmp_path / "msk", out, building_color=(0, 0, 255))
    _, mask = _stitch(out, "top_potsdam_2_10", 300, 260)
    np.testing.assert_array_equal(mask, prepare.colour_mask(labels, (0, 0, 255)) * 255)
    with pytest.raises(UserError, match=r"top_potsdam_2_10.png is colour-coded.*--building_color"):
        prepare.prepare_folder(tmp_path / "img", tmp_path / "msk", tmp_path / "out2")


def test_folder_errors(tmp_path):
    img, msk = tmp_path / "img", tmp_path / "msk"
    _png(img / "a.png", np.zeros((64, 64, 3)))
    _png(msk / "a.png", np.zeros((64, 64)))
    _png(img / "b.png", np.zeros((64, 64, 3)))
    with pytest.raises(UserError, match=r"image .*b.png has no mask b.png/.tif in"):
        prepare.prepare_folder(img, msk, tmp_path / "out")
    (img / "b.png").unlink()
    _png(msk / "c.png", np.zeros((64, 64)))
    with pytest.raises(UserError, match=r"mask .*c.png has no image c"):
        prepare.prepare_folder(img, msk, tmp_path / "out")
    (msk / "c.png").unlink()
    _png(msk / "a.png", np.zeros((60, 64)))
    with pytest.raises(UserError, match=r"mask .*a.png is 64x60 but image .*a.png is 64x64"):
        prepare.prepare_folder(img, msk, tmp_path / "out")
    _png(msk / "a.png", np.zeros((64, 64)))
    (img / "a.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(UserError, match=r"image .*a.png is unreadable"):
        prepare.prepare_folder(img, msk, tmp_path / "out")
    _png(img / "a.png", np.zeros((64, 64, 3)))
    with pytest.raises(UserError, match=r"--test_groups names zz, which is not among the groups found \(a\)"):
        prepare.prepare_folder(img, msk, tmp_path / "out", test_groups={"zz"})
    with pytest.raises(UserError, match=r"image folder .*nowhere does not exist"):
        prepare.prepare_folder(tmp_path / "nowhere", msk, tmp_path / "out")
    with pytest.raises(UserError, match=r"--building_color '0,0,300'"):
        prepare.run(prepare.parse_args(["folder", "--images", str(img), "--masks", str(msk),
                                        "--building_color", "0,0,300", "--out", str(tmp_path / "out")]))


def test_cli_missing_mask_is_one_error_line(tmp_path):
    _png(tmp_path / "img" / "scene.png", np.zeros((32, 32, 3)))
    (tmp_path / "msk").mkdir()
    _png(tmp_path / "msk" / "other.png", np.zeros((32, 32)))
    proc = subprocess.run([sys.executable, "-m", "voc12.prepare", "folder", "--images", str(tmp_path / "img"),
                           "--masks", str(tmp_path / "msk"), "--out", str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: image ") and "scene.png has no mask" in lines[0]


def test_cli_prints_summary_and_folder(tmp_path):
    _png(tmp_path / "img" / "s.png", np.zeros((40, 40, 3)))
    _png(tmp_path / "msk" / "s.png", np.ones((40, 40)))
    proc = subprocess.run([sys.executable, "-m", "voc12.prepare", "folder", "--images", str(tmp_path / "img"),
                           "--masks", str(tmp_path / "msk"), "--out", str(tmp_path / "out"), "--tile_size", "32"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "4 tiles: 4 positives, 0 negatives, 0 dropped by the 25% rule; train 4 kept (4 positives), test 0 tiles",
        f"wrote {(tmp_path / 'out').resolve()}"]
