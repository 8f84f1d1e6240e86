"""Turn georeferenced or plain aerial scenes into the RRDSD dataset layout (voc12/layout.py).

    python -m voc12.prepare xyz --src DIR [DIR ...] --zoom Z --out DIR [--test_groups G1,G2]
    python -m voc12.prepare geotiff --src SCENE.tif [...] --labels FOOTPRINTS.geojson --out DIR
    python -m voc12.prepare folder --images DIR --masks DIR [--building_color R,G,B] --out DIR

Every mode writes through `voc12.layout.LayoutWriter`, so the 25% label rule and the lists are
the same everywhere. The split unit is the group: the area folder name (xyz) or the scene file
stem (geotiff, folder); tiles of the groups named in --test_groups go to the test lists.

- xyz: web-mercator XYZ tiles `OAM-x-y-z.png` plus `labels.geojson` (building footprints in
  lon/lat). Each tile is written as it is (black no-data corners included); its mask is the
  footprints rasterised on the tile's EPSG:3857 pixel grid (pixel centres inside a polygon).
- geotiff: rasterio scenes with one footprint file; the footprints are reprojected to each
  scene's CRS and rasterised with the scene's transform, then scene and mask are tiled.
- folder: image/mask pairs matched by file stem; masks are binary (any non-zero = building) or,
  with --building_color, colour-coded RGB where exactly that colour is building.

Tiling (geotiff, folder): a regular grid of --tile_size; the last row/column is shifted inward to
end at the border (no padding, every pixel covered); a scene smaller than a tile is padded with 0
at the bottom/right. Tile names are `<stem>_<row0>_<col0>`, the pixel offsets of the tile's
top-left corner in the scene.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from misc.errors import UserError, exit_on_user_error
from misc.footprints import rasterize_footprints
from misc.geodata import (GEOTIFF_SUFFIXES, WEB_MERCATOR, WGS84_CRS84, match_xyz_name, read_raster, reproject,
                          xyz_tile_bounds, xyz_transform)
from misc.imutils import IMAGE_SUFFIXES, read_image, read_mask
from voc12.layout import LayoutSummary, LayoutWriter

log = logging.getLogger(__name__)

MASK_SUFFIXES = (".png", *GEOTIFF_SUFFIXES)


# ----------------------------------------------------------------------------- pure helpers
# (the XYZ grid is misc.geodata's and rasterize_footprints misc.footprints', shared with the polygon export)

def tile_grid(height: int, width: int, tile: int) -> list[tuple[int, int]]:
    """Top-left corners (row0, col0) of the tiles covering a height x width scene, row-major.

    A regular grid of step `tile`; where the scene is not a multiple of `tile` the last row/column
    is shifted inward to end at the border. A side shorter than `tile` gets a single offset 0
    (the caller pads).
    """
    if tile < 1:
        raise ValueError(f"tile size must be positive, got {tile}")
    return [(r, c) for r in _offsets(height, tile) for c in _offsets(width, tile)]


def colour_mask(rgb: np.ndarray, color: Sequence[int]) -> np.ndarray:
    """uint8 HxW mask, 1 where the pixel of the HxWx3 (or x4) array is exactly `color` (R, G, B)."""
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"colour_mask expects an HxWx3 array, got shape {rgb.shape}")
    return np.all(rgb[..., :3] == np.asarray(color, dtype=rgb.dtype)[:3], axis=-1).astype(np.uint8)


def parse_color(text: str) -> tuple[int, int, int]:
    """'R,G,B' -> (R, G, B), each 0-255."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise UserError(f"--building_color {text!r} is not R,G,B with three integers 0-255; "
                        "write e.g. --building_color 0,0,255 (ISPRS Potsdam/Vaihingen buildings)")
    return values  # type: ignore[return-value]


def parse_groups(text: str | None) -> frozenset[str]:
    """'a,b' -> {'a', 'b'}; None or '' -> empty."""
    return frozenset(g.strip() for g in (text or "").split(",") if g.strip())


