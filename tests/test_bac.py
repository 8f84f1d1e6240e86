"""misc/bac.py (S3 maths) and step/make_lpcam.py (S3a -> S3b -> S3c on the tiny dataset)."""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from misc import bac, fileio
from misc.errors import UserError
from net import cam
from net.checkpoints import deploy_net, save_net
from step import make_cam, make_lpcam
from tests.conftest import stage_args

R2 = 1 / math.sqrt(2)


pytestmark = pytest.mark.usefixtures("cpu_runtime")


# ----------------------------------------------------------------------------- sampling (S3b.1)

def test_sample_positives_matches_reference_draw_with_replacement():
    names = [f"t{i}" for i in range(7)]
    state = np.random.get_state()
    drawn = bac.sample_positives(names, 20, seed=3)
    assert np.array_equal(np.random.get_state()[1], state[1])  # global numpy state untouched
    np.random.seed(3)  # the reference: np.random.choice(indices of positives, num)
    reference = np.random.choice(np.arange(len(names)), 20)
    np.random.set_state(state)
    assert drawn == [names[i] for i in reference]
    assert len(set(drawn)) < len(drawn)  # with replacement
    assert bac.sample_positives(names, 20, seed=3) == drawn
    assert bac.sample_positives(names, 0) == names


def test_sample_positives_rng_continues_like_the_global_stream():
    rng = np.random.RandomState(3)
    bac.sample_positives(["a", "b", "c"], 4, rng=rng)
    np.random.seed(3)
    np.random.choice(3, 4)
    expected = np.random.choice(50, 5, replace=False)  # what kmeans_pytorch's init draws next
    assert rng.choice(50, 5, replace=False).tolist() == expected.tolist()


# ----------------------------------------------------------------------------- split (S3b.2)

def test_split_features_nearest_grid_and_threshold_drop():
    feats = torch.arange(8, dtype=torch.float32).reshape(2, 2, 2)  # C=2, pixel (i,j) = (2i+j, 4+2i+j)
    seed = torch.full((4, 4), 0.5)  # pixels not on the nearest grid would flip the answer if picked
    seed[0::2, 0::2] = torch.tensor([[0.5, 0.1], [0.05, 0.9]])  # picks (0,0) (0,2) (2,0) (2,2)
    seed[1::2, :] = 0.0
    bld, ctx = bac.split_features(feats, seed, 0.1)
    assert bld.tolist() == [[0.0, 4.0], [3.0, 7.0]]  # (0,0) and (1,1), row-major
    assert ctx.tolist() == [[2.0, 6.0]]  # (1,0); (0,1) sits exactly at the threshold and is dropped


# ----------------------------------------------------------------------------- k-means (S3b.3)

def _blobs(n: int = 800, d: int = 16, k: int = 5, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    centres = torch.rand(k, d, generator=gen) * 3
    return (centres[torch.randint(k, (n,), generator=gen)] + torch.rand(n, d, generator=gen)).relu()


@pytest.mark.parametrize("data", ["blobs", "uniform"])
@pytest.mark.parametrize("chunk", [97, 1000, 100000])
def test_chunked_kmeans_matches_broadcast(data, chunk):
    x = _blobs() if data == "blobs" else torch.rand(600, 8, generator=torch.Generator().manual_seed(1))
    ids, centres, iters = bac.kmeans_cosine(x.double(), 5, tol=1e-10, seed=7, chunk_size=chunk)
    ids_b, centres_b, iters_b = bac.kmeans_cosine_broadcast(x.double(), 5, tol=1e-10, seed=7)
    assert iters == iters_b and iters > 2
    assert torch.equal(ids, ids_b)
    torch.testing.assert_close(centres, centres_b, rtol=0, atol=1e-12)
    ids32, centres32, _ = bac.kmeans_cosine(x, 5, tol=1e-6, seed=7, chunk_size=chunk)
    ids32_b, centres32_b, _ = bac.kmeans_cosine_broadcast(x, 5, tol=1e-6, seed=7)
    assert torch.equal(ids32, ids32_b)
    torch.testing.assert_close(centres32, centres32_b, rtol=1e-5, atol=1e-5)


def test_kmeans_float16_input_is_computed_in_float32():
    x = _blobs().half()
    ids, centres, _ = bac.kmeans_cosine(x, 5, tol=1e-6, seed=1, chunk_size=256)
    ids_b, centres_b, _ = bac.kmeans_cosine_broadcast(x.float(), 5, tol=1e-6, seed=1)
    assert centres.dtype == torch.float32 and torch.equal(ids, ids_b)
    torch.testing.assert_close(centres, centres_b, rtol=1e-5, atol=1e-5)


def test_kmeans_empty_cluster_takes_a_random_row_like_the_reference():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 2.0], [3.0, 0.1]])
    # rows 0 and 1 are the same point: cluster 1 ties with cluster 0 and loses (first index wins)
    a = bac.kmeans_cosine(x, 3, tol=1e-9, init_index=[0, 1, 2], seed=5)
    b = bac.kmeans_cosine_broadcast(x, 3, tol=1e-9, init_index=[0, 1, 2], seed=5)
    assert torch.equal(a[0], b[0]) and a[2] == b[2]
    torch.testing.assert_close(a[1], b[1])


