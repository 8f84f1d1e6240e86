"""The one device / distributed helper, plus small torch utilities shared by the stages.

`--device auto` picks cuda when available, else cpu; `--amp auto` picks bf16 where that device has
fast bf16 and fp32 elsewhere (misc.hardware says why). Under torchrun the rank, local rank and
world size come from the environment (RANK, LOCAL_RANK, WORLD_SIZE); a plain run is rank 0 of 1.
Ranks share GPUs round-robin when there are more of them than GPUs (then over gloo, not NCCL).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from misc import hardware
from misc.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    amp: str = "none"               # resolved: "bf16" or "none"
    precision: hardware.PrecisionChoice | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


_RUNTIME: Runtime | None = None


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """cuda (GPU `local_rank`, round-robin when torchrun starts more ranks than there are GPUs) or cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda was given but no CUDA device is visible; use --device cpu or auto")
        return torch.device("cuda", local_rank % max(visible_gpus(), 1))
    if name == "cpu":
        return torch.device("cpu")
    raise UserError(f"--device {name!r} is not one of auto, cpu, cuda")


def visible_gpus() -> int:
    """The GPUs this process sees (0 without CUDA); torchrun's ranks of one machine share them round-robin. The
    one place that counts them."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def gpu_peak_gb(device: torch.device) -> float | None:
    """Peak GPU memory allocated on `device` since start (or since torch.cuda.reset_peak_memory_stats), in GiB;
    None on the CPU."""
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def setup_runtime(device: str = "auto", amp: str = "auto", num_threads: int | None = None) -> Runtime:
    """Resolve the device and the precision, set torch's intra-op threads (when `num_threads` is given) and,
    under torchrun, join the process group (gloo on CPU, NCCL on GPU)."""
    global _RUNTIME
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    hardware.tune_allocator()
    if num_threads is not None and num_threads > 0 and torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)
    choice = hardware.choose_amp(amp, dev.type, _hardware())
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not torch.distributed.is_initialized():
        local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        gpus = visible_gpus() if dev.type == "cuda" else 0
        torch.distributed.init_process_group(backend=process_group_backend(dev.type, local_ranks, gpus))
    _RUNTIME = Runtime(dev, rank, local_rank, world_size, choice.amp, choice)
    return _RUNTIME


def process_group_backend(device_type: str, local_ranks: int, gpus: int) -> str:
    """NCCL when each rank of this machine has a GPU of its own; gloo on CPU and when ranks share a GPU
    (NCCL refuses two ranks on one device: "Duplicate GPU detected"), which gloo runs on CUDA tensors."""
    return "nccl" if device_type == "cuda" and local_ranks <= gpus else "gloo"


_HARDWARE: hardware.Hardware | None = None


def _hardware() -> hardware.Hardware:
    global _HARDWARE
    if _HARDWARE is None:
        _HARDWARE = hardware.probe()
    return _HARDWARE


def resolve_amp(amp: str, device: torch.device) -> str:
    """"auto" -> "bf16" or "none" for `device` (the rule of misc.hardware.choose_amp); others unchanged."""
    if amp not in hardware.AMP_CHOICES and amp not in ("fp32", ""):
        raise UserError(f"--amp {amp!r} is not one of {', '.join(hardware.AMP_CHOICES)}")
    return hardware.choose_amp(amp, device.type, _hardware()).amp if amp == "auto" else amp


def runtime() -> Runtime:
    """The runtime set up by `setup_runtime` (a single-process CPU/auto runtime if none was)."""
    return _RUNTIME if _RUNTIME is not None else setup_runtime("auto")


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """Round-robin share of `items` for one rank (inference stages split their list this way)."""
    return list(items[rank::world_size])


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for `--amp bf16` (and for auto where the device has fast bf16), else a no-op context."""
    if resolve_amp(amp, device) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class PolyOptimizer(torch.optim.SGD):
    """SGD whose learning rate follows lr_t = lr_0 * (1 - t/T)^0.9, set before each step.

    `momentum` defaults to the reference's effective 1e-4 (its weight decay landed in the momentum
    slot, a bug inherited from IRN); pass 0.9 for the clean form.
    """

    def __init__(self, param_groups: list[dict], lr: float, weight_decay: float, max_step: int,
                 momentum: float = 1e-4, power: float = 0.9) -> None:
        super().__init__(param_groups, lr=lr, weight_decay=weight_decay, momentum=momentum)
        self.global_step = 0
        self.max_step = max(1, max_step)
        self.power = power
        self._initial_lr = [group["lr"] for group in self.param_groups]

    def step(self, closure=None):
        if self.global_step < self.max_step:
            factor = (1 - self.global_step / self.max_step) ** self.power
            for group, lr0 in zip(self.param_groups, self._initial_lr):
                group["lr"] = lr0 * factor
        self.global_step += 1
        return super().step(closure)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["poly"] = {"global_step": self.global_step, "max_step": self.max_step, "initial_lr": self._initial_lr}
        return state

    def load_state_dict(self, state: dict) -> None:
        poly = state.pop("poly", None)
        super().load_state_dict(state)
        if poly is not None:
            self.global_step, self.max_step, self._initial_lr = poly["global_step"], poly["max_step"], poly["initial_lr"]


def poly_sgd(model: torch.nn.Module, lr: float, weight_decay: float, momentum: float, max_step: int,
             new_layers_factor: float = 10.0) -> PolyOptimizer:
    """Poly SGD over `model.param_groups()` = (pretrained part, new layers); the new layers at 10x lr."""
    base, new = model.param_groups()
    groups = [{"params": base, "lr": lr}, {"params": new, "lr": new_layers_factor * lr}]
    return PolyOptimizer(groups, lr=lr, weight_decay=weight_decay, max_step=max_step, momentum=momentum)


def iter_batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def gather_to_main(local: dict) -> dict | None:
    """Merge every rank's dict on rank 0 (None on the other ranks); the dict itself without torchrun."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()) or torch.distributed.get_world_size() == 1:
        return local
    parts = [None] * torch.distributed.get_world_size() if torch.distributed.get_rank() == 0 else None
    torch.distributed.gather_object(local, parts, dst=0)
    if torch.distributed.get_rank() != 0:
        return None
    return {name: value for part in parts for name, value in part.items()}


def broadcast_from_main(obj: dict | None) -> dict:
    """Rank 0's `obj` on every rank (`obj` itself without torchrun)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        obj = box[0]
    return obj