def cut_tile(array: np.ndarray, row0: int, col0: int, tile: int) -> np.ndarray:
    """The tile x tile window at (row0, col0), padded with 0 at the bottom/right where the scene ends."""
    window = array[row0:row0 + tile, col0:col0 + tile]
    if window.shape[:2] == (tile, tile):
        return window
    out = np.zeros((tile, tile) + array.shape[2:], dtype=array.dtype)
    out[:window.shape[0], :window.shape[1]] = window
    return out


def stretch_to_uint8(band: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Linear stretch of one band from its 2nd-98th percentile (over `valid` pixels) to 0-255."""
    band = band.astype(np.float64)
    ok = np.isfinite(band) if valid is None else (valid & np.isfinite(band))
    if not ok.any():
        return np.zeros(band.shape, dtype=np.uint8)
    lo, hi = np.percentile(band[ok], [2, 98])
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    out = np.clip((np.where(ok, band, lo) - lo) * scale, 0, 255)
    out[~ok] = 0
    return np.round(out).astype(np.uint8)


def _offsets(length: int, tile: int) -> list[int]:
    if length <= tile:
        return [0]
    offsets = list(range(0, length - tile + 1, tile))
    if offsets[-1] + tile < length:
        offsets.append(length - tile)
    return offsets


# ----------------------------------------------------------------------------- footprints

def load_footprints(path: str | Path) -> tuple[list[dict], str]:
    """Polygonal geometries of a GeoJSON FeatureCollection and their CRS (CRS84 unless the file names one).

    Features without geometry are skipped; non-polygonal ones (points, lines) are skipped with a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist; put the building footprints (GeoJSON FeatureCollection) there")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is not valid GeoJSON ({err}); re-export the footprints as a GeoJSON FeatureCollection") from None
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection" or not isinstance(data.get("features"), list):
        raise UserError(f"{path} is not a GeoJSON FeatureCollection; re-export the footprints as one")
    geoms, skipped = [], 0
    for i, feature in enumerate(data["features"]):
        geom = feature.get("geometry") if isinstance(feature, dict) else None
        if geom is None:
            continue
        polygonal = _polygonal(geom)
        if polygonal is None:
            raise UserError(f"{path}: feature {i} has an invalid geometry; fix or delete it")
        skipped += not polygonal and geom.get("type") not in ("Polygon", "MultiPolygon")
        geoms.extend(polygonal)
    if skipped:
        log.warning("%s: skipped %d non-polygonal features (points/lines are not footprints)", path, skipped)
    return geoms, _geojson_crs(path, data)


def _polygonal(geom: Any) -> list[dict] | None:
    """The non-empty Polygon/MultiPolygon parts of a GeoJSON geometry ([] if none); None if it is malformed."""
    from shapely.geometry import mapping, shape

    try:
        parsed = shape(geom)
    except Exception:  # shapely raises several types (GeometryTypeError, ValueError, KeyError, ...)
        return None
    parts = getattr(parsed, "geoms", [parsed]) if parsed.geom_type == "GeometryCollection" else [parsed]
    return [mapping(g) for g in parts if g.geom_type in ("Polygon", "MultiPolygon") and not g.is_empty]


def _geojson_crs(path: Path, data: dict) -> str:
    name = ((data.get("crs") or {}).get("properties") or {}).get("name")
    if not name:
        return WGS84_CRS84
    if re.search(r"CRS84$|EPSG:{1,2}4326$", str(name)):
        return WGS84_CRS84  # GeoJSON keeps lon/lat order even when it says EPSG:4326
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        return CRS.from_user_input(name).to_string()
    except CRSError:
        raise UserError(f"{path} names an unknown CRS {name!r}; reproject it to lon/lat (CRS84) "
                        "and drop its 'crs' member") from None


# ----------------------------------------------------------------------------- modes

@dataclass(frozen=True)
class _XyzTile:
    path: Path
    name: str
    group: str
    x: int
    y: int
    z: int


