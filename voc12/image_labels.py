"""Image-level labels as a person gives them, and `python -m voc12.prepare labels`: a dataset from tiles and
yes/no answers, with no mask anywhere (the layout of voc12/layout.py without SegmentationClassAug/).

Reads:  --images DIR: image files in DIR and in its sub-folders (one level); either
        - plain images (png/jpg/tif), each one tile as it is, group = DIR's name;
        - XYZ tiles OAM-x-y-z.png (one zoom, or --zoom), group = DIR's name; their names place them on the map;
        - GeoTIFF scenes with a CRS, cut into --tile_size tiles `<stem>_<row0>_<col0>` (a scene of at most one
          tile keeps its stem), each written as a georeferenced GeoTIFF; group = scene stem.
        --tiles auto picks the kind: XYZ when every name is OAM-x-y-z.png, GeoTIFF when every file is a
        GeoTIFF with a CRS, else plain images.
        Labels: --labels FILE.csv (`read_label_csv`), or without it the sub-folders DIR/building/ and DIR/none/;
        images anywhere else are unlabelled.
Writes: through voc12.layout.LayoutWriter.add_labelled: labelled tiles go to the lists of their side,
        unlabelled ones only to all_tiles.txt and test.txt (S11 predicts them), none to cls_labels.npy.
"""
from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from misc import fileio, radiometry
from misc.errors import UserError
from misc.geodata import GEOTIFF_SUFFIXES, match_xyz_name, read_raster
from misc.imutils import IMAGE_SUFFIXES, read_image
from voc12.layout import LayoutSummary, LayoutWriter, default_paths
from voc12.splits import BlockSplit, grid_block, split_blocks, tiles_per_block, xyz_block
from voc12.tiling import check_test_groups, check_tile_size, cut_tile, tile_grid

log = logging.getLogger(__name__)

POSITIVE_WORDS = frozenset({"1", "yes", "y", "building", "true"})
NEGATIVE_WORDS = frozenset({"0", "no", "n", "none", "false"})
CLASS_FOLDERS = {"building": 1, "none": 0}
TILE_KINDS = ("auto", "image", "xyz", "geotiff")


@dataclass(frozen=True)
class LabelRow:
    label: int
    row: int  # 1-based line of the CSV, for the messages
    group: str | None = None


@dataclass(frozen=True)
class _Tile:
    name: str  # the image file's stem
    path: Path


# ----------------------------------------------------------------------------- labels

def parse_label(text: str) -> int | None:
    """1, 0, or None for a value that is not a label (case-insensitive, whitespace trimmed)."""
    word = text.strip().lower()
    return 1 if word in POSITIVE_WORDS else 0 if word in NEGATIVE_WORDS else None


def strip_image_suffix(name: str) -> str:
    name = name.strip()
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[:-len(suffix)]
    return name


