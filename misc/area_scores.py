"""Building-level scores over a whole area: merged footprints against reference polygons (SpaceNet protocol).

The per-tile building score of S11 (`misc.metrics.match_buildings`) counts a roof cut by tile edges once per
tile. Here the footprints of S12, already merged across seams, are matched against the reference polygons
of the whole area:

- both sets are measured in one Lambert azimuthal equal-area projection centred on the area
  (`misc.footprints.local_metric_crs`), so areas are true areas and an IoU is a ratio of true areas;
- the references are restricted to the area the predictions could cover (`covered_area`: the union of the
  predicted masks' bounds): each is clipped to it, and a clipped piece under `min_area_m2` is dropped (the
  same minimum S12 applies to predicted buildings). Clipping treats the references as the tiles treat the
  roofs: a roof half outside the tiles is predicted as its inside half, and matches its inside half;
- one-to-one matching at IoU >= 0.5, pairs taken greedily by descending IoU (`match_polygons`), as
  `misc.metrics.match_buildings` does per tile. Unmatched predictions are false positives, unmatched
  references false negatives.

Reads:  vector files of polygons (`read_polygons`: GeoJSON, GeoPackage, anything OGR reads, with its CRS)
        and the bounds of mask rasters (`mask_bounds`: GeoTIFF headers, or XYZ tile names)
Writes: nothing; the stage (step/eval_footprints.py) writes the metrics JSON and the per-building CSV.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from misc import footprints, geodata
from misc.errors import UserError, brief

IOU_THRESHOLD = 0.5
# pieces under this many m2 left by clipping to the covered area are not buildings; the same for references and
# predictions whatever --footprint_min_area the predictions were cleaned with, so the references scored
# never depend on a setting of the model being scored
SLIVER_M2 = 1.0
HISTOGRAM_BINS = 10  # IoU histogram bins of 0.1 on [0, 1]
COVER_GRID_DEGREES = 1e-9


@dataclass(frozen=True)
class Matching:
    """The result of `match_polygons`: for each prediction and each reference, its partner (-1: none), the
    IoU with that partner (0 when none) and its best IoU with any polygon of the other set."""
    pred_match: np.ndarray    # int64[P], index into the references or -1
    ref_match: np.ndarray     # int64[R], index into the predictions or -1
    pred_iou: np.ndarray      # float64[P], IoU with the matched reference (0 when unmatched)
    ref_iou: np.ndarray       # float64[R]
    pred_best: np.ndarray     # float64[P], best IoU with any reference (for the histogram)
    ref_best: np.ndarray      # float64[R]

    @property
    def tp(self) -> int:
        return int((self.ref_match >= 0).sum())

    @property
    def fp(self) -> int:
        return int((self.pred_match < 0).sum())

    @property
    def fn(self) -> int:
        return int((self.ref_match < 0).sum())


def pair_ious(preds: Sequence[BaseGeometry], refs: Sequence[BaseGeometry]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pred index, ref index, IoU) of every overlapping pair (IoU > 0), from an STR-tree query, so the work
    grows with the overlaps, not with P x R."""
    preds_a, refs_a = np.asarray(preds, dtype=object), np.asarray(refs, dtype=object)
    if not len(preds_a) or not len(refs_a):
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0)
    r, p = shapely.STRtree(preds_a).query(refs_a, predicate="intersects")
    inter = shapely.area(shapely.intersection(preds_a[p], refs_a[r]))
    union = shapely.area(preds_a[p]) + shapely.area(refs_a[r]) - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    keep = iou > 0
    return p[keep].astype(np.int64), r[keep].astype(np.int64), iou[keep]


def match_polygons(preds: Sequence[BaseGeometry], refs: Sequence[BaseGeometry],
                   iou_threshold: float = IOU_THRESHOLD) -> Matching:
    """SpaceNet matching of predicted and reference polygons (in one planar, metric CRS).

    Pairs with IoU >= `iou_threshold` are taken greedily by descending IoU (ties in input order), each
    polygon at most once. Two predictions over one reference: the better one matches, the other is a false
    positive. At 0.5 and with non-overlapping polygons within each set, a polygon has at most one partner
    above the threshold, so the order only matters for lower thresholds.
    """
    n_pred, n_ref = len(preds), len(refs)
    p, r, iou = pair_ious(preds, refs)
    pred_best, ref_best = np.zeros(n_pred), np.zeros(n_ref)
    np.maximum.at(pred_best, p, iou)
    np.maximum.at(ref_best, r, iou)
    pred_match, ref_match = np.full(n_pred, -1, np.int64), np.full(n_ref, -1, np.int64)
    pred_iou, ref_iou = np.zeros(n_pred), np.zeros(n_ref)
    order = np.lexsort((r, p, -iou))  # descending IoU; ties by prediction, then reference index
    for k in order[iou[order] >= iou_threshold]:
        if pred_match[p[k]] < 0 and ref_match[r[k]] < 0:
            pred_match[p[k]], ref_match[r[k]] = r[k], p[k]
            pred_iou[p[k]] = ref_iou[r[k]] = iou[k]
    return Matching(pred_match, ref_match, pred_iou, ref_iou, pred_best, ref_best)


