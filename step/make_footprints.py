"""S12: building footprints from the S11 masks, as one GeoJSON and one GeoPackage layer.

Reads:  every mask in --seg_out_dir (default <work_space>/seg): <name>.tif, a GeoTIFF (uint8 {0, 1}, 255 =
        nodata, as make_seg writes it), or where there is no .tif, <name>.png named as an XYZ tile
        (the fAIr form OAM-x-y-z.png, or --xyz_name_pattern, with x and y inside zoom z: placed in EPSG:3857
        by its name; any other PNG stays in pixel coordinates, with a warning, as a GeoTIFF without CRS).
        A mask of 0 and 255 only (the ground-truth convention) is read as 255 = building unless a GeoTIFF
        declares 255 its nodata value; any value other than 0, 1, 255 is refused (misc.footprints.mask_encoding).
        The images the masks were made from, for each
        feature's `source` and for the pictures: in --seg_infer_dir when given, else <voc12_root>/JPEGImages.
Writes: --footprints_out (default <work_space>/footprints.geojson): one FeatureCollection in EPSG:4326, each
        feature with `area_m2` (true ground area) and `source` (its image, or its mask where the image is not
        found); the same layer in a .gpkg of the same name; overlays of the footprints on the first --num_vis
        images that hold any, in <work_space>/vis/footprints/.
Steps (misc.footprints): polygonise each mask in its own grid; merge the pieces of one building cut by tile
or window seams (all masks of one CRS together); split at necks narrower than twice --footprint_opening m
(a morphological opening), fill holes under --footprint_fill_holes m2, drop specks under --footprint_min_area
m2, simplify by --footprint_simplify m and square the corners (--footprint_orthogonalise), in metres on the
ground; write.
Masks without CRS keep pixel coordinates (a warning; the GeoJSON says "pixel_coordinates": true) and are
not merged with one another; mixing them with georeferenced masks is refused. Masks without any building
give an empty FeatureCollection.
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from affine import Affine
from shapely.geometry import Polygon

from misc import fileio, footprints, geodata, geoio, imutils, visutils
from misc.errors import UserError
from misc.pyutils import Timer, progress
from misc.torchutils import barrier, runtime
from step.kit.stages import stage_tag

log = logging.getLogger(__name__)
TAG = stage_tag(__name__)


@dataclass
class MaskInfo:
    """One mask: where it lies (its grid) and the image it was made from."""
    name: str
    path: Path
    crs: str | None
    transform: Affine
    shape: tuple[int, int]
    image: Path | None

    @property
    def box(self) -> Polygon:
        (x0, y0), (x1, y1) = self.transform * (0, 0), self.transform * (self.shape[1], self.shape[0])
        return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    @property
    def source(self) -> str:
        return str(self.image if self.image is not None else self.path)


def polygonise_masks(paths: Sequence[Path], image_dir: Path | None, desc: str = TAG,
                     pattern: str = geodata.FAIR_XYZ_NAME) -> tuple[list[MaskInfo], dict[str | None, list[Polygon]]]:
    """Every mask's polygons, grouped by CRS (each CRS-less mask a group of its own, keyed by its path).
    Masks larger than misc.footprints.MASK_WINDOW pixels a side are read and polygonised by windows; PNG masks
    named as XYZ tiles of `pattern` are placed by their name, other PNGs stay in pixel coordinates."""
    masks, groups = [], {}
    for path in progress(paths, desc=desc, unit="mask"):
        polys, height, width, first = [], 0, 0, None
        for row, col, grid in footprints.read_mask_windows(path, pattern=pattern):  # large scenes by windows
            first = first or grid
            height, width = max(height, row + grid.mask.shape[0]), max(width, col + grid.mask.shape[1])
            polys += footprints.polygonise(grid.mask, grid.transform, grid.nodata)
        image = imutils.find_image(image_dir, path.stem) if image_dir is not None else None
        masks.append(MaskInfo(path.stem, path, first.crs, first.transform, (height, width), image))
        groups.setdefault(first.crs if first.crs is not None else str(path), []).extend(polys)
    crs_less = [m for m in masks if m.crs is None]
    if crs_less and len(crs_less) < len(masks):
        raise UserError(f"{crs_less[0].path} has no CRS but other masks in {paths[0].parent} have one; pixel and map "
                        "coordinates cannot share one file: georeference it (gdal_edit.py -a_srs) or move it out")
    return masks, groups


def assign_sources(polys: Sequence[Polygon], masks: Sequence[MaskInfo]) -> list[str]:
    """The source of each polygon: the mask (image) holding the largest part of it."""
    if not polys:
        return []
    boxes = np.asarray([m.box for m in masks], dtype=object)
    tree = shapely.STRtree(boxes)
    out = []
    for poly in polys:
        hits = tree.query(poly)
        if len(hits) == 0:
            out.append(masks[0].source)
            continue
        shares = shapely.area(shapely.intersection(boxes[hits], poly))
        out.append(masks[int(hits[int(np.argmax(shares))])].source)
    return out


def make_footprints(masks: Sequence[MaskInfo], groups: dict[str, list[Polygon]],
                    cleaning: dict[str, Any]) -> tuple[list[Polygon], list[dict], str | None, dict]:
    """(polygons, properties, their CRS: EPSG:4326, or None for pixel coordinates, {group key: polygons in its
    CRS}); `cleaning`: the keyword settings of misc.footprints.clean_footprints (`cleaning_settings`)."""
    out_polys, props, local = [], [], {}
    georeferenced = all(m.crs is not None for m in masks)
    for key, polys in groups.items():
        crs = key if georeferenced else None
        members = [m for m in masks if (m.crs if georeferenced else str(m.path)) == key]
        cleaned = footprints.clean_footprints(footprints.merge_pieces(polys), crs, **cleaning)
        local[key] = cleaned
        props += [{"source": s} for s in assign_sources(cleaned, members)]
        out_polys += geodata.reproject(cleaned, crs, geodata.WGS84_EPSG) if crs is not None else cleaned
    return out_polys, props, geodata.WGS84_EPSG if georeferenced else None, local


def footprint_picture(mask: MaskInfo, polys: Sequence[Polygon]) -> np.ndarray | None:
    """The mask's image, shrunk to visutils.VIS_MAX_SIDE, with the outlines of `polys` (in the mask's CRS)
    drawn; None when the image is not found or no footprint lies on it."""
    box = mask.box
    on_it = [p for p in polys if p.intersects(box)]
    if mask.image is None or not on_it:
        return None
    if geodata.is_geotiff(mask.image):
        image = geoio.preview_rgb(mask.image, visutils.VIS_MAX_SIDE)
    else:
        image = imutils.read_image(mask.image)
    to_pixels = Affine.scale(image.shape[0] / mask.shape[0]) * ~mask.transform
    rings = []
    for poly in on_it:
        for ring in (poly.exterior, *poly.interiors):
            xy = np.asarray(ring.coords)
            cols, rows = to_pixels * (xy[:, 0], xy[:, 1])
            rings.append(np.column_stack([cols, rows]))
    return visutils.footprint_overlay(np.ascontiguousarray(image), rings)


def cleaning_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The S12 flags as the keywords of misc.footprints.clean_footprints."""
    return {"min_area_m2": args.footprint_min_area, "simplify_m": args.footprint_simplify,
            "orthogonalise": args.footprint_orthogonalise, "opening_m": args.footprint_opening,
            "hole_m2": args.footprint_fill_holes}


