"""misc.footprints: masks -> polygons -> cleaned, merged, measured and written building footprints."""
from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import shapely
from affine import Affine
from shapely import affinity

from misc import footprints as fp
from misc import geodata
from misc.errors import UserError

WGS84_A = 6378137.0
WGS84_E2 = 6.69437999014e-3


def _tile_at(lon: float, lat: float, z: int) -> tuple[int, int, int]:
    """The XYZ tile holding (lon, lat), from the slippy-map formula (independent of misc.footprints)."""
    n = 2 ** z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return x, y, z


def _ellipsoid_box_area(lon0: float, lat0: float, lon1: float, lat1: float) -> float:
    """Exact area in m2 of a lon/lat box on the WGS84 ellipsoid (zone area between two parallels)."""
    e = math.sqrt(WGS84_E2)

    def q(lat: float) -> float:
        s = math.sin(math.radians(lat))
        return s / (1 - WGS84_E2 * s * s) + math.log((1 + e * s) / (1 - e * s)) / (2 * e)

    b2 = WGS84_A ** 2 * (1 - WGS84_E2)
    return abs(math.radians(lon1 - lon0) * b2 * (q(lat1) - q(lat0)) / 2)


def _lonlat(transform: Affine, col: float, row: float) -> tuple[float, float]:
    """Spherical inverse web mercator of a pixel corner, written out independently of PROJ."""
    x, y = transform * (col, row)
    return math.degrees(x / WGS84_A), math.degrees(2 * math.atan(math.exp(y / WGS84_A)) - math.pi / 2)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def _angles(poly: shapely.Polygon) -> np.ndarray:
    """Interior angles of the exterior ring in degrees (reflex corners read as < 180 too)."""
    c = np.asarray(poly.exterior.coords)[:-1]
    v1, v2 = np.roll(c, 1, axis=0) - c, np.roll(c, -1, axis=0) - c
    cos = (v1 * v2).sum(1) / np.linalg.norm(v1, axis=1) / np.linalg.norm(v2, axis=1)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def _scene_mask() -> np.ndarray:
    """256x256: two rectangles, an L, a ring with a hole, a disc, a 3x3 speck, two roofs meeting at a corner."""
    mask = np.zeros((256, 256), np.uint8)
    mask[10:50, 10:90] = 1                       # rectangle
    mask[10:40, 110:140] = 1                     # rectangle
    mask[70:130, 10:40] = 1                      # L: vertical bar ...
    mask[100:130, 40:90] = 1                     # ... and foot
    mask[70:140, 120:200] = 1                    # ring ...
    mask[90:120, 140:180] = 0                    # ... with a hole
    rr, cc = np.mgrid[:256, :256]
    mask[(rr - 200) ** 2 + (cc - 60) ** 2 <= 30 ** 2] = 1   # disc (a round hut)
    mask[240:243, 240:243] = 1                   # speck
    mask[160:190, 210:240] = 1                   # two roofs meeting at one pixel corner
    mask[190:220, 240:254] = 1
    return mask


@pytest.fixture
def tile50():
    """An XYZ zoom-20 tile near Frankfurt (latitude ~50) and its grid."""
    x, y, z = _tile_at(8.68, 50.0, 20)
    transform, crs = geodata.xyz_transform(x, y, z)
    return x, y, z, transform, crs


# ----------------------------------------------------------------------------- XYZ names and grids

def test_parse_xyz_name_accepts_names_paths_and_stems():
    assert geodata.parse_xyz_name("OAM-1277168-1083840-21.png") == (1277168, 1083840, 21)
    assert geodata.parse_xyz_name("masks/OAM-1277168-1083840-21.png") == (1277168, 1083840, 21)
    assert geodata.parse_xyz_name("OAM-1277168-1083840-21") == (1277168, 1083840, 21)


@pytest.mark.parametrize("name", ["scene_0_256.png", "OAM-1-2.png", "OAM-1-2-3.jpg", "OAM-9-0-3.png"])
def test_parse_xyz_name_refuses_other_names_in_one_line(name):
    with pytest.raises(UserError) as err:
        geodata.parse_xyz_name(name)
    message = str(err.value)
    assert name in message and "\n" not in message
    assert "OAM-<x>-<y>-<z>.png" in message or "zoom 3" in message