def iou_histogram(values: np.ndarray, bins: int = HISTOGRAM_BINS) -> list[int]:
    """Counts of `values` in `bins` equal bins on [0, 1] (1.0 falls in the last bin, 0 in the first)."""
    index = np.clip((np.asarray(values, dtype=np.float64) * bins).astype(np.int64), 0, bins - 1)
    return np.bincount(index, minlength=bins).tolist()


def clip_to_area(polys: Sequence[BaseGeometry], area: BaseGeometry, min_area: float) -> tuple[list[int], list[BaseGeometry]]:
    """(indices kept, their parts inside `area`): each polygon clipped to `area`, pieces of less than
    `min_area` (in the CRS's square units) dropped. A reference cut into several parts by a hole in the
    area stays one building (a MultiPolygon)."""
    kept, clipped = [], []
    for i, poly in enumerate(polys):
        if poly is None or poly.is_empty:
            continue
        if not poly.is_valid:
            poly = shapely.make_valid(poly)
        inside = poly.intersection(area)
        polygonal = _polygonal(inside)
        if polygonal is not None and polygonal.area >= min_area:
            kept.append(i)
            clipped.append(polygonal)
    return kept, clipped


def _polygonal(geom: BaseGeometry) -> BaseGeometry | None:
    """The polygons of `geom` (lines and points of a clipped edge dropped), or None when there are none."""
    if geom.is_empty:
        return None
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon") and not g.is_empty]
    return shapely.union_all(parts) if parts else None


