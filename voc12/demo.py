"""A synthetic aerial building dataset in the RRDSD layout (voc12/layout.py), for the demo pipeline and the tests.

Why: the real RRDSD tiles cannot be downloaded here, yet the pipeline (S1 classifier -> CAM -> BAC -> AR)
needs a dataset with image-level labels and roof masks to run end to end. This module draws one from a seed,
deterministically, with numpy and OpenCV only (about half a second of CPU per scene), and writes it with
`voc12.layout.LayoutWriter`.

What it draws: `num_scenes` scenes of 768x768 px at about 12.5 cm/px, each cut into a 3x3 grid of 256x256 tiles
(named `demo_s03_r1_c2`, grouped by scene as RRDSD tiles are by parent). Each scene is a 3x3 plan of districts:
- built-up cells (a contiguous core) on a street grid: streets with pavements, front yards of 28-44 px, then rows
  of buildings facing the street (houses, terraces, apartment blocks or warehouses, mostly 60-120 px a side,
  warehouses up to 180 px, a few sheds), 15-24 px apart along the row, back gardens of 18-30 px between
  back-to-back rows; gable, hip or flat roofs (ridge, facets, parapets, rooftop units, some L-shaped). Roof
  materials are spread evenly over red / terracotta, brown, grey, dark, white and blue / green metal; neighbours
  look alike (each cell has one or two main materials). Every building casts a short shadow (a high sun: 7-12%
  of its height, one direction per scene) and has dark eaves; garden trees may overhang roofs. Gardens hold
  pools, patios, ponds and sandpits. Most of these tiles come out 26-48% roof (positives), some below 25% (dropped);
- park cells next to the town: the same streets, lawns, trees, pools, patios and courts, but no building;
- sparse cells with one to three houses: 0-25% roof, dropped from the image-level lists by the 25% rule;
- open cells: fields (crops, red-brown or dark ploughland, white polytunnels), forest, meadows (ponds, soil),
  lots (parking, plazas of concrete, white concrete, red brick, brown or dark paving) and sports grounds (red
  clay / blue / green tennis courts, red running tracks, turf or cinder pitches, sand courts): negatives.
One or two through roads cross each scene. The flat confusers share every roof colour (red courts and tracks,
red-brown earth, white polytunnels and concrete, grey roads and lots, dark ponds and asphalt, blue courts and
pools, brown paving) but have no height: no shadow, no eaves, no ridge; a tile's colour does not give its label,
shadows, eaves, ridges and shapes do. Finally each scene gets texture grain, a brightness / colour shift, haze,
a slight blur and sensor noise. With the defaults (30 scenes, seed 0): 270 tiles, 90 positives (36% building on
average), 134 negatives and 46 dropped; the last 7 scenes are the test groups.

Why short shadows and front yards (generator version 3): with long shadows (22-40% of the height) and buildings
at the kerb, the classifier learnt shadows and streets, which are background, as its building evidence, and the
seed CAM barely beat predicting "building" everywhere (IoU 0.380 against 0.364). With them it finds the roofs
(0.473 against 0.360, README "Results").

The mask is the visible roof: shadows are background, and so is a roof under an overhanging tree crown.
The same seed gives byte-identical files: every random draw comes from `numpy.random.default_rng([seed, scene])`,
so a scene does not depend on how many scenes are drawn.

    python -m voc12.demo --out Dataset/demo [--seed 0] [--scenes 30] [--force]
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from misc import fileio
from misc.errors import UserError, exit_on_user_error
from voc12.layout import LayoutSummary, LayoutWriter, default_paths

GENERATOR_VERSION = 3  # bump when the drawing changes, so an old dataset is regenerated
SCENE_SIZE = 768
TILE_SIZE = 256
DEFAULT_SCENES = 30
TEST_FRACTION = 0.22

KINDS = ("dense", "sparse", "field", "forest", "meadow", "lot", "sport", "park")
DENSE, SPARSE, FIELD, FOREST, MEADOW, LOT, SPORT, PARK = range(len(KINDS))

# Mean RGB of ground covers; each parcel jitters its colour.
GROUND = {
    "grass": (88, 116, 62), "lawn": (98, 128, 70), "dry_grass": (152, 146, 98), "crop": (104, 132, 66),
    "stubble": (188, 170, 118), "soil": (140, 112, 84), "dark_soil": (108, 88, 68), "forest_floor": (72, 82, 52),
    "red_soil": (150, 90, 66), "brown_soil": (124, 84, 62), "ploughed": (82, 70, 60), "gravel": (158, 154, 146), "concrete": (168, 168, 163),
}
GROUND_BY_KIND = {  # cover probabilities of a parcel by the district of its seed
    DENSE: {"lawn": 0.4, "grass": 0.3, "dry_grass": 0.2, "gravel": 0.1},
    SPARSE: {"grass": 0.45, "dry_grass": 0.4, "lawn": 0.15},
    FIELD: {"crop": 0.18, "stubble": 0.12, "dark_soil": 0.08, "ploughed": 0.12, "red_soil": 0.17, "brown_soil": 0.17,
            "dry_grass": 0.08, "soil": 0.08},
    FOREST: {"forest_floor": 0.7, "grass": 0.3},
    MEADOW: {"grass": 0.5, "dry_grass": 0.35, "lawn": 0.15},
    LOT: {"grass": 0.5, "dry_grass": 0.3, "gravel": 0.2},
    SPORT: {"lawn": 0.6, "grass": 0.4},
    PARK: {"lawn": 0.4, "grass": 0.3, "dry_grass": 0.2, "gravel": 0.1},   # as the town around it
}
INDUSTRIAL_GROUND = {"concrete": 0.35, "gravel": 0.3, "dry_grass": 0.2, "grass": 0.15}
# Roof materials: colour range (low, high), striped texture (tiles / corrugated metal) or not.
ROOFS = {
    "terracotta": ((160, 70, 50), (195, 100, 75), True),
    "brown": ((105, 62, 50), (135, 85, 68), True),
    "grey_concrete": ((115, 115, 112), (190, 190, 186), False),
    "white": ((195, 195, 192), (228, 228, 226), False),
    "dark": ((52, 54, 58), (88, 88, 92), False),
    "grey_metal": ((120, 124, 128), (178, 182, 186), True),
    "blue_metal": ((68, 98, 138), (96, 126, 168), True),
    "green_metal": ((78, 118, 92), (102, 142, 112), True),
}
# Material probabilities per district style: about a sixth each for red, brown, grey, dark, white and
# blue / green, so that no roof colour is typical of buildings.
ROOF_MIX = {
    "residential": {"terracotta": 0.18, "brown": 0.17, "grey_concrete": 0.1, "grey_metal": 0.06, "dark": 0.17,
                    "white": 0.16, "blue_metal": 0.08, "green_metal": 0.08},
    "industrial": {"terracotta": 0.14, "brown": 0.14, "grey_concrete": 0.12, "grey_metal": 0.08, "dark": 0.16,
                   "white": 0.18, "blue_metal": 0.1, "green_metal": 0.08},
    "mixed": {"terracotta": 0.16, "brown": 0.16, "grey_concrete": 0.1, "grey_metal": 0.07, "dark": 0.17,
              "white": 0.17, "blue_metal": 0.09, "green_metal": 0.08},
}
BUILDING_MIX = {  # building type probabilities per district style (a whole row of the street grid is one type)
    "residential": {"house": 0.65, "terrace": 0.2, "block": 0.15},
    "industrial": {"warehouse": 0.55, "block": 0.3, "house": 0.15},
    "mixed": {"house": 0.45, "terrace": 0.15, "block": 0.2, "warehouse": 0.2},
}
ROW_DEPTH = {"house": 88, "terrace": 68, "block": 90, "warehouse": 124, "shed": 40}  # px across the street
# Flat ground surfaces that share the roof colours (no height: no shadow, no eaves, no ridge).
SURFACES = {
    "clay": (176, 94, 64), "red_acrylic": (152, 72, 60), "blue_acrylic": (60, 98, 148),
    "green_acrylic": (70, 124, 94), "turf": (76, 132, 80), "asphalt": (96, 97, 100), "dark_asphalt": (62, 63, 66),
    "concrete": (170, 169, 164), "white_concrete": (212, 211, 205), "red_brick": (166, 92, 70),
    "brown_paving": (124, 92, 72), "sand": (214, 204, 180), "pool": (88, 166, 196), "deep_pool": (62, 104, 150),
    "water": (40, 54, 60),
}
PATIO = ("red_brick", "concrete", "white_concrete", "brown_paving", "dark_asphalt")
CAR_COLOURS = ((225, 225, 222), (30, 30, 34), (120, 122, 126), (175, 178, 182), (150, 30, 30), (40, 60, 120),
               (200, 200, 198), (60, 62, 64))
@dataclass
class _Part:
    """One rectangular roof part, centred at (cx, cy), `w` along its own u axis (the ridge), `h` across."""

    cx: float
    cy: float
    w: float
    h: float
    angle: float
    roof: str  # "gable", "hip" or "flat"
    tone: float = 1.0  # brightness of this part relative to the building's material (terrace units differ)


def _choice(rng: np.random.Generator, table: dict[str, float]) -> str:
    """A key of `table` drawn with probability proportional to its value."""
    x = rng.random() * sum(table.values())
    for name, weight in table.items():
        x -= weight
        if x < 0:
            return name
    return name


def _lowfreq(rng: np.random.Generator, size: int, cells: int, channels: int = 1) -> np.ndarray:
    """Smooth noise in [0, 1]: a (cells+1)^2 random grid resized bicubically to size x size."""
    grid = rng.random((cells + 1, cells + 1, channels), dtype=np.float32)
    out = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(out, 0.0, 1.0).reshape(size, size, channels).squeeze(-1 if channels == 1 else ())


def _grain(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Blurred white noise with unit standard deviation."""
    g = cv2.GaussianBlur(rng.standard_normal((size, size), dtype=np.float32), (0, 0), sigma)
    return g / max(float(g.std()), 1e-6)