def prepare_xyz(src_dirs: Sequence[str | Path], zoom: int, out: str | Path,
                test_groups: Iterable[str] = (), tile_size: int = 256, progress: bool = False) -> LayoutSummary:
    """Write the XYZ tiles of `zoom` in each folder with footprint masks; group = folder name."""
    from shapely import STRtree, box

    folders = [Path(d) for d in src_dirs]
    tiles = {folder: _find_xyz_tiles(folder, zoom) for folder in folders}
    groups = _unique_groups([(folder.resolve().name, folder) for folder in folders], "--src folder")
    test = _check_test_groups(test_groups, groups)
    _check_unique_names([(t.name, str(t.path)) for ts in tiles.values() for t in ts])
    footprints = {folder: reproject(*load_footprints(folder / "labels.geojson"), WEB_MERCATOR) for folder in folders}
    writer = LayoutWriter(Path(out), test)
    with tqdm(total=sum(len(ts) for ts in tiles.values()), desc="xyz tiles", unit="tile", disable=not progress) as bar:
        for folder in folders:
            tree = STRtree(footprints[folder])
            for t in tiles[folder]:
                image = read_image(t.path)
                height, width = image.shape[:2]
                if (height, width) != (tile_size, tile_size):
                    raise UserError(f"{t.path} is {width}x{height}, not --tile_size {tile_size}; XYZ tiles are "
                                    f"written as they are, so pass --tile_size {width} or use tiles of that size")
                bounds = xyz_tile_bounds(t.x, t.y, t.z)
                near = [footprints[folder][i] for i in tree.query(box(*bounds))]  # bounding-box prefilter
                transform, _ = xyz_transform(t.x, t.y, t.z, tile_size)  # square: checked just above
                mask = rasterize_footprints(near, transform, (height, width))
                writer.add(t.name, t.group, image, mask)
                bar.update()
    return writer.finish()


def prepare_geotiff(scenes: Sequence[str | Path], labels: str | Path, out: str | Path,
                    test_groups: Iterable[str] = (), tile_size: int = 256, progress: bool = False) -> LayoutSummary:
    """Tile rasterio scenes with the footprints of `labels` rasterised on each scene's grid; group = scene stem."""
    scenes = [Path(s) for s in scenes]
    _check_tile_size(tile_size)
    groups = _unique_groups([(s.stem, s) for s in scenes], "--src scene")
    test = _check_test_groups(test_groups, groups)
    for scene in scenes:
        if not scene.is_file():
            raise UserError(f"scene {scene} does not exist; check the --src path")
    geoms, crs = load_footprints(labels)
    writer = LayoutWriter(Path(out), test)
    with tqdm(desc="geotiff tiles", unit="tile", disable=not progress) as bar:
        for scene in scenes:
            image, mask = _read_geotiff(scene, geoms, crs)
            _write_tiles(writer, scene.stem, image, mask, tile_size, bar)
    return writer.finish()


def prepare_folder(images: str | Path, masks: str | Path, out: str | Path, test_groups: Iterable[str] = (),
                   tile_size: int = 256, building_color: Sequence[int] | None = None,
                   progress: bool = False) -> LayoutSummary:
    """Tile image/mask pairs matched by stem; group = scene stem."""
    _check_tile_size(tile_size)
    pairs = _pair_by_stem(Path(images), Path(masks))
    test = _check_test_groups(test_groups, list(pairs))
    writer = LayoutWriter(Path(out), test)
    found_colour = building_color is None
    with tqdm(desc="folder tiles", unit="tile", disable=not progress) as bar:
        for stem, (image_path, mask_path) in pairs.items():
            image = read_image(image_path)
            if building_color is None:
                mask = _read_binary_mask(mask_path)
            else:
                mask = colour_mask(read_image(mask_path), building_color)
                found_colour = found_colour or bool(mask.any())
            if mask.shape != image.shape[:2]:
                raise UserError(f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but image {image_path} is "
                                f"{image.shape[1]}x{image.shape[0]}; masks must have the size of their image")
            _write_tiles(writer, stem, image, mask, tile_size, bar)
    if not found_colour:
        log.warning("no pixel of any mask in %s has --building_color %s; is that the building colour?",
                    masks, ",".join(map(str, building_color or ())))
    return writer.finish()


# ----------------------------------------------------------------------------- mode helpers

