"""Memory and speed of S11 prediction on one large GeoTIFF scene (misc.geoio.predict_geotiff with
net.deeplabv3plus.scene_logits, as --make_seg_pass runs it): peak RSS must not grow with the scene.

    python bench/bench_scene.py --size 3000
    nice -n 19 python bench/bench_scene.py --size 12000        # several minutes on 2 CPU cores

Generates a size x size RGB GeoTIFF (tiled, deflate, EPSG:32633, a nodata border of --border pixels) in a
temporary folder, strip by strip, then predicts it with an untrained DeepLabV3+ (re-parameterisable blocks folded; speed
and memory do not depend on the weights): window 256, overlap 0.25, flip, one scale, as make_seg's defaults.
Prints a markdown row: size, megapixels/s, peak RSS (getrusage ru_maxrss), peak GPU memory on --device cuda
(max_memory_allocated: the model and one batch of windows; the accumulator stays in host memory), and the
machine line.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from misc import geoio, hardware  # noqa: E402
from misc.torchutils import gpu_peak_gb, pick_device, resolve_amp  # noqa: E402
from net import deeplabv3plus  # noqa: E402
from net.backbones import reparameterize  # noqa: E402


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # kB on Linux


def write_scene(path: Path, size: int, border: int, seed: int = 0) -> None:
    """A textured scene with roof-like rectangles, written 512 rows at a time (never whole in memory)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(seed)
    profile = {"driver": "GTiff", "height": size, "width": size, "count": 3, "dtype": "uint8", "nodata": 0,
               "crs": "EPSG:32633", "transform": from_origin(500_000.0, 4_600_000.0, 0.3, 0.3), "tiled": True,
               "blockxsize": 512, "blockysize": 512, "compress": "deflate", "BIGTIFF": "IF_SAFER"}
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, size, 512):
            rows = min(512, size - top)
            strip = rng.normal(110, 18, (3, rows, size)).clip(1, 255).astype(np.uint8)
            for _ in range(size // 60):
                r, c = rng.integers(0, rows), rng.integers(0, size)
                strip[:, r:r + 40, c:c + 50] = np.array([170, 70, 50], np.uint8)[:, None, None]
            rr = np.arange(top, top + rows)[:, None]
            cc = np.arange(size)[None, :]
            outside = (rr < border) | (rr >= size - border) | (cc < border) | (cc >= size - border)
            strip[:, outside] = 0
            dst.write(strip, window=Window(0, top, size, rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=12000, help="side of the generated scene in pixels")
    p.add_argument("--border", type=int, default=300, help="width of its nodata border in pixels")
    p.add_argument("--encoder", type=str, default="RepVGG-Tiny", help="DeepLabV3+ encoder")
    p.add_argument("--window", type=int, default=256, help="--seg_window")
    p.add_argument("--overlap", type=float, default=0.25, help="--seg_overlap")
    p.add_argument("--batch", type=int, default=8, help="--seg_infer_batch")
    p.add_argument("--amp", type=str, default="auto", help="none (fp32), bf16 or auto")
    p.add_argument("--prob_band", type=str, default="False", choices=["True", "False"], help="--seg_prob_band")
    p.add_argument("--threads", type=int, default=0, help="CPU intra-op threads (0: torch's default)")
    p.add_argument("--tmp", type=str, default=None, help="folder for the generated scene [system temp]")
    p.add_argument("--device", type=str, default="cpu", choices=["auto", "cpu", "cuda"],
                   help="where the network runs (--device of run_sample.py) [cpu]")
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    device = pick_device(a.device)
    amp = resolve_amp(a.amp, device)
    torch.manual_seed(0)
    model = reparameterize(deeplabv3plus.DeepLabV3Plus(a.encoder).eval()).to(device)
    with tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
        scene = Path(tmp) / "scene.tif"
        start = time.perf_counter()
        write_scene(scene, a.size, a.border)
        made = time.perf_counter() - start
        rss_before = peak_rss_gb()

        def blocks(read, height, width):
            return deeplabv3plus.scene_logits(model, read, height, width, a.window, a.overlap, (1.0,), a.batch,
                                              device, amp)

        start = time.perf_counter()
        geoio.predict_geotiff(scene, Path(tmp), "mask", blocks, prob_band=a.prob_band == "True")
        seconds = time.perf_counter() - start
        out_mb = (Path(tmp) / "mask.tif").stat().st_size / 1e6
    mp = a.size * a.size / 1e6
    print(f"scene generated in {made:.0f}s (peak RSS {rss_before:.2f} GB); mask {out_mb:.1f} MB "
          f"({'COG' if geoio.cog_available() else 'GTiff'})")
    print()
    print(hardware.machine_line(device.type))
    print()
    peak_gpu = gpu_peak_gb(device)
    gpu = "n/a" if peak_gpu is None else f"{peak_gpu:.2f} GB"
    print("| scene | megapixels | encoder | device | precision | seconds | MP/s | peak RSS | peak GPU memory |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {a.size} x {a.size} | {mp:.1f} | {a.encoder} | {device.type} | {'bf16' if amp == 'bf16' else 'fp32'} | "
          f"{seconds:.0f} | {mp / seconds:.3f} | {peak_rss_gb():.2f} GB | {gpu} |")


if __name__ == "__main__":
    main()