def test_xyz_transform_spans_the_tile_bounds():
    transform, crs = geodata.xyz_transform(1772464, 966380, 21, size=256)
    minx, miny, maxx, maxy = geodata.xyz_tile_bounds(1772464, 966380, 21)
    assert crs == "EPSG:3857"
    assert transform * (0, 0) == pytest.approx((minx, maxy), abs=1e-9)
    assert transform * (256, 256) == pytest.approx((maxx, miny), abs=1e-6)


def test_read_mask_grid_png_uses_the_tile_name(tmp_path, tile50):
    from PIL import Image

    x, y, z, transform, _ = tile50
    Image.fromarray(_scene_mask()).save(tmp_path / f"OAM-{x}-{y}-{z}.png")
    grid = fp.read_mask_grid(tmp_path / f"OAM-{x}-{y}-{z}.png")
    assert grid.crs == "EPSG:3857" and grid.transform == transform and grid.nodata is None
    np.testing.assert_array_equal(grid.mask, _scene_mask())
    Image.fromarray(_scene_mask()).save(tmp_path / "roofs.png")  # not a tile: pixel coordinates (issue 21)
    grid = fp.read_mask_grid(tmp_path / "roofs.png")
    assert grid.crs is None and grid.transform == fp.Affine.identity()
    np.testing.assert_array_equal(grid.mask, _scene_mask())


# ----------------------------------------------------------------------------- polygonise

def test_polygonise_round_trips_the_mask_exactly(tile50):
    *_, transform, _ = tile50
    mask = _scene_mask()
    polys = fp.polygonise(mask, transform)
    assert all(p.is_valid for p in polys)
    # 4-connectivity: the corner-touching roofs are two polygons; 2 rect + L + ring + disc + speck + 2 = 8
    assert len(polys) == 8
    assert sorted(len(p.interiors) for p in polys) == [0] * 7 + [1]
    back = fp.rasterize_footprints(polys, transform, mask.shape)
    np.testing.assert_array_equal(back, mask)  # IoU exactly 1.0: every pixel edge of the outline is kept


def test_polygonise_building_is_value_one_outside_nodata():
    mask = np.zeros((20, 20), np.uint8)
    mask[2:8, 2:8] = 1
    mask[10:15, 10:15] = 255  # an ignore value is not building
    mask[2:8, 12:18] = 1
    nodata = np.zeros_like(mask, dtype=bool)
    nodata[:, 15:] = True     # the black corner of a tile: no building there
    polys = fp.polygonise(mask, Affine.identity(), nodata)
    assert sorted(p.bounds for p in polys) == [(2, 2, 8, 8), (12, 2, 15, 8)]
    assert fp.polygonise(np.zeros((8, 8), np.uint8), Affine.identity()) == []


# ----------------------------------------------------------------------------- true areas

@pytest.mark.parametrize("lon, lat", [(39.28, -6.0), (8.68, 50.0)])
def test_areas_are_true_ground_areas(lon, lat):
    transform, crs = geodata.xyz_transform(*_tile_at(lon, lat, 20))
    mask = np.zeros((256, 256), np.uint8)
    mask[40:140, 30:90] = 1
    mask[140:200, 30:200] = 1  # an L: the sum of two lon/lat boxes
    polys = fp.polygonise(mask, transform)
    (area,) = fp.footprint_areas(polys, crs)
    expected = sum(_ellipsoid_box_area(*_lonlat(transform, c0, r1), *_lonlat(transform, c1, r0))
                   for r0, r1, c0, c1 in [(40, 140, 30, 90), (140, 200, 30, 200)])
    assert area == pytest.approx(expected, rel=1e-5)
    # ... which web-mercator "metres" overstate by about 1/cos(lat)^2 (2.4x at 50 degrees)
    assert polys[0].area / area == pytest.approx(1 / math.cos(math.radians(lat)) ** 2, rel=0.01)


