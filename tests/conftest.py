"""Shared fixtures: a tiny generated dataset in the RRDSD layout, and stage arguments for it."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from misc import fileio
from voc12.layout import LayoutWriter

REPO = Path(__file__).resolve().parents[1]
FAIR = Path(os.environ.get("FAIR_DATA", REPO.parent / "shared" / "data" / "fair"))


def write_tiny_dataset(root: Path, num_pos: int = 6, num_neg: int = 6, size: int = 64, seed: int = 0) -> Path:
    """Tiles of textured ground; positives carry one or two red-brown 'roofs' covering >= 25%."""
    rng = np.random.default_rng(seed)
    writer = LayoutWriter(root, test_groups=frozenset({"scene_test"}))
    for i in range(num_pos + num_neg):
        image = (rng.normal(110, 20, (size, size, 3)) + np.array([10, 20, 0])).clip(0, 255).astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        if i < num_pos:
            side = size // 2 + int(rng.integers(0, size // 4))
            top, left = rng.integers(0, size - side, 2)
            mask[top:top + side, left:left + side] = 1
            image[mask == 1] = (rng.normal(0, 8, (int(mask.sum()), 3)) + np.array([170, 70, 50])).clip(0, 255).astype(np.uint8)
        group = "scene_test" if i in (0, num_pos) else f"scene_{i % 2}"
        writer.add(f"tile_{i:02d}", group, image, mask)
    writer.finish()
    return root


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` are collected everywhere and skipped, with the reason, where CUDA is not available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device: torch.cuda.is_available() is False here "
                                   "(bench/gpu_check.sh runs these on a lent GPU)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    return write_tiny_dataset(tmp_path / "tiny")


def stage_args(root: Path, work: Path, *extra: str):
    """run_sample arguments for `root` with a RepVGG-Tiny classifier trained briefly on CPU."""
    import run_sample

    argv = ["--voc12_root", str(root), "--work_space", str(work / "result"), "--cam_weights_name",
            str(work / "sess" / "cam"), "--msg_weights_name", str(work / "sess" / "msg"), "--backbone", "RepVGG-Tiny",
            "--MODEL_WEIGHTS", "none",
            "--device", "cpu", "--num_workers", "0", "--cam_batch_size", "4", "--cam_num_epoches", "2",
            "--cam_infer_batch", "4", *extra]
    return run_sample.resolve_paths(run_sample.build_parser().parse_args(argv))


@pytest.fixture
def cpu_runtime() -> None:
    """The stages under test run in one CPU process (`pytestmark = pytest.mark.usefixtures("cpu_runtime")`)."""
    from misc.torchutils import setup_runtime

    setup_runtime("cpu")


@pytest.fixture
def scenes(tmp_path):
    """--seg_infer_dir with two images and a saved random DeepLabV3+ (S11 prediction needs nothing else)."""
    from net.checkpoints import save_net
    from net.deeplabv3plus import DeepLabV3Plus

    folder = tmp_path / "scenes"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        fileio.save_png(folder / f"{name}.png", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    save_net(DeepLabV3Plus("RepVGG-Tiny"), tmp_path / "sess" / "seg.pth")
    return folder


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of small convolutions: on a shared 2-core machine two OpenMP threads
    spin against other processes and such steps run ~20x slower (measured: 4.6 s vs 0.19 s a step)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