# Two groups on the axes; init rows 0 and 2. Iteration 1 moves both centres by exactly 1:
# (sum of shifts)^2 = 4 while the sum of squared shifts is 2. Iteration 2 moves nothing.
AXES = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 3.0]])


@pytest.mark.parametrize("tol, iterations", [(5.0, 1), (3.0, 2), (1e-9, 2)])
def test_kmeans_stop_rule_is_squared_sum_of_shifts(tol, iterations):
    ids, centres, iters = bac.kmeans_cosine(AXES, 2, tol=tol, init_index=[0, 2])
    assert iters == iterations
    assert ids.tolist() == [0, 0, 1, 1]
    assert centres.tolist() == [[2.0, 0.0], [0.0, 2.0]]


def test_kmeans_iteration_cap_is_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="misc.bac"):
        _, _, iters = bac.kmeans_cosine(AXES, 2, tol=3.0, max_iter=1, init_index=[0, 2])
    assert iters == 1
    assert "cap of 1 iterations" in caplog.text


def test_kmeans_is_deterministic_given_the_seed_and_rejects_bad_k():
    x = _blobs(300)
    a, b = bac.kmeans_cosine(x, 4, seed=11), bac.kmeans_cosine(x, 4, seed=11)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="3 rows"):
        bac.kmeans_cosine(x[:3], 4)
    with pytest.raises(ValueError, match="distinct"):
        bac.kmeans_cosine(x, 2, init_index=[1, 1])


# ----------------------------------------------------------------------------- selection (S3b.4)

def _logit_rows(logits: list[float]) -> torch.Tensor:
    return torch.tensor([[v, 5.0] for v in logits])  # w = (1, 0): w.c = the first entry


def test_select_prototypes_thresholds():
    w = torch.tensor([1.0, 0.0])
    bld, ctx = _logit_rows([3.0, 1.0, 2.5]), _logit_rows([-2.0, 3.0, 0.0])  # p = .953 .731 .924 / .119 .953 .5
    prototypes, context, info = bac.select_prototypes(bld, ctx, w)
    assert torch.equal(prototypes, bld[[0, 2]]) and torch.equal(context, ctx[[0, 2]])
    assert not info["fallback"]
    torch.testing.assert_close(info["bld_scores"], torch.sigmoid(torch.tensor([3.0, 1.0, 2.5])))
    _, context, _ = bac.select_prototypes(bld, ctx, w, context_thres_low=0.2)
    assert torch.equal(context, ctx[[2]])


def test_select_prototypes_falls_back_to_top1(caplog):
    with caplog.at_level(logging.WARNING, logger="misc.bac"):
        prototypes, _, info = bac.select_prototypes(_logit_rows([0.5, 2.0, 1.0]), _logit_rows([0.0]),
                                                    torch.tensor([1.0, 0.0]))
    assert info["fallback"] and prototypes.tolist() == [[2.0, 5.0]]
    assert "top-1" in caplog.text


# ----------------------------------------------------------------------------- expanded CAM (S3c)

def _grid(*pixels: tuple[float, float]) -> torch.Tensor:
    return torch.tensor(pixels).T.reshape(1, 2, 1, len(pixels))  # [B=1, C=2, h=1, w]


def test_expanded_cam_hand_made_values():
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    q = torch.tensor([[0.0, 1.0]])
    size = (16, 32)  # a 1x2 grid: columns 0-7 copy pixel 0, columns 24-31 copy pixel 1 (bilinear, no corners)
    e = bac.expanded_cam([_grid((1, 0), (1, 1))], p, q[:0], size)[0]  # no context: A = (0.5, 1/sqrt2)
    torch.testing.assert_close(e[:, 0], torch.full((16,), 0.5 / (R2 + 1e-5)), rtol=0, atol=3e-7)
    torch.testing.assert_close(e[:, -1], torch.full((16,), R2 / (R2 + 1e-5)), rtol=0, atol=3e-7)
    # with Q: scale 1 ReLU(0.5 - 0, R2 - R2) = (0.5, 0); scale 2 ReLU(R2 - R2) = 0; mean over scales (0.25, 0)
    two_scales = [_grid((1, 0), (1, 1)), _grid((1, 1), (2, 2))]
    e = bac.expanded_cam(two_scales, p, q, size)[0]
    assert e.shape == size
    torch.testing.assert_close(e[:, :8], torch.full((16, 8), 0.25 / (0.25 + 1e-5)), rtol=0, atol=3e-7)
    assert torch.all(e[:, 24:] == 0) and torch.all((e >= 0) & (e < 1))


