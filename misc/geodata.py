"""Geodata basics shared by every geo module: CRS names, the XYZ tile grid, GeoTIFF suffixes, opening a raster
and reprojecting geometries.

Low level on purpose: it imports nothing of the project but `misc.errors`, so `misc.geoio` (prediction on
GeoTIFFs), `misc.footprints` (masks to polygons), `voc12.prepare` (datasets from scenes and tiles) and the
stages all build on it without importing one another. rasterio and shapely are imported where used.
Reads and writes no file itself; `open_raster` and `read_raster` open the rasters their callers name.
"""
from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from affine import Affine

from misc.errors import UserError, brief

T = TypeVar("T")

# CRS names. The two lon/lat names are the same datum and, as used here, the same axis order (lon, lat):
# rasterio/GDAL keep the traditional GIS order for EPSG:4326, which is what files we write declare; GeoJSON
# read without a "crs" member is OGC:CRS84 by RFC 7946.
WGS84_EPSG = "EPSG:4326"     # the CRS the footprints are written in (GeoJSON and GeoPackage)
WGS84_CRS84 = "OGC:CRS84"    # the CRS of GeoJSON that names none
WEB_MERCATOR = "EPSG:3857"   # the CRS of XYZ tiles

GEOTIFF_SUFFIXES = (".tif", ".tiff")

EARTH_RADIUS = 6378137.0  # WGS84 semi-major axis, the sphere of EPSG:3857
MERCATOR_HALF = math.pi * EARTH_RADIUS  # 20037508.342789244 m
# the names georeferenced as XYZ tiles: the fAIr form OAM-x-y-z, or a pattern with groups x, y, z the user gives
# (--xyz_name_pattern); any other name is never placed on the earth by a guess
FAIR_XYZ_NAME = r"(?P<prefix>OAM)-(?P<x>\d+)-(?P<y>\d+)-(?P<z>\d+)"
MAX_ZOOM = 30  # deeper than any tile server (zoom 30: 4 cm at the equator); larger numbers are not a zoom


def is_geotiff(path: str | Path) -> bool:
    """Whether `path` ends in a GeoTIFF suffix (any case)."""
    return Path(path).suffix.lower() in GEOTIFF_SUFFIXES


# ----------------------------------------------------------------------------- XYZ tiles

def xyz_tile_bounds(x: int, y: int, z: int) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) of XYZ tile (x, y, z) in EPSG:3857 metres; row y counts down from the north."""
    size = 2.0 * MERCATOR_HALF / (1 << z)
    minx = -MERCATOR_HALF + x * size
    maxy = MERCATOR_HALF - y * size
    return minx, maxy - size, minx + size, maxy


def xyz_transform(x: int, y: int, z: int, size: int = 256) -> tuple[Affine, str]:
    """The affine transform of a size x size tile's pixel grid and its CRS (EPSG:3857)."""
    minx, _, maxx, maxy = xyz_tile_bounds(x, y, z)
    res = (maxx - minx) / size
    return Affine(res, 0.0, minx, 0.0, -res, maxy), WEB_MERCATOR


def _xyz_tile(name: str, pattern: str) -> tuple[tuple[str, int, int, int] | None, str]:
    """((prefix, x, y, z) or None, why not) of a name or path, with or without .png."""
    stem = Path(name).name
    stem = stem[:-4] if stem.lower().endswith(".png") else stem
    m = re.fullmatch(pattern, stem)
    if m is None:
        return None, f"is not named as an XYZ tile ({'OAM-<x>-<y>-<z>' if pattern == FAIR_XYZ_NAME else pattern})"
    x, y, z = (int(m[k]) for k in ("x", "y", "z"))
    if z > MAX_ZOOM:
        return None, f"names zoom {z}, deeper than any XYZ tile (at most {MAX_ZOOM})"
    if x >= 1 << z or y >= 1 << z:
        return None, f"names tile x={x} y={y}, which does not exist at zoom {z} (both must be below {1 << z})"
    return (m.groupdict().get("prefix") or "", x, y, z), ""