def _find_xyz_tiles(folder: Path, zoom: int) -> list[_XyzTile]:
    if not folder.is_dir():
        raise UserError(f"--src folder {folder} does not exist; point --src at a folder of OAM-x-y-z.png tiles")
    found = [(p, match_xyz_name(p.name)) for p in sorted(folder.iterdir()) if p.is_file() and p.suffix == ".png"]
    found = [(p, m) for p, m in found if m]
    tiles = [_XyzTile(p, p.stem, folder.resolve().name, x, y, z) for p, (_, x, y, z) in found if z == zoom]
    if not tiles:
        zooms = sorted({z for _, (_, _, _, z) in found})
        present = f"zooms present: {', '.join(map(str, zooms))}" if zooms else "no OAM-x-y-z.png tiles at all"
        raise UserError(f"{folder} has no tiles at zoom {zoom} ({present}); pass one of those to --zoom "
                        "or point --src at the right folder")
    if not (folder / "labels.geojson").is_file():
        raise UserError(f"{folder / 'labels.geojson'} does not exist; put the area's building footprints "
                        "(GeoJSON, lon/lat) there")
    return tiles


def _read_geotiff(scene: Path, geoms: list[dict], crs: str) -> tuple[np.ndarray, np.ndarray]:
    """HxWx3 uint8 RGB of the first 3 bands (a 1- or 2-band scene repeats band 1) and its footprint mask."""
    def read(src: Any) -> tuple[np.ma.MaskedArray, Any, Any, tuple[int, int], Any]:
        if src.crs is None:
            raise UserError(f"scene {scene} has no CRS, so the footprints cannot be placed; georeference it "
                            "or use the folder mode with masks")
        indexes = [1, 2, 3] if src.count >= 3 else [1, 1, 1]
        return src.read(indexes, masked=True), src.transform, src.crs, (src.height, src.width), src.bounds

    data, transform, raster_crs, shape, bounds = read_raster(scene, "scene", "re-export it as a GeoTIFF", read)
    if data.dtype == np.uint8:
        image = np.moveaxis(np.ma.getdata(data), 0, -1)
    else:
        valid = ~np.ma.getmaskarray(data)
        image = np.stack([stretch_to_uint8(np.ma.getdata(b), v) for b, v in zip(data, valid)], axis=-1)
    from shapely import box

    scene_box = box(*bounds)
    footprints = [g for g in reproject(geoms, crs, raster_crs) if g.intersects(scene_box)]
    if not footprints:
        log.warning("no footprint of the labels falls on scene %s; its tiles will all be negatives", scene)
    return np.ascontiguousarray(image), rasterize_footprints(footprints, transform, shape)


def _write_tiles(writer: LayoutWriter, stem: str, image: np.ndarray, mask: np.ndarray, tile: int, bar: tqdm) -> None:
    for row0, col0 in tile_grid(image.shape[0], image.shape[1], tile):
        writer.add(f"{stem}_{row0}_{col0}", stem, cut_tile(image, row0, col0, tile), cut_tile(mask, row0, col0, tile))
        bar.update()


