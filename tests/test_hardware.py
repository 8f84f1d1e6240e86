"""Precision and thread counts chosen from the hardware, with the hardware faked both ways (misc.hardware)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import run_sample
from misc import hardware, torchutils
from misc.pyutils import workers_count

REPO = Path(run_sample.__file__).resolve().parent

AVX2 = hardware.Hardware("AMD EPYC", "AVX2", onednn_bf16=False, cpu_flags=frozenset({"avx2", "fma"}), cores=2)
AVX512_NO_BF16 = hardware.Hardware("Intel Xeon Skylake", "AVX512", onednn_bf16=True,
                                   cpu_flags=frozenset({"avx2", "avx512f", "avx512bw"}), cores=2)
AMX = hardware.Hardware("Intel Xeon Sapphire Rapids", "AVX512", onednn_bf16=True,
                        cpu_flags=frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}), cores=2)
ZEN4 = hardware.Hardware("AMD EPYC Genoa", "AVX512", onednn_bf16=True,
                         cpu_flags=frozenset({"avx512f", "avx512_bf16"}), cores=2)


@pytest.mark.parametrize("hw, want", [(AVX2, "none"), (AVX512_NO_BF16, "none"), (AMX, "bf16"), (ZEN4, "bf16")])
def test_auto_picks_bf16_only_with_bf16_hardware(hw, want):
    choice = hardware.choose_amp("auto", "cpu", hw)
    assert choice.amp == want
    assert choice.reason.startswith(f"amp={want}: this CPU ({hw.cpu_capability})")
    assert not choice.warning


def test_reason_names_what_the_cpu_lacks_or_has():
    assert hardware.choose_amp("auto", "cpu", AVX2).reason == "amp=none: this CPU (AVX2) has no bf16 hardware"
    assert "emulate" in hardware.choose_amp("auto", "cpu", AVX512_NO_BF16).reason
    assert "amx_bf16" in hardware.choose_amp("auto", "cpu", AMX).reason


def test_explicit_bf16_on_a_slow_cpu_runs_with_one_warning():
    slow = hardware.choose_amp("bf16", "cpu", AVX2)
    assert slow.amp == "bf16" and "slower" in slow.warning and "--amp auto" in slow.warning
    fast = hardware.choose_amp("bf16", "cpu", AMX)
    assert fast.amp == "bf16" and fast.warning == ""
    assert hardware.choose_amp("none", "cpu", AMX).amp == "none"


def test_cuda_follows_the_gpus_bf16_support_not_the_cpus():
    gpu = hardware.Hardware("AMD EPYC", "AVX2", False, frozenset(), 16, cuda_name="NVIDIA H200", cuda_bf16=True)
    assert hardware.choose_amp("auto", "cuda", gpu).amp == "bf16"
    assert hardware.choose_amp("auto", "cpu", gpu).amp == "none"
    old = hardware.Hardware("x", "AVX512", True, frozenset({"amx_bf16"}), 8, cuda_name="Tesla V100", cuda_bf16=False)
    assert hardware.choose_amp("auto", "cuda", old).amp == "none"
    assert "V100" in hardware.choose_amp("auto", "cuda", old).reason


def test_without_cpuinfo_flags_onednn_decides():
    mac = hardware.Hardware("arm", "DEFAULT", onednn_bf16=True, cpu_flags=None, cores=8)
    assert hardware.choose_amp("auto", "cpu", mac).amp == "bf16"
    assert hardware.choose_amp("auto", "cpu", hardware.Hardware("arm", "DEFAULT", False, None, 8)).amp == "none"


def test_the_runtime_and_autocast_use_the_faked_hardware(monkeypatch):
    for hw, want in ((AVX2, "none"), (AMX, "bf16")):
        monkeypatch.setattr(torchutils, "_HARDWARE", hw)
        rt = torchutils.setup_runtime("cpu", "auto")
        assert rt.amp == want and rt.precision.amp == want
        with torchutils.autocast(torch.device("cpu"), "auto"):
            dtype = torch.nn.functional.linear(torch.ones(2, 4), torch.ones(3, 4)).dtype
        assert dtype == (torch.bfloat16 if want == "bf16" else torch.float32)
    monkeypatch.setattr(torchutils, "_HARDWARE", None)
    torchutils.setup_runtime("cpu")


def test_run_sample_logs_the_choice_once_and_warns_for_slow_bf16(monkeypatch, tmp_path):
    monkeypatch.setattr(torchutils, "_HARDWARE", AVX2)
    with pytest.raises(run_sample.UserError):  # no stage selected: the setup has run, nothing else
        run_sample.main(["--work_space", str(tmp_path), "--device", "cpu", "--amp", "bf16"])
    text = (tmp_path / "run.log").read_text()
    assert text.count("amp=bf16: as --amp bf16 asks, although this CPU (AVX2) has no bf16 hardware") == 1
    assert text.count("will run about 10-60x slower") == 1
    assert text.count("threads=") == 1
    monkeypatch.setattr(torchutils, "_HARDWARE", None)
    torchutils.setup_runtime("cpu")


def test_probe_reads_this_machine():
    hw = hardware.probe()
    assert hw.cores >= 1 and hw.cpu_capability == torch.backends.cpu.get_cpu_capability()
    assert hardware.choose_amp("auto", "cpu", hw).amp in ("none", "bf16")


# ----------------------------------------------------------------------------- threads


@pytest.mark.parametrize("cores, ranks, device, threads, loader, pool", [
    (2, 1, "cpu", 2, 0, 2),      # the 2-core machines here: the network takes both cores
    (2, 2, "cpu", 1, 0, 1),      # torchrun with 2 ranks on 2 cores: one core each
    (4, 1, "cpu", 3, 1, 4),
    (16, 1, "cpu", 12, 4, 16),
    (16, 2, "cpu", 6, 2, 8),
    (1, 1, "cpu", 1, 0, 1),
    (3, 4, "cpu", 1, 0, 1),      # more ranks than cores: never zero threads
    (16, 1, "cuda", 8, 8, 16),
    (16, 8, "cuda", 1, 1, 2),
])
def test_auto_threads_never_oversubscribe(cores, ranks, device, threads, loader, pool):
    plan = hardware.plan_threads(cores, local_ranks=ranks, device_type=device)
    assert (plan.intra_op, plan.loader_workers, plan.pool_workers) == (threads, loader, pool)
    # busy threads at once: every rank's intra-op threads and loader workers (one torch thread each),
    # or every rank's CRF pool while the rank waits
    assert ranks * (plan.intra_op + plan.loader_workers) <= max(cores, ranks)
    assert ranks * plan.pool_workers <= max(cores, ranks)


def test_explicit_threads_and_workers_win_and_omp_is_honoured():
    assert hardware.plan_threads(2, num_threads=1).intra_op == 1
    assert hardware.plan_threads(8, omp_num_threads="3").intra_op == 3
    # torchrun sets OMP_NUM_THREADS=1 on its own when several ranks run: the split is used instead
    assert hardware.plan_threads(16, local_ranks=2, omp_num_threads="1").intra_op == 6
    assert hardware.plan_threads(16, local_ranks=2, omp_num_threads="4").intra_op == 4
    plan = hardware.plan_threads(2, num_workers=0)
    assert (plan.loader_workers, plan.pool_workers) == (0, 1)
    plan = hardware.plan_threads(2, num_workers=3)
    assert (plan.loader_workers, plan.pool_workers) == (3, 3)
    assert "--num_workers 3" in plan.reason


def test_run_sample_resolves_auto_workers(monkeypatch):
    monkeypatch.setattr(hardware, "usable_cores", lambda: 16)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    args = run_sample.resolve_paths(run_sample.build_parser().parse_args([]))
    assert (args.num_threads, args.num_workers, args.pool_workers) == (6, 2, 8)
    args = run_sample.resolve_paths(run_sample.build_parser().parse_args(["--num_workers", "1", "--num_threads", "3"]))
    assert (args.num_threads, args.num_workers, args.pool_workers) == (3, 1, 1)


def test_workers_count_parses_auto_and_refuses_negative():
    assert workers_count("auto") is None and workers_count("0") == 0 and workers_count("4") == 4
    for bad in ("-1", "two", "1.5"):
        with pytest.raises(Exception):
            workers_count(bad)
    proc = subprocess.run([sys.executable, str(REPO / "run_sample.py"), "--num_workers", "-1"], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 2 and "--num_workers" in proc.stderr and "Traceback" not in proc.stderr


def test_allocator_tuning_applies_on_linux_and_respects_the_users_malloc_settings(monkeypatch):
    import platform

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert hardware.tune_allocator() is True
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert hardware.tune_allocator() is False
