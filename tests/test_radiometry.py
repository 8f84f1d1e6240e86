"""One rule from bands to 8-bit RGB (issue 21, item 3): a tile prepared for training and the same area
predicted from its scene get the same input, whatever nodata, masks or outliers the scene holds."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from misc import geoio, imutils, radiometry
from voc12 import prepare, tiling
from voc12.layout import default_paths

CRS = "EPSG:32633"
ORIGIN, PIXEL = (500_000.0, 4_600_000.0), 0.5


def write_scene(path, data: np.ndarray, nodata=None) -> None:
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0],
                       dtype=data.dtype, crs=CRS, transform=from_origin(*ORIGIN, PIXEL, PIXEL), nodata=nodata) as dst:
        dst.write(data)


def hostile_scene(kind: str, height: int = 300, width: int = 280) -> tuple[np.ndarray, object, np.ndarray]:
    """(bands, nodata, valid): 16-bit ground of 1000-5000 with one saturated pixel and a corner of no data."""
    rng = np.random.default_rng(3)
    data = rng.integers(1000, 5000, (3, height, width)).astype(np.uint16)
    valid = np.ones((height, width), bool)
    valid[:60, :90] = False  # a no-data corner, as a scene's edge
    data[:, height // 2, width // 2] = 65534  # one saturated pixel
    if kind == "float":
        data = data.astype(np.float32)
        data[:, ~valid] = np.nan
        return data, float("nan"), valid
    data[:, ~valid] = 65535
    return data, 65535, valid


def labels_file(tmp_path):
    from rasterio.warp import transform_geom

    x0, y0 = ORIGIN
    ring = [(x0 + 100, y0 - 20), (x0 + 120, y0 - 20), (x0 + 120, y0 - 40), (x0 + 100, y0 - 40), (x0 + 100, y0 - 20)]
    geom = transform_geom(CRS, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
    path = tmp_path / "labels.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": geom}]}))
    return path


def predicted_input(scene, out_dir):
    """The whole uint8 RGB the network is given when S11 predicts `scene` (the reads of predict_geotiff)."""
    seen = {}

    def blocks(read, height, width):
        seen["rgb"] = read(0, height, 0, width)
        yield 0, 0, torch.zeros(2, height, width)

    out_dir.mkdir(exist_ok=True)
    geoio.predict_geotiff(scene, out_dir, "scene", blocks)
    return seen["rgb"]


@pytest.mark.parametrize("kind", ["uint16", "float"])
@pytest.mark.parametrize("sample", [radiometry.SAMPLE_PIXELS, 5_000])  # 5,000: a scene read decimated
def test_a_prepared_tile_and_the_predicted_scene_get_the_same_input(tmp_path, monkeypatch, kind, sample):
    import rasterio

    monkeypatch.setattr(radiometry, "SAMPLE_PIXELS", sample)
    data, nodata, valid = hostile_scene(kind)
    scene = tmp_path / "scene.tif"
    write_scene(scene, data, nodata)
    prepare.prepare_geotiff([scene], labels_file(tmp_path), tmp_path / "dataset", tile_size=128)
    seen = predicted_input(scene, tmp_path / "seg")
    for r, c in tiling.tile_grid(*data.shape[1:], 128):
        tile = imutils.read_image(tmp_path / "dataset" / "JPEGImages" / f"scene_{r}_{c}.png")
        area = seen[r:r + 128, c:c + 128]
        assert np.abs(tile.astype(int) - area.astype(int)).max() <= 1
    # the ground is mid-grey, not darkened by the nodata value or the saturated pixel; no data is 0
    assert 100 < seen[valid].mean() < 155 and (seen[~valid] == 0).all()
    recorded = json.loads(default_paths(tmp_path / "dataset")["radiometry"].read_text())["scene"]
    with rasterio.open(tmp_path / "seg" / "scene.tif") as src:
        assert json.loads(src.tags()["RADIOMETRY"]) == recorded
    assert recorded["rule"] == radiometry.RULE and all(1000 <= lo < hi <= 5000 for lo, hi in
                                                        zip(recorded["low"], recorded["high"]))


def test_an_8bit_scene_is_used_as_it_is_and_the_preview_follows_the_rule(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (3, 50, 60), dtype=np.uint8)
    write_scene(tmp_path / "rgb.tif", data)
    np.testing.assert_array_equal(predicted_input(tmp_path / "rgb.tif", tmp_path / "seg"), data.transpose(1, 2, 0))
    wide, nodata, valid = hostile_scene("uint16", 100, 100)
    write_scene(tmp_path / "wide.tif", wide, nodata)
    preview = geoio.preview_rgb(tmp_path / "wide.tif", 100)
    assert 100 < preview[valid].mean() < 155 and (preview[~valid] == 0).all()


def test_a_16bit_png_is_stretched_by_the_same_rule(tmp_path):
    from PIL import Image

    band = np.random.default_rng(1).integers(1000, 5000, (40, 40)).astype(np.uint16)
    band[0, 0] = 65535  # one outlier
    Image.fromarray(band).save(tmp_path / "grey16.png")
    image = imutils.read_image(tmp_path / "grey16.png")
    assert image.shape == (40, 40, 3) and 100 < image.mean() < 155
