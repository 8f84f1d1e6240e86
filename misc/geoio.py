"""GeoTIFF-aware image reading and mask writing for prediction on any image (S11).

A GeoTIFF keeps its georeference: its mask is written as a GeoTIFF with the input's CRS and transform
beside the PNG. Other images are read with misc.imutils.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from misc import fileio, imutils
from misc.errors import UserError, brief

GEOTIFF_SUFFIXES = (".tif", ".tiff")


def read_image(path: str | Path) -> tuple[np.ndarray, dict[str, Any] | None]:
    """HxWx3 uint8 RGB, and for a georeferenced GeoTIFF {"crs", "transform"} (else None).

    GeoTIFFs: the first 3 bands (1 band is repeated); other dtypes are scaled by the image maximum
    to 0..255, as misc.imutils does for 16-bit PNGs."""
    path = Path(path)
    if path.suffix.lower() not in GEOTIFF_SUFFIXES:
        return imutils.read_image(path), None
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                if src.count == 2:
                    raise UserError(f"{path} has 2 bands; expected 1 (grey) or at least 3 (RGB first)")
                bands = src.read([1, 2, 3] if src.count >= 3 else [1, 1, 1])
                geo = {"crs": src.crs, "transform": src.transform}
                georeferenced = src.crs is not None or not src.transform.is_identity
    except RasterioIOError as err:
        raise UserError(f"{path} is not a readable image ({brief(err)}); remove it from --seg_infer_dir") from None
    if bands.dtype != np.uint8:
        bands = bands.astype(np.float32)
        bands = (bands / max(float(bands.max()), 1.0) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(bands.transpose(1, 2, 0)), geo if georeferenced else None


def write_mask(out_dir: Path, name: str, mask: np.ndarray, geo: dict[str, Any] | None) -> None:
    """<name>.tif (georeferenced inputs) then <name>.png; both atomic."""
    if geo is not None:
        import rasterio

        with fileio.atomic_path(out_dir / f"{name}.tif") as tmp:
            with rasterio.open(tmp, "w", driver="GTiff", height=mask.shape[0], width=mask.shape[1], count=1,
                               dtype="uint8", crs=geo["crs"], transform=geo["transform"], compress="deflate") as dst:
                dst.write(mask[None])
    fileio.save_png(out_dir / f"{name}.png", mask)
