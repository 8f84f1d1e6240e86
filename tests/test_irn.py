"""S10, the optional IRN stage: pair indexing, the random walk, the loss, the network, and the four
stages (AMN labels -> train_irn -> make_sem_seg -> eval_sem_seg) on the tiny dataset."""
from __future__ import annotations

import itertools
import json
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import run_sample
from misc import fileio, imutils, indexing
from misc.errors import UserError
from misc.torchutils import setup_runtime
from net import irn
from net.checkpoints import load_net, save_net
from step import make_sem_seg_labels, train_irn
from tests.conftest import stage_args


@pytest.fixture(autouse=True)
def _cpu_runtime():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: threads only add overhead, and the CI machine is shared
    setup_runtime("cpu")
    yield
    torch.set_num_threads(threads)


def _brute_force_pairs(height: int, width: int, radius: int, sources=None) -> int:
    """Unordered pixel pairs closer than `radius` (optionally: with the earlier pixel in `sources`)."""
    pixels = list(itertools.product(range(height), range(width)))
    count = 0
    for p, q in itertools.combinations(pixels, 2):  # p precedes q in row-major order
        if 0 < (q[0] - p[0]) ** 2 + (q[1] - p[1]) ** 2 < radius ** 2 and (sources is None or p in sources):
            count += 1
    return count


def test_too_small_radius_names_the_flag():
    with pytest.raises(UserError, match="--irn_radius"):
        indexing.PathIndex(1)


def test_path_index_pair_counts_match_brute_force():
    index = indexing.PathIndex(5)
    assert index.num_directions == 34  # (69 lattice points of the open disk - the centre) / 2
    height, width = 9, 13
    # inference layout: every pair inside the map once, both ways in A, plus the diagonal
    trans = indexing.transition_matrix(indexing.affinity_full(torch.zeros(height, width), index), index, beta=10)
    assert (trans._nnz() - height * width) // 2 == _brute_force_pairs(height, width, 5)
    # training layout: sources in rows [0, H-4), columns [4, W-4), every destination inside the map
    rows, cols = index.source_grid(height, width)
    sources = {(y, x) for y in range(rows) for x in range(4, 4 + cols)}
    assert index.destinations(torch.zeros(height, width)).shape == (34, rows, cols)
    assert index.num_directions * rows * cols == _brute_force_pairs(height, width, 5, sources)


def test_paths_join_their_ends_and_stop_at_edges():
    for dy, dx in indexing.search_directions(5):
        cells = indexing.path_cells(dy, dx)
        assert cells[0] == (0, 0) and cells[-1] == (dy, dx)
    index = indexing.PathIndex(5)
    size = 14
    ys, xs = np.mgrid[:size, :size]
    for edge_np, side in ((xs == 7, xs - 7), (ys == xs, ys - xs)):  # a vertical and an 8-connected diagonal line
        aff = indexing.affinity_full(torch.from_numpy(edge_np.astype(np.float32)), index).numpy()
        for k, (dy, dx) in enumerate(index.directions):
            for y, x in itertools.product(range(size - dy), range(max(0, -dx), min(size, size - dx))):
                a, b = side[y, x], side[y + dy, x + dx]
                if a * b < 0:  # strictly on opposite sides: the path must cross the line
                    assert aff[k, y, x] == 0
                elif a != 0 and b != 0 and abs(dy) + abs(dx) == 1:  # neighbours on one side, off the line
                    assert aff[k, y, x] == 1


