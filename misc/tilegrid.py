"""Tiles of an XYZ grid side by side on disk: which tiles surround a tile, so that a network can see the ground
beyond a tile's edge (S11 prediction: step.kit.segmentation.tile_logits; S11 training crops:
voc12.dataloader.SegmentationDataset). Reads folder listings only; the images are read by the callers."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from misc import geodata
from misc.imutils import IMAGE_SUFFIXES

NEIGHBOUR_OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))


@dataclass(frozen=True)
class TileContext:
    """The XYZ tiles of some folders by (prefix, x, y, z), and the margin in pixels to take from them around a
    tile; margin 0: every image alone (and no folder is listed)."""
    margin: int
    pattern: str
    index: dict[tuple[str, int, int, int], Path]

    @classmethod
    def of_folders(cls, folders: Iterable[Path], margin: int, pattern: str) -> TileContext:
        if margin <= 0:
            return cls(0, pattern, {})
        files = (p for folder in sorted(set(folders)) for p in sorted(folder.iterdir())
                 if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not geodata.is_geotiff(p))
        return cls(margin, pattern, geodata.xyz_index(files, pattern))

    @classmethod
    def beside(cls, images: Iterable[Path], margin: int, pattern: str) -> TileContext:
        """`of_folders` for the folders holding `images` (GeoTIFF scenes are predicted whole, without context)."""
        return cls.of_folders({p.parent for p in images if not geodata.is_geotiff(p)}, margin, pattern)

    def neighbours(self, path: Path) -> dict[tuple[int, int], Path]:
        """{(dy, dx): path} of the tiles around `path` that exist (none for a name that is not an XYZ tile)."""
        key = geodata.match_xyz_name(path.stem, self.pattern) if self.index else None
        if key is None:
            return {}
        prefix, x, y, z = key
        found = {(dy, dx): self.index.get((prefix, x + dx, y + dy, z)) for dy, dx in NEIGHBOUR_OFFSETS}
        return {offset: p for offset, p in found.items() if p is not None}
