"""Building polygons from predicted masks: polygonise, merge across seams, clean, write (GeoJSON + GeoPackage).

Reads:  masks as arrays with their pixel grid (`read_mask_grid`: a GeoTIFF, or an XYZ tile `OAM-x-y-z.png`;
        `read_mask_windows`: the same by windows, for scenes larger than memory)
Writes: one FeatureCollection in EPSG:4326 (RFC 7946) and the same layer as a GeoPackage (`write_footprints`)

The intended order is polygonise every mask in its own grid -> `merge_pieces` over all of them (a building
cut by a tile seam is whole again before its area is judged) -> `clean_footprints` -> `write_footprints`.

Lengths and areas are metres on the ground: polygons are measured in a Lambert azimuthal equal-area
projection centred on the data (`local_metric_crs`), so an area is the true area on the WGS84 ellipsoid
whatever the input CRS (web-mercator "metres" overstate areas by 1/cos(lat)^2, 2.4x at 50 degrees).
A mask without CRS keeps pixel coordinates (column, row) and says so in a logged warning; nothing is
ever placed on the map by guessing.

The XYZ tile grid, the CRS names, the raster opener and `reproject` are misc.geodata's;
`rasterize_footprints` lives here and is imported by voc12/prepare.py.
"""
from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import shapely
from affine import Affine
from shapely.geometry import Polygon, mapping, shape
from shapely.geometry.polygon import orient

from misc.errors import UserError, brief
from misc.fileio import atomic_path
from misc.geodata import (FAIR_XYZ_NAME, GEOTIFF_SUFFIXES, WGS84_EPSG, is_geotiff, open_raster, parse_xyz_name,
                          read_raster, reproject, xyz_name_problem, xyz_transform)
from misc.imutils import read_mask

log = logging.getLogger(__name__)

GEOJSON_DECIMALS = 8  # 1e-8 degree is about 1 mm, far below a zoom-21 pixel (7.5 cm at the equator)
SHARED_EDGE_FACTOR = 8.0  # pieces are one building when their boundaries run together for > this many tolerances


# ----------------------------------------------------------------------------- masks <-> polygons

class MaskGrid(NamedTuple):
    mask: np.ndarray  # uint8 HxW, 1 = building
    transform: Affine  # pixel grid -> CRS coordinates; the identity (pixel coordinates) when crs is None
    crs: str | None
    nodata: np.ndarray | None  # bool HxW, True where the raster holds no data


# What a mask's values mean. A mask file is read in one of two encodings, decided per file from the values
# of its valid pixels:
# - 0/1 (S11's masks): 1 building, 0 background, 255 no data (also wherever the GeoTIFF declares no data);
# - 0/255 (the layout's ground-truth convention): a file holding 255 but no 1, whose 255 is not the GeoTIFF's
#   declared nodata value, has 255 building and 0 background.
# Any other value is refused in one line; a file of 0 alone is all background.
ZERO_ONE, ZERO_255 = "0/1", "0/255"


def mask_encoding(values: Iterable[int], path: str | os.PathLike, nodata_declared: bool) -> str:
    """ZERO_ONE or ZERO_255 for a mask file whose valid pixels hold `values`; other values are a UserError."""
    values = {int(v) for v in values}
    bad = sorted(values - {0, 1, 255})
    if bad:
        raise UserError(f"{path} holds the mask value(s) {', '.join(map(str, bad[:5]))}; a mask is 0 background and "
                        "1 building (255 no data), or 0 background and 255 building: rewrite it in one of those")
    if 255 in values and 1 not in values and not nodata_declared:
        log.info("%s holds 0 and 255 only: read as a 0/255 mask (255 = building)", path)
        return ZERO_255
    return ZERO_ONE


