"""Throughput of the networks at 256x256: S1 classifier training, S2 seed-CAM inference (4 scales + flip),
S6 AR training (PCL + MCL, Lambda1 > 0), S7 AR-map inference and S11 DeepLabV3+ training, in fp32 and bf16.

    python bench/bench_networks.py                                  # A0 and B1g2, fp32 and bf16, on --device auto
    python bench/bench_networks.py --backbones RepVGG-A0 --tasks s1,s2 --amps bf16
    python bench/bench_networks.py --backbones RepVGG-A0,RepVGG-B1g2,efficientnet-lite0,efficientnet-lite1,\
        efficientnet-lite2 --tasks s1,s2,s6,s7,s11 --amps auto --batch 8   # every backbone, one run

Each configuration runs in its own subprocess so its peak memory (ru_maxrss on CPU,
max_memory_allocated on GPU) is its own. GFLOP/s counts the FLOPs of the measured work with
torch.utils.flop_counter; the matmul peak is a 4096^3 matrix product in the same dtype, same run.
Prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

SCALES = (1.0, 0.5, 1.5, 2.0)


def matmul_peak(device: torch.device, amp: str) -> float:
    dtype = torch.bfloat16 if amp == "bf16" else torch.float32
    n = 4096 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    reps = 50 if device.type == "cuda" else 4
    a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_work(task: str, backbone: str, batch: int, device: torch.device, amp: str):
    """A closure doing one unit of work, and the number of images it covers."""
    from functools import partial

    from misc.losses import classification_loss, refinement_loss, segmentation_loss
    from misc.torchutils import autocast
    from net import amn, cam
    from net.amn import multiscale_probs
    from net.backbones import reparameterize
    from net.cam import multiscale_cam
    from net.deeplabv3plus import DeepLabV3Plus

    torch.manual_seed(0)
    x = torch.randn(batch, 3, 256, 256, device=device)
    if task in ("s1", "s6", "s11"):
        networks = {"s1": cam.Net, "s6": amn.Net, "s11": DeepLabV3Plus}
        model = networks[task](backbone).to(device).train()
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
        if task == "s1":
            batch_dict = {"img": x, "label": torch.ones(batch, 1, device=device)}
        else:
            batch_dict = {"img": x, "label_cls": torch.ones(batch, 1, device=device),
                          "label": torch.randint(0, 2, (batch, 256, 256), device=device)}
        loss_fn = {"s1": classification_loss, "s11": segmentation_loss,
                   "s6": partial(refinement_loss, eps=0.15, lambda1=0.4, scale_small=0.7, scale_large=1.5,
                                 threshold=0.8, pixel_gate=False)}[task]

        def step():
            with autocast(device, amp):
                loss = loss_fn(model, batch_dict)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step, batch
    model = reparameterize((cam.Net(backbone) if task == "s2" else amn.Net(backbone)).eval()).to(device)
    packs = []
    for i in range(batch):
        img = x[i].cpu()
        pyramid = []
        for s in SCALES:
            scaled = img if s == 1.0 else torch.nn.functional.interpolate(img[None], scale_factor=s, mode="bilinear")[0]
            pyramid.append(torch.stack([scaled, scaled.flip(-1)]))
        packs.append({"img": pyramid, "size": (256, 256), "name": str(i)})
    if task == "s2":
        return (lambda: multiscale_cam(model, packs, device, amp)), batch
    return (lambda: multiscale_probs(model, packs, (256, 256), device, amp)), batch


def child(task: str, backbone: str, amp: str, batch: int, steps: int, device_name: str) -> dict:
    from misc.torchutils import gpu_peak_gb, pick_device, resolve_amp

    device = pick_device(device_name)
    amp = resolve_amp(amp, device)  # "auto" -> what run_sample would use here
    work, images = make_work(task, backbone, batch, device, amp)
    with FlopCounterMode(display=False) as counter:
        work()  # also the warm-up
    flops = counter.get_total_flops()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(steps):
        work()
    _sync(device)
    seconds = (time.perf_counter() - t) / steps
    peak = gpu_peak_gb(device)
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"task": task, "backbone": backbone, "amp": amp, "batch": batch, "img_s": images / seconds,
            "gflops": flops / seconds / 1e9, "peak_gb": peak, "matmul": matmul_peak(device, amp),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}


TASK_NAMES = {"s1": "S1 classifier train", "s2": "S2 seed CAM (4 scales + flip)", "s6": "S6 AR train (PCL+MCL)",
              "s7": "S7 AR maps (4 scales + flip)", "s11": "S11 DeepLabV3+ train"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", default="RepVGG-A0,RepVGG-B1g2")
    p.add_argument("--tasks", default="s1,s2,s6,s7")
    p.add_argument("--amps", default="none,bf16", help="comma-separated: none (fp32), bf16, auto (the default's choice)")
    p.add_argument("--batch", type=int, default=16, help="training batch (inference uses batch // 4 tiles)")
    p.add_argument("--steps", type=int, default=2, help="timed repetitions after one warm-up")
    p.add_argument("--device", default="auto")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        task, backbone, amp = a.child.split(":")
        batch = a.batch if task in ("s1", "s6", "s11") else max(1, a.batch // 4)
        print(json.dumps(child(task, backbone, amp, batch, a.steps, a.device)))
        return
    rows = []
    for backbone in a.backbones.split(","):
        for task in a.tasks.split(","):
            for amp in a.amps.split(","):
                out = subprocess.run([sys.executable, __file__, "--child", f"{task}:{backbone}:{amp}", "--batch",
                                      str(a.batch), "--steps", str(a.steps), "--device", a.device],
                                     capture_output=True, text=True, cwd=REPO)
                if out.returncode != 0:
                    print(f"{task} {backbone} {amp} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                r["amp"] = f"auto -> {r['amp']}" if amp == "auto" else r["amp"]
                rows.append(r)
                print(f"| {r['device']} | {TASK_NAMES[task]} | {backbone} | {amp} | {r['batch']} | {r['img_s']:.2f} | "
                      f"{r['gflops']:.0f} | {r['matmul']:.0f} | {r['peak_gb']:.2f} |", flush=True)
    from misc.hardware import machine_line
    from misc.torchutils import pick_device

    print()
    print(machine_line(pick_device(a.device).type))
    print()
    print("| device | work | backbone | amp | batch | images/s | achieved GFLOP/s | matmul peak GFLOP/s | peak memory GB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['device']} | {TASK_NAMES[r['task']]} | {r['backbone']} | {r['amp']} | {r['batch']} | {r['img_s']:.2f} | "
              f"{r['gflops']:.0f} | {r['matmul']:.0f} | {r['peak_gb']:.2f} |")


if __name__ == "__main__":
    main()