def _files_by_stem(folder: Path, suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise UserError(f"{what} folder {folder} does not exist; check the --{what}s path")
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in suffixes:
            if p.stem in out:
                raise UserError(f"{what}s {out[p.stem]} and {p} share the stem {p.stem!r}; keep one of them")
            out[p.stem] = p
    if not out:
        raise UserError(f"{what} folder {folder} holds no {'/'.join(s[1:] for s in suffixes)} files")
    return out


def _pair_by_stem(images: Path, masks: Path) -> dict[str, tuple[Path, Path]]:
    image_files = _files_by_stem(images, IMAGE_SUFFIXES, "image")
    mask_files = _files_by_stem(masks, MASK_SUFFIXES, "mask")
    for stem, path in image_files.items():
        if stem not in mask_files:
            raise UserError(f"image {path} has no mask {stem}.png/.tif in {masks}; add it or remove the image")
    for stem, path in mask_files.items():
        if stem not in image_files:
            raise UserError(f"mask {path} has no image {stem}.png/.jpg/.tif in {images}; add it or remove the mask")
    return {stem: (image_files[stem], mask_files[stem]) for stem in sorted(image_files)}


def _read_binary_mask(path: Path) -> np.ndarray:
    """{0,1} mask of a binary mask file (any non-zero = building); refuses colour-coded RGB masks."""
    mask = read_mask(path)
    with Image.open(path) as img:
        colour = img.mode in ("RGB", "RGBA")
    if colour:
        rgb = read_image(path)
        if np.any(rgb[..., 0] != rgb[..., 1]) or np.any(rgb[..., 1] != rgb[..., 2]):
            raise UserError(f"mask {path} is colour-coded (not grey levels); pass --building_color R,G,B "
                            "with the building colour (ISPRS Potsdam/Vaihingen: 0,0,255)")
        mask = rgb[..., 0]
    return (mask > 0).astype(np.uint8)


def _unique_groups(items: list[tuple[str, Path]], what: str) -> list[str]:
    seen: dict[str, Path] = {}
    for group, path in items:
        if group in seen:
            raise UserError(f"{what}s {seen[group]} and {path} give the same group name {group!r}; "
                            "rename one, since groups are the split unit")
        seen[group] = path
    return list(seen)


def _check_test_groups(test_groups: Iterable[str], groups: Sequence[str]) -> frozenset[str]:
    test = frozenset(test_groups)
    unknown = sorted(test - set(groups))
    if unknown:
        raise UserError(f"--test_groups names {', '.join(unknown)}, which is not among the groups found "
                        f"({', '.join(sorted(groups))}); use those names")
    return test


def _check_unique_names(names: list[tuple[str, str]]) -> None:
    seen: dict[str, str] = {}
    for name, path in names:
        if name in seen:
            raise UserError(f"tiles {seen[name]} and {path} share the name {name!r}; tile names must be "
                            "unique across --src folders")
        seen[name] = path


def _check_tile_size(tile_size: int) -> None:
    if tile_size < 1:
        raise UserError(f"--tile_size {tile_size} must be a positive number of pixels (e.g. 256)")


# ----------------------------------------------------------------------------- command line

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, required=True, help="dataset root to write (JPEGImages, lists, ...)")
    common.add_argument("--test_groups", type=str, default="",
                        help="comma-separated groups (area folder names or scene stems) for the test lists")
    common.add_argument("--tile_size", type=int, default=256, help="tile side in pixels")
    parser = argparse.ArgumentParser(prog="python -m voc12.prepare", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    xyz = sub.add_parser("xyz", parents=[common], help="web-mercator XYZ tiles + labels.geojson per folder")
    xyz.add_argument("--src", type=Path, nargs="+", required=True, help="area folders of OAM-x-y-z.png tiles")
    xyz.add_argument("--zoom", type=int, required=True, help="zoom level of the tiles to use (e.g. 21)")
    geo = sub.add_parser("geotiff", parents=[common], help="georeferenced scenes + one footprint GeoJSON")
    geo.add_argument("--src", type=Path, nargs="+", required=True, help="scene files (GeoTIFF or any rasterio format)")
    geo.add_argument("--labels", type=Path, required=True, help="building footprints (GeoJSON, CRS84 unless it says)")
    folder = sub.add_parser("folder", parents=[common], help="image/mask pairs matched by file stem")
    folder.add_argument("--images", type=Path, required=True, help="folder of png/jpg/tif scenes")
    folder.add_argument("--masks", type=Path, required=True, help="folder of png/tif masks with the same stems")
    folder.add_argument("--building_color", type=str, default=None,
                        help="R,G,B of buildings in colour-coded masks (ISPRS: 0,0,255); default: binary masks")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> LayoutSummary:
    groups = parse_groups(args.test_groups)
    if args.mode == "xyz":
        summary = prepare_xyz(args.src, args.zoom, args.out, groups, args.tile_size, progress=True)
    elif args.mode == "geotiff":
        summary = prepare_geotiff(args.src, args.labels, args.out, groups, args.tile_size, progress=True)
    else:
        color = None if args.building_color is None else parse_color(args.building_color)
        summary = prepare_folder(args.images, args.masks, args.out, groups, args.tile_size, color, progress=True)
    print(summary.line())
    print(f"wrote {Path(args.out).resolve()}")
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [prepare] %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    exit_on_user_error(lambda: run(parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
