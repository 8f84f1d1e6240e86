"""A synthetic aerial building dataset in the RRDSD layout (SPEC section 1), for the demo pipeline and the tests.

Why: the real RRDSD tiles cannot be downloaded here, yet the pipeline (S1 classifier -> CAM -> BAC -> AR)
needs a dataset with image-level labels and roof masks to run end to end. This module draws one from a seed,
deterministically, with numpy and OpenCV only (about half a second of CPU per scene), and writes it with
`voc12.layout.LayoutWriter`.

What it draws: `num_scenes` scenes of 768x768 px at about 12.5 cm/px, each cut into a 3x3 grid of 256x256 tiles
(named `demo_s03_r1_c2`, grouped by scene as RRDSD tiles are by parent). Each scene is a 3x3 plan of districts:
- dense built-up cells (a contiguous core): rows of houses, terraces, apartment blocks or warehouses along the
  scene's street grid, gaps filled with rotated boxes and sheds; gable, hip or flat roofs (some L-shaped, some
  with rooftop units), in terracotta, brown, grey concrete, white, dark, and grey/blue/green metal; every
  building casts a shadow (one sun direction per scene) and has darkened eaves; garden trees may overhang roofs;
  small paved yards. Most of these tiles come out 25-70% roof (positives), a few below 25%;
- sparse cells with one to three houses: 0-25% roof, dropped from the image-level lists by the 25% rule;
- empty cells: striped fields, forest, meadow (trees, hedgerows, bare soil), parking lots and plazas: negatives.
One to three roads (asphalt, kerbs in towns, lane dashes, vehicles) cross each scene, mostly outside the towns.
Roads, lots and plazas share the grey of concrete and metal roofs, so colour alone does not separate the classes
(a threshold on a tile's mean colour gets about 70%): shadows, eaves, ridges and shapes do. Finally each scene
gets texture grain, a brightness / colour shift, haze, a slight blur and sensor noise. With the defaults (30
scenes, seed 0): 270 tiles, about 115 positives, 120 negatives and 30 dropped; the last 7 scenes are the test groups.

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
from voc12.layout import LayoutSummary, LayoutWriter

GENERATOR_VERSION = 1  # bump when the drawing changes, so an old dataset is regenerated
SCENE_SIZE = 768
TILE_SIZE = 256
DEFAULT_SCENES = 30
TEST_FRACTION = 0.22

KINDS = ("dense", "sparse", "field", "forest", "meadow", "lot")
DENSE, SPARSE, FIELD, FOREST, MEADOW, LOT = range(len(KINDS))

# Mean RGB of ground covers; each parcel jitters its colour.
GROUND = {
    "grass": (88, 116, 62), "lawn": (98, 128, 70), "dry_grass": (152, 146, 98), "crop": (104, 132, 66),
    "stubble": (188, 170, 118), "soil": (140, 112, 84), "dark_soil": (108, 88, 68), "forest_floor": (72, 82, 52),
}
GROUND_BY_KIND = {  # cover probabilities of a parcel by the district of its seed
    DENSE: {"lawn": 0.45, "grass": 0.3, "dry_grass": 0.25},
    SPARSE: {"grass": 0.45, "dry_grass": 0.4, "lawn": 0.15},
    FIELD: {"crop": 0.3, "stubble": 0.25, "dark_soil": 0.2, "dry_grass": 0.15, "soil": 0.1},
    FOREST: {"forest_floor": 0.7, "grass": 0.3},
    MEADOW: {"grass": 0.5, "dry_grass": 0.35, "lawn": 0.15},
    LOT: {"grass": 0.6, "dry_grass": 0.4},
}
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
ROOF_MIX = {  # material probabilities per district style
    "residential": {"terracotta": 0.33, "brown": 0.12, "grey_concrete": 0.18, "dark": 0.2, "white": 0.07,
                    "grey_metal": 0.1},
    "industrial": {"grey_concrete": 0.3, "white": 0.18, "grey_metal": 0.22, "blue_metal": 0.12,
                   "green_metal": 0.08, "dark": 0.1},
    "mixed": {"terracotta": 0.2, "brown": 0.06, "grey_concrete": 0.27, "dark": 0.15, "white": 0.1,
              "grey_metal": 0.14, "blue_metal": 0.05, "green_metal": 0.03},
}
BUILDING_MIX = {  # building type probabilities per district style
    "residential": {"house": 0.6, "terrace": 0.25, "block": 0.15},
    "industrial": {"warehouse": 0.5, "block": 0.3, "house": 0.2},
    "mixed": {"house": 0.4, "terrace": 0.15, "block": 0.25, "warehouse": 0.2},
}
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
        self.shadow_len = rng.uniform(0.3, 0.55)             # shadow length per unit of height
        self.street_angle = rng.uniform(0, math.pi / 2)      # the block grid's orientation
        self.style = _choice(rng, {"residential": 0.45, "industrial": 0.25, "mixed": 0.3})
        self.kinds = self._plan()
        self.kind_map = np.repeat(np.repeat(self.kinds, TILE_SIZE, 0), TILE_SIZE, 1)
        self.cars: list[tuple[float, float, float, tuple[int, int, int]]] = []   # x, y, angle, colour
        self.buildings: list[tuple[list[_Part], str, float]] = []                 # parts, material, height
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
            elif rng.random() < 0.12:
                kinds[r, c] = SPARSE
            else:
                kinds[r, c] = (FIELD, FOREST, MEADOW, LOT)[int(rng.choice(4, p=[0.28, 0.2, 0.27, 0.25]))]
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
            cover = _choice(rng, GROUND_BY_KIND[kind])
            colours[i] = np.array(GROUND[cover]) * rng.uniform(0.88, 1.12) * rng.uniform(0.95, 1.05, 3)
            if kind == FIELD and cover != "soil":
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
        for kind, (lo, hi) in ((MEADOW, (1, 4)), (FIELD, (0, 2)), (LOT, (0, 2)), (SPARSE, (0, 3)), (DENSE, (0, 2))):
            for x, y in self._points_in(kind, int(rng.integers(lo, hi + 1)) * int((self.kinds == kind).sum())):
                axes = (int(rng.uniform(15, 70)), int(rng.uniform(10, 45)))
                cv2.ellipse(mask, (int(x), int(y)), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        soft = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 8) + 0.5 * (_lowfreq(rng, size, 40) - 0.5)
        patch = soft > 0.5
        colour = np.array(GROUND["soil"], np.float32) * rng.uniform(0.9, 1.15)
        self.img[patch] = colour * (0.85 + 0.3 * _lowfreq(rng, size, 20))[patch][:, None]
        self.tex[patch] = 0.09

    # ---- paved confusers -----------------------------------------------------------------------------------
    def draw_lots(self) -> None:
        """Parking lots (asphalt or concrete, stall lines, cars) and plazas (paving joints); small yards in towns."""
        rng = self.rng
        for x, y in self._points_in(LOT, int((self.kinds == LOT).sum()) * int(rng.integers(1, 3)), pad=-70):
            self._lot(x, y, rng.uniform(130, 250), rng.uniform(100, 220), big=True)
        for x, y in self._points_in(DENSE, int((self.kinds == DENSE).sum()) * int(rng.integers(0, 3))):
            self._lot(x, y, rng.uniform(40, 110), rng.uniform(35, 90), big=False)
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
        asphalt = rng.random() < 0.5
        g = rng.uniform(95, 135) if asphalt else rng.uniform(135, 195)
        colour = np.array([g, g * rng.uniform(0.98, 1.02), g * rng.uniform(0.97, 1.04)], np.float32)
        if big and rng.random() < 0.65:  # parking: rows of stalls 38 px deep around 24 px aisles, lines 22 px apart
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
        else:  # plaza / yard: paving joints
            step = rng.uniform(25, 45)
            joints = (np.mod(u, step) < 1) | (np.mod(v, step) < 1)
            pattern = np.where(joints, 0.93, 1.0)
        fill = colour * pattern[..., None].astype(np.float32)
        self._paint(win, inside, np.broadcast_to(fill, inside.shape + (3,)), 0.04)

    def draw_roads(self) -> None:
        """One to three roads right across the scene, some bent, with kerbs in towns, dashes and cars."""
        rng, size = self.rng, self.size
        towny = bool((self.kinds == DENSE).any())
        road = np.zeros((size, size), np.uint8)
        kerb = np.zeros((size, size), np.uint8)
        dashes = np.zeros((size, size), np.uint8)
        for _ in range(int(rng.integers(1, 4))):
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

    # ---- buildings -----------------------------------------------------------------------------------------
    def draw_buildings(self) -> None:
        """Rows of buildings along the street grid in dense cells, then gap filling (some rotated boxes, then
        sheds); 1-3 houses in sparse cells. Footprints stay 8 px inside their district and off the roads."""
        rng = self.rng
        free = self.occupied == 0
        dense = cv2.erode((self.kind_map == DENSE).astype(np.uint8), np.ones((17, 17), np.uint8)).astype(bool)
        sparse = cv2.erode((self.kind_map == SPARSE).astype(np.uint8), np.ones((41, 41), np.uint8)).astype(bool)
        dense &= free
        sparse &= free
        if dense.any():
            self._rows(dense)
        for r, c in np.argwhere(self.kinds == DENSE):
            self._scatter(r, c, dense, 150, 10**6, lambda: _choice(rng, BUILDING_MIX[self.style]))
            self._scatter(r, c, dense, 60, 10**6, lambda: "shed")
        for r, c in np.argwhere(self.kinds == SPARSE):
            self._scatter(r, c, sparse, 40, int(rng.integers(1, 4)), lambda: "house")
        for parts, _, height in self.buildings:
            self._cast_shadow(parts, height)

    def _scatter(self, r: int, c: int, allowed: np.ndarray, attempts: int, wanted: int, btype) -> None:
        """Up to `wanted` buildings of type `btype()` at random free spots of cell (r, c)."""
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
            if self._try_place(self._sample_building(btype(), aligned=rng.random() < 0.8), x, y, allowed):
                placed, ys, misses = placed + 1, None, 0
            else:
                misses += 1

    def _rows(self, allowed: np.ndarray) -> None:
        """Rows of buildings along the street grid, laid out from the edge of each dense cell's free area."""
        rng = self.rng
        c, s = math.cos(self.street_angle), math.sin(self.street_angle)
        for r, col in np.argwhere(self.kinds == DENSE):
            ys, xs = np.nonzero(allowed[r * TILE_SIZE:(r + 1) * TILE_SIZE, col * TILE_SIZE:(col + 1) * TILE_SIZE])
            if len(xs) == 0:
                continue
            xs, ys = xs + col * TILE_SIZE, ys + r * TILE_SIZE
            pu, pv = xs * c + ys * s, -xs * s + ys * c           # the free area in the street frame
            skip = rng.uniform(0.0, 0.15)      # share of empty plots: varies the cover from cell to cell
            v = pv.min() + rng.uniform(0, 8)
            while v < pv.max() - 30:
                btype = _choice(rng, BUILDING_MIX[self.style])
                row, u = [], pu.min() + rng.uniform(0, 8)
                while u < pu.max() - 30:
                    building = self._sample_building(btype, aligned=True, wings=False)
                    row.append((u + building[2] / 2, building))
                    u += building[2] + rng.uniform(8, 22)
                depth = max(b[3] for _, b in row)
                for u_c, building in row:
                    if rng.random() < skip:
                        continue
                    v_c = v + building[3] / 2 + rng.uniform(0, depth - building[3] + 1e-6)
                    self._try_place(building, u_c * c - v_c * s, u_c * s + v_c * c, allowed)
                v += depth + rng.uniform(10, 24)

    def _try_place(self, building: tuple[list[_Part], float, float, float], x: float, y: float,
                   allowed: np.ndarray) -> bool:
        """Move `building` (from `_sample_building`) to (x, y), shrunk if needed; True if it fits and was kept."""
        parts, height = building[0], building[1]
        gap = self.rng.uniform(4, 10)
        for scale in (1.0, 0.8, 0.65):
            moved = [_Part(p.cx * scale + x, p.cy * scale + y, p.w * scale, p.h * scale, p.angle, p.roof, p.tone)
                     for p in parts]
            if min(p.h for p in moved) >= 28 and self._fits(moved, allowed, gap):
                self.buildings.append((moved, _choice(self.rng, ROOF_MIX[self.style]), height))
                return True
        return False

    def _sample_building(self, btype: str, aligned: bool, wings: bool = True
                         ) -> tuple[list[_Part], float, float, float]:
        """A random building of type `btype` centred at the origin: (parts, height, width along the street,
        depth across it), all in px. Aligned buildings follow the street grid; the others are rotated boxes."""
        rng = self.rng
        if btype == "house":
            w, h = rng.uniform(56, 105), rng.uniform(46, 76)
            roof = _choice(rng, {"gable": 0.5, "hip": 0.35, "flat": 0.15})
            height = rng.uniform(40, 70)
        elif btype == "shed":
            w, h = rng.uniform(34, 56), rng.uniform(30, 44)
            roof = _choice(rng, {"gable": 0.3, "flat": 0.7})
            height = rng.uniform(22, 35)
        elif btype == "terrace":
            w, h = rng.uniform(120, 220), rng.uniform(48, 66)
            roof = _choice(rng, {"gable": 0.8, "flat": 0.2})
            height = rng.uniform(45, 70)
        elif btype == "block":
            w, h = rng.uniform(110, 200), rng.uniform(56, 86)
            roof = _choice(rng, {"flat": 0.6, "gable": 0.3, "hip": 0.1})
            height = rng.uniform(80, 150)
        else:
            w, h = rng.uniform(150, 300), rng.uniform(100, 200)
            roof = _choice(rng, {"flat": 0.75, "gable": 0.25})
            height = rng.uniform(55, 100)
        across = rng.random() < 0.2 and btype == "house"   # ridge across the street
        angle = self.street_angle + (rng.normal(0, 0.02) if aligned else rng.uniform(0, math.pi))
        if across:
            angle += math.pi / 2
        parts = [_Part(0.0, 0.0, w, h, angle, roof)]
        if btype == "terrace":  # a row of 3-5 units whose roofs differ slightly in tone
            n = int(rng.integers(3, 6))
            c, s = math.cos(angle), math.sin(angle)
            offsets = (np.arange(n) - (n - 1) / 2) * w / n
            parts = [_Part(o * c, o * s, w / n + 0.5, h, angle, roof, rng.uniform(0.88, 1.12)) for o in offsets]
            return parts, height, w, h
        extent_u, extent_v = (h, w) if across else (w, h)
        if wings and btype not in ("warehouse", "shed") and not across and rng.random() < 0.28:
            # L-shape: a perpendicular wing at one end
            wing_w, wing_l = h * rng.uniform(0.6, 0.9), h * rng.uniform(0.4, 0.8)
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
        """True (and the footprint is marked as taken) if every part lies in `allowed` and `gap` px off others."""
        corners = np.concatenate([_rect_corners(p, gap) for p in parts])
        x0, y0 = np.floor(corners.min(0)).astype(int)
        x1, y1 = np.ceil(corners.max(0)).astype(int) + 1
        if x0 < 0 or y0 < 0 or x1 > self.size or y1 > self.size:
            return False
        tips = np.concatenate([_rect_corners(p, -0.5) for p in parts]).astype(int)   # cheap early rejections
        if not allowed[tips[:, 1], tips[:, 0]].all():
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
        """Paint every roof part: facet shading (gable, hip), ridge, stripes, rooftop units; then dark eaves."""
        rng = self.rng
        toward_sun = -self.shadow_dir
        for parts, material, _ in self.buildings:
            lo, hi, striped = ROOFS[material]
            t = rng.random()
            base = ((1 - t) * np.array(lo) + t * np.array(hi)) * rng.uniform(0.96, 1.04, 3)
            base = base.astype(np.float32)
            slope = rng.uniform(0.08, 0.18)
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
                if p.roof in ("gable", "hip"):
                    along_v = np.sign(v) * sv                     # facets facing +v / -v
                    if p.roof == "hip":
                        end = (p.w / 2 - np.abs(u)) < (p.h / 2 - np.abs(v))
                        along_v = np.where(end, np.sign(u) * su, along_v)
                    shade = 1 + slope * along_v
                    ridge = (np.abs(v) < 1.5) & (np.abs(u) < p.w / 2 - (p.h / 2 if p.roof == "hip" else 0))
                    shade = np.where(ridge, shade * 1.12, shade)
                if striped:
                    period = rng.uniform(3.5, 6.0)
                    coord = u if p.roof == "flat" else v
                    shade = shade * (1 + 0.05 * np.sin(2 * np.pi * coord / period))
                if p.roof == "flat" and p.w > 90:
                    shade = shade * self._rooftop_units(p, u, v, su, sv)
                colour = base * (p.tone * shade[..., None]).astype(np.float32)
                self._paint(win, inside, colour, 0.025)
                self.roof[win] |= inside
        dist = cv2.distanceTransform(self.roof.astype(np.uint8), cv2.DIST_L2, 3)
        eave = 1 - 0.22 * np.exp(-dist / 2.0)
        self.img[self.roof] *= eave[self.roof][:, None]

    def _rooftop_units(self, p: _Part, u: np.ndarray, v: np.ndarray, su: float, sv: float) -> np.ndarray:
        """Multiplicative shade of a few HVAC units / skylights on a flat roof, each with a small shadow."""
        rng = self.rng
        shade = np.ones(np.broadcast_shapes(u.shape, v.shape), np.float32)
        for _ in range(int(rng.integers(0, 7))):
            uw, vh = rng.uniform(8, 22), rng.uniform(8, 18)
            uc = rng.uniform(-p.w / 2 + uw, p.w / 2 - uw)
            vc = rng.uniform(-p.h / 2 + vh, p.h / 2 - vh)
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
        counts = {FOREST: (70, 110), MEADOW: (4, 18), LOT: (3, 10), SPARSE: (4, 12), DENSE: (0, 5), FIELD: (0, 4)}
        for kind, (lo, hi) in counts.items():
            for _ in range(int((self.kinds == kind).sum())):
                pts = self._points_in(kind, int(rng.integers(lo, hi + 1)), pad=20 if kind == FOREST else 0)
                if kind != FOREST:  # rooted neither on a road nor on a roof (but crowns may overhang roofs)
                    under = self.occupied[pts[:, 1].astype(int), pts[:, 0].astype(int)]
                    pts = pts[(under != 1) & (under != 2)]
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
    scene.draw_roads()
    scene.draw_buildings()
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
    for folder in ("JPEGImages", "SegmentationClassAug"):
        for path in sorted((out / folder).glob("demo_s*.png")):
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
