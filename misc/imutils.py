"""The one image reader, and the pixel-level transforms shared by the datasets (S1, S6, inference).

Images are HxWx3 uint8 RGB numpy arrays; masks are HxW uint8. Resizing uses PIL
(bicubic for images, nearest for labels), as the reference does.
"""
from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from misc import radiometry
from misc.errors import UserError, brief
from misc.geodata import GEOTIFF_SUFFIXES

IGNORE = 255  # label value of pixels that carry no label (uncertain, padding, void)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", *GEOTIFF_SUFFIXES)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _open(path: Path, what: str) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()  # decode now, so a truncated file fails here with its name
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist") from None
    except Image.DecompressionBombError as err:
        raise UserError(too_large(path, err)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise UserError(f"{what} {path} is unreadable or truncated ({brief(err)}); re-export or remove it from the list") from None
    return img


def too_large(path: str | os.PathLike, err: Exception) -> str:
    """The line for an image above PIL's decompression-bomb limit."""
    return (f"image {path} is larger than PIL decodes whole ({brief(err)}); save it as a GeoTIFF (S11 predicts "
            "GeoTIFFs of any size window by window) or cut it into tiles with `python -m voc12.prepare`")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB. Grayscale, palette and RGBA images are converted.

    16-bit images are stretched to 8 bits by the rule of misc/radiometry.py; anything else (e.g. 4-band
    GeoTIFF) should go through `python -m voc12.prepare`.
    """
    img = _open(Path(path), "image")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        band = np.asarray(img, dtype=np.int64)[None]
        img = Image.fromarray(radiometry.stretch_from_sample(band).apply(band)[0])
    if img.mode != "RGB":
        img = img.convert("RGB")  # RGBA drops alpha; L and P expand to 3 channels
    return np.asarray(img, dtype=np.uint8)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a single-channel label PNG as HxW uint8, values untouched (0/1/255 labels, 0/255 GT)."""
    img = _open(Path(path), "mask")
    if img.mode not in ("L", "P", "1"):
        img = img.convert("L")
    return np.asarray(img, dtype=np.uint8).copy()


def gt_to_binary(mask: np.ndarray, source: str | os.PathLike = "a ground-truth mask", flag: str = "--gt_dir") -> np.ndarray:
    """Ground truth as {0, 1} (255 = ignore). Two encodings are read, as the reference's SegmentationClassAug:
    0/255 masks (255 = building, the reference's int(v/255)) and 0/1 masks, where 255 marks void pixels that
    scores ignore. Any other value is a UserError naming `source`, the values found and `flag`."""
    found = np.flatnonzero(np.bincount(mask.reshape(-1), minlength=256))
    values = set(found.tolist())
    if values <= {0, 255} and 1 not in values:
        return (mask == 255).astype(np.uint8)
    if values <= {0, 1, IGNORE}:
        return mask.astype(np.uint8)
    raise UserError(f"{source} holds the values {_values(found)}; ground truth must be 0/255 (255 = building) or "
                    f"0/1 (1 = building, 255 = ignore): fix the mask or {flag}")


def read_gt(path: str | os.PathLike, flag: str = "--gt_dir") -> np.ndarray:
    """A ground-truth PNG as {0, 1} (255 = ignore), checked by `gt_to_binary`."""
    return gt_to_binary(read_mask(path), path, flag)


def check_label_values(mask: np.ndarray, source: str | os.PathLike, flag: str) -> None:
    """A training label mask holds 0 (background), 1 (building) and 255 (no label) only."""
    found = np.flatnonzero(np.bincount(mask.reshape(-1), minlength=256))
    if not set(found.tolist()) <= {0, 1, IGNORE}:
        raise UserError(f"label mask {source} holds the values {_values(found)}; training labels must be 0 "
                        f"(background), 1 (building) or 255 (no label): remake it ({flag})")


def _values(found: np.ndarray) -> str:
    shown = ", ".join(str(v) for v in found[:8])
    return f"{{{shown}{', ...' if len(found) > 8 else ''}}}"


def find_image(image_dir: str | os.PathLike, name: str) -> Path | None:
    """The image file of tile `name` in `image_dir`, trying the supported suffixes; None if absent."""
    image_dir = Path(image_dir)
    for suffix in IMAGE_SUFFIXES:
        candidate = image_dir / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def normalize(img: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 -> float32 HxWx3 with ImageNet mean/std."""
    return (img.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def hwc_to_chw(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def pil_rescale(img: np.ndarray, scale: float, order: int) -> np.ndarray:
    """Resize by `scale` to (round(H*s), round(W*s)); order 3 = bicubic (images), 0 = nearest (labels)."""
    height, width = img.shape[:2]
    size = (int(round(height * scale)), int(round(width * scale)))
    return pil_resize(img, size, order)


def pil_resize(img: np.ndarray, size: tuple[int, int], order: int) -> np.ndarray:
    if tuple(img.shape[:2]) == tuple(size):
        return img
    resample = Image.BICUBIC if order == 3 else Image.NEAREST
    return np.asarray(Image.fromarray(img).resize((size[1], size[0]), resample))


def random_resize_long(img: np.ndarray, min_long: int, max_long: int, rng: random.Random) -> np.ndarray:
    """Scale so the long side is a uniform integer in [min_long, max_long]."""
    target = rng.randint(min_long, max_long)
    height, width = img.shape[:2]
    scale = target / max(height, width)
    return pil_rescale(img, scale, order=3)


def random_crop(arrays: list[np.ndarray], crop: int, fills: list[float], rng: random.Random) -> list[np.ndarray]:
    """Crop the same random `crop`x`crop` window from each array; smaller arrays are placed at a
    random offset in a container filled with the matching value (0, the mean colour, for a normalised image; 255 for a label)."""
    height, width = arrays[0].shape[:2]
    ch, cw = min(crop, height), min(crop, width)
    w_space, h_space = width - crop, height - crop
    cont_left, img_left = (0, rng.randrange(w_space + 1)) if w_space > 0 else (rng.randrange(-w_space + 1), 0)
    cont_top, img_top = (0, rng.randrange(h_space + 1)) if h_space > 0 else (rng.randrange(-h_space + 1), 0)
    out = []
    for arr, fill in zip(arrays, fills):
        box = np.full((crop, crop) + arr.shape[2:], fill, dtype=arr.dtype)
        box[cont_top:cont_top + ch, cont_left:cont_left + cw] = arr[img_top:img_top + ch, img_left:img_left + cw]
        out.append(box)
    return out


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except FileNotFoundError:
        raise UserError(f"image {path} does not exist") from None
    except Image.DecompressionBombError as err:
        raise UserError(too_large(path, err)) from None
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"image {path} is unreadable ({brief(err)}); re-export or remove it from the list") from None


def with_margin(centre: np.ndarray, neighbours: Mapping[tuple[int, int], np.ndarray], margin: int) -> np.ndarray:
    """`centre` (H x W [x C]) grown by `margin` pixels on every side: from the neighbouring tiles of a grid where
    given ({(dy, dx): image}, dy and dx in -1, 0, 1, each the size of `centre`; others are left out), mirrored
    from `centre` itself elsewhere. A network sees a tile's edge as the edge of the world; with the ground
    beyond it, pixels near the edge are predicted as the middle's are."""
    h, w = centre.shape[:2]
    margin = max(0, min(int(margin), h, w))
    pad = ((margin, margin), (margin, margin)) + ((0, 0),) * (centre.ndim - 2)
    out = np.pad(centre, pad, mode="symmetric")
    if margin == 0:
        return out
    rows = {-1: (slice(0, margin), slice(h - margin, h)), 0: (slice(margin, margin + h), slice(0, h)),
            1: (slice(margin + h, h + 2 * margin), slice(0, margin))}
    cols = {-1: (slice(0, margin), slice(w - margin, w)), 0: (slice(margin, margin + w), slice(0, w)),
            1: (slice(margin + w, w + 2 * margin), slice(0, margin))}
    for (dy, dx), tile in neighbours.items():
        if (dy, dx) == (0, 0) or tile.shape != centre.shape:
            continue
        (out_rows, in_rows), (out_cols, in_cols) = rows[dy], cols[dx]
        out[out_rows, out_cols] = tile[in_rows, in_cols]
    return out