def test_areas_in_a_projected_geotiff_crs(tmp_path):
    import rasterio

    path = tmp_path / "mask.tif"
    transform = Affine(0.5, 0, 500000.0, 0, -0.5, 5540000.0)  # UTM 33N, 50 cm pixels, near the meridian
    mask = np.zeros((64, 64), np.uint8)
    mask[10:30, 10:50] = 1
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8",
                       crs="EPSG:32633", transform=transform) as dst:
        dst.write(mask, 1)
    grid = fp.read_mask_grid(path)
    assert grid.crs == "EPSG:32633"
    (area,) = fp.footprint_areas(fp.polygonise(grid.mask, grid.transform), grid.crs)
    # UTM's scale factor is 0.9996 on the central meridian, so true area = map area / 0.9996^2
    assert area == pytest.approx(800 * 0.25 / 0.9996 ** 2, rel=1e-4)


# ----------------------------------------------------------------------------- cleaning

def test_opening_splits_roofs_joined_by_a_neck_and_small_holes_are_filled():
    crs = "EPSG:32633"  # metres: a 10 m x 10 m roof, another, joined by a 0.6 m wide strip
    x0, y0 = 500_000.0, 5_000_000.0
    left = shapely.box(x0, y0, x0 + 10, y0 + 10)
    right = shapely.box(x0 + 14, y0, x0 + 24, y0 + 10)
    neck = shapely.box(x0 + 10, y0 + 4.7, x0 + 14, y0 + 5.3)
    skylight = shapely.box(x0 + 4, y0 + 4, x0 + 5, y0 + 5)            # 1 m2
    court = shapely.box(x0 + 16, y0 + 2, x0 + 22, y0 + 8)              # 36 m2
    joined = shapely.union_all([left, right, neck]).difference(skylight).difference(court)
    kept = fp.clean_footprints([joined], crs, simplify_m=0, orthogonalise=False)
    assert len(kept) == 1 and len(kept[0].interiors) == 2  # no opening, no filling: as given
    split = fp.clean_footprints([joined], crs, simplify_m=0, orthogonalise=False, opening_m=0.5, hole_m2=2.0)
    assert len(split) == 2
    by_x = sorted(split, key=lambda p: p.centroid.x)
    assert by_x[0].area == pytest.approx(100, rel=1e-3) and not by_x[0].interiors       # skylight filled
    assert by_x[1].area == pytest.approx(64, rel=1e-3) and len(by_x[1].interiors) == 1  # the courtyard stays
    # a neck wider than twice the opening holds
    assert len(fp.clean_footprints([joined], crs, simplify_m=0, orthogonalise=False, opening_m=0.2)) == 1
    assert fp.fill_holes(joined, 0.5) is joined


def test_clean_drops_the_speck_and_keeps_the_shapes(tile50):
    *_, transform, crs = tile50
    mask = _scene_mask()
    polys = fp.polygonise(mask, transform)
    no_speck = mask.copy()
    no_speck[240:243, 240:243] = 0
    simplified = fp.clean_footprints(polys, crs, min_area_m2=1.0, simplify_m=0.2, orthogonalise=False)
    assert len(simplified) == 7  # the 3x3 speck (about 0.08 m2 at this latitude) is gone
    assert fp.footprint_areas(simplified, crs).min() >= 1.0
    assert _iou(fp.rasterize_footprints(simplified, transform, mask.shape), no_speck) >= 0.95
    squared = fp.clean_footprints(polys, crs, min_area_m2=1.0, simplify_m=0.2, orthogonalise=True)
    assert len(squared) == 7
    assert _iou(fp.rasterize_footprints(squared, transform, mask.shape), no_speck) >= 0.9


def _jagged_rectangle(rng: np.random.Generator) -> shapely.Polygon:
    """A 12 m x 8 m rectangle in UTM 33N with its corners moved up to 0.4 m and 0.1 m jitter along the edges."""
    corners = np.array([[0, 0], [12, 0], [12, 8], [0, 8]], float) + rng.uniform(-0.4, 0.4, (4, 2))
    points = []
    for a, b in zip(corners, np.roll(corners, -1, axis=0)):
        normal = np.array([a[1] - b[1], b[0] - a[0]]) / np.linalg.norm(b - a)
        points += [a] + [a + t * (b - a) + rng.uniform(-0.1, 0.1) * normal for t in np.linspace(0.1, 0.9, 9)]
    return shapely.Polygon(np.array(points) + [500000.0, 5540000.0])