def _two_regions(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """An edge column splitting a size x size grid, and a seed in three pixels of the left part."""
    edge = torch.zeros(size, size)
    edge[:, size // 2] = 1
    seed = torch.zeros(1, size, size)
    seed[0, 3:6, 2] = 1
    return edge, seed


def test_transition_rows_sum_to_one():
    edge, _ = _two_regions()
    edge = edge * 0.7 + 0.1
    index = indexing.PathIndex(5)
    trans = indexing.transition_matrix(indexing.affinity_full(edge, index), index, beta=10)
    torch.testing.assert_close(torch.sparse.sum(trans, dim=1).to_dense(), torch.ones(256))
    dense = indexing.transition_matrix(indexing.affinity_full(edge, index), index, beta=10, dense=True)
    torch.testing.assert_close(dense, trans.to_dense())
    degree = 1 / dense.diagonal()  # the diagonal of A is 1, so T_ii = 1 / degree_i
    affinity = dense * degree[:, None]  # undo D^-1: A = D T is symmetric
    torch.testing.assert_close(affinity, affinity.t(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dense", [False, True])
def test_random_walk_spreads_within_the_region_only(dense):
    edge, seed = _two_regions()
    walked = indexing.propagate_to_edge(seed, edge, indexing.PathIndex(5), beta=10, exp_times=8, dense=dense)[0]
    left, right = walked[:, :8], walked[:, 9:]
    assert right.abs().max() == 0 and walked[:, 8].abs().max() == 0  # nothing crosses or sits on the edge
    assert left.min() > 0.5 * left.mean() > 0  # the seed reached every pixel of its region
    assert left.std() < 0.1 * left.mean()  # ... and is close to flat after 2^8 steps


def test_dense_squaring_equals_sparse_steps():
    edge, seed = _two_regions(12)
    edge = edge * 0.6 + torch.rand(12, 12) * 0.3
    index = indexing.PathIndex(5)
    sparse = indexing.propagate_to_edge(seed, edge, index, beta=10, exp_times=5, dense=False)
    dense = indexing.propagate_to_edge(seed, edge, index, beta=10, exp_times=5, dense=True)
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=1e-4)


def test_sem_seg_mask_fills_the_roof_within_its_boundary():
    gt = np.zeros((64, 64), np.uint8)
    gt[16:48, 12:44] = 1  # a roof: rows 4..11, columns 3..10 at stride 4
    cam = torch.zeros(16, 16)
    cam[5:11, 3:6] = 0.9  # activation on the left part of the roof only
    edge = torch.zeros(16, 16)
    edge[3:13, 2:12] = 1
    edge[4:12, 3:11] = 0  # a boundary ring just outside the roof
    mask = make_sem_seg_labels.sem_seg_mask(cam, edge, (64, 64), indexing.PathIndex(5), beta=10, exp_times=8,
                                            bg_thres=0.25, dense=False)
    assert mask.dtype == np.uint8 and set(np.unique(mask).tolist()) == {0, 1}
    assert mask[20:44, 32:40].all()  # the walk reached the right part of the roof
    assert not mask[:8].any() and not mask[:, 52:].any()  # and nothing beyond the boundary
    iou = np.logical_and(mask, gt).sum() / np.logical_or(mask, gt).sum()
    assert iou > 0.8
    blank = make_sem_seg_labels.sem_seg_mask(torch.zeros(16, 16), edge, (64, 64), indexing.PathIndex(5),
                                             beta=10, exp_times=8, bg_thres=0.25, dense=True)
    assert not blank.any()  # an all-zero walk is background, not NaN


def _centroid_field(labels: torch.Tensor) -> torch.Tensor:
    """A perfect displacement: every building pixel points at its region's centroid, background 0."""
    ys, xs = torch.meshgrid(torch.arange(labels.shape[-2]), torch.arange(labels.shape[-1]), indexing="ij")
    fg = labels[0] == 1
    field = torch.zeros(1, 2, *labels.shape[-2:])
    field[0, 0][fg] = ys[fg].float().mean() - ys[fg].float()
    field[0, 1][fg] = xs[fg].float().mean() - xs[fg].float()
    return field


def test_loss_is_zero_where_expected_and_finite():
    criterion = irn.AffinityDisplacementLoss(5)
    size = 20
    no_edge = torch.full((1, 1, size, size), -30.0)
    background = torch.zeros(1, size, size, dtype=torch.long)
    terms = criterion(no_edge, torch.zeros(1, 2, size, size), background)
    assert all(abs(v.item()) < 1e-3 for v in terms.values()), terms  # no boundary, no motion, all one class

    labels = torch.zeros(1, size, size, dtype=torch.long)
    labels[:, :, 10:] = 1
    labels[:, :2] = 255  # ignored rows make no pairs
    boundary = no_edge.clone()
    boundary[..., 10] = 30.0  # the first building column
    terms = criterion(boundary, _centroid_field(labels), labels)
    assert terms["neg"].item() < 1e-3 and terms["dp_fg"].item() < 1e-4 and terms["dp_bg"].item() < 1e-4
    terms = criterion(no_edge, _centroid_field(labels), labels)
    assert 5 < terms["neg"].item() < 20  # -log(1e-5): high but finite where a boundary is missed

    logits = torch.randn(2, 1, size, size, requires_grad=True)
    ignored = torch.full((2, size, size), 255, dtype=torch.long)
    for lab in (ignored, torch.randint(0, 2, (2, size, size))):
        loss = irn.total_loss(criterion(logits, torch.randn(2, 2, size, size), lab))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_net_strides_frozen_backbone_and_padded_inference():
    model = irn.Net("RepVGG-Tiny")
    strides = [64 // f.shape[-1] for f in model.backbone.forward_features(torch.randn(1, 3, 64, 64))]
    assert strides == [4, 8, 16, 16]  # the last two maps both at /16, as in IRN
    model.train()
    assert not model.backbone.training and model.edge_fuse.training
    edge, dp = model(torch.randn(2, 3, 72, 56))
    assert edge.shape == (2, 1, 18, 14) and dp.shape == (2, 2, 18, 14)
    terms = irn.AffinityDisplacementLoss(5)(edge, dp, torch.zeros(2, 18, 14, dtype=torch.long))
    irn.total_loss(terms).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.edge_fuse.parameters())
    model.eval()
    image = torch.randn(1, 3, 40, 52)
    pair = torch.cat([image, image.flip(-1)])
    for crop in (64, 96):  # the padded size is a parameter (the release hard-coded 256)
        edge, dp = irn.edge_map(model, pair, crop), irn.displacement_map(model, pair, crop)
        assert edge.shape == (10, 13) and dp.shape == (2, 10, 13) and 0 <= edge.min() <= edge.max() <= 1
        # both equal the one forward pass of the padded pair (edges flip-averaged, displacement unflipped)
        with torch.no_grad():
            logits, displacement = model(torch.nn.functional.pad(pair, (0, crop - 52, 0, crop - 40)))
        flip_mean = logits[0, 0, :10, :13] / 2 + logits[1, 0, :10, :13].flip(-1) / 2
        torch.testing.assert_close(edge, torch.sigmoid(flip_mean))
        torch.testing.assert_close(dp, displacement[0, :, :10, :13])


def test_irn_checkpoint_round_trip(tmp_path):
    model = irn.Net("RepVGG-Tiny").eval()
    model.mean_shift.running_mean.copy_(torch.tensor([0.5, -0.25]))
    save_net(model, tmp_path / "irn.pth")
    loaded = load_net(irn.Net, tmp_path / "irn.pth")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x)):
            torch.testing.assert_close(a, b)
    assert loaded.mean_shift.running_mean.tolist() == [0.5, -0.25]


def test_backbone_falls_back_to_the_ar_network_without_imagenet_weights(tmp_path):
    from net import amn
    ar_net = amn.Net("RepVGG-Tiny")
    with torch.no_grad():
        for p in ar_net.backbone.parameters():
            p.add_(1.0)  # anything but the fresh initialisation
    save_net(ar_net, tmp_path / "amn.pth")
    built = irn.build_irn_net("RepVGG-Tiny", str(tmp_path / "none.pth"), fallback=tmp_path / "amn.pth")
    for (name, a), b in zip(ar_net.backbone.state_dict().items(), built.backbone.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    fresh = irn.build_irn_net("RepVGG-Tiny", str(tmp_path / "none.pth"), fallback=tmp_path / "absent.pth")
    assert not torch.equal(fresh.backbone.stage0.rbr_dense.conv.weight, ar_net.backbone.stage0.rbr_dense.conv.weight)
    with pytest.raises(UserError, match="not a train-time RepVGG-A0 AR checkpoint"):
        irn.build_irn_net("RepVGG-A0", None, fallback=tmp_path / "amn.pth")


def test_random_walk_flags_are_typed():
    args = run_sample.build_parser().parse_args(["--beta", "10", "--exp_times", "8", "--sem_seg_bg_thres", "0.3"])
    assert (args.beta, args.exp_times, args.sem_seg_bg_thres) == (10, 8, 0.3)  # typed: the release's --beta arrived as a string
    args = run_sample.resolve_paths(run_sample.build_parser().parse_args(["--work_space", "ws"]))
    assert args.sem_seg_out_dir.endswith("sem_seg") and args.irn_radius == 5 and args.irn_crop_size == 256


def test_train_irn_without_labels_names_the_stage(tiny_root, tmp_path):
    args = stage_args(tiny_root, tmp_path)
    with pytest.raises(UserError, match="amn_cam_to_ir_label_pass"):
        train_irn.run(args)


def _write_ar_maps(root, map_dir) -> None:
    """AR maps in S7's format, made from the ground truth with noise (the IRN stages only read them)."""
    rng = np.random.default_rng(0)
    cls = np.load(root / "cls_labels.npy", allow_pickle=True).item()
    for name in (root / "train_aug.txt").read_text().split():
        if int(np.asarray(cls[name]).reshape(-1)[0]) != 1:
            continue
        gt = imutils.gt_to_binary(imutils.read_mask(root / "SegmentationClassAug" / f"{name}.png")).astype(np.float32)
        building = np.clip(0.85 * gt + rng.normal(0, 0.05, gt.shape), 0, 1).astype(np.float32)
        high = torch.from_numpy(np.stack([1 - building, building]))
        low = F.interpolate(high[None], size=(16, 16), mode="bilinear", align_corners=False)[0]
        fileio.save_npy_dict(map_dir / f"{name}.npy", {"keys": np.zeros(1, np.int64), "high_res": high.numpy(),
                                                        "cam": low.numpy()})


@pytest.fixture
def _restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if handler not in handlers:
            handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_irn_stages_end_to_end(tiny_root, tmp_path, _restore_logging):
    work = tmp_path / "result"
    _write_ar_maps(tiny_root, work / "amn_cam")
    argv = ["--voc12_root", str(tiny_root), "--work_space", str(work), "--backbone", "RepVGG-Tiny",
            "--MODEL_WEIGHTS", "none", "--device", "cpu", "--num_workers", "0",
            "--irn_weights_name", str(tmp_path / "sess" / "irn"), "--irn_crop_size", "64", "--irn_batch_size", "4",
            "--irn_num_epoches", "1", "--beta", "10", "--exp_times", "8"]
    run_sample.main(argv + ["--amn_cam_to_ir_label_pass", "True", "--train_irn_pass", "True",
                            "--make_sem_seg_pass", "True", "--eval_sem_seg_pass", "True"])
    assert (tmp_path / "sess" / "irn.pth").is_file() and not (tmp_path / "sess" / "irn.resume.pth").exists()
    names = (tiny_root / "train_aug.txt").read_text().split()
    positives = set((tiny_root / "train_aug_building.txt").read_text().split())
    for name in names:
        mask = imutils.read_mask(work / "sem_seg" / f"{name}.png")
        assert mask.shape == (64, 64) and set(np.unique(mask).tolist()) <= {0, 1}
        if name not in positives:
            assert mask.max() == 0
    result = json.loads((work / "metrics_sem_seg.json").read_text())
    assert result["tiles"] == len(positives) and 0 <= result["scores"]["building_iou"] <= 1

    stamps = {n: (work / "sem_seg" / f"{n}.png").stat().st_mtime_ns for n in names}
    run_sample.main(argv + ["--make_sem_seg_pass", "True"])  # --resume True: every tile is kept
    assert stamps == {n: (work / "sem_seg" / f"{n}.png").stat().st_mtime_ns for n in names}
