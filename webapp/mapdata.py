"""The Map page's layers: where each image and predicted mask lies on the earth, and the mask as a picture.

Reads:  XYZ-named tiles (`<prefix>-<x>-<y>-<z>`, misc.geodata) and GeoTIFFs with a CRS, of the images folder
        and of the work space's seg/ (S11's predicted masks); <work_space>/footprints.geojson (S12).
Writes: nothing.

Bounds are [[south, west], [north, east]] in degrees, as Leaflet takes them. An image without a place (a
plain PNG of no XYZ name, a GeoTIFF without CRS) is left off the map, never placed by guessing.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from misc import geodata, geoio, imutils, visutils

Bounds = list[list[float]]


def mercator_to_lonlat(x: float, y: float) -> tuple[float, float]:
    """EPSG:3857 metres -> (lon, lat) degrees on the web-mercator sphere."""
    lon = math.degrees(x / geodata.EARTH_RADIUS)
    lat = math.degrees(2 * math.atan(math.exp(y / geodata.EARTH_RADIUS)) - math.pi / 2)
    return lon, lat


def place(path: Path) -> Bounds | None:
    """Where the image `path` lies: from its XYZ name, else from its GeoTIFF georeference, else None."""
    xyz = geodata.match_xyz_name(path.stem)
    if xyz is not None:
        _, x, y, z = xyz
        minx, miny, maxx, maxy = geodata.xyz_tile_bounds(x, y, z)
        west, south = mercator_to_lonlat(minx, miny)
        east, north = mercator_to_lonlat(maxx, maxy)
        return [[south, west], [north, east]]
    if not geodata.is_geotiff(path):
        return None
    from rasterio.warp import transform_bounds

    with geodata.open_raster(path, "raster", "remove or rewrite it") as src:
        if src.crs is None:
            return None
        west, south, east, north = transform_bounds(src.crs, geodata.WGS84_EPSG, *src.bounds)
    return [[south, west], [north, east]]


def layers(images: dict[str, Path]) -> list[dict]:
    """[{name, bounds}] of the images that have a place."""
    out = []
    for name, path in images.items():
        bounds = place(path)
        if bounds is not None:
            out.append({"name": name, "bounds": bounds})
    return out


def picture(path: Path) -> np.ndarray:
    """An image for the map: a PNG/JPEG as it is, a GeoTIFF shrunk to visutils.VIS_MAX_SIDE."""
    if geodata.is_geotiff(path):
        return geoio.preview_rgb(path, visutils.VIS_MAX_SIDE)
    return imutils.read_image(path)


def mask_picture(path: Path) -> np.ndarray:
    """A predicted {0,1} mask (255 = no data) as RGBA: building red and half transparent, the rest clear."""
    if geodata.is_geotiff(path):
        mask = geoio.read_preview(path, visutils.VIS_MAX_SIDE, bands=[1])[..., 0]
    else:
        mask = imutils.read_mask(path)
    rgba = np.zeros((*mask.shape, 4), np.uint8)
    rgba[mask == 1] = (255, 40, 40, 150)
    return rgba
