"""Building-aware clustering, the maths of S3 (S3a split, S3b k-means and selection, S3c expanded CAM).

Pure functions on tensors; `step.make_lpcam` wires them to files. The k-means reproduces the
reference's `kmeans_pytorch.kmeans(distance='cosine')` without its
N x k x D intermediate: assignments come from normalised matrix products over chunks of rows.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from misc.camutils import max_normalise, upsample_crop

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 1024  # rows per k-means chunk: 1024 x 2048 float32 = 8 MiB, so the sum pass reads it from cache


# --------------------------------------------------------------------------------------- S3a / S3b.1-2

def sample_positives(positives: Sequence[str], num: int, seed: int = 3,
                     rng: np.random.RandomState | None = None) -> list[str]:
    """The reference's draw: `np.random.seed(3); np.random.choice(positives, num)`, WITH replacement
    (numpy's default), from a local RandomState so the global numpy state is untouched.

    `num == 0` gives every positive once, in list order (no draw). Pass `rng` to keep drawing from the
    same stream afterwards (the reference's k-means initialisations follow this draw).
    """
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    if num == 0:
        return list(positives)
    if not positives:
        raise ValueError("no positives to sample from")
    rng = np.random.RandomState(seed) if rng is None else rng
    return [positives[i] for i in rng.choice(len(positives), num)]


def split_features(feats: torch.Tensor, seed_map: torch.Tensor, select_thres: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Building-candidate and context feature vectors of one tile (S3b).

    Args:
        feats: [C, h, w] stage-4 features.
        seed_map: [H, W] seed CAM of the tile; resized to (h, w) with F.interpolate's default 'nearest'
            (for 256 tiles it picks pixel (16i, 16j)).
    Returns:
        (bld [n1, C] where map > thres, ctx [n2, C] where map < thres), rows in row-major pixel order;
        pixels exactly at the threshold are in neither.
    """
    if feats.dim() != 3 or seed_map.dim() != 2:
        raise ValueError(f"expected feats [C, h, w] and seed_map [H, W], "
                         f"got {tuple(feats.shape)} and {tuple(seed_map.shape)}")
    grid = F.interpolate(seed_map[None, None].float(), size=feats.shape[-2:])[0, 0].to(feats.device)
    pixels = feats.permute(1, 2, 0)  # [h, w, C]
    return pixels[grid > select_thres], pixels[grid < select_thres]


# --------------------------------------------------------------------------------------- S3b.3 k-means

def kmeans_cosine(x: torch.Tensor, k: int, tol: float = 5.0, max_iter: int = 300, seed: int = 3,
                  init_index: torch.Tensor | np.ndarray | None = None, chunk_size: int = DEFAULT_CHUNK
                  ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """k-means with cosine assignment and arithmetic-mean update (kmeans_pytorch, distance='cosine').

    Per iteration: assign each row to argmax cos(x, c) (= argmin 1 - cos); set each centre to the mean of
    its RAW member rows (an empty cluster takes a random row); stop when (sum_k ||c_k - c_k_prev||)^2 < tol
    or after `max_iter` iterations (a cap the reference lacks; hitting it is logged).
    Memory is O(N*D) for `x` itself plus O(chunk_size * (D + k)); `x` may be float16, each chunk is
    computed in float32 (float64 stays float64). A zero row has cosine 0 to every centre and goes to
    cluster 0, as the reference's NaN row does.

    Args:
        init_index: k distinct row indices of the initial centres; by default drawn with a
            torch.Generator seeded by `seed` (as are the empty-cluster replacements).
    Returns:
        (ids [N] int64, the assignment of the last iteration, made against the centres before the last
        update, as the reference returns; centres [k, D] float32 (or float64); iterations run).
    """
    n = x.shape[0]
    _check_k(n, k)
    gen = torch.Generator().manual_seed(seed)
    compute = torch.promote_types(x.dtype, torch.float32)
    index = _initial_index(n, k, gen, init_index)
    centres = x[index.to(x.device)].to(compute)
    iteration = 0
    while True:
        ids, sums, counts = _assign_and_sum(x, centres, compute, chunk_size)
        previous = centres
        centres = sums / counts.clamp(min=1).unsqueeze(1).to(compute)
        for j in torch.nonzero(counts == 0).flatten().tolist():  # reference order: by cluster index
            centres[j] = x[int(torch.randint(n, (1,), generator=gen))].to(compute)
        shift = torch.linalg.vector_norm(centres - previous, dim=1).sum().item()
        iteration += 1
        if shift ** 2 < tol:
            break
        if iteration >= max_iter:
            log.warning("k-means stopped at the --bac_max_iter cap of %d iterations: (sum of centre shifts)^2 = %.4g "
                        "is still >= tol %.4g", max_iter, shift ** 2, tol)
            break
    return ids, centres, iteration


def kmeans_cosine_broadcast(x: torch.Tensor, k: int, tol: float = 5.0, max_iter: int = 300, seed: int = 3,
                            init_index: torch.Tensor | np.ndarray | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The same algorithm written as kmeans_pytorch does: an N x k x D broadcast for the distances and a
    per-cluster loop for the update. For tests and the benchmark only (it needs N*k*D*4 bytes)."""
    n = x.shape[0]
    _check_k(n, k)
    gen = torch.Generator().manual_seed(seed)
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    centres = x[_initial_index(n, k, gen, init_index).to(x.device)].clone()
    iteration = 0
    while True:
        a = x.unsqueeze(1)
        b = centres.unsqueeze(0)
        dist = 1 - ((a / a.norm(dim=-1, keepdim=True)) * (b / b.norm(dim=-1, keepdim=True))).sum(dim=-1)
        ids = torch.argmin(dist, dim=1)
        previous = centres.clone()
        for j in range(k):
            members = x[ids == j]
            if members.shape[0] == 0:
                members = x[torch.randint(n, (1,), generator=gen).to(x.device)]
            centres[j] = members.mean(dim=0)
        shift = torch.sqrt(((centres - previous) ** 2).sum(dim=1)).sum().item()
        iteration += 1
        if shift ** 2 < tol or iteration >= max_iter:
            return ids, centres, iteration


def _check_k(n: int, k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n < k:
        raise ValueError(f"cannot pick {k} distinct initial centres from {n} rows")


def _initial_index(n: int, k: int, gen: torch.Generator, init_index: torch.Tensor | np.ndarray | None) -> torch.Tensor:
    if init_index is None:
        return torch.randperm(n, generator=gen)[:k]
    index = torch.as_tensor(np.asarray(init_index), dtype=torch.int64).flatten()
    if index.numel() != k or index.unique().numel() != k or index.min() < 0 or index.max() >= n:
        raise ValueError(f"init_index must hold {k} distinct row indices in [0, {n}), got {index.tolist()}")
    return index


def _assign_and_sum(x: torch.Tensor, centres: torch.Tensor, compute: torch.dtype, chunk_size: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pass over `x`: (argmax-cosine ids [N], per-cluster sums of raw rows [k, D], counts [k])."""
    k = centres.shape[0]
    unit = F.normalize(centres, dim=1)
    ids = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    sums = torch.zeros_like(centres)
    counts = torch.zeros(k, dtype=torch.int64, device=x.device)
    # float16 input: convert each chunk into one reused buffer (a fresh block per chunk costs page faults)
    buffer = None
    if x.dtype != compute:
        buffer = torch.empty(min(chunk_size, x.shape[0]), x.shape[1], dtype=compute, device=x.device)
    for start in range(0, x.shape[0], chunk_size):
        rows = x[start:start + chunk_size]
        rows = buffer[:rows.shape[0]].copy_(rows) if buffer is not None else rows
        # argmax_k cos(x, c_k) = argmax_k x.c_k/|c_k|: the row norm is a positive per-row factor, so rows
        # need no normalising (a zero row scores 0 everywhere and goes to cluster 0 either way)
        chunk_ids = (rows @ unit.T).argmax(dim=1)
        ids[start:start + rows.shape[0]] = chunk_ids
        if rows.is_cuda:  # a one-hot matmul keeps the sum deterministic (CUDA index_add_ uses atomics)
            sums += F.one_hot(chunk_ids, k).to(compute).T @ rows
        else:
            sums.index_add_(0, chunk_ids, rows)
        counts += torch.bincount(chunk_ids, minlength=k)
    return ids, sums, counts


# --------------------------------------------------------------------------------------- S3b.4 selection

def prototype_scores(centres: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """p(c) = sigmoid(w . c) [k]: the classifier's building probability of a uniform map equal to c."""
    return torch.sigmoid(centres.float() @ w.float().flatten())


def select_prototypes(bld_centres: torch.Tensor, ctx_centres: torch.Tensor, w: torch.Tensor,
                      class_thres: float = 0.9, context_thres: float = 0.9, context_thres_low: float = 0.0
                      ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Building-aware selection: P = {c in C_bld : p(c) > class_thres},
    Q = {c in C_ctx : context_thres_low <= p(c) < context_thres} (the reference's low bound is 0).

    If no building centre passes, P falls back to the top-1 building centre by p, with a warning
    instead of the reference's crash. `info` holds the scores and chosen indices for logging.
    """
    bld_scores, ctx_scores = prototype_scores(bld_centres, w), prototype_scores(ctx_centres, w)
    bld_index = torch.nonzero(bld_scores > class_thres).flatten()
    fallback = bld_index.numel() == 0 and bld_scores.numel() > 0
    if fallback:  # deviation: the reference crashes on an empty P
        bld_index = bld_scores.argmax().reshape(1)
        log.warning("no building cluster has sigmoid(w.c) > --bac_class_thres %.3g (best %.3f); using the top-1 "
                    "building cluster as the only prototype", class_thres, bld_scores.max().item())
    ctx_index = torch.nonzero((ctx_scores >= context_thres_low) & (ctx_scores < context_thres)).flatten()
    info = {"bld_scores": bld_scores, "ctx_scores": ctx_scores, "bld_index": bld_index, "ctx_index": ctx_index,
            "fallback": fallback}
    return bld_centres[bld_index], ctx_centres[ctx_index], info


# --------------------------------------------------------------------------------------- S3c expanded CAM

def mean_cosine(feats: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """(1/|P|) sum_p cos(f(x), p) for feats [B, C, h, w] -> [B, h, w].

    The mean of cosines equals the dot product of f/|f| with the mean of the unit prototypes, so it is
    one 1x1 convolution; zero vectors have cosine 0 (F.cosine_similarity's convention).
    """
    direction = F.normalize(prototypes.float(), dim=1).mean(dim=0)
    return torch.einsum("bchw,c->bhw", F.normalize(feats.float(), dim=1), direction.to(feats.device))


def expanded_cam(feats_per_scale: Sequence[torch.Tensor], prototypes: torch.Tensor, context: torch.Tensor,
                 size: tuple[int, int]) -> torch.Tensor:
    """The BAC expanded CAM (S3c) of B same-size tiles, max-normalised: [B, H, W] in [0, 1).

    Per scale: A_s = mean_p cos(f_s, p), minus mean_q cos(f_s, q) then ReLU when |Q| > 0; then
    E = mean_s crop(up(A_s)) and E / (max E + 1e-5) (the reference has no epsilon: NaN when the context cancels all).

    Args:
        feats_per_scale: per scale, flip-summed features [B, C, h_s, w_s] (or [C, h_s, w_s] for one tile).
        prototypes: P [|P|, C], at least one row. context: Q [|Q|, C], may be empty.
    """
    if prototypes.shape[0] == 0:
        raise ValueError("expanded_cam needs at least one building prototype")
    total = None
    for feats in feats_per_scale:
        feats = feats.unsqueeze(0) if feats.dim() == 3 else feats
        att = mean_cosine(feats, prototypes)
        if context.shape[0] > 0:
            att = F.relu(att - mean_cosine(feats, context))
        up = upsample_crop(att.unsqueeze(1), size)[:, 0]
        total = up if total is None else total + up
    mean = total / len(feats_per_scale)
    return max_normalise(mean.unsqueeze(1))[:, 0]  # deviation: + 1e-5, so an all-zero map gives 0, not NaN


def format_scores(scores: torch.Tensor, chosen: torch.Tensor | None = None) -> str:
    """'0.95*,0.42,...' with chosen entries starred, for the summary log line."""
    marks = set(chosen.tolist()) if chosen is not None else set()
    return ",".join(f"{s:.3f}{'*' if i in marks else ''}" for i, s in enumerate(scores.tolist())) or "-"


__all__ = ["sample_positives", "split_features", "kmeans_cosine", "kmeans_cosine_broadcast", "prototype_scores",
           "select_prototypes", "mean_cosine", "expanded_cam", "format_scores"]