def test_orthogonalise_squares_a_jagged_rectangle():
    pytest.importorskip("buildingregulariser")
    jagged = _jagged_rectangle(np.random.default_rng(0))
    (simplified,) = fp.clean_footprints([jagged], "EPSG:32633", orthogonalise=False)
    assert np.abs(_angles(simplified) - 90).max() > 2  # simplification alone leaves the corners skewed
    (squared,) = fp.clean_footprints([jagged], "EPSG:32633", orthogonalise=True)
    assert len(squared.exterior.coords) == 5
    assert np.abs(_angles(squared) - 90).max() < 0.1
    assert squared.intersection(jagged).area / squared.union(jagged).area > 0.9


def test_orthogonalise_keeps_a_rotated_roof_rotated(tile50):
    pytest.importorskip("buildingregulariser")
    *_, transform, crs = tile50
    k = 1 / math.cos(math.radians(50))  # ground metres -> web-mercator metres here
    cx, cy = transform * (128, 128)
    roof = affinity.rotate(shapely.box(cx - 5 * k, cy - 3 * k, cx + 5 * k, cy + 3 * k), 20, origin=(cx, cy))
    staircase = fp.polygonise(fp.rasterize_footprints([roof], transform, (256, 256)), transform)
    (squared,) = fp.clean_footprints(staircase, crs)
    metric, _ = fp.to_metric([squared], crs)
    assert np.abs(_angles(metric[0]) - 90).max() < 0.1
    assert squared.intersection(roof).area / squared.union(roof).area > 0.95
    edge = np.diff(np.asarray(metric[0].exterior.coords)[:2], axis=0)[0]
    assert math.degrees(math.atan2(edge[1], edge[0])) % 90 == pytest.approx(20, abs=1)


# ----------------------------------------------------------------------------- merging

def test_merge_pieces_joins_a_roof_cut_by_four_tiles(tile50):
    x, y, z, *_ = tile50
    big = np.zeros((512, 512), np.uint8)
    big[200:300, 180:330] = 1    # one roof over the corner shared by a 2x2 block of tiles
    big[20:60, 20:60] = 1        # two roofs meeting at a corner, inside one tile
    big[60:90, 60:90] = 1
    pieces = []
    for dy in (0, 1):
        for dx in (0, 1):
            transform, _ = geodata.xyz_transform(x + dx, y + dy, z)
            pieces += fp.polygonise(big[dy * 256:(dy + 1) * 256, dx * 256:(dx + 1) * 256], transform)
    assert len(pieces) == 6
    merged = fp.merge_pieces(pieces)
    assert len(merged) == 3 and all(p.is_valid for p in merged)
    whole, _ = geodata.xyz_transform(x, y, z, size=256)  # the block's grid: same origin and pixel size
    np.testing.assert_array_equal(fp.rasterize_footprints(merged, whole, big.shape), big)
    assert len(fp.merge_pieces(geodata.reproject(pieces, "EPSG:3857", "EPSG:4326"))) == 3  # degrees work too


def test_merge_pieces_joins_overlaps_and_hairline_gaps_and_leaves_the_rest():
    a, b = shapely.box(0, 0, 10, 10), shapely.box(8, 0, 20, 10)            # overlapping windows
    c, d = shapely.box(30, 0, 40, 10), shapely.box(40 + 1e-7, 0, 50, 10)   # a float-rounding gap
    e = shapely.box(60, 0, 70, 10)
    f, g = shapely.box(100, 0, 120, 20), shapely.box(105, 5, 110, 10)   # a window's piece inside another's
    merged = fp.merge_pieces([a, b, c, d, e, f, g])
    assert sorted(p.bounds for p in merged) == [(0, 0, 20, 10), (30, 0, 50, 10), (60, 0, 70, 10), (100, 0, 120, 20)]
    assert e in merged  # untouched polygons come back as they were
    assert sorted(p.area for p in merged) == pytest.approx([100, 200, 200, 400], abs=1e-4)
    assert fp.merge_pieces([]) == []


# ----------------------------------------------------------------------------- writing

