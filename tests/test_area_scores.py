"""Building-level scores over a whole area (misc.area_scores, step.eval_footprints): SpaceNet matching of the
merged S12 footprints against reference polygons, inside the area the masks cover."""
from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from shapely.geometry import box, mapping

from misc import area_scores, fileio, footprints, geodata
from misc.errors import UserError
from step import eval_footprints, make_footprints, report
from tests.conftest import stage_args

pytestmark = pytest.mark.usefixtures("cpu_runtime")

X, Y, Z = 1277168, 1083840, 21


def square(x: float, y: float = 0.0, side: float = 10.0):
    return box(x, y, x + side, y + side)


# ----------------------------------------------------------------------------- matching

def test_an_exact_match_is_one_true_positive():
    m = area_scores.match_polygons([square(0)], [square(0)])
    assert (m.tp, m.fp, m.fn) == (1, 0, 0)
    assert m.ref_iou[0] == pytest.approx(1.0) and m.pred_match[0] == 0 and m.ref_match[0] == 0


@pytest.mark.parametrize("shift, iou, matched", [(3.0, 7 / 13, True), (4.0, 6 / 14, False)])
def test_a_shifted_square_matches_only_at_iou_half_or_more(shift, iou, matched):
    m = area_scores.match_polygons([square(shift)], [square(0)])
    assert m.pred_best[0] == pytest.approx(iou) and m.ref_best[0] == pytest.approx(iou)
    assert (m.tp, m.fp, m.fn) == ((1, 0, 0) if matched else (0, 1, 1))
    assert m.pred_iou[0] == (pytest.approx(iou) if matched else 0.0)


def test_two_predictions_over_one_reference_count_once():
    # both above 0.5: the better one matches, the other is a false positive
    m = area_scores.match_polygons([square(1), square(0)], [square(0)])
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)
    assert m.ref_match[0] == 1 and m.pred_match.tolist() == [-1, 0]


def test_a_reference_split_into_three_unmerged_pieces_is_missed():
    pieces = [box(0, 0, 10, 10 / 3), box(0, 10 / 3, 10, 20 / 3), box(0, 20 / 3, 10, 10)]
    m = area_scores.match_polygons(pieces, [square(0)])
    assert (m.tp, m.fp, m.fn) == (0, 3, 1)
    merged = area_scores.match_polygons([shapely.union_all(pieces)], [square(0)])
    assert (merged.tp, merged.fp, merged.fn) == (1, 0, 0)


def test_matching_is_one_to_one_in_a_crowd_and_greedy_by_iou():
    refs = [square(0), square(20), square(40)]
    preds = [square(41), square(0.5), square(100), square(20)]
    m = area_scores.match_polygons(preds, refs)
    assert (m.tp, m.fp, m.fn) == (3, 1, 0)
    assert m.ref_match.tolist() == [1, 3, 0] and m.pred_match.tolist() == [2, 0, -1, 1]


def test_empty_sets():
    m = area_scores.match_polygons([], [square(0)])
    assert (m.tp, m.fp, m.fn) == (0, 0, 1)
    m = area_scores.match_polygons([square(0)], [])
    assert (m.tp, m.fp, m.fn) == (0, 1, 0)


def test_iou_histogram_bins():
    assert area_scores.iou_histogram(np.array([0.0, 0.05, 0.5, 0.99, 1.0])) == [2, 0, 0, 0, 0, 1, 0, 0, 0, 2]


def test_references_are_clipped_to_the_covered_area_and_slivers_dropped():
    area = box(0, 0, 100, 100)
    refs = [square(10), square(95, 50), square(99.95, 20), square(200)]  # inside, half out, sliver, outside
    kept, clipped = area_scores.clip_to_area(refs, area, min_area=1.0)
    assert kept == [0, 1]
    assert clipped[1].area == pytest.approx(50.0)


# ----------------------------------------------------------------------------- in lon/lat, over XYZ tiles

def tile_lonlat(x: int, y: int, z: int, col0: float, row0: float, col1: float, row1: float):
    """The lon/lat polygon of a pixel rectangle of tile (x, y, z)."""
    transform, crs = geodata.xyz_transform(x, y, z)
    (x0, y0), (x1, y1) = transform * (col0, row0), transform * (col1, row1)
    return geodata.reproject([box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))], crs, geodata.WGS84_EPSG)[0]


