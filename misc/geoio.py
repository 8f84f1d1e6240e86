"""GeoTIFF-aware image reading and mask writing for prediction on any image (S11).

PNG/JPEG images are read whole (misc.imutils) and their masks written by `write_mask`: a PNG, and a GeoTIFF
beside it when the image is georeferenced (a GeoTIFF, or an XYZ tile named OAM-x-y-z.png: `xyz_geo`).

GeoTIFF scenes of any size go through `predict_geotiff`, which reads and writes by windows and never holds
the scene or its logits whole (docs/ARCHITECTURE.md, "Scenes of any size"). Its output <name>.tif is a
tiled (512 x 512), deflate-compressed GeoTIFF with the input's CRS and transform, made a Cloud-Optimised
GeoTIFF when GDAL has the COG driver: band 1 the mask {0 = background, 1 = building}, optional band 2 the
building probability in percent (0-100); NODATA (255) in every band where the input has no data (all its
bands nodata, or its mask or alpha band says invalid). Scenes of at most PNG_MAX_SIDE pixels a side also
get <name>.png, nodata there written as 0 (background), so evaluation reads them as any tile.
"""
from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from misc import fileio
from misc.errors import UserError
from misc.geodata import WEB_MERCATOR, match_xyz_name, open_raster, parse_xyz_name, xyz_tile_bounds

log = logging.getLogger(__name__)

NODATA = 255        # output value where the input has no data
PNG_MAX_SIDE = 4096  # scenes up to this many pixels a side also get a PNG mask
BLOCK = 512          # tile size of the output GeoTIFFs
GDAL_CACHE_MB = 256  # GDAL's block cache while a scene is predicted: rows of input blocks for one band


def xyz_geo(name: str, height: int, width: int) -> dict[str, Any] | None:
    """{"crs": EPSG:3857, "transform"} of an image named as an XYZ tile (OAM-x-y-z), None for other names;
    a name of that form whose tile cannot exist is a UserError (misc.geodata.parse_xyz_name)."""
    from rasterio.transform import from_bounds

    if match_xyz_name(name) is None:
        return None
    return {"crs": WEB_MERCATOR, "transform": from_bounds(*xyz_tile_bounds(*parse_xyz_name(name)), width, height)}


def write_mask(out_dir: Path, name: str, mask: np.ndarray, geo: dict[str, Any] | None) -> None:
    """<name>.tif (georeferenced inputs) then <name>.png; both atomic."""
    if geo is not None:
        import rasterio

        with fileio.atomic_path(out_dir / f"{name}.tif") as tmp:
            with rasterio.open(tmp, "w", driver="GTiff", height=mask.shape[0], width=mask.shape[1], count=1,
                               dtype="uint8", crs=geo["crs"], transform=geo["transform"], compress="deflate",
                               tiled=True, blockxsize=256, blockysize=256) as dst:
                dst.write(mask[None])
    fileio.save_png(out_dir / f"{name}.png", mask)


# ----------------------------------------------------------------------------- scenes of any size

Blocks = Callable[[Callable[[int, int, int, int], np.ndarray], int, int], Iterator[tuple[int, int, Any]]]


@dataclass(frozen=True)
class SceneResult:
    height: int
    width: int
    georeferenced: bool
    png: bool  # a PNG mask was written too


def _open_scene(path: Path):
    src = open_raster(path, "image", "remove it from --seg_infer_dir")
    if src.count == 2:
        src.close()
        raise UserError(f"{path} has 2 bands; expected 1 (grey) or at least 3 (RGB first)")
    return src


def _scale_to_uint8(src) -> float | None:
    """None for uint8 scenes; else 255 / the maximum of the first bands, found block by block."""
    if src.dtypes[0] == "uint8":
        return None
    top = 1.0
    bands = min(src.count, 3)
    for _, window in src.block_windows(1):
        top = max(top, float(np.nanmax(src.read(list(range(1, bands + 1)), window=window))))
    return 255.0 / top


