"""Pixel pairs, boundary-aware affinities and the random walk of the optional IRN stage (S10).

A pair is a source pixel i and a destination j = i + d, with d one of the `search_directions` of
radius r (the reference: 5; IRN: 10): the half disk 0 < dy^2 + dx^2 < r^2 with dy > 0, or dy = 0 and dx > 0, so
each unordered pair of pixels closer than r is met exactly once.

The path of a pair is every grid cell within distance < 1 of the straight line from i to j inside
their bounding box (both ends included). Any 8-connected boundary line crossing the segment has a
cell on the path, so a thin diagonal edge cannot be jumped. The affinity of the pair is
a_ij = 1 - max over the path of the edge probability, as in IRN.

Two layouts of the pairs:
- training (`PathIndex.sources`, `destinations`): sources are the cells whose every destination lies
  inside the map, rows [0, H - m) and columns [m, W - m) with the margin m = r - 1;
- inference (`affinity_full`): the edge map is padded with 1 (a boundary) so every pixel is a source;
  pairs leaving the map get affinity 0 and are dropped from the transition matrix.

The random walk: A = affinities^beta with a unit diagonal, symmetric; T = D^-1 A (rows sum to 1);
x <- T^(2^exp_times) x, which averages the seed over the pixels reachable without crossing a boundary.
IRN writes the same walk as x A D^-1 on row vectors; A is symmetric, so the two are transposes.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from misc.errors import UserError


def search_directions(radius: int) -> list[tuple[int, int]]:
    """(dy, dx) offsets of one half of the open disk of `radius`, in row-major order."""
    directions = []
    for dy in range(radius):
        for dx in range(-radius + 1, radius):
            if (dy > 0 or dx > 0) and dy * dy + dx * dx < radius * radius:
                directions.append((dy, dx))
    return directions


def path_cells(dy: int, dx: int) -> list[tuple[int, int]]:
    """Cells (y, x) relative to the source within distance < 1 of the line to (dy, dx), source first."""
    length_sq = dy * dy + dx * dx
    cells = []
    for y in range(min(0, dy), max(0, dy) + 1):
        for x in range(min(0, dx), max(0, dx) + 1):
            # squared distance of (y, x) to the line through (0, 0) and (dy, dx)
            if (dy * x - dx * y) ** 2 < length_sq:
                cells.append((y, x))
    return sorted(cells, key=lambda c: (abs(c[0]) + abs(c[1]), c))


class PathIndex:
    """Directions, paths and the shifted views that turn a map into per-pair values."""

    def __init__(self, radius: int = 5) -> None:
        if radius < 2:
            raise UserError(f"the pair radius must be at least 2, got {radius}; raise --irn_radius (reference: 5)")
        self.radius = radius
        self.margin = radius - 1  # the largest |dy| or |dx| of a direction
        self.directions = search_directions(radius)
        paths = [path_cells(dy, dx) for dy, dx in self.directions]
        self.cells = sorted({c for path in paths for c in path})  # every offset any path visits
        position = {c: k for k, c in enumerate(self.cells)}
        longest = max(len(p) for p in paths)
        # [D, L] cell ids; short paths repeat their last cell, which leaves the max unchanged
        self.path_ids = torch.tensor([[position[c] for c in p] + [position[p[-1]]] * (longest - len(p)) for p in paths])

    @property
    def num_directions(self) -> int:
        return len(self.directions)

    def source_grid(self, height: int, width: int) -> tuple[int, int]:
        """(rows, columns) of the training-layout sources of a height x width map."""
        rows, cols = height - self.margin, width - 2 * self.margin
        if rows < 1 or cols < 1:
            raise ValueError(f"a {height}x{width} map is too small for pairs of radius {self.radius}")
        return rows, cols

    def shifted(self, x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
        """x[..., s + (dy, dx)] for every training-layout source s: [..., rows, cols]."""
        rows, cols = self.source_grid(x.shape[-2], x.shape[-1])
        left = self.margin + dx
        return x[..., dy:dy + rows, left:left + cols]

    def sources(self, x: torch.Tensor) -> torch.Tensor:
        """[..., H, W] -> [..., rows, cols], the value at each source."""
        return self.shifted(x, 0, 0)

    def destinations(self, x: torch.Tensor) -> torch.Tensor:
        """[..., H, W] -> [..., D, rows, cols], the value at each source's destination per direction."""
        return torch.stack([self.shifted(x, dy, dx) for dy, dx in self.directions], dim=-3)


def edge_to_affinity(edge: torch.Tensor, index: PathIndex) -> torch.Tensor:
    """Edge probabilities [B, H, W] -> affinities [B, D, rows, cols] = 1 - max of the edge on each path."""
    cells = torch.stack([index.shifted(edge, cy, cx) for cy, cx in index.cells], dim=1)  # [B, U, rows, cols]
    on_path = cells[:, index.path_ids.to(edge.device)]  # [B, D, L, rows, cols]
    return 1 - on_path.amax(dim=2)