def _rect_corners(p: _Part, grow: float = 0.0) -> np.ndarray:
    c, s = math.cos(p.angle), math.sin(p.angle)
    hw, hh = p.w / 2 + grow, p.h / 2 + grow
    local = np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]], dtype=np.float64)
    return local @ np.array([[c, s], [-s, c]]) + (p.cx, p.cy)


class _Scene:
    """The canvas and layers of one scene; the `draw_*` methods are called in painting order by `render_scene`."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.rng = rng
        self.size = size
        self.grid = size // TILE_SIZE
        self.img = np.zeros((size, size, 3), np.float32)
        self.tex = np.zeros((size, size), np.float32)       # grain amplitude per pixel (material dependent)
        self.roof = np.zeros((size, size), bool)
        self.tree = np.zeros((size, size), bool)
        self.shadow = np.zeros((size, size), np.uint8)       # cast shadows of buildings, trees and cars
        self.paved = np.zeros((size, size), bool)            # parking lots, plazas and yards
        self.occupied = np.zeros((size, size), np.uint8)     # where no building may stand (roads, buildings)
        azimuth = rng.uniform(0, 2 * math.pi)
        self.shadow_dir = np.array([math.cos(azimuth), math.sin(azimuth)])  # direction shadows fall, image x/y
        self.shadow_len = rng.uniform(0.066, 0.12)           # shadow length per unit of height: a high sun
        self.street_angle = rng.uniform(0, math.pi / 2)      # the block grid's orientation
        self.style = _choice(rng, {"residential": 0.45, "industrial": 0.25, "mixed": 0.3})
        self.kinds = self._plan()
        self.kind_map = np.repeat(np.repeat(self.kinds, TILE_SIZE, 0), TILE_SIZE, 1)
        self.cars: list[tuple[float, float, float, tuple[int, int, int]]] = []   # x, y, angle, colour
        self.buildings: list[tuple[list[_Part], str, float]] = []                 # parts, material, height
        self.palettes: dict[tuple[int, int], tuple[str, str, float]] = {}         # main roof materials per cell
        self.trees = np.zeros((0, 3))                                              # x, y, radius

    # ---- helpers -------------------------------------------------------------------------------------------
    def _plan(self) -> np.ndarray:
        """District kind per tile cell: a contiguous built-up core around a random centre, the rest empty."""
        rng, n = self.rng, self.grid
        n_dense = int(rng.binomial(n * n, rng.choice([0.2, 0.55, 0.8])))
        centre = rng.uniform(0, n, 2)
        rows, cols = np.mgrid[0:n, 0:n]
        score = np.hypot(rows + 0.5 - centre[0], cols + 0.5 - centre[1]) + rng.normal(0, 0.4, (n, n))
        kinds = np.zeros((n, n), np.int64)
        for rank, flat in enumerate(np.argsort(score, axis=None, kind="stable")):
            r, c = divmod(int(flat), n)
            if rank < n_dense:
                kinds[r, c] = DENSE
            elif rng.random() < 0.06:
                kinds[r, c] = SPARSE
            else:
                p = np.array([0.24, 0.14, 0.22, 0.2, 0.2, 0.45 if n_dense else 0.0])
                kinds[r, c] = (FIELD, FOREST, MEADOW, LOT, SPORT, PARK)[int(rng.choice(6, p=p / p.sum()))]
        return kinds

    def _frame(self, cx: float, cy: float, angle: float, radius: float
               ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
        """Window around (cx, cy) and the local coordinates (u along `angle`, v across) of its pixels."""
        x0, y0 = max(0, int(cx - radius)), max(0, int(cy - radius))
        x1, y1 = min(self.size, int(cx + radius) + 2), min(self.size, int(cy + radius) + 2)
        if x0 >= x1 or y0 >= y1:
            return None
        ys, xs = np.ogrid[y0:y1, x0:x1]
        dx, dy = xs.astype(np.float32) - cx, ys.astype(np.float32) - cy
        c, s = math.cos(angle), math.sin(angle)
        return (slice(y0, y1), slice(x0, x1)), dx * c + dy * s, -dx * s + dy * c

    def _paint(self, win, where: np.ndarray, colour: np.ndarray, tex: float) -> None:
        """Set the pixels `where` of window `win` to `colour` (HxWx3 or 3) with grain amplitude `tex`."""
        patch = self.img[win]
        patch[where] = (np.broadcast_to(colour, patch.shape)[where] if np.ndim(colour) == 3 else colour)
        self.tex[win][where] = tex

    def _cell_of(self, x: float, y: float) -> int:
        return int(self.kinds[min(int(y) // TILE_SIZE, self.grid - 1), min(int(x) // TILE_SIZE, self.grid - 1)])

    def _points_in(self, kind: int, count: int, pad: int = 0) -> np.ndarray:
        """`count` random points in the cells of `kind` (rows of x, y), `pad` px beyond their edges allowed."""
        cells = np.argwhere(self.kinds == kind)
        if len(cells) == 0 or count <= 0:
            return np.zeros((0, 2))
        pick = cells[self.rng.integers(0, len(cells), count)]
        off = self.rng.uniform(-pad, TILE_SIZE + pad, (count, 2))
        return np.clip(pick[:, ::-1] * TILE_SIZE + off, 0, self.size - 1)

    # ---- ground --------------------------------------------------------------------------------------------
    def draw_ground(self) -> None:
        """Voronoi parcels (warped borders) whose cover follows the district; stripes on fields; field borders."""
        rng, size = self.rng, self.size
        k, half = 40, size // 2
        seeds = rng.uniform(0, size, (k, 2)).astype(np.float32)
        warp = (_lowfreq(rng, half, 5, 2) - 0.5) * 60       # parcels are found at half resolution
        hy, hx = np.mgrid[0:half, 0:half].astype(np.float32)
        wx, wy = hx + warp[..., 0], hy + warp[..., 1]
        best = np.full((half, half), np.inf, np.float32)
        label = np.zeros((half, half), np.uint8)
        for i, (sx, sy) in enumerate(seeds / 2):
            d = (wx - sx) ** 2 + (wy - sy) ** 2
            closer = d < best
            best[closer], label[closer] = d[closer], i
        label = cv2.resize(label, (size, size), interpolation=cv2.INTER_NEAREST)
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        colours = np.zeros((k, 3), np.float32)
        stripe_amp, stripe_period, stripe_angle = np.zeros(k, np.float32), np.ones(k, np.float32), np.zeros(k)
        for i, (sx, sy) in enumerate(seeds):
            kind = self._cell_of(sx, sy)
            cover = _choice(rng, INDUSTRIAL_GROUND if kind in (DENSE, PARK) and self.style == "industrial"
                            else GROUND_BY_KIND[kind])
            colours[i] = np.array(GROUND[cover]) * rng.uniform(0.88, 1.12) * rng.uniform(0.95, 1.05, 3)
            if kind == FIELD and cover not in ("soil", "red_soil"):
                stripe_amp[i] = rng.uniform(0.05, 0.13)
                stripe_period[i] = rng.uniform(5, 14)
                stripe_angle[i] = rng.uniform(0, math.pi)
        cos_a, sin_a = np.cos(stripe_angle).astype(np.float32), np.sin(stripe_angle).astype(np.float32)
        phase = (xs * cos_a[label] + ys * sin_a[label]) / stripe_period[label]
        stripes = 1 + stripe_amp[label] * np.sin(2 * np.pi * phase)
        shade = 0.88 + 0.24 * _lowfreq(rng, size, 6)
        chroma = 0.96 + 0.08 * _lowfreq(rng, size, 4, 3)
        self.img[:] = colours[label] * (stripes * shade)[..., None] * chroma
        border = np.zeros((size, size), np.uint8)
        border[:, 1:] |= (label[:, 1:] != label[:, :-1]).astype(np.uint8)
        border[1:, :] |= (label[1:, :] != label[:-1, :]).astype(np.uint8)
        border = cv2.dilate(border, np.ones((2, 2), np.uint8)).astype(bool)
        self.img[border] *= 0.82
        self.tex[:] = 0.07

    def draw_soil(self) -> None:
        """Irregular bare-soil patches, mostly in meadows, fields, lots and sparse districts."""
        rng, size = self.rng, self.size
        mask = np.zeros((size, size), np.uint8)
        for kind, (lo, hi) in ((MEADOW, (1, 4)), (FIELD, (0, 2)), (LOT, (0, 2)), (SPARSE, (0, 3)), (DENSE, (0, 2)),
                               (SPORT, (0, 1)), (PARK, (0, 2))):
            for x, y in self._points_in(kind, int(rng.integers(lo, hi + 1)) * int((self.kinds == kind).sum())):
                axes = (int(rng.uniform(15, 70)), int(rng.uniform(10, 45)))
                cv2.ellipse(mask, (int(x), int(y)), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        soft = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 8) + 0.5 * (_lowfreq(rng, size, 40) - 0.5)
        patch = soft > 0.5
        colour = np.array(GROUND[_choice(rng, {"soil": 0.2, "red_soil": 0.3, "brown_soil": 0.3, "dark_soil": 0.2})],
                          np.float32) * rng.uniform(0.9, 1.15)
        self.img[patch] = colour * (0.85 + 0.3 * _lowfreq(rng, size, 20))[patch][:, None]
        self.tex[patch] = 0.09

    # ---- paved confusers -----------------------------------------------------------------------------------
    def draw_lots(self) -> None:
        """Parking lots (light or dark asphalt, concrete; stall lines, cars) and plazas (concrete, white concrete,
        red brick, brown or dark paving, with joints) in lot cells, some in meadows."""
        rng = self.rng
        for x, y in self._points_in(LOT, int((self.kinds == LOT).sum()) * int(rng.integers(1, 3)), pad=-70):
            self._lot(x, y, rng.uniform(130, 250), rng.uniform(100, 220), big=True)
        for x, y in self._points_in(MEADOW, int(rng.integers(0, 2)), pad=-60):
            self._lot(x, y, rng.uniform(60, 140), rng.uniform(50, 120), big=False)

    def _lot(self, cx: float, cy: float, w: float, h: float, big: bool) -> None:
        rng = self.rng
        angle = self.street_angle + (0 if rng.random() < 0.6 else rng.uniform(0, math.pi))
        frame = self._frame(cx, cy, angle, math.hypot(w, h) / 2 + 2)
        if frame is None:
            return
        win, u, v = frame
        inside = (np.abs(u) <= w / 2) & (np.abs(v) <= h / 2)
        if self.paved[win][inside].any():  # lots do not overlap
            return
        self.paved[win] |= inside
        self.occupied[win][inside & (self.occupied[win] == 0)] = 4
        asphalt = rng.random() < 0.5
        g = rng.uniform(60, 135) if asphalt else rng.uniform(135, 200)
        colour = np.array([g, g * rng.uniform(0.98, 1.02), g * rng.uniform(0.97, 1.04)], np.float32)
        if big and rng.random() < 0.55:  # parking: rows of stalls 38 px deep around 24 px aisles, lines 22 px apart
            rv = np.mod(v + h / 2, 100)
            stall = (rv < 38) | (rv >= 62)
            lines = stall & (np.mod(u + w / 2, 22) < 2) | (np.abs(rv - 38) < 1) | (np.abs(rv - 62) < 1)
            pattern = np.where(lines, 1.55 if g < 150 else 1.25, 1.0)
            for row in range(int(h // 100) + 1):
                for vc in (row * 100 + 19, row * 100 + 81):
                    for uc in np.arange(11, w - 11, 22):
                        if vc + 18 < h and rng.random() < 0.5:
                            lu, lv = uc - w / 2, vc - h / 2
                            c, s = math.cos(angle), math.sin(angle)
                            self.cars.append((cx + lu * c - lv * s, cy + lu * s + lv * c, angle + math.pi / 2,
                                              CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))]))
        else:  # plaza: paving joints
            colour = self._surface(PATIO[int(rng.integers(len(PATIO)))]) if rng.random() < 0.7 else colour
            step = rng.uniform(8, 45)
            joints = (np.mod(u, step) < 1) | (np.mod(v, step) < 1)
            pattern = np.where(joints, 0.9, 1.0)
        fill = colour * pattern[..., None].astype(np.float32)
        self._paint(win, inside, np.broadcast_to(fill, inside.shape + (3,)), 0.04)

    # ---- flat confusers: sports grounds, ponds, polytunnels, garden yards -----------------------------------
    def _surface(self, name: str) -> np.ndarray:
        """The colour of surface `name`, jittered."""
        rng = self.rng
        return (np.array(SURFACES[name]) * rng.uniform(0.9, 1.1) * rng.uniform(0.96, 1.04, 3)).astype(np.float32)

    def _open(self, win) -> np.ndarray:
        """Pixels of window `win` where a flat confuser may go: not in a built-up (or sparse) cell."""
        return (self.kind_map[win] != DENSE) & (self.kind_map[win] != SPARSE)

    def draw_sports(self) -> None:
        """Sports cells: tennis courts (red clay, red / blue / green acrylic, asphalt), running tracks (red lanes
        around a turf pitch) or a turf / cinder pitch with a beach-volleyball sand court. Some courts in lots."""
        rng = self.rng
        for r, c in np.argwhere(self.kinds == SPORT):
            cx, cy = (c + 0.5) * TILE_SIZE + rng.uniform(-30, 30), (r + 0.5) * TILE_SIZE + rng.uniform(-30, 30)
            angle = self.street_angle + (math.pi / 2) * int(rng.integers(0, 2)) + rng.normal(0, 0.03)
            what = _choice(rng, {"tennis": 0.4, "track": 0.35, "pitch": 0.25})
            if what == "tennis":
                self._courts(cx, cy, angle, int(rng.integers(1, 3)))
            elif what == "track":
                self._track(cx + rng.uniform(-40, 40), cy + rng.uniform(-40, 40), angle)
            else:
                self._pitch(cx, cy, angle)
        for x, y in self._points_in(LOT, int(rng.integers(0, 2)), pad=-90):
            self._courts(x, y, self.street_angle + rng.normal(0, 0.03), 1)

    def _courts(self, cx: float, cy: float, angle: float, n: int) -> None:
        """`n` tennis courts side by side (36 x 18 m each, lines 23.8 x 11 m), fenced, no shadow."""
        rng = self.rng
        k = rng.uniform(0.8, 0.95)                          # a little smaller than life, to fit a tile
        length, width = 290 * k, 146 * k
        frame = self._frame(cx, cy, angle, math.hypot(length, n * width) / 2 + 2)
        if frame is None:
            return
        win, u, v = frame
        inside = (np.abs(u) <= length / 2) & (np.abs(v) <= n * width / 2) & self._open(win)
        if (self.occupied[win][inside] != 0).any():      # not over a parking lot
            return
        material = _choice(rng, {"clay": 0.3, "red_acrylic": 0.1, "blue_acrylic": 0.25, "green_acrylic": 0.2,
                                 "asphalt": 0.15})
        surface = self._surface(material)
        surround = self._surface("green_acrylic") if material == "blue_acrylic" and rng.random() < 0.6 else surface
        vk = np.mod(v + n * width / 2, width) - width / 2   # v in the frame of each court
        au, av = np.abs(u), np.abs(vk)
        bu, bd, bs, sv = 95 * k, 44 * k, 34 * k, 51 * k
        court = (au <= bu + 1) & (av <= bd + 1)
        lines = (((np.abs(au - bu) < 1) & (av <= bd)) | ((np.abs(av - bd) < 1) & (au <= bu))
                 | ((np.abs(av - bs) < 1) & (au <= bu)) | ((np.abs(au - sv) < 1) & (av <= bs)) | ((av < 1) & (au <= sv)))
        fill = np.where(court[..., None], surface, surround)
        fill = np.where(lines[..., None], np.float32(228), fill)
        net = (au < 1.2) & (av <= bd + 6)
        edge = (length / 2 - au < 1.5) | (n * width / 2 - np.abs(v) < 1.5)
        fill = fill * np.where(net | edge, 0.5, 1.0)[..., None]
        self._paint(win, inside, fill.astype(np.float32), 0.03)
        self.occupied[win][inside & (self.occupied[win] == 0)] = 4

    def _track(self, cx: float, cy: float, angle: float) -> None:
        """A running track (red lanes with white lines) around a striped turf pitch with a centre circle."""
        rng = self.rng
        radius, lane, lanes = rng.uniform(50, 90), rng.uniform(8.5, 10.5), int(rng.integers(4, 7))
        straight = rng.uniform(0, 60)                        # half length of the straights
        width = lane * lanes
        frame = self._frame(cx, cy, angle, straight + radius + width + 6)
        if frame is None:
            return
        win, u, v = frame
        d = np.hypot(np.maximum(np.abs(u) - straight, 0), v)
        band = (d >= radius) & (d < radius + width)
        pitch = d < radius - 3
        inside = (band | pitch | (d < radius)) & self._open(win)
        red = self._surface(rng.choice(["clay", "red_acrylic"]))
        turf = self._surface("turf") * (1 + 0.06 * np.sign(np.sin(2 * np.pi * u / rng.uniform(18, 30))))[..., None]
        fill = np.where(band[..., None], red, turf)
        lane_line = band & (np.mod(d - radius, lane) < 1.1)
        pitch_line = pitch & ((np.abs(u) < 1) | (np.abs(np.hypot(u, v) - 0.3 * radius) < 1)
                              | (np.abs(d - (radius - 10)) < 1))
        fill = np.where((lane_line | pitch_line)[..., None], np.float32(226), fill)
        self._paint(win, inside, fill.astype(np.float32), 0.035)
        self.occupied[win][inside & (self.occupied[win] == 0)] = 4

    def _pitch(self, cx: float, cy: float, angle: float) -> None:
        """A turf or red cinder pitch with white lines, and next to it a sand (beach volleyball) court."""
        rng = self.rng
        w, h = rng.uniform(150, 220), rng.uniform(100, 150)
        frame = self._frame(cx, cy, angle, math.hypot(w, h) / 2 + 2)
        if frame is None:
            return
        win, u, v = frame
        inside = (np.abs(u) <= w / 2) & (np.abs(v) <= h / 2) & self._open(win)
        base = self._surface(_choice(rng, {"turf": 0.45, "clay": 0.4, "dark_asphalt": 0.15}))
        lines = ((np.abs(np.abs(u) - (w / 2 - 6)) < 1) & (np.abs(v) <= h / 2 - 6)) \
            | ((np.abs(np.abs(v) - (h / 2 - 6)) < 1) & (np.abs(u) <= w / 2 - 6)) | (np.abs(u) < 1) \
            | (np.abs(np.hypot(u, v) - h * 0.15) < 1)
        fill = np.where(lines[..., None], np.float32(224), base * np.ones_like(u)[..., None])
        self._paint(win, inside, fill.astype(np.float32), 0.035)
        self.occupied[win][inside & (self.occupied[win] == 0)] = 4
        side = rng.choice([-1, 1])
        c, s = math.cos(angle), math.sin(angle)
        off = side * (h / 2 + 50)
        self._sand(cx - off * s, cy + off * c, angle + math.pi / 2, rng.uniform(60, 80), rng.uniform(110, 140), True)

    def _sand(self, cx: float, cy: float, angle: float, w: float, h: float, lines: bool) -> bool:
        """A rounded patch of pale sand (grainy, no shadow), with court lines if `lines`."""
        frame = self._frame(cx, cy, angle, math.hypot(w, h) / 2 + 2)
        if frame is None:
            return False
        win, u, v = frame
        rad = min(w, h) * 0.25
        inside = (np.hypot(np.maximum(np.abs(u) - w / 2 + rad, 0), np.maximum(np.abs(v) - h / 2 + rad, 0)) <= rad)
        if lines:
            inside &= self._open(win)
        if (self.occupied[win][inside] != 0).any():
            return False
        fill = self._surface("sand") * np.ones_like(u * v)[..., None]
        if lines:
            mark = ((np.abs(np.abs(u) - (w / 2 - 12)) < 1) & (np.abs(v) <= h / 2 - 12)) \
                | ((np.abs(np.abs(v) - (h / 2 - 12)) < 1) & (np.abs(u) <= w / 2 - 12)) | (np.abs(v) < 1)
            fill = np.where(mark[..., None], fill * np.float32(0.7), fill)
        self._paint(win, inside, fill.astype(np.float32), 0.12)
        self.occupied[win][inside] = 4
        return True

    def draw_ponds(self) -> None:
        """Dark ponds with shallow margins and a muddy shore, in meadows, forests, fields and parks."""
        rng = self.rng
        self.lumps = _lowfreq(rng, self.size, self.size // 16)
        for kind, p, (lo, hi) in ((MEADOW, 0.5, (35, 90)), (FOREST, 0.3, (30, 70)), (FIELD, 0.15, (25, 60)),
                                  (LOT, 0.15, (25, 50)), (SPORT, 0.1, (25, 45))):
            for _ in range(int((self.kinds == kind).sum())):
                if rng.random() < p:
                    (x, y), = self._points_in(kind, 1, pad=-60)
                    self._pond(x, y, rng.uniform(lo, hi), rng.uniform(0.5, 1.0))

    def _pond(self, cx: float, cy: float, r: float, aspect: float, town: bool = False) -> bool:
        rng = self.rng
        frame = self._frame(cx, cy, rng.uniform(0, math.pi), r * 1.5)
        if frame is None:
            return False
        win, u, v = frame
        d = np.hypot(u / r, v / (r * aspect))
        water = (d < 0.8 + 0.5 * (self.lumps[win] - 0.5)) & (self.occupied[win] == 0)
        if not town:
            water &= self._open(win)
        if water.sum() < 200:
            return False
        depth = cv2.distanceTransform(water.astype(np.uint8), cv2.DIST_L2, 3)
        deep = (1 - np.exp(-depth / rng.uniform(4, 9)))[..., None]
        shallow = np.array([88, 96, 74], np.float32) * rng.uniform(0.9, 1.1)
        fill = shallow * (1 - deep) + self._surface("water") * deep
        shore = cv2.dilate(water.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~water
        shore &= self.occupied[win] == 0
        self._paint(win, shore, np.array([118, 106, 84], np.float32) * rng.uniform(0.9, 1.1), 0.08)
        self._paint(win, water, fill.astype(np.float32), 0.015)
        self.occupied[win][water | shore] = 4
        return True

    def draw_tunnels(self) -> None:
        """Fields of white polytunnels / mulch film: long, rounded, softly shaded strips with hoops, no shadow."""
        rng = self.rng
        toward_sun = -self.shadow_dir
        for r, c in np.argwhere(self.kinds == FIELD):
            if rng.random() >= 0.55:
                continue
            cx, cy = (c + 0.5) * TILE_SIZE + rng.uniform(-30, 30), (r + 0.5) * TILE_SIZE + rng.uniform(-30, 30)
            w, h = rng.uniform(150, 240), rng.uniform(120, 220)
            angle = self.street_angle + (math.pi / 2) * int(rng.integers(0, 2)) + rng.normal(0, 0.05)
            frame = self._frame(cx, cy, angle, math.hypot(w, h) / 2 + 2)
            if frame is None:
                continue
            win, u, v = frame
            period = rng.uniform(40, 60)
            tw = period * rng.uniform(0.65, 0.85)
            k = np.mod(v + h / 2, period) - tw / 2             # across one tunnel: -tw/2 .. tw/2 inside
            end = np.maximum(np.abs(u) - (w / 2 - tw / 2), 0)
            tunnel = (np.hypot(end, k) <= tw / 2) & (np.abs(v) <= h / 2) & self._open(win)
            tunnel &= self.occupied[win] == 0
            x = np.clip(k / (tw / 2), -1, 1)
            sv = -toward_sun[0] * math.sin(angle) + toward_sun[1] * math.cos(angle)
            shade = 0.8 + 0.2 * np.sqrt(1 - x * x) + 0.08 * x * sv
            shade = shade * np.where(np.mod(u, rng.uniform(12, 18)) < 1.2, 0.93, 1.0)
            white = np.array([rng.uniform(205, 232)] * 3, np.float32) * rng.uniform(0.97, 1.03, 3)
            self._paint(win, tunnel, (white * shade[..., None]).astype(np.float32), 0.06)
            self.occupied[win][tunnel] = 4

    def draw_dirt(self) -> None:
        """Bare-earth yards (building sites, farm yards, riding arenas): red-brown or brown earth with tyre
        tracks, in lots, parks, meadows, fields and sports grounds."""
        rng = self.rng
        for r, c in np.argwhere(np.isin(self.kinds, (LOT, PARK, MEADOW, FIELD, SPORT))):
            if rng.random() >= 0.45:
                continue
            cx, cy = (c + 0.5) * TILE_SIZE + rng.uniform(-60, 60), (r + 0.5) * TILE_SIZE + rng.uniform(-60, 60)
            w, h = rng.uniform(80, 170), rng.uniform(60, 140)
            angle = self.street_angle + rng.normal(0, 0.3)
            frame = self._frame(cx, cy, angle, math.hypot(w, h) / 2 + 2)
            if frame is None:
                continue
            win, u, v = frame
            rad = min(w, h) * rng.uniform(0.1, 0.45)
            inside = np.hypot(np.maximum(np.abs(u) - w / 2 + rad, 0), np.maximum(np.abs(v) - h / 2 + rad, 0)) <= rad
            inside &= self._open(win) & (self.occupied[win] == 0)
            earth = self._surface(_choice(rng, {"red_brick": 0.35, "brown_paving": 0.45, "clay": 0.2}))
            bend = rng.uniform(-0.004, 0.004)
            tracks = np.mod(v + bend * u * u, rng.uniform(9, 16)) < 2.0
            fill = earth * (0.92 + 0.16 * self.lumps[win])[..., None] * np.where(tracks, 0.88, 1.0)[..., None]
            self._paint(win, inside, fill.astype(np.float32), 0.1)
            self.occupied[win][inside] = 4

    def draw_yards(self) -> None:
        """Garden features between the buildings of a town, and some in parks, lots, meadows and sports grounds:
        pools, patios (red brick, concrete, white, brown, dark), small ponds and sandpits: flat, roof-coloured,
        but without shadow, eaves or ridge."""
        rng = self.rng
        for r, c in np.argwhere(np.isin(self.kinds, (DENSE, PARK, LOT, MEADOW, SPORT))):
            cell = (slice(r * TILE_SIZE, (r + 1) * TILE_SIZE), slice(c * TILE_SIZE, (c + 1) * TILE_SIZE))
            town = self.kinds[r, c] in (DENSE, PARK)
            wanted = int(rng.integers(2, 6) if self.kinds[r, c] == DENSE else rng.integers(3, 8) if town
                         else rng.integers(1, 4))
            placed = 0
            for _ in range(30):
                ys, xs = np.nonzero(self.occupied[cell] == 0)
                if placed >= wanted or len(xs) == 0:
                    break
                i = int(rng.integers(len(xs)))
                x, y = c * TILE_SIZE + xs[i], r * TILE_SIZE + ys[i]
                what = _choice(rng, {"pool": 0.3, "patio": 0.4, "pond": 0.15, "sand": 0.15} if self.kinds[r, c] == DENSE
                               else {"pool": 0.15, "big_pool": 0.15, "court": 0.25, "patio": 0.3, "pond": 0.05,
                                     "sand": 0.1})
                if what == "pond":
                    placed += self._pond(x, y, rng.uniform(12, 24), rng.uniform(0.6, 1.0), town=True)
                elif what == "sand":
                    placed += self._sand(x, y, rng.uniform(0, math.pi), rng.uniform(18, 34), rng.uniform(18, 34),
                                         False)
                else:
                    placed += self._yard(x, y, what)

    def _yard(self, cx: float, cy: float, what: str) -> bool:
        rng = self.rng
        w, h = {"pool": (rng.uniform(40, 72), rng.uniform(22, 38)), "big_pool": (rng.uniform(90, 150), rng.uniform(50, 80)),
                "patio": (rng.uniform(30, 66), rng.uniform(24, 50)), "court": (rng.uniform(110, 140), rng.uniform(64, 80))
                }[what]
        angle = self.street_angle + (math.pi / 2) * int(rng.integers(0, 2))
        frame = self._frame(cx, cy, angle, math.hypot(w, h) / 2 + 4)
        if frame is None:
            return False
        win, u, v = frame
        inside = (np.abs(u) <= w / 2) & (np.abs(v) <= h / 2)
        grown = (np.abs(u) <= w / 2 + 3) & (np.abs(v) <= h / 2 + 3)
        if inside.sum() < 0.9 * w * h or (self.occupied[win][grown] != 0).any():
            return False
        if what in ("pool", "big_pool"):
            rim = 3 if what == "pool" else 6
            water = (np.abs(u) <= w / 2 - rim) & (np.abs(v) <= h / 2 - rim)
            ripple = 1 + 0.05 * np.sin(u * 0.7 + v * 0.4)
            if what == "big_pool":  # lane ropes
                ripple = ripple * np.where(np.mod(v + h / 2 - rim, 14) < 1.2, 0.8, 1.0)
            pool = self._surface("pool" if rng.random() < 0.6 else "deep_pool")
            fill = np.where(water[..., None], pool * ripple[..., None], self._surface("white_concrete"))
        elif what == "court":  # basketball / multi-sport court: acrylic with white lines
            lines = (np.abs(np.abs(u) - (w / 2 - 5)) < 1) & (np.abs(v) <= h / 2 - 5) \
                | (np.abs(np.abs(v) - (h / 2 - 5)) < 1) & (np.abs(u) <= w / 2 - 5) | (np.abs(u) < 1) \
                | (np.abs(np.hypot(u, v) - 14) < 1) | (np.abs(np.hypot(np.abs(u) - w / 2 + 5, v) - 38) < 1)
            colour = self._surface(_choice(rng, {"blue_acrylic": 0.4, "green_acrylic": 0.2, "red_acrylic": 0.2,
                                                 "dark_asphalt": 0.2}))
            fill = np.where(lines[..., None], np.float32(226), colour * np.ones_like(u * v)[..., None])
        else:
            step = rng.uniform(5, 12)
            joints = (np.mod(u, step) < 1) | (np.mod(v, step) < 1)
            fill = self._surface(PATIO[int(rng.integers(len(PATIO)))]) * np.where(joints, 0.88, 1.0)[..., None]
        self._paint(win, inside, fill.astype(np.float32), 0.03)
        self.occupied[win][inside] = 4
        return True

    def draw_roads(self) -> None:
        """One to three roads right across the scene, some bent, with kerbs in towns, dashes and cars."""
        rng, size = self.rng, self.size
        towny = bool((self.kinds == DENSE).any())
        road = np.zeros((size, size), np.uint8)
        kerb = np.zeros((size, size), np.uint8)
        dashes = np.zeros((size, size), np.uint8)
        n_dense = int((self.kinds == DENSE).sum())   # a town has its own streets: fewer through roads
        for _ in range(int(rng.integers(0, 2) if n_dense >= 5 else rng.integers(1, 3) if n_dense >= 2
                           else rng.integers(1, 4))):
            width = int(rng.uniform(32, 54))
            pts = self._road_course(width)
            poly = [pts.round().astype(np.int32)]
            if towny:
                cv2.polylines(kerb, poly, False, 1, width + 12)
            cv2.polylines(road, poly, False, 1, width)
            for a, b in ((pts[0], pts[1]), (pts[1], pts[2])):
                length = float(np.linalg.norm(b - a))
                direction = (b - a) / length
                if width > 42:
                    for t in np.arange(0, length, 48):
                        q0, q1 = a + t * direction, a + (t + 22) * direction
                        cv2.line(dashes, tuple(q0.round().astype(int)), tuple(q1.round().astype(int)), 1, 2)
                angle = math.atan2(direction[1], direction[0])
                normal = np.array([-direction[1], direction[0]])
                for lane in (-1, 1):  # cars at least 45 px apart along each lane
                    ts = np.sort(rng.uniform(0, length, int(rng.integers(0, 12))))
                    keep = ts[np.concatenate([[True], np.diff(ts) > 45])] if len(ts) else ts
                    for t in keep:
                        q = a + t * direction + lane * width / 4 * normal
                        if 0 <= q[0] < size and 0 <= q[1] < size:
                            colour = CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))]
                            self.cars.append((q[0], q[1], angle + (math.pi if lane < 0 else 0.0), colour))
        kerb_only = (kerb > 0) & (road == 0)
        self.img[kerb_only] = np.array([172, 170, 164], np.float32) * rng.uniform(0.9, 1.08)
        self.tex[kerb_only] = 0.04
        on_road = road > 0
        g = rng.uniform(92, 130)
        asphalt = np.array([g, g * 1.01, g * 1.05], np.float32)
        self.img[on_road] = asphalt * (0.9 + 0.2 * _lowfreq(rng, size, 12))[on_road][:, None]
        self.tex[on_road] = 0.05
        on_dash = (dashes > 0) & on_road
        self.img[on_dash] = (205, 205, 196)
        self.occupied |= cv2.dilate(np.maximum(road, kerb), np.ones((5, 5), np.uint8))

    def _road_course(self, width: int) -> np.ndarray:
        """Three points of a road across the scene (straight or bent at the middle one), the one of five
        random courses that runs least through dense districts, so towns keep their blocks."""
        rng, size, k = self.rng, self.size, 8
        dense_small = cv2.resize((self.kind_map == DENSE).astype(np.uint8), (size // k, size // k),
                                 interpolation=cv2.INTER_NEAREST)
        best, best_score = None, math.inf
        for _ in range(5):
            p = rng.uniform(0.15 * size, 0.85 * size, 2)
            a1 = self.street_angle + (math.pi / 2) * int(rng.integers(0, 2)) if rng.random() < 0.7 \
                else rng.uniform(0, math.pi)
            a2 = a1 + (rng.uniform(-0.5, 0.5) if rng.random() < 0.35 else 0.0)
            pts = np.array([p - 2 * size * np.array([math.cos(a1), math.sin(a1)]), p,
                            p + 2 * size * np.array([math.cos(a2), math.sin(a2)])])
            trace = np.zeros_like(dense_small)
            cv2.polylines(trace, [(pts / k).round().astype(np.int32)], False, 1, max(1, width // k))
            score = float((trace & dense_small).sum()) + rng.random()
            if score < best_score:
                best, best_score = pts, score
        return best

    # ---- town: streets and buildings ----------------------------------------------------------------------
    def _street_frame(self) -> tuple[float, float, float, float, float, float]:
        """cos, sin of the street grid and the u / v extents of the scene in its frame."""
        c, s = math.cos(self.street_angle), math.sin(self.street_angle)
        corners = np.array([[0, 0], [self.size, 0], [0, self.size], [self.size, self.size]], np.float64)
        us, vs = corners @ (c, s), corners @ (-s, c)
        return c, s, us.min(), us.max(), vs.min(), vs.max()

    def draw_town_streets(self) -> None:
        """Plan the town on the street grid and pave its streets. Across the grid (v) the pattern repeats:
        street, front yard, a row of buildings, back gardens, a row facing the next street, front yard; along
        it (u) cross streets every 300-450 px. `self.town_rows` holds (front line v, facing, type, depth)."""
        rng = self.rng
        self.town_rows: list[tuple[float, int, str, float]] = []
        self.cross_streets: list[tuple[float, float]] = []
        if not (self.kinds == DENSE).any():
            return
        c, s, u0, u1, v0, v1 = self._street_frame()
        streets: list[tuple[float, float, bool]] = []       # centre, width, along u (True) or v
        v = v0 - rng.uniform(0, 220)
        while v < v1 + 40:
            width = rng.uniform(24, 32)
            streets.append((v + width / 2, width, True))
            v += width + 4 + rng.uniform(28, 44)             # pavement and front yards
            kind_a, kind_b = _choice(rng, BUILDING_MIX[self.style]), _choice(rng, BUILDING_MIX[self.style])
            self.town_rows.append((v, 1, kind_a, ROW_DEPTH[kind_a]))
            v += ROW_DEPTH[kind_a] + ROW_DEPTH[kind_b] + rng.uniform(18, 30)     # back gardens between the rows
            self.town_rows.append((v, -1, kind_b, ROW_DEPTH[kind_b]))
            v += rng.uniform(28, 44) + 4
        u = u0 - rng.uniform(0, 300)
        while u < u1 + 40:
            width = rng.uniform(22, 30)
            self.cross_streets.append((u, width))
            streets.append((u, width, False))
            u += rng.uniform(450, 700)
        ys, xs = np.mgrid[0:self.size, 0:self.size].astype(np.float32)
        pu, pv = xs * c + ys * s, -xs * s + ys * c
        town = cv2.dilate(((self.kind_map == DENSE) | (self.kind_map == PARK)).astype(np.uint8),
                          np.ones((17, 17), np.uint8)).astype(bool)
        road = np.zeros((self.size, self.size), bool)
        walk = np.zeros_like(road)
        for centre, width, along in streets:   # some streets run on out of the town, into the fields
            dist = np.abs((pv if along else pu) - centre)
            reach = True if rng.random() < 0.35 else town
            road |= (dist <= width / 2) & reach
            walk |= (dist <= width / 2 + 4) & reach
        walk &= ~road
        self.img[walk] = np.array([176, 173, 166], np.float32) * rng.uniform(0.9, 1.08)
        self.tex[walk] = 0.04
        g = rng.uniform(80, 125)
        self.img[road] = np.array([g, g * 1.01, g * 1.04], np.float32) * (0.92 + 0.16 * _lowfreq(rng, self.size, 10)
                                                                         )[road][:, None]
        self.tex[road] = 0.05
        self.occupied[cv2.dilate((road | walk).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0] = 1
        for centre, width, along in streets:               # parked cars along the kerbs
            for _ in range(int(rng.integers(0, 6))):
                t, side = rng.uniform(u0 if along else v0, u1 if along else v1), rng.choice([-1, 1])
                a, b = (t, centre + side * (width / 2 - 6)) if along else (centre + side * (width / 2 - 6), t)
                x, y = a * c - b * s, a * s + b * c
                if 0 <= x < self.size and 0 <= y < self.size and road[int(y), int(x)]:
                    colour = CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))]
                    self.cars.append((x, y, self.street_angle + (0.0 if along else math.pi / 2), colour))

    def draw_buildings(self) -> None:
        """Rows of buildings along the town streets, side gaps of 15-24 px, infill where a plot stayed empty, a
        few sheds in the gardens; 1-3 houses in sparse cells. Footprints stay 8 px inside their district and off
        roads and confusers."""
        rng = self.rng
        free = self.occupied == 0
        dense = cv2.erode((self.kind_map == DENSE).astype(np.uint8), np.ones((17, 17), np.uint8)).astype(bool)
        sparse = cv2.erode((self.kind_map == SPARSE).astype(np.uint8), np.ones((41, 41), np.uint8)).astype(bool)
        dense &= free
        sparse &= free
        if dense.any():
            self._rows(dense)
        for r, c in np.argwhere(self.kinds == DENSE):   # empty plots (by main roads, at the edges): infill
            self._scatter(r, c, dense, 60, 10**6, lambda: _choice(rng, BUILDING_MIX[self.style]))
            self._scatter(r, c, dense, 30, int(rng.integers(0, 3)), lambda: "shed")
        for r, c in np.argwhere(self.kinds == SPARSE):
            self._scatter(r, c, sparse, 40, int(rng.integers(1, 4)), lambda: "house")
        for parts, _, height in self.buildings:
            self._cast_shadow(parts, height)

    def _scatter(self, r: int, c: int, allowed: np.ndarray, attempts: int, wanted: int, btype) -> None:
        """Up to `wanted` buildings of type `btype()` at random free spots of cell (r, c), 16-24 px off others."""
        rng = self.rng
        cell = (slice(r * TILE_SIZE, (r + 1) * TILE_SIZE), slice(c * TILE_SIZE, (c + 1) * TILE_SIZE))
        placed, ys, misses = 0, None, 0
        for _ in range(attempts):
            if ys is None:  # candidate centres: allowed pixels not next to a building yet
                ys, xs = np.nonzero(allowed[cell] & (self.occupied[cell] == 0))
            if placed >= wanted or len(xs) == 0 or misses >= 40:
                return
            i = int(rng.integers(len(xs)))
            x, y = c * TILE_SIZE + xs[i] + rng.random(), r * TILE_SIZE + ys[i] + rng.random()
            building = self._sample_building(btype(), aligned=rng.random() < 0.8)
            if self._try_place(building, x, y, allowed, gap=rng.uniform(16, 24)):
                placed, ys, misses = placed + 1, None, 0
            else:
                misses += 1

    def _rows(self, allowed: np.ndarray) -> None:
        """Buildings along each planned row, front-aligned to its street, 15-30 px apart, none on a cross street."""
        rng = self.rng
        c, s, u0, u1, _, _ = self._street_frame()
        skip = rng.uniform(0.0, 0.08)          # share of empty plots: varies the cover from scene to scene
        for front, facing, btype, depth in self.town_rows:
            u = u0 - rng.uniform(0, 60)
            while u < u1:
                building = self._sample_building(btype, aligned=True, max_depth=depth)
                extent_u, extent_v = building[2], building[3]
                blocked = [cu + cw / 2 for cu, cw in self.cross_streets
                           if cu + cw / 2 + 12 > u and cu - cw / 2 - 12 < u + extent_u]
                if blocked:
                    u = max(blocked) + rng.uniform(14, 24)
                    continue
                v_c = front + facing * (extent_v / 2 + rng.uniform(0, 4))
                u_c = u + extent_u / 2
                if rng.random() >= skip:
                    self._try_place(building, u_c * c - v_c * s, u_c * s + v_c * c, allowed, gap=4)
                u += extent_u + rng.uniform(15, 22)

    def _try_place(self, building: tuple[list[_Part], float, float, float], x: float, y: float,
                   allowed: np.ndarray, gap: float) -> bool:
        """Move `building` (from `_sample_building`) to (x, y), shrunk if needed; True if it fits and was kept."""
        parts, height = building[0], building[1]
        for scale in (1.0, 0.85, 0.7):
            moved = [_Part(p.cx * scale + x, p.cy * scale + y, p.w * scale, p.h * scale, p.angle, p.roof, p.tone)
                     for p in parts]
            if min(p.h for p in moved) >= 28 and self._fits(moved, allowed, gap):
                self.buildings.append((moved, self._material(x, y), height))
                return True
        return False

    def _material(self, x: float, y: float) -> str:
        """A roof material for a building at (x, y): neighbours look alike, so each cell has a main material
        (drawn from the style's even mix) and only a few buildings take another one."""
        rng = self.rng
        cell = (min(int(y) // TILE_SIZE, self.grid - 1), min(int(x) // TILE_SIZE, self.grid - 1))
        if cell not in self.palettes:
            mix = ROOF_MIX[self.style]
            self.palettes[cell] = (_choice(rng, mix), _choice(rng, mix), rng.uniform(0.8, 1.0))
        main, second, share = self.palettes[cell]
        t = rng.random()
        return main if t < share * 0.92 else second if t < 0.92 else _choice(rng, ROOF_MIX[self.style])

    def _sample_building(self, btype: str, aligned: bool, max_depth: float = math.inf
                         ) -> tuple[list[_Part], float, float, float]:
        """A random building of type `btype` centred at the origin: (parts, height, width along the street,
        depth across it, at most `max_depth`), all in px. Aligned buildings follow the street grid; the others
        are rotated boxes."""
        rng = self.rng
        if btype == "house":
            w, h = rng.uniform(72, 126), rng.uniform(64, 88)
            roof = _choice(rng, {"gable": 0.5, "hip": 0.35, "flat": 0.15})
            height = rng.uniform(45, 75)
        elif btype == "shed":
            w, h = rng.uniform(34, 50), rng.uniform(30, 40)
            roof = _choice(rng, {"gable": 0.3, "flat": 0.7})
            height = rng.uniform(24, 36)
        elif btype == "terrace":
            w, h = rng.uniform(120, 180), rng.uniform(56, 68)
            roof = _choice(rng, {"gable": 0.8, "flat": 0.2})
            height = rng.uniform(50, 75)
        elif btype == "block":
            w, h = rng.uniform(100, 150), rng.uniform(66, 90)
            roof = _choice(rng, {"flat": 0.6, "gable": 0.3, "hip": 0.1})
            height = rng.uniform(80, 140)
        else:
            w, h = rng.uniform(110, 180), rng.uniform(84, 120)
            roof = _choice(rng, {"flat": 0.7, "gable": 0.3})
            height = rng.uniform(60, 100)
        h = min(h, max_depth)
        across = btype == "house" and w <= max_depth and rng.random() < 0.2   # ridge across the street
        angle = self.street_angle + (rng.normal(0, 0.02) if aligned else rng.uniform(0, math.pi))
        if across:
            angle += math.pi / 2
        parts = [_Part(0.0, 0.0, w, h, angle, roof)]
        if btype == "terrace":  # a row of 3-4 units whose roofs differ slightly in tone
            n = int(rng.integers(3, 5))
            c, s = math.cos(angle), math.sin(angle)
            offsets = (np.arange(n) - (n - 1) / 2) * w / n
            parts = [_Part(o * c, o * s, w / n + 0.5, h, angle, roof, rng.uniform(0.88, 1.12)) for o in offsets]
            return parts, height, w, h
        extent_u, extent_v = (h, w) if across else (w, h)
        wing_w, wing_l = h * rng.uniform(0.6, 0.9), h * rng.uniform(0.4, 0.7)
        if btype in ("house", "block") and not across and h + wing_l <= max_depth and rng.random() < 0.35:
            # L-shape: a perpendicular wing at one end
            side = rng.choice([-1, 1])
            su, sv = rng.choice([-1, 1]) * (w / 2 - wing_w / 2), side * (h / 2 + wing_l / 2 - 2)
            back = -side * wing_l / 2           # shift both parts so the whole footprint is centred
            c, s = math.cos(angle), math.sin(angle)
            parts[0] = _Part(-back * s, back * c, w, h, angle, roof)
            parts.append(_Part(su * c - (sv + back) * s, su * s + (sv + back) * c, wing_l + 4, wing_w,
                               angle + math.pi / 2, roof))
            extent_v = h + wing_l
        return parts, height, extent_u, extent_v

    def _fits(self, parts: list[_Part], allowed: np.ndarray, gap: float) -> bool:
        """True (and the footprint is marked as taken) if every part lies in `allowed` and `gap` px off others;
        a footprint may run over the scene's edge (what lies outside is not checked)."""
        corners = np.concatenate([_rect_corners(p, gap) for p in parts])
        x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 1, self.size)
        if x1 - x0 < 2 * gap + 8 or y1 - y0 < 2 * gap + 8:
            return False
        tips = np.concatenate([_rect_corners(p, -0.5) for p in parts]).astype(int)   # cheap early rejections
        tips = tips[((tips >= 0) & (tips < self.size)).all(1)]
        if len(tips) == 0 or not allowed[tips[:, 1], tips[:, 0]].all():
            return False
        grown_corners = [_rect_corners(p, gap) for p in parts]
        ring = np.concatenate([np.concatenate([q, (q + np.roll(q, 1, axis=0)) / 2]) for q in grown_corners])
        ring = np.clip(ring.astype(int), 0, self.size - 1)
        near = self.occupied[ring[:, 1], ring[:, 0]]
        if ((near == 1) | (near == 2)).any():
            return False
        win = (slice(y0, y1), slice(x0, x1))
        foot = np.zeros((y1 - y0, x1 - x0), bool)
        grown = np.zeros_like(foot)
        for p in parts:
            u, v = self._local(p, x0, y0, x1, y1)
            foot |= (np.abs(u) <= p.w / 2) & (np.abs(v) <= p.h / 2)
            grown |= (np.abs(u) <= p.w / 2 + gap) & (np.abs(v) <= p.h / 2 + gap)
        near = self.occupied[win][grown]
        if not allowed[win][foot].all() or ((near == 1) | (near == 2)).any():
            return False
        self.occupied[win][grown & (self.occupied[win] == 0)] = 3   # the gap ring: no centre, no roof
        self.occupied[win][foot] = 2
        return True

    def _local(self, p: _Part, x0: int, y0: int, x1: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates (u, v) in the frame of part `p` of the pixels of window [y0:y1, x0:x1]."""
        ys, xs = np.ogrid[y0:y1, x0:x1]
        dx, dy = xs.astype(np.float32) - p.cx, ys.astype(np.float32) - p.cy
        c, s = math.cos(p.angle), math.sin(p.angle)
        return dx * c + dy * s, -dx * s + dy * c

    def _cast_shadow(self, parts: list[_Part], height: float) -> None:
        """Each part swept along the shadow direction by its height times the scene's shadow length."""
        offset = self.shadow_dir * height * self.shadow_len
        for p in parts:
            corners = _rect_corners(p)
            hull = cv2.convexHull(np.concatenate([corners, corners + offset]).round().astype(np.int32))
            cv2.fillConvexPoly(self.shadow, hull, 1)

    def draw_roofs(self) -> None:
        """Paint every roof part: facet shading, ridge and hip lines, tile courses or seams, chimneys and solar
        panels (pitched roofs); parapet, membrane seams and rooftop units (flat roofs); then dark eaves."""
        rng = self.rng
        toward_sun = -self.shadow_dir
        for parts, material, _ in self.buildings:
            lo, hi, striped = ROOFS[material]
            t = rng.random()
            base = ((1 - t) * np.array(lo) + t * np.array(hi)) * rng.uniform(0.96, 1.04, 3)
            base = base.astype(np.float32)
            slope = rng.uniform(0.12, 0.22)
            period = rng.uniform(3.5, 6.0)
            for p in parts:
                frame = self._frame(p.cx, p.cy, p.angle, math.hypot(p.w, p.h) / 2 + 2)
                if frame is None:
                    continue
                win, u, v = frame
                inside = (np.abs(u) <= p.w / 2) & (np.abs(v) <= p.h / 2)
                c, s = math.cos(p.angle), math.sin(p.angle)
                su = toward_sun[0] * c + toward_sun[1] * s      # sun direction in the part's (u, v) frame
                sv = -toward_sun[0] * s + toward_sun[1] * c
                shade = np.ones_like(u * v)
                solar = None
                if p.roof in ("gable", "hip"):
                    along_v = np.sign(v) * sv                     # facets facing +v / -v
                    ridge_half = max(p.w / 2 - (p.h / 2 if p.roof == "hip" else 0), 0.0)
                    if p.roof == "hip":
                        end = (p.w / 2 - np.abs(u)) < (p.h / 2 - np.abs(v))
                        along_v = np.where(end, np.sign(u) * su, along_v)
                        hip_line = np.abs((p.w / 2 - np.abs(u)) - (p.h / 2 - np.abs(v))) < 1.2
                        shade = np.where(hip_line, 1.12, shade)
                    shade = shade * (1 + slope * along_v)
                    ridge = (np.abs(v) < 1.5) & (np.abs(u) < ridge_half)
                    shade = np.where(ridge, shade * 1.15, shade)
                    # tile courses (or metal seams) for every material
                    shade = shade * (1 + (0.05 if striped else 0.035) * np.sin(2 * np.pi * v / period))
                    if rng.random() < 0.35 and p.w > 50:        # a chimney with its shadow
                        uc, vc = rng.uniform(-ridge_half, ridge_half) * 0.8, rng.uniform(-p.h / 4, p.h / 4)
                        box = (np.abs(u - uc) <= 4) & (np.abs(v - vc) <= 4)
                        sh = (np.abs(u - uc + su * 6) <= 4) & (np.abs(v - vc + sv * 6) <= 4) & ~box
                        shade = np.where(sh, shade * 0.6, np.where(box, 0.95, shade))
                    if rng.random() < 0.3 and ridge_half > 24:  # solar panels on the sunny facet
                        side = 1.0 if sv >= 0 else -1.0
                        length = rng.uniform(0.4, 0.75) * (ridge_half * 2 - 8)
                        u0 = rng.uniform(-ridge_half + 4, ridge_half - 4 - length)
                        solar = (u >= u0) & (u <= u0 + length) & (side * v >= 4) & (side * v <= p.h / 2 - 5)
                        cells = (np.mod(u - u0, 8) < 1) | (np.abs(side * v - (p.h / 4 + 2)) < 0.8)
                        solar_fill = np.array([38, 46, 78], np.float32) * np.where(cells, 1.5, 1.0)[..., None]
                else:
                    if striped:                                   # corrugated metal
                        shade = shade * (1 + 0.05 * np.sin(2 * np.pi * u / period))
                    else:                                         # membrane seams
                        step = rng.uniform(10, 18)
                        shade = shade * np.where(np.mod(u, step) < 1, 0.94, 1.0)
                    # a parapet: a bright rim with its shadow inside on the sun side
                    edge = np.minimum(p.w / 2 - np.abs(u), p.h / 2 - np.abs(v))
                    shade = shade * np.where(edge < 2.5, 1.12, 1.0)
                    inner = (edge >= 2.5) & (edge < 5.5) & ((u * su + v * sv) > 0)
                    shade = np.where(inner, shade * 0.82, shade)
                    if p.w > 45:
                        shade = shade * self._rooftop_units(p, u, v, su, sv)
                colour = base * (p.tone * shade[..., None]).astype(np.float32)
                if solar is not None:
                    colour = np.where(solar[..., None], solar_fill, colour)
                self._paint(win, inside, colour, 0.025)
                self.roof[win] |= inside
        dist = cv2.distanceTransform(self.roof.astype(np.uint8), cv2.DIST_L2, 3)
        eave = 1 - 0.3 * np.exp(-dist / 2.5)
        self.img[self.roof] *= eave[self.roof][:, None]

    def _rooftop_units(self, p: _Part, u: np.ndarray, v: np.ndarray, su: float, sv: float) -> np.ndarray:
        """Multiplicative shade of HVAC units / skylights on a flat roof (more on bigger roofs), each with a
        small shadow."""
        rng = self.rng
        shade = np.ones(np.broadcast_shapes(u.shape, v.shape), np.float32)
        for _ in range(int(rng.integers(1, 3 + int(p.w * p.h / 3000)))):
            uw, vh = rng.uniform(6, min(22, p.w / 4)), rng.uniform(6, min(18, p.h / 4))
            uc = rng.uniform(-p.w / 2 + uw + 5, p.w / 2 - uw - 5)
            vc = rng.uniform(-p.h / 2 + vh + 5, p.h / 2 - vh - 5)
            k = rng.uniform(4, 7)
            sh = (np.abs(u - uc + su * k) <= uw / 2) & (np.abs(v - vc + sv * k) <= vh / 2)
            unit = (np.abs(u - uc) <= uw / 2) & (np.abs(v - vc) <= vh / 2)
            shade = np.where(sh, shade * 0.6, shade)
            shade = np.where(unit, rng.uniform(0.8, 1.25), shade)
        return shade

    # ---- trees, cars, shadows ------------------------------------------------------------------------------
    def plan_trees(self) -> None:
        """Forests, hedgerows, scattered trees and garden trees: `self.trees` rows of (x, y, radius)."""
        rng = self.rng
        trees: list[np.ndarray] = []
        counts = {FOREST: (70, 110), MEADOW: (4, 18), LOT: (3, 10), SPARSE: (4, 12), DENSE: (1, 6), FIELD: (0, 4),
                  SPORT: (2, 8), PARK: (2, 9)}
        for kind, (lo, hi) in counts.items():
            for _ in range(int((self.kinds == kind).sum())):
                pts = self._points_in(kind, int(rng.integers(lo, hi + 1)), pad=20 if kind == FOREST else 0)
                if kind != FOREST:  # rooted on open ground only (but crowns may overhang roofs)
                    under = self.occupied[pts[:, 1].astype(int), pts[:, 0].astype(int)]
                    pts = pts[(under == 0) | (under == 3)]
                radius = rng.uniform(*{FOREST: (14, 30), DENSE: (10, 22)}.get(kind, (12, 32)), len(pts))
                trees.append(np.column_stack([pts, radius]))
        for kind in (FIELD, MEADOW):  # hedgerows: a line of trees along a random segment
            for _ in range(int((self.kinds == kind).sum())):
                if rng.random() < 0.5:
                    a, b = self._points_in(kind, 2)
                    n = max(2, int(np.linalg.norm(b - a) / 22))
                    t = np.linspace(0, 1, n)[:, None]
                    line = a + t * (b - a) + rng.normal(0, 3, (n, 2))
                    trees.append(np.column_stack([line, rng.uniform(10, 18, n)]))
        if trees:
            self.trees = np.concatenate(trees)

    def apply_shadows(self) -> None:
        """Add the tree and car shadows to the building shadows and darken (blue-tinted) what lies under them."""
        rng = self.rng
        for x, y, r in self.trees:  # the crown's shadow, swept from the trunk outwards
            off = self.shadow_dir * r * rng.uniform(2.4, 3.6) * self.shadow_len   # a tree is 2.4-3.6 radii tall
            near = (int(x + 0.3 * off[0]), int(y + 0.3 * off[1]))
            far = (int(x + off[0]), int(y + off[1]))
            cv2.circle(self.shadow, near, int(r * 0.9), 1, -1)
            cv2.circle(self.shadow, far, int(r), 1, -1)
            cv2.line(self.shadow, near, far, 1, int(1.8 * r))
        for x, y, angle, _ in self.cars:
            off = self.shadow_dir * 5
            corners = _rect_corners(_Part(x + off[0], y + off[1], 36, 15, angle, "flat"))
            cv2.fillConvexPoly(self.shadow, corners.round().astype(np.int32), 1)
        soft = cv2.GaussianBlur(self.shadow.astype(np.float32), (0, 0), 1.2)
        tint = np.array([0.42, 0.46, 0.56], np.float32) * self.rng.uniform(0.9, 1.15)
        self.img *= 1 - soft[..., None] * (1 - tint)

    def draw_cars(self) -> None:
        """Vehicles (4.5 x 1.9 m) with dark windscreens, on roads and in parking stalls."""
        for x, y, angle, colour in self.cars:
            frame = self._frame(x, y, angle, 20)
            if frame is None:
                continue
            win, u, v = frame
            body = (np.abs(u) <= 18) & (np.abs(v) <= 7.5)
            glass = ((u > 3) & (u < 10) | (u > -15) & (u < -10)) & (np.abs(v) <= 6)
            shade = np.where(glass, 0.35, 1.0)[..., None]
            fill = np.array(colour, np.float32) * shade.astype(np.float32)
            self._paint(win, body, np.broadcast_to(fill, body.shape + (3,)), 0.02)

    def draw_trees(self) -> None:
        """Round, lumpy, sphere-shaded crowns with leafy texture, drawn over everything else."""
        rng = self.rng
        lumps = _lowfreq(rng, self.size, self.size // 10)
        leaves = _grain(rng, self.size, 1.3)
        toward_sun = -self.shadow_dir
        light = np.array([toward_sun[0] * 0.6, toward_sun[1] * 0.6, 0.8])
        for x, y, r in self.trees:
            frame = self._frame(x, y, 0.0, r * 1.2)
            if frame is None:
                continue
            win, dx, dy = frame
            d = np.sqrt(dx * dx + dy * dy) / r
            crown = d < 0.82 + 0.3 * lumps[win]
            nz = np.sqrt(np.clip(1 - d * d, 0, 1))
            lit = np.clip((dx / r) * light[0] + (dy / r) * light[1] + nz * light[2], 0, 1)
            green = np.array([rng.uniform(40, 80), rng.uniform(72, 110), rng.uniform(32, 58)], np.float32)
            shade = (0.5 + 0.65 * lit) * (1 + 0.18 * leaves[win])
            self._paint(win, crown, green * shade[..., None].astype(np.float32), 0.06)
            self.tree[win] |= crown

    # ---- sensor --------------------------------------------------------------------------------------------
    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """Grain, scene brightness / colour / haze, blur and noise; returns (uint8 RGB image, {0,1} mask)."""
        rng, size = self.rng, self.size
        img = self.img * (1 + self.tex * _grain(rng, size, 0.7))[..., None]
        img = img * rng.uniform(0.85, 1.12) * rng.uniform(0.94, 1.06, 3).astype(np.float32)
        haze = rng.uniform(0.0, 0.1)
        img = img * (1 - haze) + haze * np.array([200, 205, 215], np.float32)
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 0.9))
        img = img + rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(1.5, 3.5)
        mask = self.roof & ~self.tree
        return np.clip(img.round(), 0, 255).astype(np.uint8), mask.astype(np.uint8)


def render_scene(seed: int, index: int, size: int = SCENE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Scene `index` of the dataset drawn from `seed`: (HxWx3 uint8 RGB image, HxW {0,1} roof mask)."""
    scene = _Scene(np.random.default_rng([seed, index]), size)
    scene.draw_ground()
    scene.draw_soil()
    scene.draw_lots()
    scene.draw_sports()
    scene.draw_ponds()
    scene.draw_tunnels()
    scene.draw_dirt()
    scene.draw_roads()
    scene.draw_town_streets()
    scene.draw_buildings()
    scene.draw_yards()
    scene.plan_trees()
    scene.apply_shadows()
    scene.draw_roofs()
    scene.draw_cars()
    scene.draw_trees()
    return scene.finish()


def split_test_groups(num_scenes: int) -> frozenset[str]:
    """The last TEST_FRACTION of the scenes (at least one) are the test groups."""
    n_test = max(1, round(TEST_FRACTION * num_scenes))
    return frozenset(_group(i) for i in range(num_scenes - n_test, num_scenes))


def _group(index: int) -> str:
    return f"demo_s{index:02d}"


def _params(seed: int, num_scenes: int) -> dict[str, int]:
    return {"generator_version": GENERATOR_VERSION, "seed": seed, "num_scenes": num_scenes,
            "scene_size": SCENE_SIZE, "tile_size": TILE_SIZE}


def is_current(out: Path, seed: int = 0, num_scenes: int = DEFAULT_SCENES) -> bool:
    """True if `out` holds a complete dataset generated with these parameters (tiles.csv and demo.json)."""
    out = Path(out)
    try:
        recorded = json.loads((out / "demo.json").read_text())
    except (OSError, ValueError):
        return False
    return (out / "tiles.csv").is_file() and recorded.get("params") == _params(seed, num_scenes)


def _read_summary(out: Path, groups_for_test: frozenset[str]) -> LayoutSummary:
    """The LayoutSummary of an existing dataset, recounted from its tiles.csv."""
    summary = LayoutSummary()
    with open(out / "tiles.csv", newline="") as f:
        for row in csv.DictReader(f):
            test = row["group"] in groups_for_test
            summary.tiles += 1
            summary.test_tiles += test
            if row["label"] == "dropped":
                summary.dropped += 1
                continue
            positive = row["label"] == "1"
            summary.positives += positive
            summary.negatives += not positive
            summary.train_kept += not test
            summary.train_positives += positive and not test
    return summary


def _clear(out: Path) -> None:
    """Remove what an earlier generation wrote, so a regenerated dataset holds no stale tiles."""
    for name in ("demo.json", "tiles.csv"):
        (out / name).unlink(missing_ok=True)
    layout = default_paths(out)
    for folder in (layout["image_dir"], layout["gt_dir"]):
        for path in sorted(folder.glob("demo_s*.png")):
            path.unlink()


def make_demo(out: Path, seed: int = 0, num_scenes: int = DEFAULT_SCENES, force: bool = False) -> LayoutSummary:
    """Generate the synthetic dataset into `out` (skipped when it is already there with these parameters).

    Args:
        out: dataset root (the `--voc12_root` of the pipeline).
        seed: the only source of randomness; the same seed gives byte-identical files.
        num_scenes: number of 768x768 scenes, 9 tiles each; the last TEST_FRACTION are the test groups.
        force: regenerate even if `out` already holds this dataset.
    """
    if num_scenes < 2:
        raise UserError(f"--scenes {num_scenes}: need at least 2 scenes (one for training, one for testing)")
    if seed < 0:
        raise UserError(f"--seed {seed}: the seed must be a non-negative integer")
    out = Path(out)
    groups = split_test_groups(num_scenes)
    if not force and is_current(out, seed, num_scenes):
        return _read_summary(out, groups)
    _clear(out)
    writer = LayoutWriter(out, test_groups=groups)
    per_side = SCENE_SIZE // TILE_SIZE
    for index in range(num_scenes):
        image, mask = render_scene(seed, index)
        for r in range(per_side):
            for c in range(per_side):
                win = (slice(r * TILE_SIZE, (r + 1) * TILE_SIZE), slice(c * TILE_SIZE, (c + 1) * TILE_SIZE))
                writer.add(f"{_group(index)}_r{r}_c{c}", _group(index), image[win], mask[win])
    summary = writer.finish()
    fileio.save_json(out / "demo.json", {"params": _params(seed, num_scenes), "test_groups": sorted(groups)})
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="dataset root to write, e.g. Dataset/demo")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical files")
    parser.add_argument("--scenes", type=int, default=DEFAULT_SCENES,
                        help=f"number of {SCENE_SIZE}x{SCENE_SIZE} scenes ({(SCENE_SIZE // TILE_SIZE) ** 2} "
                             f"tiles each); the last {TEST_FRACTION:.0%} are the test groups")
    parser.add_argument("--force", action="store_true", help="regenerate even if the dataset is already there")
    args = parser.parse_args(argv)
    fresh = not args.force and is_current(args.out, args.seed, args.scenes)
    start = time.perf_counter()
    summary = make_demo(args.out, seed=args.seed, num_scenes=args.scenes, force=args.force)
    if fresh:
        print(f"{args.out}: already there (seed {args.seed}, {args.scenes} scenes); --force regenerates")
    else:
        print(f"wrote {args.out} in {time.perf_counter() - start:.1f}s")
    print(summary.line())


if __name__ == "__main__":
    exit_on_user_error(main)
