"""The CUDA path: the device helper, bf16 autocast, the k-means of BAC (S3) on the GPU against the CPU, and the
scene predictor's GPU memory as the scene grows. Marked `gpu`: collected everywhere, skipped without CUDA
(tests/conftest.py); bench/gpu_check.sh runs them on a lent GPU. The backend rule for torchrun is plain
logic and runs everywhere."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from misc import bac
from misc.torchutils import autocast, pick_device, process_group_backend, resolve_amp, setup_runtime
from net import deeplabv3plus


def test_ranks_sharing_a_gpu_use_gloo_since_nccl_refuses_them():
    assert process_group_backend("cuda", local_ranks=2, gpus=2) == "nccl"
    assert process_group_backend("cuda", local_ranks=1, gpus=8) == "nccl"
    assert process_group_backend("cuda", local_ranks=2, gpus=1) == "gloo"
    assert process_group_backend("cpu", local_ranks=2, gpus=0) == "gloo"


@pytest.mark.gpu
def test_the_device_helper_picks_cuda_and_shares_gpus_round_robin():
    try:
        assert pick_device("auto") == torch.device("cuda", 0)
        gpus = torch.cuda.device_count()
        assert pick_device("cuda", local_rank=gpus) == torch.device("cuda", 0)  # one more rank than GPUs
        assert setup_runtime("auto", "auto").device.type == "cuda"
    finally:
        setup_runtime("cpu")


@pytest.mark.gpu
def test_auto_precision_is_bf16_autocast_on_a_bf16_gpu():
    device = pick_device("cuda")
    x, conv = torch.randn(2, 3, 32, 32, device=device), torch.nn.Conv2d(3, 8, 3).to(device)
    with autocast(device, "auto"):
        y, z = conv(x), x.flatten(1) @ x.flatten(1).T
    if torch.cuda.is_bf16_supported():
        assert resolve_amp("auto", device) == "bf16"
        assert y.dtype == z.dtype == torch.bfloat16
    else:  # e.g. a V100: auto keeps fp32
        assert resolve_amp("auto", device) == "none"
        assert y.dtype == z.dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_kmeans_agrees_with_the_cpu_one(dtype):
    # six well-separated directions, one initial centre in each: no row sits near a tie, where the two
    # devices' rounding could legitimately disagree
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 64))
    labels = rng.integers(0, 6, 30_000)
    rows = centres[labels] + rng.normal(scale=0.3, size=(30_000, 64))
    x = torch.from_numpy(rows).to(dtype)
    init = [int(np.flatnonzero(labels == j)[0]) for j in range(6)]
    ids_cpu, centres_cpu, iters_cpu = bac.kmeans_cosine(x, k=6, tol=1e-6, init_index=init, chunk_size=4096)
    ids_gpu, centres_gpu, iters_gpu = bac.kmeans_cosine(x.cuda(), k=6, tol=1e-6, init_index=init, chunk_size=4096)
    assert torch.equal(ids_cpu, torch.from_numpy(labels))  # the test's premise: the clusters were found
    assert iters_gpu == iters_cpu
    assert torch.equal(ids_gpu.cpu(), ids_cpu)
    torch.testing.assert_close(centres_gpu.cpu(), centres_cpu, atol=1e-4, rtol=1e-4)


def _scene_peak(model: torch.nn.Module, height: int, width: int) -> int:
    """Peak GPU bytes allocated while predicting a random height x width scene through scene_logits."""
    scene = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    covered = 0
    for _, _, logits in deeplabv3plus.scene_logits(model, lambda r0, r1, c0, c1: scene[r0:r1, c0:c1], height, width,
                                                   window=128, overlap=0.25, batch=4, device="cuda", amp="auto",
                                                   band=512):
        covered += logits.shape[1] * logits.shape[2]
    assert covered == height * width
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


@pytest.mark.gpu
def test_scene_prediction_gpu_memory_stays_flat_as_the_scene_grows():
    model = deeplabv3plus.DeepLabV3Plus("RepVGG-Tiny").eval().cuda()
    _scene_peak(model, 256, 256)  # warm-up: cuDNN's workspaces and the allocator's first blocks
    small, large = _scene_peak(model, 512, 512), _scene_peak(model, 1536, 2048)  # 12x the pixels, 4 bands
    assert large <= small * 1.05 + 2 ** 20, (small, large)


@pytest.mark.gpu
def test_geotiff_prediction_gpu_memory_stays_flat_as_the_scene_grows(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    from misc import geoio

    model = deeplabv3plus.DeepLabV3Plus("RepVGG-Tiny").eval().cuda()

    def blocks(read, height, width):
        return deeplabv3plus.scene_logits(model, read, height, width, 128, 0.25, (1.0,), 4, "cuda", "auto", band=512)

    peaks = []
    for size in (256, 512, 1536):  # the first is the warm-up
        path = tmp_path / f"scene_{size}.tif"
        data = np.random.default_rng(size).integers(0, 256, (3, size, size), dtype=np.uint8)
        with rasterio.open(path, "w", driver="GTiff", height=size, width=size, count=3, dtype="uint8",
                           crs="EPSG:32633", transform=from_origin(500_000.0, 4_600_000.0, 0.3, 0.3)) as dst:
            dst.write(data)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        geoio.predict_geotiff(path, tmp_path / "out", f"mask_{size}", blocks)
        torch.cuda.synchronize()
        peaks.append(torch.cuda.max_memory_allocated())
        assert (tmp_path / "out" / f"mask_{size}.tif").is_file()
    assert peaks[2] <= peaks[1] * 1.05 + 2 ** 20, peaks