def test_expanded_cam_batch_scale_invariance_and_no_nan():
    gen = torch.Generator().manual_seed(0)
    f = torch.rand(1, 8, 3, 3, generator=gen)
    p, q = torch.rand(2, 8, generator=gen), torch.rand(3, 8, generator=gen)
    both = bac.expanded_cam([torch.cat([f, 3 * f])], p, q, (40, 40))  # cosine ignores the scale of f
    torch.testing.assert_close(both[0], both[1])
    single = bac.expanded_cam([f[0]], p, q, (40, 40))  # [C, h, w] input is one tile
    torch.testing.assert_close(single[0], both[0])
    zero = bac.expanded_cam([f], p, p, (40, 40))  # the context cancels everything: 0, not NaN
    assert torch.all(zero == 0)


# ----------------------------------------------------------------------------- the step (tiny dataset)

@pytest.fixture
def seeded(tiny_root, tmp_path):
    """A random RepVGG-Tiny classifier (saved, then deployed) and its S2 seed CAMs."""
    torch.manual_seed(0)
    model = cam.Net("RepVGG-Tiny")
    save_net(model, tmp_path / "sess" / "cam.pth")
    deploy_net(cam.Net, tmp_path / "sess" / "cam.pth", tmp_path / "sess" / "cam_deploy.pt")
    make_cam.run(stage_args(tiny_root, tmp_path))
    return tiny_root, tmp_path


def _lpcam_args(root, tmp_path, *extra: str):
    # a random classifier's seed CAMs lie in about [0.2, 1): 0.6 splits them into both sets
    return stage_args(root, tmp_path, "--num_cluster", "3", "--bac_num_samples", "8", "--bac_select_thres", "0.6",
                      "--bac_tol", "1e-6", *extra)


def test_make_lpcam_end_to_end_and_load_cluster(seeded, caplog):
    root, tmp_path = seeded
    with caplog.at_level(logging.INFO):
        make_lpcam.run(_lpcam_args(root, tmp_path))
    summary = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[S3 make_lpcam]")]
    assert len(summary) == 1 and "sampled 8 tiles" in summary[0] and "|P|=" in summary[0]
    cluster_dir = tmp_path / "result" / "cluster_result"
    with np.load(cluster_dir / "clusters.npz") as c:
        assert c["bld_centres"].shape == c["ctx_centres"].shape == (3, 256)
        assert len(c["bld_ids"]) + len(c["ctx_ids"]) <= 8 * 16 and set(c["bld_ids"].tolist()) <= {0, 1, 2}
    with np.load(cluster_dir / "prototypes_k3.npz") as pq:
        assert 1 <= len(pq["P"]) <= 3 and pq["P"].shape[1] == 256 and len(pq["Q"]) <= 3
    positives = (root / "train_aug_building.txt").read_text().split()
    maps = {}
    for name in positives:
        out = fileio.load_npy_dict(tmp_path / "result" / "lpcam_mask" / f"{name}.npy")
        assert set(out) == {"keys", "high_res"} and out["keys"].dtype == np.int64 and out["keys"].tolist() == [0]
        assert out["high_res"].dtype == np.float32 and out["high_res"].shape == (1, 64, 64)
        assert 0 <= out["high_res"].min() and out["high_res"].max() < 1 and np.isfinite(out["high_res"]).all()
        maps[name] = out["high_res"]
    assert max(m.max() for m in maps.values()) > 0.99
    stamp = (cluster_dir / "prototypes_k3.npz").stat().st_mtime_ns

    make_lpcam.run(_lpcam_args(root, tmp_path, "--load_cluster", "True", "--lpcam_out_dir", str(tmp_path / "again")))
    assert (cluster_dir / "prototypes_k3.npz").stat().st_mtime_ns == stamp  # same prototypes: file untouched
    for name in positives:
        np.testing.assert_array_equal(fileio.load_npy_dict(tmp_path / "again" / f"{name}.npy")["high_res"], maps[name])


def test_make_lpcam_user_errors(seeded):
    root, tmp_path = seeded
    with pytest.raises(UserError, match="no building candidates.*--bac_select_thres"):
        make_lpcam.run(_lpcam_args(root, tmp_path, "--bac_select_thres", "1.0"))
    with pytest.raises(UserError, match="--load_cluster True but .*clusters.npz does not exist"):
        make_lpcam.run(_lpcam_args(root, tmp_path, "--load_cluster", "True"))
    missing = (root / "train_aug_building.txt").read_text().split()[0]
    (tmp_path / "result" / "cam" / f"{missing}.npy").unlink()
    with pytest.raises(UserError, match=f"seed CAM .*{missing}.npy .*--make_cam_pass True"):
        make_lpcam.run(_lpcam_args(root, tmp_path, "--bac_num_samples", "0"))


def test_make_lpcam_without_context_features_has_empty_q(seeded, caplog):
    root, tmp_path = seeded
    with caplog.at_level(logging.WARNING):
        make_lpcam.run(_lpcam_args(root, tmp_path, "--bac_select_thres", "0.0"))  # every seed value is > 0 or == 0
    with np.load(tmp_path / "result" / "cluster_result" / "prototypes_k3.npz") as pq:
        assert len(pq["P"]) >= 1 and len(pq["Q"]) == 0
    assert any("no context prototypes" in r.getMessage() for r in caplog.records)
