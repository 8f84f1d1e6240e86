"""The one rule that turns image bands of any type into the 8-bit RGB the networks see.

8-bit bands are used as they are. Any other type (16-bit, float) is stretched linearly per band from its
2nd to its 98th percentile to 0..255 (rounded, clipped), where the percentiles are taken over the band's
VALID pixels only: nodata, the dataset's mask or alpha band, and non-finite values are excluded, so a
nodata value of 65535 or one saturated pixel cannot darken the scene. Invalid pixels become 0.

A scene's stretch is computed once, from the whole scene (`scene_stretch`: one read decimated to at most
SAMPLE_PIXELS per band, so memory stays bounded for scenes of any size), and applied unchanged to every
window of it. Preparing a scene for training (voc12/prepare.py) and predicting it (misc/geoio.py) use the same
function, so a tile and the same area of the predicted scene get the same input. The stretch is recorded
with the outputs (`Stretch.record`): in the prepared dataset's `radiometry.json` and in the tags of the
predicted GeoTIFFs. Reads nothing but the rasterio dataset it is given; writes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RULE = "per-band 2-98 percentile of valid pixels to 0-255"
PERCENTILES = (2.0, 98.0)
SAMPLE_PIXELS = 4_000_000  # per band: the decimated read a scene's percentiles are taken from


@dataclass(frozen=True)
class Stretch:
    """Per band (low, high) input values that map to 0 and 255; None for 8-bit input (used as it is)."""
    bands: tuple[tuple[float, float], ...] | None

    def apply(self, pixels: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """uint8 [B, H, W] of `pixels` [B, H, W] (any dtype); `valid` [H, W] or [B, H, W] bool (True = data)."""
        if self.bands is None:
            out = np.asarray(pixels).astype(np.uint8, copy=False)
            return out if valid is None else np.where(_per_band(valid, out.shape), out, 0).astype(np.uint8)
        values = np.asarray(pixels, dtype=np.float64)
        ok = np.isfinite(values)
        if valid is not None:
            ok &= _per_band(valid, values.shape)
        out = np.empty(values.shape, np.uint8)
        for i, (low, high) in enumerate(self.bands):
            scale = 255.0 / (high - low) if high > low else 0.0
            band = np.clip((np.where(ok[i], values[i], low) - low) * scale, 0, 255)
            out[i] = np.where(ok[i], np.round(band), 0)
        return out

    def record(self) -> dict:
        """What was done, for the outputs' metadata."""
        if self.bands is None:
            return {"rule": "8-bit input used as it is"}
        return {"rule": RULE, "low": [b[0] for b in self.bands], "high": [b[1] for b in self.bands]}


IDENTITY = Stretch(None)


def _per_band(valid: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    valid = np.asarray(valid, dtype=bool)
    return np.broadcast_to(valid if valid.ndim == 3 else valid[None], shape)


def stretch_from_sample(pixels: np.ndarray, valid: np.ndarray | None = None) -> Stretch:
    """The stretch of bands `pixels` [B, H, W] from their valid pixels (IDENTITY for uint8)."""
    pixels = np.asarray(pixels)
    if pixels.dtype == np.uint8:
        return IDENTITY
    values = pixels.astype(np.float64)
    ok = np.isfinite(values)
    if valid is not None:
        ok &= _per_band(valid, values.shape)
    bands = []
    for i in range(values.shape[0]):
        if ok[i].any():
            low, high = np.percentile(values[i][ok[i]], PERCENTILES)
            bands.append((float(low), float(high)))
        else:
            bands.append((0.0, 0.0))
    return Stretch(tuple(bands))


def valid_pixels(src, indexes: list[int], window=None, out_shape: tuple[int, int] | None = None) -> np.ndarray:
    """bool [B, H, W]: where each band of rasterio dataset `src` holds data (its nodata, mask or alpha band
    and the dataset mask all say so)."""
    kwargs = {"window": window}
    if out_shape is not None:
        kwargs["out_shape"] = (len(indexes), *out_shape)
    band_masks = src.read_masks(indexes, **kwargs) != 0
    if out_shape is not None:
        kwargs["out_shape"] = out_shape
    return band_masks & (src.dataset_mask(**kwargs) != 0)[None]


def scene_stretch(src, indexes: list[int]) -> Stretch:
    """The stretch of bands `indexes` of the whole rasterio dataset `src`, from one read decimated to at most
    SAMPLE_PIXELS per band (nearest, so every sample is a real pixel value)."""
    if all(src.dtypes[i - 1] == "uint8" for i in indexes):
        return IDENTITY
    shrink = max(1.0, (src.height * src.width / SAMPLE_PIXELS) ** 0.5)
    shape = (max(1, int(src.height / shrink)), max(1, int(src.width / shrink)))
    pixels = src.read(indexes, out_shape=(len(indexes), *shape))
    return stretch_from_sample(pixels, valid_pixels(src, indexes, out_shape=shape))


def rgb_indexes(src) -> list[int]:
    """The bands read as RGB: the first three, or band 1 three times for a 1- or 2-band raster."""
    return [1, 2, 3] if src.count >= 3 else [1, 1, 1]


def scene_rgb(src) -> tuple[np.ndarray, Stretch]:
    """(HxWx3 uint8 RGB, its Stretch) of a whole open rasterio dataset: every path that turns a scene's bands
    into a training image goes through here, with the stretch S11's prediction of the scene computes."""
    indexes = rgb_indexes(src)
    stretch = scene_stretch(src, indexes)
    image = np.moveaxis(stretch.apply(src.read(indexes), valid_pixels(src, indexes)), 0, -1)
    return np.ascontiguousarray(image), stretch