def predict_geotiff(path: str | Path, out_dir: Path, name: str, blocks: Blocks, prob_band: bool = False) -> SceneResult:
    """Predict the GeoTIFF scene `path` window by window into <out_dir>/<name>.tif (+ .png when small).

    `blocks(read, height, width)` yields (row, col, logits [C, h, w]) covering the scene once
    (net.deeplabv3plus.scene_logits); `read(r0, r1, c0, c1)` gives it uint8 HxWx3 RGB (first 3 bands, one
    band repeated; other dtypes scaled by the scene's maximum to 0..255). Finished rows are buffered to
    whole 512-pixel blocks and written with windowed writes. The PNG is written first and the GeoTIFF last,
    so a <name>.tif means the scene is done. GDAL's block cache is held to GDAL_CACHE_MB (its default, 5% of
    the RAM, would fill with blocks of the input that are never read again).
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.windows import Window

    path = Path(path)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), _open_scene(path) as src:
        height, width = src.height, src.width
        bands = [1, 2, 3] if src.count >= 3 else [1, 1, 1]
        scale = _scale_to_uint8(src)
        georeferenced = src.crs is not None or not src.transform.is_identity
        if src.crs is None:
            log.warning("%s has no CRS: its mask %s.tif has none either, so footprints made from it stay in pixel "
                        "coordinates; georeference the scene (e.g. gdal_edit.py -a_srs EPSG:xxxx) to place them", path, name)

        def read(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
            pixels = src.read(bands, window=Window(c0, r0, c1 - c0, r1 - r0))
            if scale is not None:
                pixels = np.clip(pixels.astype(np.float32) * scale, 0, 255).astype(np.uint8)
            return np.ascontiguousarray(pixels.transpose(1, 2, 0))

        png = max(height, width) <= PNG_MAX_SIDE
        whole = np.zeros((height, width), np.uint8) if png else None
        profile = {"driver": "GTiff", "height": height, "width": width, "count": 2 if prob_band else 1,
                   "dtype": "uint8", "nodata": NODATA, "crs": src.crs, "transform": src.transform, "tiled": True,
                   "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate", "BIGTIFF": "IF_SAFER"}
        fd, work = tempfile.mkstemp(prefix=f".{name}.", suffix=".work.tif", dir=out_dir)
        os.close(fd)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(work, "w", **profile) as dst:
                    buffer, done, next_log = _RowBuffer(dst, src, prob_band), 0, 0.1
                    for row, col, logits in blocks(read, height, width):
                        mask = buffer.add(row, col, logits)
                        if whole is not None:
                            whole[row:row + mask.shape[0], col:col + mask.shape[1]] = np.where(mask == NODATA, 0, mask)
                        done += mask.size
                        if done >= next_log * height * width and height * width >= 16e6:  # large scenes only
                            log.info("%s: %.0f%% of %.0f MP", path.name, 100 * done / (height * width), height * width / 1e6)
                            next_log += 0.1
                    buffer.flush()
            if whole is not None:
                fileio.save_png(out_dir / f"{name}.png", whole)
            with fileio.atomic_path(out_dir / f"{name}.tif") as tmp:
                _finish(Path(work), tmp)
        finally:
            Path(work).unlink(missing_ok=True)
    return SceneResult(height, width, georeferenced, png)


class _RowBuffer:
    """Rows of one band of columns, kept until they fill whole output blocks (BLOCK rows), then written."""

    def __init__(self, dst, src, prob_band: bool) -> None:
        self.dst, self.src, self.prob_band = dst, src, prob_band
        self.col, self.top, self.parts = -1, 0, []

    def add(self, row: int, col: int, logits) -> np.ndarray:
        """Store the mask (and probability) of the block at (row, col); returns its mask."""
        from rasterio.windows import Window

        if col != self.col:
            self.flush()
            self.col, self.top = col, row
        height, width = logits.shape[-2:]
        valid = self.src.dataset_mask(window=Window(col, row, width, height)) != 0
        mask = np.where(valid, logits.argmax(0).numpy().astype(np.uint8), NODATA).astype(np.uint8)
        if self.prob_band:
            percent = np.where(valid, np.rint(logits.softmax(0)[1].numpy() * 100), NODATA).astype(np.uint8)
            self.parts.append(np.stack([mask, percent]))
        else:
            self.parts.append(mask[None])
        if sum(p.shape[1] for p in self.parts) >= BLOCK:
            self.flush(whole_blocks=True)
        return mask

    def flush(self, whole_blocks: bool = False) -> None:
        from rasterio.windows import Window

        if not self.parts:
            return
        rows = np.concatenate(self.parts, axis=1)
        keep = rows.shape[1] - rows.shape[1] % BLOCK if whole_blocks else rows.shape[1]
        self.dst.write(rows[:, :keep], window=Window(self.col, self.top, rows.shape[2], keep))
        self.top += keep
        self.parts = [rows[:, keep:]] if keep < rows.shape[1] else []


def cog_available() -> bool:
    import rasterio

    with rasterio.Env() as env:
        return "COG" in env.drivers()


def _finish(work: Path, out: Path) -> None:
    """The final file: a Cloud-Optimised GeoTIFF copy of `work` (overviews by nearest neighbour, so masks stay
    {0, 1}), or `work` itself where GDAL has no COG driver."""
    import rasterio.shutil

    if cog_available():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NotGeoreferencedWarning of CRS-less scenes: warned above
            rasterio.shutil.copy(str(work), str(out), driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=str(BLOCK),
                                 OVERVIEW_RESAMPLING="NEAREST", BIGTIFF="IF_SAFER")
    else:
        os.replace(work, out)


def read_preview(path: str | Path, max_side: int, bands: list[int] | None = None) -> np.ndarray:
    """A raster shrunk (nearest) so its long side is at most `max_side`: HxWxB, for pictures only."""
    with open_raster(path, "raster", "remove or rewrite it") as src:
        scale = min(1.0, max_side / max(src.height, src.width))
        shape = (max(1, round(src.height * scale)), max(1, round(src.width * scale)))
        bands = bands or list(range(1, src.count + 1))
        return src.read(bands, out_shape=(len(bands), *shape)).transpose(1, 2, 0)


def preview_rgb(path: str | Path, max_side: int) -> np.ndarray:
    """`read_preview` of an image as uint8 HxWx3 RGB: one band repeated, other dtypes scaled by their maximum."""
    image = read_preview(path, max_side)
    image = np.repeat(image[..., :1], 3, axis=2) if image.shape[2] < 3 else image[..., :3]
    if image.dtype != np.uint8:
        image = (image.astype(np.float32) / max(float(image.max()), 1.0) * 255).astype(np.uint8)
    return np.ascontiguousarray(image)
