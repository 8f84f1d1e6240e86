"""S12 reads the masks users write (issue 21, item 5): 0/255 masks are buildings, not no data; a mask of
other values is one line; an empty result is said."""
from __future__ import annotations

import json

import numpy as np
import pytest

from misc import fileio, footprints
from misc.errors import UserError
from step import make_footprints
from tests.test_maps import footprint_args, write_xyz_masks

pytestmark = pytest.mark.usefixtures("cpu_runtime")


def buildings(tmp_path) -> int:
    result = make_footprints.write_all(footprint_args(tmp_path))
    data = json.loads((tmp_path / "result" / "footprints.geojson").read_text())
    assert result["buildings"] == len(data["features"])
    return result["buildings"]


def test_masks_written_0_255_give_the_same_footprints_as_0_1(tmp_path):
    masks = write_xyz_masks(tmp_path / "seg")
    expected = buildings(tmp_path)
    assert expected >= 2
    for name, mask in masks.items():
        fileio.save_png(tmp_path / "seg" / f"{name}.png", mask * 255)
    assert buildings(tmp_path) == expected


def write_geotiff(path, mask, nodata=None):
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(path, "w", driver="GTiff", height=mask.shape[0], width=mask.shape[1], count=1, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500_000, 4_600_000, 0.5, 0.5), nodata=nodata) as dst:
        dst.write(mask[None])


@pytest.mark.parametrize("large", [False, True])
def test_geotiff_masks_0_255_and_0_1_255(tmp_path, monkeypatch, large):
    if large:  # read by windows: the encoding is still the whole file's
        monkeypatch.setattr(footprints, "MASK_WINDOW", 32)
    seg = tmp_path / "seg"
    seg.mkdir()
    mask = np.zeros((80, 80), np.uint8)
    mask[10:30, 10:30] = 255   # a 10 x 10 m building, written 0/255, no nodata declared
    write_geotiff(seg / "gt.tif", mask)
    assert buildings(tmp_path) == 1
    # S11's own encoding: 1 building, 255 declared nodata (a nodata corner is never building)
    ours = np.zeros((80, 80), np.uint8)
    ours[50:70, 50:70] = 1
    ours[:5] = 255
    write_geotiff(seg / "gt.tif", ours, nodata=255)
    assert buildings(tmp_path) == 1
    # 0/1/255 without a declared nodata: 255 is no label, the 1s are the buildings
    write_geotiff(seg / "gt.tif", ours)
    assert buildings(tmp_path) == 1


@pytest.mark.parametrize("value", [2, 128, 254])
def test_a_mask_of_other_values_is_one_line(tmp_path, value):
    masks = write_xyz_masks(tmp_path / "seg")
    name, mask = next(iter(masks.items()))
    fileio.save_png(tmp_path / "seg" / f"{name}.png", mask * value)
    with pytest.raises(UserError, match=f"{name}.png holds the mask value\\(s\\) {value}"):
        make_footprints.write_all(footprint_args(tmp_path))


def test_an_empty_result_is_said(tmp_path, caplog):
    seg = tmp_path / "seg"
    seg.mkdir()
    write_geotiff(seg / "empty.tif", np.zeros((40, 40), np.uint8))
    with caplog.at_level("WARNING"):
        assert buildings(tmp_path) == 0
    assert any("no building in 1 masks" in r.getMessage() for r in caplog.records)
