"""From masks to maps: scenes of any size (windowed GeoTIFF prediction), XYZ folders, the footprints stage
(S12), building-level scores in eval_seg, and the ONNX export."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import rasterio
import torch
from rasterio.crs import CRS
from rasterio.transform import from_origin

import run_sample
from misc import fileio, footprints, geodata, geoio, imutils
from misc.errors import UserError
from net import deeplabv3plus
from net.backbones import reparameterize
from net.checkpoints import load_net, save_net
from net.deeplabv3plus import DeepLabV3Plus
from step import eval_seg, export_seg, make_footprints, make_seg
from tests.conftest import stage_args

pytestmark = pytest.mark.usefixtures("cpu_runtime", "one_thread")

UTM33 = CRS.from_epsg(32633)
ORIGIN = from_origin(500_000.0, 4_600_000.0, 0.5, 0.5)


@pytest.fixture(scope="module")
def model():
    return reparameterize(DeepLabV3Plus("RepVGG-Tiny").eval())


def write_geotiff(path, pixels, crs=UTM33, transform=ORIGIN, nodata=None):
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    profile = {"driver": "GTiff", "height": pixels.shape[1], "width": pixels.shape[2], "count": pixels.shape[0],
               "dtype": pixels.dtype.name, "nodata": nodata}
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the CRS-less case, on purpose
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(pixels)
    return path


def map_args(tmp_path, *extra):
    save_net(DeepLabV3Plus("RepVGG-Tiny"), tmp_path / "sess" / "seg.pth")
    return stage_args(tmp_path / "unused_root", tmp_path, "--seg_weights_name", str(tmp_path / "sess" / "seg"),
                      "--seg_window", "32", "--num_vis", "2", *extra)


# ----------------------------------------------------------------------------- scenes of any size

def test_windowed_scene_equals_whole_image_prediction(tmp_path, model):
    pixels = np.random.default_rng(0).integers(1, 255, (3, 90, 150), dtype=np.uint8)
    pixels[:, :, :7] = 0                                       # a nodata border on the left
    path = write_geotiff(tmp_path / "scene.tif", pixels, nodata=0)
    whole = torch.softmax(deeplabv3plus.predict(model, pixels.transpose(1, 2, 0).copy(), 32, 0.5), dim=0)

    def blocks(read, height, width):  # bands of 64 columns: windows straddle the band edges
        return deeplabv3plus.scene_logits(model, read, height, width, 32, 0.5, band=64, batch=5)

    result = geoio.predict_geotiff(path, tmp_path, "scene", blocks, prob_band=True)
    assert (result.height, result.width, result.png) == (90, 150, True)
    with rasterio.open(tmp_path / "scene.tif") as src:
        assert src.crs == UTM33 and src.transform == ORIGIN and src.count == 2 and src.nodata == geoio.NODATA
        assert src.profile["tiled"] and src.compression.name == "deflate"
        if geoio.cog_available():
            assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        mask, percent = src.read()
    assert (mask[:, :7] == geoio.NODATA).all() and (percent[:, :7] == geoio.NODATA).all()
    np.testing.assert_array_equal(mask[:, 7:], whole.argmax(0).numpy()[:, 7:])
    assert np.abs(percent[:, 7:] / 100 - whole[1].numpy()[:, 7:]).max() <= 0.005 + 1e-6  # percent rounding
    png = imutils.read_mask(tmp_path / "scene.png")
    assert (png[:, :7] == 0).all() and (png[:, 7:] == mask[:, 7:]).all()

    read = lambda r0, r1, c0, c1: pixels.transpose(1, 2, 0)[r0:r1, c0:c1]  # noqa: E731
    probs = torch.zeros(2, 90, 150)
    for row, col, logits in deeplabv3plus.scene_logits(model, read, 90, 150, 32, 0.5, band=64):
        probs[:, row:row + logits.shape[1], col:col + logits.shape[2]] = torch.softmax(logits, dim=0)
    assert float((probs - whole).abs().max()) < 1e-4


def test_make_seg_on_a_folder_of_a_scene_and_xyz_tiles(tmp_path):
    folder = tmp_path / "area"
    folder.mkdir()
    rng = np.random.default_rng(1)
    write_geotiff(folder / "scene.tif", rng.integers(0, 255, (3, 40, 70), dtype=np.uint8))
    x, y, z = 1277168, 1083840, 21
    for dx in (0, 1):
        fileio.save_png(folder / f"OAM-{x + dx}-{y}-{z}.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    args = map_args(tmp_path, "--seg_infer_dir", str(folder), "--seg_prob_band", "True")
    make_seg.run(args)
    out = tmp_path / "result" / "seg"
    with rasterio.open(out / "scene.tif") as src:
        assert src.crs == UTM33 and src.transform == ORIGIN and src.count == 2 and src.profile["tiled"]
    for dx in (0, 1):
        with rasterio.open(out / f"OAM-{x + dx}-{y}-{z}.tif") as src:
            assert src.crs == CRS.from_epsg(3857) and src.shape == (64, 64)
            np.testing.assert_allclose(tuple(src.bounds), geodata.xyz_tile_bounds(x + dx, y, z), rtol=0, atol=1e-6)
            np.testing.assert_array_equal(src.read(1), imutils.read_mask(out / f"OAM-{x + dx}-{y}-{z}.png"))
    assert len(list((tmp_path / "result" / "vis" / "seg").glob("*.png"))) == 2
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*.tif")}
    make_seg.run(args)  # resume: the scene's .tif and the tiles' .png mean done
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


def test_two_band_image_is_one_line_and_exit_2(tmp_path, capsys):
    folder = tmp_path / "area"
    folder.mkdir()
    write_geotiff(folder / "two.tif", np.zeros((2, 20, 20), np.uint8))
    map_args(tmp_path)
    argv = ["--work_space", str(tmp_path / "result"), "--backbone", "RepVGG-Tiny", "--device", "cpu",
            "--seg_weights_name", str(tmp_path / "sess" / "seg"), "--seg_infer_dir", str(folder), "--make_seg_pass", "True"]
    with pytest.raises(SystemExit) as exit_info:
        run_sample.exit_on_user_error(lambda: run_sample.main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "two.tif has 2 bands" in err[-1] and "Traceback" not in "".join(err)


# ----------------------------------------------------------------------------- footprints (S12)

X, Y, Z = 1277168, 1083840, 21


def write_xyz_masks(seg_dir):
    """Two neighbouring zoom-21 tiles: one building across their seam, one inside the left tile, a speck."""
    left, right = np.zeros((256, 256), np.uint8), np.zeros((256, 256), np.uint8)
    left[100:160, 200:256] = 1
    right[100:160, 0:40] = 1          # the same roof, continued over the seam
    left[20:60, 20:90] = 1
    left[10:40, 120:130] = 1          # an L-shaped second part ...
    left[30:40, 130:160] = 1          # ... (a non-convex roof)
    right[240, 240] = 1               # a speck of 0.0056 m2
    seg_dir.mkdir(parents=True, exist_ok=True)
    fileio.save_png(seg_dir / f"OAM-{X}-{Y}-{Z}.png", left)
    fileio.save_png(seg_dir / f"OAM-{X + 1}-{Y}-{Z}.png", right)
    return {f"OAM-{X}-{Y}-{Z}": left, f"OAM-{X + 1}-{Y}-{Z}": right}


def footprint_args(tmp_path, *extra):
    # the synthetic roofs are a few m2 at their zoom: fAIr's 1 m2 minimum, not the 10 m2 default for real roofs
    return stage_args(tmp_path / "unused_root", tmp_path, "--seg_out_dir", str(tmp_path / "seg"),
                      "--footprint_min_area", "1", *extra)


def test_footprints_merge_across_tiles_and_rasterise_back(tmp_path):
    masks = write_xyz_masks(tmp_path / "seg")
    images = tmp_path / "images"
    for name in masks:
        fileio.save_png(images / f"{name}.png", np.full((256, 256, 3), 120, np.uint8))
    args = footprint_args(tmp_path, "--footprint_simplify", "0", "--footprint_orthogonalise", "False",
                          "--seg_infer_dir", str(images))
    summary = make_footprints.write_all(args)
    out = tmp_path / "result" / "footprints.geojson"
    collection = json.loads(out.read_text())
    assert collection["type"] == "FeatureCollection" and "pixel_coordinates" not in collection
    features = collection["features"]
    assert len(features) == 3 == summary["buildings"]  # the seam building is one, the speck is gone
    assert all(f["properties"]["area_m2"] > 1 and f["properties"]["source"].endswith(".png") for f in features)
    lon, lat = np.asarray(features[0]["geometry"]["coordinates"][0]).T
    assert (-180 <= lon).all() and (lon <= 180).all() and (-90 <= lat).all() and (lat <= 90).all()
    assert (tmp_path / "result" / "footprints.gpkg").is_file()
    assert len(list((tmp_path / "result" / "vis" / "footprints").glob("*.png"))) == 2
    polys = geodata.reproject([shapely_shape(f["geometry"]) for f in features], geodata.WGS84_EPSG, "EPSG:3857")
    for name, mask in masks.items():
        transform, _ = geodata.xyz_transform(*geodata.parse_xyz_name(name))
        back = footprints.rasterize_footprints(polys, transform, mask.shape).astype(bool)
        truth = mask.astype(bool)
        truth[240, 240] = False  # the speck was dropped on purpose
        assert (back & truth).sum() / (back | truth).sum() >= 0.95


def shapely_shape(geometry):
    from shapely.geometry import shape

    return shape(geometry)


def test_footprints_with_the_default_cleaning_stay_close_to_the_mask(tmp_path):
    masks = write_xyz_masks(tmp_path / "seg")
    make_footprints.write_all(footprint_args(tmp_path))
    features = json.loads((tmp_path / "result" / "footprints.geojson").read_text())["features"]
    polys = geodata.reproject([shapely_shape(f["geometry"]) for f in features], geodata.WGS84_EPSG, "EPSG:3857")
    name = f"OAM-{X}-{Y}-{Z}"
    back = footprints.rasterize_footprints(polys, geodata.xyz_transform(X, Y, Z)[0], (256, 256)).astype(bool)
    assert len(features) == 3 and (back & (masks[name] == 1)).sum() / (back | (masks[name] == 1)).sum() >= 0.9


def test_a_scene_mask_read_by_windows_gives_whole_buildings(tmp_path, monkeypatch):
    mask = np.zeros((1, 100, 120), np.uint8)
    mask[0, 30:70, 20:90] = 1                      # crosses the window edges at row 40 and column 40 and 80
    mask[0, 5:15, 100:115] = 1
    mask[0, 80:, :] = geoio.NODATA                 # no data: never building
    (tmp_path / "seg").mkdir()
    write_geotiff(tmp_path / "seg" / "scene.tif", mask, nodata=geoio.NODATA)
    args = footprint_args(tmp_path, "--footprint_simplify", "0", "--footprint_orthogonalise", "False")
    monkeypatch.setattr(footprints, "MASK_WINDOW", 40)
    assert len(list(footprints.read_mask_windows(tmp_path / "seg" / "scene.tif"))) == 9
    make_footprints.write_all(args)
    features = json.loads((tmp_path / "result" / "footprints.geojson").read_text())["features"]
    assert len(features) == 2
    polys = geodata.reproject([shapely_shape(f["geometry"]) for f in features], geodata.WGS84_EPSG, UTM33)
    back = footprints.rasterize_footprints(polys, ORIGIN, (100, 120))
    np.testing.assert_array_equal(back, mask[0] == 1)
    areas = sorted(f["properties"]["area_m2"] for f in features)  # 0.25 m2 pixels; UTM's scale 0.9996 there
    assert areas == pytest.approx([37.5 / 0.9996 ** 2, 700 / 0.9996 ** 2], rel=1e-4)


def test_empty_masks_give_an_empty_collection(tmp_path):
    seg = tmp_path / "seg"
    fileio.save_png(seg / f"OAM-{X}-{Y}-{Z}.png", np.zeros((256, 256), np.uint8))
    summary = make_footprints.write_all(footprint_args(tmp_path))
    assert summary["buildings"] == 0
    assert json.loads((tmp_path / "result" / "footprints.geojson").read_text())["features"] == []


def test_crs_less_geotiff_mask_stays_in_pixel_coordinates_with_a_warning(tmp_path, caplog):
    mask = np.zeros((1, 50, 60), np.uint8)
    mask[0, 10:30, 5:25] = 1
    (tmp_path / "seg").mkdir()
    write_geotiff(tmp_path / "seg" / "plain.tif", mask, crs=None)
    with caplog.at_level(logging.WARNING):
        make_footprints.write_all(footprint_args(tmp_path, "--footprint_orthogonalise", "False"))
    assert "no CRS" in caplog.text and "pixel coordinates" in caplog.text
    collection = json.loads((tmp_path / "result" / "footprints.geojson").read_text())
    assert collection["pixel_coordinates"] is True
    (feature,) = collection["features"]
    cols, rows = np.asarray(feature["geometry"]["coordinates"][0]).T
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (5, 25, 10, 30)
    assert feature["properties"]["area_m2"] is None


def test_mask_names_that_are_not_xyz_tiles_stay_in_pixels_and_a_missing_folder_is_one_line(tmp_path, caplog):
    mask = np.zeros((64, 64), np.uint8)
    mask[10:20, 30:40] = 1
    fileio.save_png(tmp_path / "seg" / "roofs.png", mask)  # a plain tile (e.g. of `voc12.prepare labels`)
    with caplog.at_level("WARNING"):  # never placed by a guess, never an error either
        assert make_footprints.write_all(footprint_args(tmp_path))["buildings"] == 1
    assert "roofs.png is not named as an XYZ tile" in caplog.text
    collection = json.loads((tmp_path / "result" / "footprints.geojson").read_text())
    assert collection["pixel_coordinates"] is True and len(collection["features"]) == 1
    with pytest.raises(UserError, match="--seg_out_dir .* does not exist"):
        make_footprints.write_all(stage_args(tmp_path, tmp_path, "--seg_out_dir", str(tmp_path / "nothing")))


# ----------------------------------------------------------------------------- building-level scores

def test_eval_seg_adds_building_scores_and_a_tile_csv(tiny_root, tmp_path):
    args = stage_args(tiny_root, tmp_path, "--seg_weights_name", str(tmp_path / "sess" / "seg"))
    names = (tiny_root / "test.txt").read_text().split()
    seg = tmp_path / "result" / "seg"
    expected = {"tp": 0, "fp": 0, "fn": 0}
    for i, name in enumerate(names):
        gt = imutils.gt_to_binary(imutils.read_mask(tiny_root / "SegmentationClassAug" / f"{name}.png"))
        pred = gt.copy()
        if i == 0:
            pred[:] = 0
            pred[:3, :3] = 1                 # the roof missed, a false alarm instead
        fileio.save_png(seg / f"{name}.png", pred)
        buildings = int(gt.any())
        expected["tp"] += buildings if i else 0
        expected["fn"] += buildings if i == 0 else 0
        expected["fp"] += int(i == 0)
    result = eval_seg.report_seg(args)
    tp, fp, fn = expected["tp"], expected["fp"], expected["fn"]
    assert {k: result["object_counts"][k] for k in expected} == expected
    assert result["scores"]["object_precision"] == pytest.approx(tp / (tp + fp))
    assert result["scores"]["object_recall"] == pytest.approx(tp / (tp + fn))
    assert result["scores"]["object_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert "building_iou" in result["scores"]
    from step.report import stage_table

    assert f"| {result['stage']} | {result['scores']['object_f1']:.4f} |" in stage_table(tmp_path / "result")
    lines = (tmp_path / "result" / "metrics_seg_tiles.csv").read_text().splitlines()
    assert lines[0] == "name,pixels,tp,fp,fn,building_iou,fp_pixels,fn_pixels" and len(lines) == len(names) + 1
    assert lines[1].startswith(f"{names[0]},4096,0,1,")
    # the first tile disagrees most each way: its 9 false-alarm pixels, its missed roof
    gt0 = imutils.gt_to_binary(imutils.read_mask(tiny_root / "SegmentationClassAug" / f"{names[0]}.png"))
    missed = int(gt0.sum() - gt0[:3, :3].sum())
    assert result["disagreement"]["building_not_in_truth"][0] == {"name": names[0], "share": round(9 / 4096, 4)}
    assert result["disagreement"]["truth_not_predicted"] == [{"name": names[0], "share": round(missed / 4096, 4)}]
    assert lines[1].endswith(f",9,{missed}")
    sheet = imutils.read_image(tmp_path / "result" / "vis" / "seg_disagree_truth_not_predicted.png")
    assert sheet.shape == (64, 132, 3) and (sheet[:, :64] == imutils.read_image(imutils.find_image(tiny_root / "JPEGImages", names[0]))).all()


# ----------------------------------------------------------------------------- ONNX export

def test_onnx_export_round_trip(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (requirements.txt)")
    args = map_args(tmp_path)
    export_seg.run(args)
    path = tmp_path / "sess" / "seg.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).normal(size=(2, 3, 45, 70)).astype(np.float32)  # another N, H and W
    (logits,) = session.run(None, {"image": x})
    model = load_net(DeepLabV3Plus, tmp_path / "sess" / "seg.pth", fold=True)
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(x)), dim=1).numpy()
    assert logits.shape == (2, 2, 45, 70)
    assert np.abs(torch.softmax(torch.from_numpy(logits), dim=1).numpy() - expected).max() < 1e-3