def as_building(mask: np.ndarray, nodata: np.ndarray | None, encoding: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 mask with 1 = building, bool no-data or None) of a mask read in `encoding`."""
    if encoding == ZERO_255:
        return (mask == 255).astype(np.uint8), nodata
    empty = mask == 255
    if empty.any():
        nodata = empty if nodata is None else (nodata | empty)
    return mask, nodata


def _valid_values(mask: np.ndarray, nodata: np.ndarray | None) -> np.ndarray:
    return np.flatnonzero(np.bincount((mask if nodata is None else mask[~nodata]).ravel(), minlength=256))


def read_mask_grid(path: str | os.PathLike, pattern: str = FAIR_XYZ_NAME) -> MaskGrid:
    """A predicted mask with its grid: a GeoTIFF (its transform and CRS), an XYZ tile PNG (its name, see
    `match_xyz_name`), or any other PNG in pixel coordinates (column, row), with one warning."""
    path = Path(path)
    if is_geotiff(path):
        return _read_geotiff_mask(path)
    if path.suffix.lower() != ".png":
        raise UserError(f"{path} is neither a GeoTIFF (.tif) nor an XYZ tile (OAM-x-y-z.png); "
                        "write the masks in one of those forms")
    mask = read_mask(path)
    why = xyz_name_problem(path.name, pattern)
    if why:  # never placed on the map by a guess
        log.warning("%s %s: its footprints stay in pixel coordinates (column, row) and have no area in m2; "
                    "write the mask as a GeoTIFF with its CRS to place them", path, why)
        transform, crs = Affine.identity(), None
    elif mask.shape[0] != mask.shape[1]:
        raise UserError(f"{path} is {mask.shape[1]}x{mask.shape[0]}; an XYZ tile is square (256x256)")
    else:
        transform, crs = xyz_transform(*parse_xyz_name(path.name, pattern), mask.shape[0])
    mask, nodata = as_building(mask, None, mask_encoding(_valid_values(mask, None), path, nodata_declared=False))
    return MaskGrid(mask, transform, crs, nodata)


def _read_geotiff_mask(path: Path) -> MaskGrid:
    mask, valid, transform, crs, declared = read_raster(
        path, "GeoTIFF mask", "rewrite the mask",
        lambda src: (src.read(1), src.read_masks(1), src.transform, src.crs, src.nodata == 255))
    nodata = valid == 0
    mask, nodata = as_building(mask.astype(np.uint8), nodata if nodata.any() else None,
                               mask_encoding(_valid_values(mask.astype(np.uint8), nodata), path, declared))
    if crs is None:
        # a geotransform without a CRS is in unknown units: pixel coordinates are the honest answer
        log.warning("%s has no CRS: its footprints stay in pixel coordinates (column, row) and have no area "
                    "in m2; georeference the mask (e.g. gdal_edit.py -a_srs EPSG:xxxx) to place them", path)
        transform = Affine.identity()
    return MaskGrid(mask, transform, None if crs is None else crs.to_string(), nodata)


def mask_files(seg_dir: str | os.PathLike) -> list[Path]:
    """The masks S11 wrote in `seg_dir` (--seg_out_dir), sorted: <name>.tif, or <name>.png where no .tif exists."""
    seg_dir = Path(seg_dir)
    if not seg_dir.is_dir():
        raise UserError(f"--seg_out_dir {seg_dir} does not exist; run --make_seg_pass True first (or point "
                        "--seg_out_dir at a folder of masks)")
    found: dict[str, Path] = {}
    for path in sorted(seg_dir.iterdir()):
        suffix = path.suffix.lower()
        if path.name.startswith(".") or not path.is_file() or suffix not in (*GEOTIFF_SUFFIXES, ".png"):
            continue
        if suffix == ".png" and path.stem in found:
            continue
        found[path.stem] = path
    if not found:
        raise UserError(f"--seg_out_dir {seg_dir} holds no mask (.tif or OAM-x-y-z.png); run --make_seg_pass True first")
    return [found[name] for name in sorted(found)]


MASK_WINDOW = 4096  # read_mask_windows' window side: 16 MP of mask (and its validity) at a time


def read_mask_windows(path: str | os.PathLike, size: int | None = None,
                      pattern: str = FAIR_XYZ_NAME) -> Iterator[tuple[int, int, MaskGrid]]:
    """`read_mask_grid` by windows: (row, col, MaskGrid of the size x size window there), so a scene's mask
    need not fit in memory. Each window's transform places it in the scene (pixel coordinates of the whole
    scene when it has no CRS); polygonise each and `merge_pieces` joins the buildings cut by window edges.
    PNG tiles and GeoTIFFs of at most `size` (default MASK_WINDOW) pixels a side come whole, as
    (0, 0, read_mask_grid(path))."""
    from rasterio.windows import Window

    path, size = Path(path), size or MASK_WINDOW
    if not is_geotiff(path):
        yield 0, 0, read_mask_grid(path, pattern)
        return
    src = open_raster(path, "GeoTIFF mask", "rewrite the mask")
    if max(src.height, src.width) <= size:
        src.close()
        yield 0, 0, _read_geotiff_mask(path)
        return
    with src:
        if src.crs is None:
            log.warning("%s has no CRS: its footprints stay in pixel coordinates (column, row) and have no area "
                        "in m2; georeference the mask (e.g. gdal_edit.py -a_srs EPSG:xxxx) to place them", path)
        windows = [Window(col, row, min(size, src.width - col), min(size, src.height - row))
                   for row in range(0, src.height, size) for col in range(0, src.width, size)]
        values: set[int] = set()  # the encoding is the whole file's: one pass over its values first
        for window in windows:
            values.update(_valid_values(src.read(1, window=window).astype(np.uint8),
                                        src.read_masks(1, window=window) == 0).tolist())
        encoding = mask_encoding(values, path, src.nodata == 255)
        for window in windows:
            nodata = src.read_masks(1, window=window) == 0
            transform = (src.window_transform(window) if src.crs is not None
                         else Affine.translation(window.col_off, window.row_off))
            mask, nodata = as_building(src.read(1, window=window).astype(np.uint8), nodata if nodata.any() else None,
                                       encoding)
            yield window.row_off, window.col_off, MaskGrid(mask, transform,
                                                           None if src.crs is None else src.crs.to_string(), nodata)


def polygonise(mask: np.ndarray, transform: Affine, nodata_mask: np.ndarray | None = None) -> list[Polygon]:
    """Polygons of the 4-connected regions of mask == 1, in the CRS of `transform`.

    4-connectivity, because two regions that meet only at a pixel corner would otherwise become one
    polygon pinched to a point (an invalid ring for many tools) and, on a roof mask, are far more often two
    buildings than one. Every pixel edge on a region's outline is kept, so `rasterize_footprints` of the
    result gives the mask back exactly. Pixels where `nodata_mask` is True are never building.
    """
    from rasterio import features

    building = np.asarray(mask) == 1
    if building.ndim != 2:
        raise ValueError(f"polygonise expects an HxW mask, got shape {building.shape}")
    if nodata_mask is not None:
        building &= ~np.asarray(nodata_mask, dtype=bool)
    if not building.any():
        return []
    found = features.shapes(building.astype(np.uint8), mask=building, connectivity=4, transform=transform)
    return [shape(geom) for geom, _ in found]


def rasterize_footprints(geoms: Iterable[Any], transform: Any, shape: tuple[int, int]) -> np.ndarray:
    """uint8 HxW mask, 1 where a pixel centre lies inside one of `geoms` (all_touched=False).

    `geoms` are shapely geometries or GeoJSON-like dicts in the CRS of `transform` (an Affine).
    """
    from rasterio import features

    shapes = [(g, 1) for g in geoms if not getattr(g, "is_empty", False)]
    if not shapes:
        return np.zeros(shape, dtype=np.uint8)
    return features.rasterize(shapes, out_shape=shape, transform=transform, fill=0,
                              all_touched=False, dtype=np.uint8)


# ----------------------------------------------------------------------------- metres on the ground

def local_metric_crs(polys: Sequence[Polygon], crs: Any) -> str:
    """A PROJ string of the Lambert azimuthal equal-area projection centred on the polygons' bounds.

    Equal-area, so areas are true; centred on the data, so lengths and angles are true to < 1e-5
    within 30 km of the centre (tolerances in metres mean metres on the ground).
    """
    from rasterio.warp import transform

    minx, miny, maxx, maxy = shapely.total_bounds(np.asarray(polys, dtype=object))
    lons, lats = transform(crs, WGS84_EPSG, [(minx + maxx) / 2], [(miny + maxy) / 2])
    return (f"+proj=laea +lat_0={lats[0]:.7f} +lon_0={lons[0]:.7f} +x_0=0 +y_0=0 "
            "+datum=WGS84 +units=m +no_defs")


def to_metric(polys: Sequence[Polygon], crs: Any) -> tuple[list[Polygon], str | None]:
    """(polygons in metres, the metric CRS) for any input CRS; `from_metric` brings them back.

    Without a CRS (None) the polygons stay in pixel units and the metric CRS is None (warned).
    """
    polys = list(polys)
    if crs is None:
        log.warning("footprints without CRS: areas and tolerances are taken in pixel units, not metres")
        return polys, None
    if not polys:
        return [], None
    metric_crs = local_metric_crs(polys, crs)
    return reproject(polys, crs, metric_crs), metric_crs


def from_metric(polys: Sequence[Polygon], metric_crs: str | None, crs: Any) -> list[Polygon]:
    """Inverse of `to_metric`."""
    if metric_crs is None or crs is None:
        return list(polys)
    return reproject(polys, metric_crs, crs)


def footprint_areas(polys: Sequence[Polygon], crs: Any) -> np.ndarray:
    """float64[N] true ground areas in m2; NaN for all when `crs` is None (pixel coordinates)."""
    if crs is None:
        return np.full(len(polys), np.nan)
    metric, _ = to_metric(polys, crs)
    return shapely.area(np.asarray(metric, dtype=object)).astype(np.float64) if metric else np.zeros(0)


# ----------------------------------------------------------------------------- merging and cleaning

def merge_pieces(polys: Sequence[Polygon], tolerance: float | None = None) -> list[Polygon]:
    """Pieces of one building cut by tile or window seams, made one polygon.

    Two pieces belong together when their outlines run within `tolerance` of each other for more than
    SHARED_EDGE_FACTOR tolerances (a shared seam edge, or an overlap); pieces meeting only at a corner stay
    apart, as `polygonise` keeps them. Each group is unioned after closing gaps below `tolerance` (seams
    computed from different tiles' transforms differ by float rounding). The default tolerance is 1e-6 of
    the shortest outline edge, i.e. of at most a pixel for `polygonise` output: run this before
    simplification. Polygons that touch nothing are returned unchanged.
    """
    polys = [p for p in polys if p is not None and not p.is_empty]
    if len(polys) < 2:
        return polys
    tol = 1e-6 * _shortest_edge(polys) if tolerance is None else float(tolerance)
    # float rounding is relative to the coordinates, so work near the origin (exact for nearby values)
    x0, y0 = _centre(polys)
    local = shapely.transform(np.asarray(polys, dtype=object), lambda xy: xy - (x0, y0))
    out: list[Polygon] = []
    for group in _touching_groups(local, tol):
        if len(group) == 1:
            out.append(polys[group[0]])
            continue
        # a morphological closing: grow by tol, union, shrink by tol (mitre joins keep corners square)
        grown = shapely.union_all(shapely.buffer(local[group], tol, join_style="mitre"))
        closed = shapely.buffer(grown, -tol, join_style="mitre")
        out.extend(shapely.transform(p, lambda xy: xy + (x0, y0)) for p in _explode([closed]))
    return out


def _shortest_edge(polys: Sequence[Polygon]) -> float:
    rings = shapely.get_exterior_ring(np.asarray(polys, dtype=object))
    xy, index = shapely.get_coordinates(rings, return_index=True)
    lengths = np.hypot(*np.diff(xy, axis=0).T)[index[1:] == index[:-1]]
    lengths = lengths[lengths > 0]
    return float(lengths.min()) if lengths.size else 1.0


def _centre(polys: Sequence[Polygon]) -> tuple[float, float]:
    minx, miny, maxx, maxy = shapely.total_bounds(np.asarray(polys, dtype=object))
    return (minx + maxx) / 2, (miny + maxy) / 2


def _touching_groups(polys: np.ndarray, tol: float) -> list[np.ndarray]:
    """Indices of the pieces grouped by shared outline (connected components of the 'shares an edge' graph)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    tree = shapely.STRtree(polys)
    left, right = tree.query(polys, predicate="dwithin", distance=tol)
    keep = left < right
    left, right = left[keep], right[keep]
    # both ways round: when one piece lies inside the other, only the inner one's outline runs along the other
    shared = np.maximum(_shared_length(polys[left], polys[right], tol), _shared_length(polys[right], polys[left], tol))
    linked = shared > SHARED_EDGE_FACTOR * tol
    n = len(polys)
    graph = coo_matrix((np.ones(int(linked.sum())), (left[linked], right[linked])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    order = np.argsort(labels, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(labels[order])) + 1)


def _shared_length(a: np.ndarray, b: np.ndarray, tol: float) -> np.ndarray:
    """Length of each a's outline within tol of its b: a pixel or more along a seam, ~2 tol at a corner."""
    return shapely.length(shapely.intersection(shapely.boundary(a), shapely.buffer(b, tol, join_style="mitre")))


def clean_footprints(polys: Sequence[Polygon], crs: Any, min_area_m2: float = 1.0, simplify_m: float = 0.2,
                     orthogonalise: bool = True, opening_m: float = 0.0, hole_m2: float = 0.0) -> list[Polygon]:
    """Specks dropped, roofs split at narrow necks, holes filled, outlines simplified and (optionally) squared,
    in metres on the ground.

    `opening_m` > 0 is a morphological opening with a square of side 2 * opening_m (shrink, then grow back,
    mitre joins): parts joined by a neck narrower than that come apart (roofs that touch across a wall line,
    a roof and a car beside it) and slivers thinner than it go. Holes under `hole_m2` are filled (a skylight,
    a patch of roof the model missed), larger courtyards kept. Polygons with a true area below `min_area_m2`
    are dropped, before and again after simplification (which can shrink a sliver past it). Simplification is
    Douglas-Peucker with `simplify_m` metres, topology preserved. `orthogonalise` squares corners with
    buildingregulariser (edges parallel or perpendicular to the main direction, 45 degrees allowed,
    near-circles made circles); without the package it logs a note and only simplifies. The result is in
    `crs` and is not index-aligned with the input (pieces may drop or split). With crs None the thresholds
    are pixel units (warned).
    """
    metric, metric_crs = to_metric(polys, crs)
    kept = _explode(metric)
    if opening_m > 0 and kept:
        shrunk = shapely.buffer(np.asarray(kept, dtype=object), -opening_m, join_style="mitre")
        kept = _explode(shapely.buffer(shrunk, opening_m, join_style="mitre"))
    if hole_m2 > 0:
        kept = [fill_holes(p, hole_m2) for p in kept]
    kept = [p for p in kept if p.area >= min_area_m2]
    if simplify_m > 0:
        kept = [p.simplify(simplify_m, preserve_topology=True) for p in kept]
    if orthogonalise and kept:
        kept = _orthogonalise(kept, simplify_m)
    kept = [p for p in _explode(kept) if p.area >= min_area_m2]
    return from_metric(kept, metric_crs, crs)


def fill_holes(poly: Polygon, below: float) -> Polygon:
    """`poly` without its holes of area under `below` (units of its coordinates squared)."""
    holes = [ring for ring in poly.interiors if Polygon(ring).area >= below]
    return poly if len(holes) == len(poly.interiors) else Polygon(poly.exterior, holes)


def _orthogonalise(polys: list[Polygon], simplify_m: float) -> list[Polygon]:
    try:
        import geopandas as gpd
        from buildingregulariser import regularize_geodataframe
    except ImportError as err:
        log.warning("buildingregulariser is not usable (%s); footprints are simplified but not squared "
                    "(pip install -r requirements.txt)", brief(err))
        return polys
    frame = gpd.GeoDataFrame(geometry=polys, crs=None)  # already metric; no CRS needed or wanted (pyproj)
    # The library segmentises edges to 5x its tolerance even with simplify=False, so it must stay > 0;
    # 0.5 m is its own default. num_cores=1: no process pool inside a stage (2-core machines, loaders).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*inplace keyword.*")  # its own pandas-3 deprecation
        warnings.filterwarnings("ignore", message=".*low IoU with original polygon.*")  # it then keeps the original
        out = regularize_geodataframe(frame, simplify=False, num_cores=1,
                                      simplify_tolerance=simplify_m if simplify_m > 0 else 0.5)
    return list(out.geometry)


def _explode(geoms: Iterable[Any]) -> list[Polygon]:
    """The non-empty polygons of `geoms` (multi-parts split, invalid ones repaired, lines and points dropped)."""
    out: list[Polygon] = []
    for g in geoms:
        if g is None or g.is_empty:
            continue
        if not g.is_valid:
            g = shapely.make_valid(g)
        if isinstance(g, Polygon):
            out.append(g)
        elif hasattr(g, "geoms"):
            out.extend(_explode(g.geoms))
    return out


# ----------------------------------------------------------------------------- writing

def write_footprints(polys: Sequence[Polygon], properties: Sequence[dict], crs: Any,
                     geojson_path: str | os.PathLike, gpkg_path: str | os.PathLike) -> None:
    """One FeatureCollection in EPSG:4326 (RFC 7946) and the same layer as a GeoPackage, both atomic.

    Each feature carries `area_m2` (true ground area, 0.01 m2) and `source` (from its properties dict,
    required: the image it came from), then the other given properties. Rings follow the right-hand rule
    and coordinates are rounded to 1e-8 degree. The GeoPackage layer is named after the file and
    written with pyogrio. An empty list writes an empty collection and an empty layer. With crs None the
    coordinates stay in pixels: the GeoJSON then carries `"pixel_coordinates": true` (RFC 7946 allows
    other coordinates only by prior arrangement), area_m2 is null and the GeoPackage has no CRS (warned).
    """
    if len(properties) != len(polys):
        raise ValueError(f"write_footprints got {len(polys)} polygons but {len(properties)} property dicts")
    missing = [i for i, p in enumerate(properties) if "source" not in p]
    if missing:
        raise ValueError(f"write_footprints: property dict {missing[0]} has no 'source' (the image it came from)")
    areas = footprint_areas(polys, crs)
    if crs is None:
        log.warning("writing %s and %s in pixel coordinates: the masks have no CRS", geojson_path, gpkg_path)
        placed = list(polys)
    else:
        placed = reproject(polys, crs, WGS84_EPSG)
    placed = [shapely.transform(orient(p, sign=1.0), lambda xy: np.round(xy, GEOJSON_DECIMALS))
              for p in placed]
    records = [_record(a, props) for a, props in zip(areas, properties)]
    _write_geojson(Path(geojson_path), placed, records, pixel=crs is None)
    _write_gpkg(Path(gpkg_path), placed, records, None if crs is None else WGS84_EPSG)


def _record(area: float, props: dict) -> dict:
    rest = {k: _plain(v) for k, v in props.items() if k not in ("area_m2", "source")}
    return {"area_m2": None if math.isnan(area) else round(float(area), 2), "source": _plain(props["source"]), **rest}


def _plain(value: Any) -> Any:
    """A JSON/OGR-ready scalar: numpy scalars unwrapped, paths as strings."""
    if isinstance(value, np.generic):
        return value.item()
    return str(value) if isinstance(value, os.PathLike) else value


def _write_geojson(path: Path, polys: list[Polygon], records: list[dict], pixel: bool) -> None:
    collection: dict[str, Any] = {"type": "FeatureCollection"}
    if pixel:
        collection["pixel_coordinates"] = True
    collection["features"] = [{"type": "Feature", "properties": r, "geometry": mapping(p)}
                              for p, r in zip(polys, records)]
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(collection, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_gpkg(path: Path, polys: list[Polygon], records: list[dict], crs: str | None) -> None:
    try:
        from pyogrio import raw
    except ImportError as err:
        raise UserError(f"cannot write {path}: pyogrio is not usable ({brief(err)}); "
                        "pip install -r requirements.txt") from None
    logging.getLogger("pyogrio").setLevel(logging.WARNING)  # its "Created N records" says what the stage's line says
    # area_m2 and source come first and exist even in an empty layer, so every file has the same schema
    names = list(dict.fromkeys(["area_m2", "source"] + [k for r in records for k in r]))
    columns = [_ogr_column([r.get(k) for r in records], "float" if k == "area_m2" else None) for k in names]
    geometry = shapely.to_wkb(np.asarray(polys, dtype=object)) if polys else np.array([], dtype=object)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # the temporary name ends in .tmp, which GDAL's GPKG driver grumbles about; the final name is .gpkg
        warnings.filterwarnings("ignore", message=".*extension.*", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message="'crs' was not provided")  # no CRS: warned in our words
        raw.write(tmp, geometry, [c for c, _ in columns], names, field_mask=[m for _, m in columns],
                  layer=path.stem, driver="GPKG", geometry_type="Polygon", crs=crs, promote_to_multi=False)


def _ogr_column(values: list[Any], kind: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(values, null mask) with one OGR type per column: bool, int64, float64 (NaN = null) or string
    (also for a column of nulls only), inferred from the values unless `kind` is "float"."""
    present = [v for v in values if v is not None]
    null = np.array([v is None for v in values], dtype=bool)
    if kind == "float":
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64), None
    if present and all(isinstance(v, bool) for v in present):
        return np.array([bool(v) for v in values], dtype=bool), null
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return np.array([v or 0 for v in values], dtype=np.int64), null
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64), None
    return np.array([None if v is None else str(v) for v in values], dtype=object), None
