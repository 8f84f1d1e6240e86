"""Cutting scenes into tiles and the checks every preparation mode shares (voc12.prepare's mask-deriving modes
and voc12.image_labels' yes/no mode): pure functions, no file read or written."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from misc.errors import UserError


def tile_grid(height: int, width: int, tile: int) -> list[tuple[int, int]]:
    """Top-left corners (row0, col0) of the tiles covering a height x width scene, row-major.

    A regular grid of step `tile`; where the scene is not a multiple of `tile` the last row/column
    is shifted inward to end at the border. A side shorter than `tile` gets a single offset 0
    (the caller pads).
    """
    if tile < 1:
        raise ValueError(f"tile size must be positive, got {tile}")
    return [(r, c) for r in _offsets(height, tile) for c in _offsets(width, tile)]


def cut_tile(array: np.ndarray, row0: int, col0: int, tile: int) -> np.ndarray:
    """The tile x tile window at (row0, col0), padded with 0 at the bottom/right where the scene ends."""
    window = array[row0:row0 + tile, col0:col0 + tile]
    if window.shape[:2] == (tile, tile):
        return window
    out = np.zeros((tile, tile) + array.shape[2:], dtype=array.dtype)
    out[:window.shape[0], :window.shape[1]] = window
    return out


def _offsets(length: int, tile: int) -> list[int]:
    if length <= tile:
        return [0]
    offsets = list(range(0, length - tile + 1, tile))
    if offsets[-1] + tile < length:
        offsets.append(length - tile)
    return offsets


def check_test_groups(test_groups: Iterable[str], groups: Sequence[str]) -> frozenset[str]:
    """The --test_groups as a set; a name that is not among `groups` is a UserError listing them."""
    test = frozenset(test_groups)
    unknown = sorted(test - set(groups))
    if unknown:
        raise UserError(f"--test_groups names {', '.join(unknown)}, which is not among the groups found "
                        f"({', '.join(sorted(groups))}); use those names")
    return test


def check_tile_size(tile_size: int) -> None:
    """A tile side below one pixel is a UserError."""
    if tile_size < 1:
        raise UserError(f"--tile_size {tile_size} must be a positive number of pixels (e.g. 256)")