def test_score_area_in_lonlat_counts_a_roof_across_the_seam_once():
    left = tile_lonlat(X, Y, Z, 0, 0, 256, 256)
    right = tile_lonlat(X + 1, Y, Z, 0, 0, 256, 256)
    covered = shapely.union_all([left, right], grid_size=1e-9)
    roof = tile_lonlat(X, Y, Z, 200, 100, 296, 160)              # 56 px in the left tile, 40 in the right one
    pieces = [tile_lonlat(X, Y, Z, 200, 100, 256, 160), tile_lonlat(X + 1, Y, Z, 0, 100, 40, 160)]
    outside = tile_lonlat(X + 3, Y, Z, 10, 10, 50, 50)
    cut = tile_lonlat(X + 1, Y, Z, 220, 10, 300, 50)             # 36 of its 80 px inside the covered area
    refs = [roof, outside, cut]
    # unmerged, the larger piece (IoU 56/96) matches and the other is a false positive
    split = area_scores.score_area(pieces, ["a", "b"], refs, ["r", "o", "c"], covered, geodata.WGS84_EPSG)
    assert (split.matching.tp, split.matching.fp, split.matching.fn) == (1, 1, 1)
    merged = footprints.merge_pieces(geodata.reproject(pieces, geodata.WGS84_EPSG, geodata.WEB_MERCATOR))
    merged = geodata.reproject(merged, geodata.WEB_MERCATOR, geodata.WGS84_EPSG)
    assert len(merged) == 1
    clipped_cut = tile_lonlat(X + 1, Y, Z, 220, 10, 256, 50)
    found = area_scores.score_area(merged + [clipped_cut], ["m", "k"], refs, ["r", "o", "c"], covered,
                                   geodata.WGS84_EPSG)
    assert (found.matching.tp, found.matching.fp, found.matching.fn) == (2, 0, 0)
    assert found.ref_ids == ["r", "c"] and found.references_outside == 1
    pixel_m2 = (footprints.footprint_areas([tile_lonlat(X, Y, Z, 0, 0, 1, 1)], geodata.WGS84_EPSG)[0])
    assert found.ref_area_m2 == pytest.approx([96 * 60 * pixel_m2, 36 * 40 * pixel_m2], rel=1e-3)
    assert found.covered_m2 == pytest.approx(2 * 256 * 256 * pixel_m2, rel=1e-3)


# ----------------------------------------------------------------------------- reading and the stage

def write_geojson(path, polys, props):
    features = [{"type": "Feature", "properties": p, "geometry": mapping(g)} for g, p in zip(polys, props)]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_read_polygons_ids_and_skips(tmp_path):
    path = write_geojson(tmp_path / "refs.geojson", [square(0), square(20), shapely.Point(1, 1), square(40)],
                         [{"osm_id": 7}, {"osm_id": None}, {"osm_id": 3}, {"osm_id": 12}])
    polys, ids, crs = area_scores.read_polygons(path, "--footprints_ref")
    assert ids == ["7", "#1", "12"] and len(polys) == 3 and crs == "EPSG:4326"
    with pytest.raises(UserError, match="--footprints_ref .*missing.geojson does not exist"):
        area_scores.read_polygons(tmp_path / "missing.geojson", "--footprints_ref")
    (tmp_path / "bad.geojson").write_text("{not json")
    with pytest.raises(UserError, match="--footprints_ref .*bad.geojson is not a readable vector file"):
        area_scores.read_polygons(tmp_path / "bad.geojson", "--footprints_ref")


def write_seam_masks(seg_dir):
    """Two neighbouring zoom-21 tiles: one roof across their seam, one inside the left tile."""
    left, right = np.zeros((256, 256), np.uint8), np.zeros((256, 256), np.uint8)
    left[100:160, 200:256] = 1
    right[100:160, 0:40] = 1
    left[20:60, 20:90] = 1
    fileio.save_png(seg_dir / f"OAM-{X}-{Y}-{Z}.png", left)
    fileio.save_png(seg_dir / f"OAM-{X + 1}-{Y}-{Z}.png", right)