def test_write_footprints_geojson_and_gpkg(tmp_path, tile50):
    from pyogrio import raw

    x, y, z, transform, crs = tile50
    polys = fp.clean_footprints(fp.polygonise(_scene_mask(), transform), crs)
    props = [{"source": f"OAM-{x}-{y}-{z}.png", "score": 0.5 + i / 100, "tile_count": 1} for i in range(len(polys))]
    fp.write_footprints(polys, props, crs, tmp_path / "out.geojson", tmp_path / "out.gpkg")
    data = json.loads((tmp_path / "out.geojson").read_text())
    assert data["type"] == "FeatureCollection" and "crs" not in data
    assert len(data["features"]) == len(polys)
    west, north = _lonlat(transform, 0, 0)
    east, south = _lonlat(transform, 256, 256)
    areas = fp.footprint_areas(polys, crs)
    for feature, area in zip(data["features"], areas):
        assert list(feature["properties"])[:2] == ["area_m2", "source"]
        assert feature["properties"]["area_m2"] == pytest.approx(area, abs=0.01)
        assert feature["properties"]["tile_count"] == 1
        geom = shapely.geometry.shape(feature["geometry"])
        lon, lat = geom.exterior.coords[0]  # lon/lat order, inside the tile
        assert west <= lon <= east and south <= lat <= north
        assert geom.exterior.is_ccw and not any(ring.is_ccw for ring in geom.interiors)  # right-hand rule
    meta, _, geometry, fields = raw.read(tmp_path / "out.gpkg")
    assert meta["crs"] == "EPSG:4326" and list(meta["fields"]) == ["area_m2", "source", "score", "tile_count"]
    assert len(geometry) == len(polys)
    np.testing.assert_allclose(fields[0], [f["properties"]["area_m2"] for f in data["features"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.geojson", "out.gpkg"]  # no temporaries left


def test_write_footprints_empty(tmp_path):
    import pyogrio

    fp.write_footprints([], [], "EPSG:3857", tmp_path / "none.geojson", tmp_path / "none.gpkg")
    data = json.loads((tmp_path / "none.geojson").read_text())
    assert data == {"type": "FeatureCollection", "features": []}
    info = pyogrio.read_info(tmp_path / "none.gpkg")
    assert info["features"] == 0 and info["geometry_type"] == "Polygon"
    assert list(info["fields"]) == ["area_m2", "source"]


def test_write_footprints_needs_a_source_per_polygon(tmp_path):
    box = shapely.box(0, 0, 1, 1)
    with pytest.raises(ValueError, match="1 polygons but 0"):
        fp.write_footprints([box], [], "EPSG:3857", tmp_path / "a.geojson", tmp_path / "a.gpkg")
    with pytest.raises(ValueError, match="no 'source'"):
        fp.write_footprints([box], [{"score": 1}], "EPSG:3857", tmp_path / "a.geojson", tmp_path / "a.gpkg")


# ----------------------------------------------------------------------------- no CRS

def test_crs_less_geotiff_stays_in_pixel_coordinates(tmp_path, caplog):
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    path = tmp_path / "plain.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", width=256, height=256, count=1, dtype="uint8") as dst:
            dst.write(_scene_mask(), 1)
    with caplog.at_level(logging.WARNING, logger="misc.footprints"):
        grid = fp.read_mask_grid(path)
    assert grid.crs is None and grid.transform == Affine.identity()
    assert "plain.tif has no CRS" in caplog.text and "pixel coordinates" in caplog.text
    polys = fp.polygonise(grid.mask, grid.transform)
    assert sorted(p.bounds for p in polys)[0] == (10.0, 10.0, 90.0, 50.0)  # (col, row) of the first rectangle
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="misc.footprints"):
        cleaned = fp.clean_footprints(polys, None, min_area_m2=20, simplify_m=0.5, orthogonalise=False)
        fp.write_footprints(cleaned, [{"source": "plain.tif"}] * len(cleaned), None,
                            tmp_path / "plain.geojson", tmp_path / "plain.gpkg")
    assert len(cleaned) == 7 and "pixel units" in caplog.text and "pixel coordinates" in caplog.text
    data = json.loads((tmp_path / "plain.geojson").read_text())
    assert data["pixel_coordinates"] is True
    assert all(f["properties"]["area_m2"] is None for f in data["features"])
    assert max(shapely.geometry.shape(f["geometry"]).bounds[2] for f in data["features"]) <= 256