@dataclass(frozen=True)
class AreaScores:
    """Everything the stage writes: the matching, the polygons' ids and true areas, and the summary."""
    matching: Matching
    pred_ids: list[str]
    ref_ids: list[str]
    pred_area_m2: np.ndarray
    ref_area_m2: np.ndarray
    covered_m2: float
    references_total: int   # in the reference file
    references_outside: int  # dropped: outside the covered area, or under the minimum area once clipped

    def summary(self) -> dict[str, Any]:
        m = self.matching
        tp, fp, fn = m.tp, m.fp, m.fn
        return {
            "scores": {"object_precision": tp / (tp + fp) if tp + fp else 1.0,
                       "object_recall": tp / (tp + fn) if tp + fn else 1.0,
                       "object_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0},
            "object_counts": {"tp": tp, "fp": fp, "fn": fn, "iou_threshold": IOU_THRESHOLD,
                              "predictions": len(self.pred_ids), "references": len(self.ref_ids),
                              "references_in_file": self.references_total,
                              "references_outside_covered_area": self.references_outside},
            "covered_area_m2": round(self.covered_m2, 1),
            "matched_mean_iou": float(m.ref_iou[m.ref_match >= 0].mean()) if tp else None,
            "iou_histogram": {"bins": [round(i / HISTOGRAM_BINS, 2) for i in range(HISTOGRAM_BINS + 1)],
                              "references_best_iou": iou_histogram(m.ref_best),
                              "predictions_best_iou": iou_histogram(m.pred_best)},
        }

    def rows(self) -> list[dict[str, Any]]:
        """One row per building: kind (reference or prediction), id, matched_id, iou (of the match), best_iou
        (with any building of the other set), area_m2 (inside the covered area)."""
        m, out = self.matching, []
        for kind, ids, other, match, iou, best, area in (
                ("reference", self.ref_ids, self.pred_ids, m.ref_match, m.ref_iou, m.ref_best, self.ref_area_m2),
                ("prediction", self.pred_ids, self.ref_ids, m.pred_match, m.pred_iou, m.pred_best, self.pred_area_m2)):
            for i, name in enumerate(ids):
                matched = int(match[i]) >= 0
                out.append({"kind": kind, "id": name, "matched_id": other[int(match[i])] if matched else "",
                            "iou": round(float(iou[i]), 4) if matched else "", "best_iou": round(float(best[i]), 4),
                            "area_m2": round(float(area[i]), 2)})
        return out


def score_area(preds: Sequence[BaseGeometry], pred_ids: Sequence[str], refs: Sequence[BaseGeometry],
               ref_ids: Sequence[str], covered: BaseGeometry, crs: Any, min_area_m2: float = 1.0,
               iou_threshold: float = IOU_THRESHOLD) -> AreaScores:
    """Match predictions against references inside `covered`, all three in `crs`, measured in metres.

    Both sets are clipped to the covered area and pieces under `min_area_m2` dropped (`clip_to_area`), then
    matched in a local equal-area projection (`match_polygons`).
    """
    if covered.is_empty:
        raise ValueError("score_area: the covered area is empty")
    metric_crs = footprints.local_metric_crs([covered], crs)
    covered_m, = geodata.reproject([covered], crs, metric_crs)
    preds_m = geodata.reproject(list(preds), crs, metric_crs)
    refs_m = geodata.reproject(list(refs), crs, metric_crs)
    pred_keep, preds_m = clip_to_area(preds_m, covered_m, min_area_m2)
    ref_keep, refs_m = clip_to_area(refs_m, covered_m, min_area_m2)
    matching = match_polygons(preds_m, refs_m, iou_threshold)
    return AreaScores(matching, [str(pred_ids[i]) for i in pred_keep], [str(ref_ids[i]) for i in ref_keep],
                      shapely.area(np.asarray(preds_m, dtype=object)).astype(np.float64) if preds_m else np.zeros(0),
                      shapely.area(np.asarray(refs_m, dtype=object)).astype(np.float64) if refs_m else np.zeros(0),
                      float(covered_m.area), len(refs), len(refs) - len(ref_keep))


# ----------------------------------------------------------------------------- reading

def read_polygons(path: str | os.PathLike, flag: str, id_fields: Sequence[str] = ("osm_id", "id"),
                  allow_empty: bool = False) -> tuple[list[BaseGeometry], list[str], str]:
    """(polygons, ids, CRS) of a vector file OGR reads (GeoJSON: lon/lat, RFC 7946).

    The id of a feature is the first of `id_fields` it has a value in, else its position in the file
    ("#<n>"). Features without polygon geometry are skipped; an unreadable file, or one without any
    polygon (unless `allow_empty`: predictions may find nothing), is a UserError naming `flag`.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{flag} {path} does not exist; give a GeoJSON or GeoPackage of building polygons")
    try:
        from pyogrio import raw

        meta, _, geometry, fields = raw.read(path)
    except Exception as err:  # pyogrio's DataSourceError and friends; anything unreadable is the user's file
        raise UserError(f"{flag} {path} is not a readable vector file ({brief(err)}); give a GeoJSON or GeoPackage") from None
    names = list(meta.get("fields", []))
    columns = [fields[names.index(f)] for f in id_fields if f in names]
    polys, ids = [], []
    for i, wkb in enumerate(geometry if geometry is not None else []):
        geom = shapely.from_wkb(wkb) if wkb is not None else None
        if geom is None or geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
            continue
        polys.append(geom)
        ids.append(_feature_id(columns, i))
    if not polys and not allow_empty:
        raise UserError(f"{flag} {path} holds no polygon; give the building outlines as polygons")
    crs = meta.get("crs") or geodata.WGS84_CRS84  # GeoJSON without a CRS member is lon/lat by definition
    return polys, ids, crs


def _feature_id(columns: Sequence[np.ndarray], i: int) -> str:
    for column in columns:
        value = column[i]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            return str(int(value))
        return str(value)
    return f"#{i}"


def mask_bounds(path: str | os.PathLike) -> tuple[BaseGeometry, str | None]:
    """(the rectangle a mask covers, its CRS) from a GeoTIFF's header, or from an XYZ tile's name and size."""
    path = Path(path)
    if geodata.is_geotiff(path):
        with geodata.open_raster(path, "GeoTIFF", "rewrite the mask") as src:
            left, bottom, right, top = src.bounds
            return shapely.box(min(left, right), min(bottom, top), max(left, right), max(bottom, top)), (
                None if src.crs is None else src.crs.to_string())
    x, y, z = geodata.parse_xyz_name(path.name)
    from misc.imutils import image_size

    height, width = image_size(path)
    transform, crs = geodata.xyz_transform(x, y, z, width)
    (x0, y0), (x1, y1) = transform * (0, 0), transform * (width, height)
    return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)), crs


def covered_area(mask_paths: Sequence[str | os.PathLike]) -> BaseGeometry:
    """The union of the masks' rectangles in lon/lat (EPSG:4326): where a prediction could have found a building.

    Each rectangle is densified before it is reprojected, so its edges follow the projection (a web-mercator
    tile edge is a parallel or a meridian, straight in lon/lat anyway). A mask without CRS is a UserError:
    pixel coordinates cannot be compared with reference polygons.
    """
    boxes = []
    for path in mask_paths:
        box, mask_crs = mask_bounds(path)
        if mask_crs is None:
            raise UserError(f"{path} has no CRS, so its footprints are in pixel coordinates and cannot be compared with "
                            "reference polygons; georeference the mask (gdal_edit.py -a_srs EPSG:xxxx)")
        box = shapely.segmentize(box, max(box.bounds[2] - box.bounds[0], box.bounds[3] - box.bounds[1]) / 8)
        boxes += geodata.reproject([box], mask_crs, geodata.WGS84_EPSG)
    if not boxes:
        raise ValueError("covered_area: no mask given")
    # neighbouring tiles' edges, computed from different transforms, differ by float rounding: snapping to
    # 1e-9 degree (0.1 mm) makes them meet, so the union has no hairline gaps along the seams
    return shapely.union_all(boxes, grid_size=COVER_GRID_DEGREES)