def read_label_csv(path: str | Path) -> dict[str, LabelRow]:
    """{name: LabelRow} of a `name,label[,group]` CSV: header optional, labels 1/0, yes/no, y/n, building/none,
    true/false, names with or without the image suffix; a UTF-8 BOM and CRLF line ends are read.

    One UserError line naming the file and the row for an unreadable value, a name given two labels or no
    row at all; the same name twice with the same label is a warning."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"--labels {path} does not exist; write the labels there as name,label rows") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"--labels {path} is not a readable UTF-8 CSV ({err}); save it as CSV UTF-8") from None
    rows = [(i + 1, [c.strip() for c in r]) for i, r in enumerate(csv.reader(io.StringIO(text, newline="")))]
    rows = [(i, r) for i, r in rows if any(r)]
    columns = {"name": 0, "label": 1, "group": 2}
    if rows and parse_label(rows[0][1][1] if len(rows[0][1]) > 1 else "") is None and _is_header(rows[0][1]):
        header = [c.lower() for c in rows[0][1]]
        if "name" in header and "label" in header:
            columns = {key: header.index(key) for key in ("name", "label", "group") if key in header}
        rows = rows[1:]
    out: dict[str, LabelRow] = {}
    for i, cells in rows:
        if len(cells) <= max(columns["name"], columns["label"]) or not cells[columns["name"]]:
            raise UserError(f"{path} row {i}: expected name,label, got {','.join(cells)!r}")
        name, value = strip_image_suffix(cells[columns["name"]]), cells[columns["label"]]
        label = parse_label(value)
        if label is None:
            raise UserError(f"{path} row {i}: label {value!r} of {name!r} is not one of 1/0, yes/no, y/n, "
                            "building/none, true/false")
        group = cells[columns["group"]] if "group" in columns and len(cells) > columns["group"] else None
        if name in out:
            first = out[name]
            if first.label != label:
                raise UserError(f"{path} row {i}: {name!r} is labelled {value!r} here but {first.label} in row "
                                f"{first.row}; keep one of the two rows")
            log.warning("%s row %d: %r is listed again (first in row %d, same label); using it once", path, i, name,
                        first.row)
            continue
        out[name] = LabelRow(label, i, group or None)
    if not out:
        raise UserError(f"--labels {path} has no name,label row; write one row per labelled tile")
    return out


def _is_header(cells: Sequence[str]) -> bool:
    return any(c.lower() in ("name", "label", "group", "tile", "image", "file", "filename") for c in cells)


def folder_labels(images: Path, tiles: Iterable[_Tile]) -> dict[str, LabelRow]:
    """Labels from the class sub-folders: images in <images>/building are 1, in <images>/none 0."""
    if not any((images / folder).is_dir() for folder in CLASS_FOLDERS):
        raise UserError(f"--images {images} has neither a building/ nor a none/ sub-folder; sort the tiles into "
                        f"{images}/building and {images}/none, or pass --labels FILE.csv (name,label)")
    return {t.name: LabelRow(CLASS_FOLDERS[t.path.parent.name], 0) for t in tiles
            if t.path.parent != images and t.path.parent.name in CLASS_FOLDERS}


def check_labels(labels: dict[str, LabelRow], names: set[str], source: str) -> None:
    """Every labelled name has an image, and both classes are there."""
    for name, row in labels.items():
        if name not in names:
            where = f"{source} row {row.row}" if row.row else source
            raise UserError(f"{where}: {name!r} has no image in --images; fix the name or add the image")
    classes = {row.label for row in labels.values()}
    if not classes:
        raise UserError(f"{source} label no tile; put the tiles with buildings in building/ and those without "
                        "in none/")
    if classes != {0, 1}:
        only, missing = ("building", "none (0)") if 1 in classes else ("none", "building (1)")
        raise UserError(f"{source} labels every tile {only}: no tile is {missing}; the classifier needs tiles "
                        "of both classes")


# ----------------------------------------------------------------------------- tiles

def find_tiles(images: Path) -> list[_Tile]:
    """Image files in `images` and its sub-folders (one level), sorted by name; stems must be unique."""
    if not images.is_dir():
        raise UserError(f"--images {images} is not a folder; point it at a folder of tiles")
    folders = [images] + sorted(p for p in images.iterdir() if p.is_dir())
    found: dict[str, Path] = {}
    for folder in folders:
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                if p.stem in found:
                    raise UserError(f"images {found[p.stem]} and {p} share the name {p.stem!r}; keep one of them")
                found[p.stem] = p
    if not found:
        raise UserError(f"--images {images} holds no image ({'/'.join(s[1:] for s in IMAGE_SUFFIXES)}) in it or "
                        "its sub-folders; point it at your tiles")
    return [_Tile(name, found[name]) for name in sorted(found)]


def tile_kind(tiles: Sequence[_Tile], kind: str) -> str:
    """'xyz', 'geotiff' or 'image': `kind` itself, or for 'auto' what the files are."""
    if kind != "auto":
        return kind
    if all(t.path.suffix.lower() == ".png" and match_xyz_name(t.path.name) for t in tiles):
        return "xyz"
    if all(t.path.suffix.lower() in GEOTIFF_SUFFIXES for t in tiles) and all(_crs(t.path) for t in tiles):
        return "geotiff"
    return "image"


def _crs(path: Path) -> str | None:
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as src:
            return src.crs.to_string() if src.crs else None
    except RasterioError:
        return None


def read_scene(scene: Path) -> tuple[np.ndarray, dict]:
    """HxWx3 uint8 RGB of a georeferenced scene (misc.radiometry.scene_rgb: the same bands and stretch as S11's
    prediction of it) and {"crs", "transform", "radiometry"}."""
    def read(src: Any) -> tuple[np.ndarray, dict]:
        if src.crs is None:
            raise UserError(f"scene {scene} has no CRS; georeference it, or pass --tiles image to use it "
                            "as a plain image")
        image, stretch = radiometry.scene_rgb(src)
        return image, {"crs": src.crs, "transform": src.transform, "radiometry": stretch.record()}

    return read_raster(scene, "scene", "re-export it as a GeoTIFF", read)


def scene_block_tiles(geo: dict, tile_size: int, block_m: float, scene: Path) -> int:
    """Tiles per block side for --block_m on a scene of a projected CRS (its units taken as metres)."""
    if geo["crs"].is_geographic:
        raise UserError(f"scene {scene} is in degrees ({geo['crs'].to_string()}); --block_m needs a projected CRS "
                        "in metres: reproject the scene (e.g. gdalwarp -t_srs EPSG:32737)")
    return tiles_per_block(block_m, tile_size, abs(geo["transform"].a))


# ----------------------------------------------------------------------------- the mode

def prepare_labels(images: str | Path, labels: str | Path | None, out: str | Path, test_groups: Iterable[str] = (),
                   tile_size: int = 256, kind: str = "auto", zoom: int | None = None,
                   block_split: BlockSplit | None = None, block_zoom: int | None = None,
                   block_m: float | None = None, progress: bool = False) -> LayoutSummary:
    """Write the tiles of `images` with the labels of `labels` (or of the class folders) as a dataset."""
    from tqdm import tqdm

    images, out = Path(images), Path(out)
    check_tile_size(tile_size)
    tiles = find_tiles(images)
    kind = tile_kind(tiles, kind)
    if kind == "xyz":
        tiles = _xyz_tiles_at_zoom(tiles, zoom, images)
    if block_zoom is not None and kind != "xyz" or block_m is not None and kind != "geotiff":
        flag = "--block_zoom" if block_zoom is not None else "--block_m"
        raise UserError(f"{flag} needs {'XYZ tiles' if flag == '--block_zoom' else 'GeoTIFF scenes'}, but --images "
                        f"{images} holds {kind} tiles (--tiles {kind}); plain images have no place to cut blocks from")
    given = read_label_csv(labels) if labels is not None else folder_labels(images, tiles)
    source = str(labels) if labels is not None else f"the class folders of {images}"
    names = {t.name for t in tiles}
    if kind == "geotiff":  # a label may name a scene of one tile, or a tile cut from a scene
        names |= {n for n in given if n not in names}  # checked against the cut tiles below
    check_labels(given, names, source)
    default_group = images.resolve().name
    group_of = {t.name: (given[t.name].group if t.name in given and given[t.name].group else None) for t in tiles}
    writer_groups = {group_of[t.name] or (t.name if kind == "geotiff" else default_group) for t in tiles}
    test = check_test_groups(test_groups, sorted(writer_groups))
    if block_split is not None and kind == "xyz":  # an area too small to split is one line before any work
        split_blocks({t.name: (group_of[t.name] or default_group, xyz_block(*match_xyz_name(t.path.name)[1:],
                                                                            block_zoom)) for t in tiles}, block_split)
    _refuse_stale_masks(out)
    writer = LayoutWriter(out, test, block_split=block_split)
    written: set[str] = set()
    stretches: dict[str, dict] = {}
    with tqdm(total=len(tiles), desc="labelled tiles", unit="image", disable=not progress) as bar:
        for t in tiles:
            group = group_of[t.name] or (t.name if kind == "geotiff" else default_group)
            if kind == "geotiff":
                image, geo = read_scene(t.path)
                stretches[t.name] = geo["radiometry"]
                height, width = image.shape[:2]
                per_block = scene_block_tiles(geo, tile_size, block_m, t.path) if block_m else None
                single = height <= tile_size and width <= tile_size
                for row0, col0 in tile_grid(height, width, tile_size):
                    name = t.name if single else f"{t.name}_{row0}_{col0}"
                    window = image if single else cut_tile(image, row0, col0, tile_size)
                    tile_geo = {"crs": geo["crs"], "transform": geo["transform"] * _offset(col0, row0)}
                    block = grid_block(row0, col0, tile_size, per_block) if per_block else None
                    writer.add_labelled(name, group, window, _label(given, name), tile_geo, block)
                    written.add(name)
            else:
                block = None
                if kind == "xyz" and block_zoom is not None:
                    _, x, y, z = match_xyz_name(t.path.name)
                    block = xyz_block(x, y, z, block_zoom)
                writer.add_labelled(t.name, group, read_image(t.path), _label(given, t.name), None, block)
                written.add(t.name)
            bar.update()
    unplaced = sorted(set(given) - written)
    if unplaced:
        row = given[unplaced[0]].row
        raise UserError(f"{source} row {row}: {unplaced[0]!r} is neither an image nor a tile cut from one "
                        f"(tiles of scenes are named <scene>_<row0>_<col0> at --tile_size {tile_size}); fix the name")
    if stretches:
        fileio.save_json(default_paths(out)["radiometry"], stretches)
    return writer.finish()


def _label(given: dict[str, LabelRow], name: str) -> int | None:
    return given[name].label if name in given else None


def _offset(col0: int, row0: int):
    from affine import Affine

    return Affine.translation(col0, row0)


def _xyz_tiles_at_zoom(tiles: list[_Tile], zoom: int | None, images: Path) -> list[_Tile]:
    zooms = sorted({match_xyz_name(t.path.name)[3] for t in tiles})
    if zoom is None:
        if len(zooms) > 1:
            raise UserError(f"--images {images} holds XYZ tiles of zooms {', '.join(map(str, zooms))}; pick one "
                            "with --zoom")
        return tiles
    if zoom not in zooms:
        raise UserError(f"--images {images} has no tile at --zoom {zoom} (zooms present: "
                        f"{', '.join(map(str, zooms))})")
    return [t for t in tiles if match_xyz_name(t.path.name)[3] == zoom]


def _refuse_stale_masks(out: Path) -> None:
    gt_dir = out / "SegmentationClassAug"
    if gt_dir.is_dir() and any(gt_dir.iterdir()):
        raise UserError(f"--out {out} already holds masks in {gt_dir}, which every stage would read as ground "
                        "truth of these tiles; choose an empty --out")