def test_eval_footprints_stage_scores_the_whole_area(tmp_path):
    write_seam_masks(tmp_path / "seg")
    refs = [tile_lonlat(X, Y, Z, 200, 100, 296, 160),      # the seam roof
            tile_lonlat(X, Y, Z, 22, 20, 90, 60),           # the other roof, slightly smaller (IoU 0.97)
            tile_lonlat(X, Y, Z, 150, 200, 180, 230),       # a roof the model missed
            tile_lonlat(X + 5, Y, Z, 10, 10, 50, 50)]       # outside the tiles
    ref_path = write_geojson(tmp_path / "labels.geojson", refs, [{"osm_id": i + 1} for i in range(4)])
    args = stage_args(tmp_path / "unused_root", tmp_path, "--seg_out_dir", str(tmp_path / "seg"),
                      "--footprint_simplify", "0", "--footprint_orthogonalise", "False",
                      "--footprints_ref", str(ref_path))
    make_footprints.write_all(args)
    result = eval_footprints.report_footprints(args)
    counts = result["object_counts"]
    assert (counts["tp"], counts["fp"], counts["fn"], counts["references"], counts["predictions"]) == (2, 0, 1, 3, 2)
    assert counts["references_outside_covered_area"] == 1
    assert result["scores"]["object_f1"] == pytest.approx(0.8)
    assert result["stage_flag"] == "make_footprints"
    assert result["iou_histogram"]["references_best_iou"] == [1, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    saved = json.loads((tmp_path / "result" / "metrics_footprints.json").read_text())
    assert saved["scores"] == result["scores"]
    lines = (tmp_path / "result" / "metrics_footprints_buildings.csv").read_text().splitlines()
    assert lines[0] == "kind,id,matched_id,iou,best_iou,area_m2" and len(lines) == 1 + 3 + 2
    rows = [line.split(",") for line in lines[1:]]
    matched = {r[1]: r[2] for r in rows if r[0] == "reference"}
    assert matched["3"] == "" and {matched["1"], matched["2"]} == {"#0", "#1"}
    assert all(float(r[3]) > 0.9 for r in rows if r[2])
    assert "whole area (S12)" in report.stage_table(tmp_path / "result")


def test_masks_without_buildings_score_zero_recall(tmp_path):
    fileio.save_png(tmp_path / "seg" / f"OAM-{X}-{Y}-{Z}.png", np.zeros((256, 256), np.uint8))
    ref_path = write_geojson(tmp_path / "labels.geojson", [tile_lonlat(X, Y, Z, 10, 10, 90, 90)], [{"osm_id": 5}])
    args = stage_args(tmp_path / "unused_root", tmp_path, "--seg_out_dir", str(tmp_path / "seg"),
                      "--footprints_ref", str(ref_path))
    make_footprints.write_all(args)
    result = eval_footprints.report_footprints(args)
    assert (result["object_counts"]["fn"], result["scores"]["object_recall"], result["scores"]["object_f1"]) == (1, 0.0, 0.0)


def test_eval_footprints_one_line_errors(tmp_path):
    write_seam_masks(tmp_path / "seg")
    args = stage_args(tmp_path / "unused_root", tmp_path, "--seg_out_dir", str(tmp_path / "seg"))
    with pytest.raises(UserError, match="needs --footprints_ref"):
        eval_footprints.report_footprints(args)
    far = write_geojson(tmp_path / "far.geojson", [tile_lonlat(X + 9, Y, Z, 0, 0, 50, 50)], [{"osm_id": 1}])
    args = stage_args(tmp_path / "unused_root", tmp_path, "--seg_out_dir", str(tmp_path / "seg"),
                      "--footprints_ref", str(far))
    with pytest.raises(UserError, match="--footprints_out .* does not exist; run --make_footprints_pass"):
        eval_footprints.report_footprints(args)
    make_footprints.write_all(args)
    with pytest.raises(UserError, match="no polygon of --footprints_ref .* lies in the area"):
        eval_footprints.report_footprints(args)
