"""Throughput of S11 (DeepLabV3+): training images/s on 256x256 crops and prediction megapixels/s
(sliding window 256, overlap 0.25, re-parameterisable blocks folded) with each of --views (flip: the image and
its mirror; dihedral: its eight flips and rotations, `--seg_views`), per encoder and precision.

    python bench/bench_seg.py                                    # RepVGG-A0 and resnet50, fp32 and bf16, CPU (+ GPU)
    python bench/bench_seg.py --encoders resnet50 --amps bf16 --steps 3 --devices cuda

Runs the same functions the stages run (misc.losses.segmentation_loss with poly SGD,
step.make_seg.predict). Prints a markdown table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from misc.losses import segmentation_loss  # noqa: E402
from misc.torchutils import autocast, poly_sgd, resolve_amp  # noqa: E402
from net.backbones import reparameterize  # noqa: E402
from net.deeplabv3plus import DeepLabV3Plus, predict  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(work, steps: int, device: torch.device) -> float:
    """Seconds per call after one warm-up call."""
    work()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        work()
    _sync(device)
    return (time.perf_counter() - start) / steps


def train_rate(encoder: str, amp: str, batch: int, steps: int, device: torch.device) -> float:
    """Training images/s at 256x256 (forward, cross-entropy, backward, poly SGD step)."""
    torch.manual_seed(0)
    model = DeepLabV3Plus(encoder).to(device).train()
    optimizer = poly_sgd(model, 0.01, 1e-4, momentum=0.9, max_step=1000)
    data = {"img": torch.randn(batch, 3, 256, 256, device=device),
            "label": torch.randint(0, 2, (batch, 256, 256), device=device)}

    def step() -> None:
        with autocast(device, amp):
            loss = segmentation_loss(model, data)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return batch / _timed(step, steps, device)


def predict_rate(encoder: str, amp: str, size: int, batch: int, steps: int, device: torch.device,
                 views: str = "flip") -> float:
    """Prediction megapixels/s of a size x size image (sliding window 256 / 0.25, `views`, one scale)."""
    torch.manual_seed(0)
    model = reparameterize(DeepLabV3Plus(encoder).eval()).to(device)
    image = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    seconds = _timed(lambda: predict(model, image, 256, 0.25, (1.0,), batch, device, amp, views), steps, device)
    return size * size / 1e6 / seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoders", type=str, default="RepVGG-A0,resnet50", help="comma-separated encoder names")
    p.add_argument("--amps", type=str, default="none,bf16", help="comma-separated: none (fp32), bf16, auto")
    p.add_argument("--devices", type=str, default=None, help="comma-separated [cpu, plus cuda when available]")
    p.add_argument("--batch", type=int, default=8, help="training batch (--seg_batch_size)")
    p.add_argument("--infer_batch", type=int, default=8, help="windows per forward (--seg_infer_batch)")
    p.add_argument("--image", type=int, default=512, help="side of the predicted image")
    p.add_argument("--steps", type=int, default=2, help="timed repetitions after one warm-up")
    p.add_argument("--views", type=str, default="flip,dihedral", help="comma-separated prediction views: flip, dihedral")
    p.add_argument("--threads", type=int, default=0, help="CPU intra-op threads (0: torch's default)")
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    devices = a.devices.split(",") if a.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    views = a.views.split(",")
    rows = ["| device | encoder | precision | train images/s (256x256, batch %d) | " % a.batch
            + " | ".join(f"predict MP/s ({a.image}x{a.image}, window 256, overlap 0.25, {v})" for v in views) + " |",
            "|---|---|---|---|" + "---|" * len(views)]
    for name in devices:
        device = torch.device(name)
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
        for encoder in a.encoders.split(","):
            for amp in a.amps.split(","):
                amp = resolve_amp(amp, device)
                train = train_rate(encoder, amp, a.batch, a.steps, device)
                infer = [predict_rate(encoder, amp, a.image, a.infer_batch, a.steps, device, v) for v in views]
                rows.append(f"| {label} | {encoder} | {'bf16' if amp == 'bf16' else 'fp32'} | {train:.2f} | "
                            + " | ".join(f"{rate:.3f}" for rate in infer) + " |")
                print(rows[-1], flush=True)
    from misc.hardware import machine_line

    print()
    print(machine_line(devices[-1]))
    print()
    print("\n".join(rows))


if __name__ == "__main__":
    main()