def pair_labels(label: torch.Tensor, index: PathIndex, ignore: int = 255) -> dict[str, torch.Tensor]:
    """Pair classes [B, D, rows, cols] (float 0/1) of a label map [B, H, W] with values {0, 1, ignore}.

    bg_pos: both background; fg_pos: both the same non-background class; neg: different classes.
    Pairs touching an ignored pixel belong to none.
    """
    src = index.sources(label).unsqueeze(1)
    dst = index.destinations(label)
    valid = (src != ignore) & (dst != ignore)
    same = src == dst
    return {"bg_pos": (valid & same & (src == 0)).float(),
            "fg_pos": (valid & same & (src != 0)).float(),
            "neg": (valid & ~same).float()}


def displacement_pairs(displacement: torch.Tensor, index: PathIndex) -> torch.Tensor:
    """delta_j - delta_i [B, 2, D, rows, cols] of a displacement field [B, 2, H, W]."""
    return index.destinations(displacement) - index.sources(displacement).unsqueeze(2)


def direction_offsets(index: PathIndex, device: torch.device | str = "cpu") -> torch.Tensor:
    """p_j - p_i as [1, 2, D, 1, 1] (dy, dx), to broadcast against `displacement_pairs`."""
    return torch.tensor(index.directions, dtype=torch.float32, device=device).t()[None, :, :, None, None]


def affinity_full(edge: torch.Tensor, index: PathIndex) -> torch.Tensor:
    """Affinities [D, H, W] with every pixel of an edge map [H, W] as a source (inference layout)."""
    m = index.margin
    padded = F.pad(edge[None, None], (m, m, 0, m), mode="constant", value=1.0)[0]  # outside = boundary
    return edge_to_affinity(padded, index)[0]


def transition_matrix(affinity: torch.Tensor, index: PathIndex, beta: float, dense: bool = False) -> torch.Tensor:
    """T = D^-1 A with A = affinity^beta over the pairs inside the map plus a unit diagonal.

    affinity: [D, H, W] from `affinity_full`. Returns [N, N] (N = H * W), sparse COO or dense;
    every row sums to 1 (the diagonal keeps isolated pixels, e.g. on a boundary, at their own value).
    """
    _, height, width = affinity.shape
    device = affinity.device
    n = height * width
    ys, xs = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    diagonal = torch.arange(n, device=device)
    rows, cols, values = [diagonal], [diagonal], [torch.ones(n, device=device)]
    for k, (dy, dx) in enumerate(index.directions):
        inside = (ys + dy < height) & (xs + dx >= 0) & (xs + dx < width)
        src = (ys * width + xs)[inside]
        dst = ((ys + dy) * width + xs + dx)[inside]
        weight = affinity[k][inside].float().clamp(min=0).pow(beta)
        rows += [src, dst]  # A is symmetric: each pair both ways
        cols += [dst, src]
        values += [weight, weight]
    rows_t, cols_t, values_t = torch.cat(rows), torch.cat(cols), torch.cat(values)
    degree = torch.zeros(n, device=device).index_add_(0, rows_t, values_t)
    matrix = torch.sparse_coo_tensor(torch.stack([rows_t, cols_t]), values_t / degree[rows_t], (n, n),
                                     check_invariants=True).coalesce()  # cheap next to the walk
    return matrix.to_dense() if dense else matrix


def random_walk(x: torch.Tensor, transition: torch.Tensor, exp_times: int) -> torch.Tensor:
    """T^(2^exp_times) applied to each row of x [C, N].

    A dense T is squared exp_times times (the reference's form; O(N^3), fast on a GPU). A sparse T is
    applied 2^exp_times times instead: the same product in exact arithmetic, at O(2^k * nnz), which
    is what a CPU can afford at N = 4096 (a 256 x 256 tile).
    """
    y = x.t().float()  # [N, C]
    if transition.is_sparse:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            csr = transition.to_sparse_csr()  # CSR products are ~20x faster than COO ones on a CPU
        for _ in range(2 ** exp_times):
            y = csr @ y
        return y.t()
    power = transition
    for _ in range(exp_times):
        power = power @ power
    return (power @ y).t()


def propagate_to_edge(seed: torch.Tensor, edge: torch.Tensor, index: PathIndex, beta: float, exp_times: int,
                      dense: bool = False) -> torch.Tensor:
    """Random walk of seed * (1 - edge) within the boundaries of `edge`: seed [C, H, W], edge [H, W] in [0, 1]."""
    channels, height, width = seed.shape
    trans = transition_matrix(affinity_full(edge, index), index, beta, dense=dense)
    x = (seed * (1 - edge)).reshape(channels, height * width)
    return random_walk(x, trans, exp_times).reshape(channels, height, width)
