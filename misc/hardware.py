"""What this machine can do fast, and the precision and thread counts that follow from it.

The same project lands on very different CPUs. bf16 autocast is about 2-3x faster than fp32 where the
CPU has bf16 instructions (AVX512-BF16, AMX on Intel Sapphire Rapids and later, AMD Zen 4 and later)
and 10-100x *slower* where it has none (AVX2-only CPUs, AVX-512 without BF16): oneDNN then emulates
every bf16 product. So `--amp auto` (the default) asks the hardware, and every thread count is derived
from the cores this process may use, split between the torchrun ranks of one machine.

Everything here is a pure function of a `Hardware` record, so tests fake either kind of machine;
`probe()` fills the record from the running machine. docs/ARCHITECTURE.md ("Speed") has the rules.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

AMP_CHOICES = ("auto", "none", "bf16")
# CPU flags (Linux /proc/cpuinfo) that mean native bf16 arithmetic: x86 AVX512-BF16 / AMX, Arm BF16.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


@dataclass(frozen=True)
class Hardware:
    cpu_model: str
    cpu_capability: str              # torch.backends.cpu.get_cpu_capability(): DEFAULT, AVX2, AVX512, ...
    onednn_bf16: bool                # torch.ops.mkldnn._is_mkldnn_bf16_supported()
    cpu_flags: frozenset[str] | None  # None where /proc/cpuinfo cannot be read (not Linux)
    cores: int                       # cores this process may run on (affinity, cgroup-free count)
    cuda_name: str = ""              # "" without CUDA
    cuda_bf16: bool = False

    @property
    def native_bf16_flags(self) -> list[str]:
        return [f for f in NATIVE_BF16_FLAGS if self.cpu_flags is not None and f in self.cpu_flags]

    @property
    def cpu_fast_bf16(self) -> bool:
        """oneDNN has a bf16 path and it is not emulated (without cpuinfo flags, trust oneDNN)."""
        if not self.onednn_bf16:
            return False
        return self.cpu_flags is None or bool(self.native_bf16_flags)

    def describe_cpu(self) -> str:
        extra = ", ".join(self.native_bf16_flags) or "no bf16 instructions"
        return f"{self.cpu_model} ({self.cpu_capability}, {extra})"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _cpu_flags() -> frozenset[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key = line.split(":", 1)[0].strip().lower()
        if key in ("flags", "features"):
            return frozenset(line.split(":", 1)[1].split())
    return None


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity where the OS has one, else os.cpu_count()."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def probe() -> Hardware:
    """Ask the running machine (cheap; no kernel is run)."""
    import torch

    cuda_name, cuda_bf16 = "", False
    if torch.cuda.is_available():
        cuda_name = torch.cuda.get_device_name(0)
        cuda_bf16 = bool(torch.cuda.is_bf16_supported(including_emulation=False))
    return Hardware(cpu_model=_cpu_model(), cpu_capability=torch.backends.cpu.get_cpu_capability(),
                    onednn_bf16=bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()), cpu_flags=_cpu_flags(),
                    cores=usable_cores(), cuda_name=cuda_name, cuda_bf16=cuda_bf16)


@dataclass(frozen=True)
class PrecisionChoice:
    amp: str          # "bf16" or "none": what autocast uses
    reason: str       # one line for the log
    warning: str = ""  # set when an explicit choice will be slow


def choose_amp(requested: str, device_type: str, hw: Hardware) -> PrecisionChoice:
    """`--amp auto|none|bf16` on `device_type` ("cpu" or "cuda") -> the precision to run, and why."""
    if requested not in AMP_CHOICES:
        raise ValueError(f"--amp {requested!r} is not one of {', '.join(AMP_CHOICES)}")
    if device_type == "cuda":
        fast, where = hw.cuda_bf16, f"this GPU ({hw.cuda_name or 'CUDA'})"
        why_fast, why_slow = "supports bf16", "has no bf16 support (compute capability below 8.0)"
    else:
        fast, where = hw.cpu_fast_bf16, f"this CPU ({hw.cpu_capability})"
        why_fast = f"has bf16 hardware ({', '.join(hw.native_bf16_flags) or 'oneDNN bf16'})"
        why_slow = ("has no bf16 hardware" if not hw.onednn_bf16 else
                    "has no native bf16 instructions (no AVX512-BF16 or AMX), so oneDNN would emulate them")
    if requested == "none":
        return PrecisionChoice("none", "amp=none: fp32, as --amp none asks")
    if requested == "bf16":
        if fast:
            return PrecisionChoice("bf16", f"amp=bf16: as --amp bf16 asks; {where} {why_fast}")
        return PrecisionChoice("bf16", f"amp=bf16: as --amp bf16 asks, although {where} {why_slow}",
                               warning=f"--amp bf16: {where} {why_slow}; the networks will run about 10-60x "
                                       f"slower than in fp32 (use --amp auto or none)")
    if fast:
        return PrecisionChoice("bf16", f"amp=bf16: {where} {why_fast}")
    return PrecisionChoice("none", f"amp=none: {where} {why_slow}")


@dataclass(frozen=True)
class ThreadPlan:
    intra_op: int         # torch.set_num_threads of each rank
    loader_workers: int   # DataLoader worker processes of each rank
    pool_workers: int     # CPU-only process pools (dense CRF) of each rank
    reason: str


def plan_threads(cores: int, local_ranks: int = 1, num_threads: int = 0, num_workers: int = -1,
                 omp_num_threads: str | None = None, device_type: str = "cpu") -> ThreadPlan:
    """Thread and worker counts that never put more busy threads on the cores than there are.

    - Each of the `local_ranks` processes on this machine (torchrun's LOCAL_WORLD_SIZE) gets
      cores // local_ranks cores (at least one).
    - DataLoader workers (one torch thread each, torch sets it) decode and augment tiles while the
      network computes. On a CPU with at most 2 cores a rank the network needs every core: measured
      on the 2-core machines here, S1 ran at 61 img/s with no worker and 45 img/s with one, whose
      wake-ups stall torch's OpenMP threads (BENCHMARKS.md, "Threads"). So: no worker up to 2 cores,
      then a quarter of the rank's cores (at most 4); on CUDA all but one core (at most 8), since there
      the main process mostly waits for the GPU.
    - torch's intra-op pool takes the rank's cores left by the loader workers; `num_threads` > 0 wins,
      and so does OMP_NUM_THREADS where the user set it (under torchrun its own default "1" is not
      taken as the user's).
    - Process pools (dense CRF, image checks) run while the main process waits: all the rank's cores.
    `num_workers` >= 0 (the --num_workers flag) sets both worker counts.
    """
    per_rank = max(1, cores // max(1, local_ranks))
    if num_workers >= 0:
        loader, pool = num_workers, max(1, num_workers)
        why_workers = f"--num_workers {num_workers}"
    else:
        if device_type == "cuda":
            loader = min(8, per_rank - 1)
        else:
            loader = 0 if per_rank <= 2 else min(4, per_rank // 4)
        pool, why_workers = per_rank, "auto"
    if num_threads > 0:
        intra, why = num_threads, f"--num_threads {num_threads}"
    elif omp_num_threads and omp_num_threads.isdigit() and int(omp_num_threads) > 0 and not (
            local_ranks > 1 and omp_num_threads == "1"):
        intra, why = int(omp_num_threads), f"OMP_NUM_THREADS={omp_num_threads}"
    else:
        intra = max(1, per_rank - (loader if num_workers < 0 else 0))
        why = f"{cores} cores" + (f" / {local_ranks} local ranks" if local_ranks > 1 else "")
    return ThreadPlan(intra, loader, pool, f"threads={intra} ({why}), loader workers={loader}, "
                                           f"CRF workers={pool} ({why_workers})")


# glibc mallopt parameters
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def tune_allocator() -> bool:
    """Keep freed tensor memory in the process instead of handing it back to the kernel after every step.

    glibc serves blocks above a (dynamic) threshold with mmap and unmaps them on free, so every training
    step pays for zeroed fresh pages: on the 2-core machines here 20% of S1's time was system time
    (1.4 M page faults in 4 epochs). Raising the mmap threshold to its maximum (32 MB) and the trim
    threshold to 1 GB cut the faults 9x and made S1 about 15% faster (BENCHMARKS.md, "Threads").
    A no-op off glibc, or when the user set any MALLOC_* variable. Returns whether it applied.
    """
    if platform.system() != "Linux" or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1
        ok &= libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1
        ok &= libc.mallopt(_M_TOP_PAD, 64 << 20) == 1
        return bool(ok)
    except (OSError, AttributeError):
        return False


def machine_line(device_type: str = "cpu", hw: Hardware | None = None) -> str:
    """One line for a benchmark table: the CPU (or GPU), its torch capability, and what --amp auto picks."""
    import torch

    hw = hw or probe()
    where = f"GPU {hw.cuda_name}; " if device_type == "cuda" else ""
    choice = choose_amp("auto", device_type, hw)
    return (f"machine: {where}CPU {hw.describe_cpu()}, {hw.cores} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} intra-op threads; --amp auto -> {choice.amp} ({choice.reason})")
