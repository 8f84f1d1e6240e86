"""S12 evaluation: the merged footprints of S12 against the reference polygons of the whole area.

Reads:  --footprints_out (default <work_space>/footprints.geojson, EPSG:4326, from --make_footprints_pass);
        --footprints_ref, the reference building polygons (GeoJSON in lon/lat, or any vector file OGR reads with
        its CRS; ids from `osm_id` or `id`); the masks in --seg_out_dir, whose bounds are the covered area;
        <seg_weights_name>.pth for what the model was trained on ("trained_on", as eval_seg).
Writes: <work_space>/metrics_<footprints name>.json (metrics_footprints.json by default): building-level
        object_precision, object_recall, object_f1 in "scores" (so `python -m step.report` lists them beside
        the per-tile ones of eval_seg), the counts, the covered area, the IoU histograms; and
        <work_space>/metrics_<footprints name>_buildings.csv: kind, id, matched_id, iou, best_iou, area_m2 per
        reference and per predicted building.
Protocol (misc.area_scores): SpaceNet's, over the whole area. References and predictions clipped to the
union of the masks' bounds, pieces under area_scores.SLIVER_M2 (1 m2) dropped, whatever --footprint_min_area
the predictions were cleaned with (the references scored never depend on it); one-to-one matching
at IoU >= 0.5, greedy by descending IoU, in a local equal-area projection. A roof cut by tile seams is one
building here (S12 merges it), unlike the per-tile score of eval_seg.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from misc import area_scores, fileio, footprints, geodata
from misc.errors import UserError
from misc.pyutils import Timer
from misc.torchutils import barrier, runtime
from step.kit import stages
from step.kit.segmentation import seg_settings, trained_on

log = logging.getLogger(__name__)
TAG = stages.stage_tag(__name__)
CSV_COLUMNS = ("kind", "id", "matched_id", "iou", "best_iou", "area_m2")


def report_footprints(args: argparse.Namespace) -> dict:
    """Score the footprints file against the references, log two lines, write the JSON and the CSV."""
    timer, s = Timer(), seg_settings(args)
    if not args.footprints_ref:
        raise UserError("--eval_footprints_pass needs --footprints_ref: the reference building polygons of the area "
                        "(e.g. the labels.geojson of a fAIr area)")
    out = Path(args.footprints_out)
    if not out.is_file():
        raise UserError(f"--footprints_out {out} does not exist; run --make_footprints_pass True first")
    preds, pred_ids, pred_crs = area_scores.read_polygons(out, "--footprints_out", id_fields=(), allow_empty=True)
    refs, ref_ids, ref_crs = area_scores.read_polygons(args.footprints_ref, "--footprints_ref")
    covered = area_scores.covered_area(footprints.mask_files(args.seg_out_dir))
    preds = geodata.reproject(preds, pred_crs, geodata.WGS84_EPSG)
    refs = geodata.reproject(refs, ref_crs, geodata.WGS84_EPSG)
    found = area_scores.score_area(preds, pred_ids, refs, ref_ids, covered,
                                   geodata.WGS84_EPSG, min_area_m2=area_scores.SLIVER_M2)
    if not found.ref_ids:
        raise UserError(f"no polygon of --footprints_ref {args.footprints_ref} lies in the area of the masks in "
                        f"{args.seg_out_dir}; give the references of this area")
    source = trained_on(s.checkpoint, s.trained_on)
    summary = found.summary()
    result = {"stage": stages.label("make_footprints", source), "stage_flag": "make_footprints", "variant": source,
              "trained_on": source, "footprints": str(out), "references": str(args.footprints_ref),
              "masks": str(args.seg_out_dir), "min_area_m2": area_scores.SLIVER_M2,
              "rule": "both sets clipped to the union of the masks' bounds, pieces under min_area_m2 dropped; "
                      "one-to-one matching at IoU >= 0.5, greedy by descending IoU, in a local equal-area projection",
              **summary}
    fileio.save_json(Path(args.work_space) / f"metrics_{out.stem}.json", result)
    rows = found.rows()
    fileio.save_lines(Path(args.work_space) / f"metrics_{out.stem}_buildings.csv",
                      [",".join(CSV_COLUMNS)] + [",".join(str(r[c]) for c in CSV_COLUMNS) for r in rows])
    scores, counts = summary["scores"], summary["object_counts"]
    log.info("[%s] %s: %d predicted, %d reference buildings in %.0f m2 (%d references outside)", TAG, result["stage"],
             counts["predictions"], counts["references"], summary["covered_area_m2"],
             counts["references_outside_covered_area"])
    log.info("[%s] whole-area buildings (IoU >= 0.5): F1 %.4f  precision %.4f  recall %.4f  (tp %d, fp %d, fn %d) in %.0fs",
             TAG, scores["object_f1"], scores["object_precision"], scores["object_recall"], counts["tp"], counts["fp"],
             counts["fn"], timer.elapsed)
    return result


def run(args: argparse.Namespace) -> None:
    if runtime().is_main:  # one file for the whole area: rank 0 alone
        report_footprints(args)
    barrier()
