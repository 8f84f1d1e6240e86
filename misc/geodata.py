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
XYZ_NAME = re.compile(r"^(?P<prefix>.+)-(?P<x>\d+)-(?P<y>\d+)-(?P<z>\d+)$")


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


def match_xyz_name(name: str) -> tuple[str, int, int, int] | None:
    """(prefix, x, y, z) of a name `<prefix>-x-y-z` or `<prefix>-x-y-z.png` (a path is fine); None otherwise."""
    stem = Path(name).name.removesuffix(".png")
    m = XYZ_NAME.match(stem)
    return None if m is None else (m["prefix"], int(m["x"]), int(m["y"]), int(m["z"]))


def parse_xyz_name(name: str) -> tuple[int, int, int]:
    """(x, y, z) of an XYZ tile named `OAM-x-y-z(.png)`; anything else is a UserError naming the file."""
    found = match_xyz_name(name)
    if found is None:
        raise UserError(f"{name} is not named as an XYZ tile; expected OAM-<x>-<y>-<z>.png (e.g. "
                        "OAM-1277168-1083840-21.png), or give the mask as a GeoTIFF with its CRS")
    _, x, y, z = found
    if x >= 1 << z or y >= 1 << z:
        raise UserError(f"{name}: tile x={x} y={y} does not exist at zoom {z} (both must be below {1 << z}); "
                        "check the x-y-z order of the name")
    return x, y, z


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