def match_xyz_name(name: str, pattern: str = FAIR_XYZ_NAME) -> tuple[str, int, int, int] | None:
    """(prefix, x, y, z) of a name that is an XYZ tile: it matches `pattern` whole (the fAIr form OAM-x-y-z by
    default; `.png` and any folder are dropped first) and x, y fit zoom z (0 <= x, y < 2**z, z <= MAX_ZOOM);
    None for any other name, which is never georeferenced from its name."""
    return _xyz_tile(name, pattern)[0]


def xyz_name_problem(name: str, pattern: str = FAIR_XYZ_NAME) -> str:
    """Why `name` is not an XYZ tile ("" when it is), in words that follow the name."""
    return _xyz_tile(name, pattern)[1]


def xyz_index(paths: Iterable[str | Path], pattern: str = FAIR_XYZ_NAME) -> dict[tuple[str, int, int, int], Path]:
    """{(prefix, x, y, z): path} of the files named as XYZ tiles (`match_xyz_name` of the name without its
    suffix); other files are left out. Where two files name one tile (a.png, a.jpg) the first is kept."""
    index: dict[tuple[str, int, int, int], Path] = {}
    for path in paths:
        key = match_xyz_name(Path(path).stem, pattern)
        if key is not None:
            index.setdefault(key, Path(path))
    return index


def parse_xyz_name(name: str, pattern: str = FAIR_XYZ_NAME) -> tuple[int, int, int]:
    """(x, y, z) of an XYZ tile name (`match_xyz_name`); anything else is a UserError naming the file."""
    found, why = _xyz_tile(name, pattern)
    if found is None:
        raise UserError(f"{name} {why}; expected OAM-<x>-<y>-<z>.png (e.g. OAM-1277168-1083840-21.png), a name "
                        "of --xyz_name_pattern, or give the mask as a GeoTIFF with its CRS")
    return found[1:]


# ----------------------------------------------------------------------------- rasters

@contextmanager
def raster_errors(path: str | Path, what: str, fix: str) -> Iterator[None]:
    """Inside: rasterio's errors become one UserError line `<what> <path> is unreadable (why); <fix>`, and a
    CRS-less file gives no NotGeoreferencedWarning (callers decide what to say about it)."""
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            yield
    except RasterioError as err:
        raise UserError(f"{what} {path} is unreadable ({brief(err)}); {fix}") from None


def open_raster(path: str | Path, what: str, fix: str) -> Any:
    """rasterio's open dataset of `path` (use it in a `with`); a file rasterio cannot open is one UserError
    line (`raster_errors`). Reads from the dataset keep rasterio's errors: see `read_raster`."""
    import rasterio

    with raster_errors(path, what, fix):
        return rasterio.open(path)


def read_raster(path: str | Path, what: str, fix: str, read: Callable[[Any], T]) -> T:
    """`read(dataset)` of the raster `path`, opened and closed here; rasterio's errors while opening or
    reading are one UserError line (`raster_errors`), UserErrors raised by `read` pass as they are."""
    import rasterio

    with raster_errors(path, what, fix), rasterio.open(path) as src:
        return read(src)


# ----------------------------------------------------------------------------- geometries

def reproject(geoms: Iterable[Any], src_crs: Any, dst_crs: Any) -> list[Any]:
    """Shapely geometries (or GeoJSON-like dicts) moved vertex by vertex from `src_crs` to `dst_crs`, in one
    GDAL call for all vertices; shapely geometries out.

    Edges stay straight, which is exact enough for buildings (a 40 m edge bows by < 0.1 mm).
    """
    import numpy as np
    import shapely
    from rasterio.warp import transform
    from shapely.geometry import shape

    geoms = [g if isinstance(g, shapely.Geometry) else shape(g) for g in geoms]
    if not geoms:
        return []

    def move(xy: np.ndarray) -> np.ndarray:
        xs, ys = transform(src_crs, dst_crs, xy[:, 0], xy[:, 1])
        return np.column_stack([xs, ys])

    return list(shapely.transform(np.asarray(geoms, dtype=object), move))