def run(args: argparse.Namespace) -> None:
    if runtime().is_main:  # one file for the whole area: rank 0 alone
        write_all(args)
    barrier()


def write_all(args: argparse.Namespace) -> dict:
    timer = Timer()
    seg_dir = Path(args.seg_out_dir)
    image_dir = Path(args.seg_infer_dir) if args.seg_infer_dir else Path(args.image_dir)
    out = Path(args.footprints_out)
    if out.suffix.lower() != ".geojson":
        raise UserError(f"--footprints_out {out} must end in .geojson (the GeoPackage is written beside it)")
    masks, groups = polygonise_masks(footprints.mask_files(seg_dir), image_dir, pattern=args.xyz_name_pattern)
    polys, props, crs, local = make_footprints(masks, groups, cleaning_settings(args))
    footprints.write_footprints(polys, props, crs, out, out.with_suffix(".gpkg"))
    pictures = 0
    for mask in masks:
        if pictures >= args.num_vis:
            break
        key = mask.crs if crs is not None else str(mask.path)
        picture = footprint_picture(mask, local[key])
        if picture is not None:
            fileio.save_png(Path(args.work_space) / "vis" / "footprints" / f"{mask.name}.png", picture)
            pictures += 1
    if not polys:
        log.warning("[%s] no building in %d masks of %s: no pixel is building (1, or 255 in a mask of 0 and 255 "
                    "only) outside no data, or every one was under --footprint_min_area %.1f m2", TAG, len(masks),
                    seg_dir, args.footprint_min_area)
    area = float(np.nansum(footprints.footprint_areas(polys, crs))) if crs is not None else float("nan")
    log.info("[%s] %d masks -> %d buildings, %s in %.0fs -> %s (+ .gpkg)", TAG, len(masks), len(polys),
             f"{area:,.0f} m2" if crs is not None else "pixel coordinates (no CRS)", timer.elapsed, out)
    return {"masks": len(masks), "buildings": len(polys), "area_m2": area}
