"""Benchmark of the S3b k-means (misc.bac): chunked matrix-product form vs the kmeans_pytorch-style
N x k x D broadcast, in time per iteration and peak resident memory.

    .venv/bin/python bench/bench_kmeans.py [--n 200000 --dim 2048 --k 20 --iters 10]

Each measurement runs in its own subprocess, which reports its peak RSS (ru_maxrss, so every torch
allocation counts), the RSS right after the data was made, and the fastest of --repeats timed runs. Both methods run exactly --iters
iterations (tol < 0 never stops early). When the broadcast form would need more than --max_gb, it runs
at a smaller N and its row at the full N is extrapolated linearly (time and memory are linear in N).
Prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(method: str, n: int, dim: int, k: int, iters: int, dtype: str, repeats: int) -> dict:
    sys.path.insert(0, str(REPO))
    import torch

    from misc import bac

    fn = bac.kmeans_cosine if method == "chunked" else bac.kmeans_cosine_broadcast
    fn(torch.rand(4 * k, dim).to(getattr(torch, dtype)), k, tol=-1.0, max_iter=2, seed=0)  # warm-up (lazy inits)
    base_rss = _rss_gb()
    x = torch.empty(n, dim, dtype=getattr(torch, dtype))
    gen = torch.Generator().manual_seed(0)
    for start in range(0, n, 8192):  # in blocks: no transient float32 copy of a float16 data set
        block = x[start:start + 8192]
        block.copy_(torch.rand(block.shape, generator=gen))
    data_rss = _rss_gb()
    seconds = []
    for _ in range(repeats):  # the fastest run: the least disturbed by other processes on a shared machine
        start = time.perf_counter()
        _, _, done = fn(x, k, tol=-1.0, max_iter=iters, seed=0)
        seconds.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB -> GiB
    return {"method": method, "n": n, "dtype": dtype, "iterations": done, "s_per_iter": min(seconds) / done,
            "peak_gb": peak, "base_gb": base_rss, "data_gb": data_rss, "threads": torch.get_num_threads()}


def _rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2 ** 20
    return float("nan")


def _available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2 ** 20
    return 16.0


def measure(method: str, n: int, args: argparse.Namespace, dtype: str = "float32") -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--n", str(n), "--dim", str(args.dim), "--k", str(args.k),
           "--iters", str(args.iters), "--dtype", dtype, "--repeats", str(args.repeats)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def broadcast_n(args: argparse.Namespace) -> int:
    """The largest N (full, then halves) whose N*k*D*4-byte intermediate fits the memory limit."""
    limit = min(args.max_gb, 0.6 * _available_gb())
    n = args.n
    while n > 1000 and (n * args.k * args.dim * 4 + 2 * n * args.dim * 4) / 2 ** 30 > limit:
        n //= 2
    return n


def table(args: argparse.Namespace) -> str:
    rows = [measure("chunked", args.n, args), measure("chunked", args.n, args, "float16")]
    small = broadcast_n(args)
    if small != args.n:
        rows.append(measure("chunked", small, args))
    bcast = measure("broadcast", small, args)
    rows.append(bcast)
    if small != args.n:
        scale = args.n / small
        grow = lambda gb: bcast["base_gb"] + (gb - bcast["base_gb"]) * scale  # noqa: E731 (interpreter RSS is fixed)
        rows.append({**bcast, "n": args.n, "s_per_iter": bcast["s_per_iter"] * scale, "peak_gb": grow(bcast["peak_gb"]),
                     "data_gb": grow(bcast["data_gb"]), "extrapolated": small})
    base = {r["n"]: r for r in rows if r["method"] == "chunked" and r["dtype"] == "float32"}
    sys.path.insert(0, str(REPO))
    from misc.hardware import machine_line

    lines = [machine_line("cpu"), "", f"k-means, N x D = N x {args.dim}, k = {args.k}, {args.iters} iterations (best of {args.repeats} runs), "
             f"CPU, load average "
             f"{os.getloadavg()[0]:.1f} at the end, "
             f"{rows[0]['threads']} threads; RSS includes the interpreter and torch ({rows[0]['base_gb']:.2f} GB); "
             f"ratios are against chunked float32 at the same N",
             "", "| method | N | storage | s / iteration | peak RSS (GB) | RSS after making the data (GB) "
             "| time ratio | peak memory ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = base.get(r["n"])
        name = r["method"] + (f" (extrapolated from N = {r['extrapolated']:,})" if "extrapolated" in r else "")
        ratios = ("1.00", "1.00") if r is ref else (
            (f"{r['s_per_iter'] / ref['s_per_iter']:.2f}", f"{r['peak_gb'] / ref['peak_gb']:.2f}") if ref else ("", ""))
        lines.append(f"| {name} | {r['n']:,} | {r['dtype']} | {r['s_per_iter']:.3f} | {r['peak_gb']:.2f} | "
                     f"{r['data_gb']:.2f} | {ratios[0]} | {ratios[1]} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000, help="feature vectors")
    p.add_argument("--dim", type=int, default=2048, help="feature dimension")
    p.add_argument("--k", type=int, default=20, help="clusters")
    p.add_argument("--iters", type=int, default=10, help="iterations run by both methods")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per measurement; the fastest is reported")
    p.add_argument("--max_gb", type=float, default=16.0, help="largest broadcast intermediate to run for real")
    p.add_argument("--child", type=str, default=None, choices=["chunked", "broadcast"], help=argparse.SUPPRESS)
    p.add_argument("--dtype", type=str, default="float32", choices=["float32", "float16"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n, args.dim, args.k, args.iters, args.dtype, args.repeats)))
    else:
        print(table(args))


if __name__ == "__main__":
    main()
