"""fp32 against bf16 on this machine, in one process: what `--amp auto` decides from.

    python bench/bench_precision.py                 # CPU
    python bench/bench_precision.py --device cuda

Rows: a 1024x1024 matrix product (GFLOP/s) and a 3x3 convolution, 64 -> 64 channels on an 8x64x64 input,
forward under autocast (ms), each the best of --repeats runs after a warm-up. Prints the machine line
(CPU model, torch's CPU capability, what --amp auto picks and why) above the table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from misc.hardware import machine_line  # noqa: E402
from misc.torchutils import autocast, pick_device  # noqa: E402


def best_seconds(work, device: torch.device, repeats: int) -> float:
    work()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        work()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    device = pick_device(a.device)
    n = 1024
    rows = {}
    for amp, dtype in (("none", torch.float32), ("bf16", torch.bfloat16)):
        x, y = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        matmul = 2 * n ** 3 / best_seconds(lambda: x @ y, device, a.repeats) / 1e9
        conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(device)
        z = torch.randn(8, 64, 64, 64, device=device)

        def conv_forward() -> None:
            with torch.no_grad(), autocast(device, amp):
                conv(z)
        rows[amp] = (matmul, best_seconds(conv_forward, device, a.repeats) * 1000)
    print(machine_line(device.type))
    print()
    print("| work | fp32 | bf16 | bf16 / fp32 time |")
    print("|---|---|---|---|")
    print(f"| {n}x{n} matmul | {rows['none'][0]:.1f} GFLOP/s | {rows['bf16'][0]:.1f} GFLOP/s | "
          f"{rows['none'][0] / rows['bf16'][0]:.2f} |")
    print(f"| 3x3 conv, 64 -> 64 channels, 8x64x64 input (autocast) | {rows['none'][1]:.1f} ms | "
          f"{rows['bf16'][1]:.1f} ms | {rows['bf16'][1] / rows['none'][1]:.2f} |")


if __name__ == "__main__":
    main()
