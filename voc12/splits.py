"""The in-area split: test tiles chosen by spatial block inside each area, so no test tile has a training tile
of the same block (pure functions, used by voc12.layout.LayoutWriter for `voc12.prepare --block_zoom/--block_m`).

A block is a key inside its group (area folder or scene): for XYZ tiles the parent tile at a coarser zoom
(`xyz_block`), for tiles cut from a scene a square of whole tiles (`grid_block`), so the last tile of a row or
column, shifted inward to end at the border, shares the block of the tile it overlaps and no pixel lies on both
sides. Per group, `round(test_fraction * blocks)` blocks (at least 1, at most all but 1) go to the test side,
drawn with numpy's generator seeded by (--seed, the group's name), so a group's split depends neither on the
other groups nor on the order the tiles were written.
"""
from __future__ import annotations

import math
import zlib
from collections import defaultdict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np

from misc.errors import UserError


@dataclass(frozen=True)
class BlockSplit:
    test_fraction: float = 0.25
    seed: int = 0
    unit: str = "block"  # how a block was defined, for the messages (e.g. "--block_zoom 18")


def xyz_block(x: int, y: int, z: int, block_zoom: int) -> tuple[int, int, int]:
    """The parent (x, y, block_zoom) of XYZ tile (x, y, z); `block_zoom` <= z."""
    if not 0 <= block_zoom <= z:
        raise UserError(f"--block_zoom {block_zoom} must be between 0 and the tiles' zoom {z} "
                        f"(e.g. {max(z - 3, 0)}: blocks of 8x8 tiles)")
    shift = z - block_zoom
    return x >> shift, y >> shift, block_zoom


def tiles_per_block(block_m: float, tile_size: int, pixel_m: float) -> int:
    """Side of a square block in whole tiles: `block_m` metres rounded to tiles of `tile_size` pixels of `pixel_m`
    metres (at least one)."""
    return max(1, round(block_m / (tile_size * pixel_m)))


def grid_block(row0: int, col0: int, tile_size: int, per_block: int) -> tuple[int, int]:
    """Block (row, column) of the tile whose top-left pixel is (row0, col0) on a scene's tile grid."""
    side = tile_size * per_block
    return row0 // side, col0 // side


def split_blocks(tiles: Mapping[str, tuple[str, Hashable]], split: BlockSplit) -> tuple[set[str], str]:
    """The test tiles of `tiles` ({name: (group, block)}) and the summary of both sides.

    Raises UserError naming the group when a group has fewer than 2 blocks."""
    if not 0 < split.test_fraction < 1:
        raise UserError(f"--test_fraction {split.test_fraction} must be between 0 and 1 (e.g. 0.25)")
    by_group: dict[str, dict[Hashable, list[str]]] = defaultdict(lambda: defaultdict(list))
    for name, (group, block) in tiles.items():
        if block is None:
            raise ValueError(f"tile {name} has no block; a block split needs every tile's block")
        by_group[group][block].append(name)
    test: set[str] = set()
    counts = {"train": [0, 0], "test": [0, 0]}
    for group in sorted(by_group):
        blocks = sorted(by_group[group])
        if len(blocks) < 2:
            tiles_in_area = sum(map(len, by_group[group].values()))
            raise UserError(f"area {group!r} has {len(blocks)} block at {split.unit} ({tiles_in_area} tiles), too few "
                            "to split; use smaller blocks or leave the area out")
        chosen = choose_test_blocks(len(blocks), split.test_fraction, split.seed, group)
        for i, block in enumerate(blocks):
            side = "test" if i in chosen else "train"
            counts[side][0] += 1
            counts[side][1] += len(by_group[group][block])
            if side == "test":
                test.update(by_group[group][block])
    areas = f"{len(by_group)} area{'' if len(by_group) == 1 else 's'}"
    line = (f"{areas} in blocks of {split.unit}: train {counts['train'][0]} blocks ({counts['train'][1]} tiles), "
            f"test {counts['test'][0]} blocks ({counts['test'][1]} tiles)")
    return test, line


def choose_test_blocks(num_blocks: int, fraction: float, seed: int, group: str) -> set[int]:
    """Indices of the test blocks among `num_blocks` sorted blocks of `group`."""
    count = min(max(1, math.floor(fraction * num_blocks + 0.5)), num_blocks - 1)
    rng = np.random.default_rng([seed, zlib.crc32(group.encode("utf-8"))])
    return {int(i) for i in rng.choice(num_blocks, size=count, replace=False)}
