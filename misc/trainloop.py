"""The one training skeleton and loop, shared by the training stages (S1, S6, S10, S11).

`train(job)` is what a training stage runs: a finished checkpoint made with the same fingerprint is
kept; otherwise it seeds, builds the model and optimiser, `fit`s, saves the final checkpoint (rank 0),
drops the resume file, waits for every rank and logs one summary line. A stage fills a `TrainJob`
with its dataset, fingerprint, model builder, optimiser, loss and checkpoint writer.

- Sampling: a per-epoch permutation from (seed, epoch), cut into global batches (drop_last, as the
  reference); under torchrun each rank takes its slice of every global batch, so `batch_size`
  always means the global batch.
- Resume: after every epoch, model + optimizer + epoch go to `<stem>.resume.pth` (atomic); a rerun
  with the same config continues after the last finished epoch and ends where an uninterrupted
  run would (the augmentation is a function of (seed, epoch, index), see voc12.dataloader).
- Progress: a tqdm bar with loss and images/s; one log line per epoch.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Sampler

from misc import fileio
from misc.errors import UserError
from misc.pyutils import progress
from misc.torchutils import Runtime, autocast, barrier, runtime

log = logging.getLogger(__name__)


class EpochBatchSampler(Sampler[list[int]]):
    """This rank's index lists: global batches of a seeded per-epoch shuffle, remainder dropped."""

    def __init__(self, num_items: int, global_batch: int, rank: int = 0, world_size: int = 1, seed: int = 0) -> None:
        if global_batch % world_size:
            raise UserError(f"the batch size {global_batch} must be a multiple of the number of ranks {world_size}")
        if num_items < global_batch:
            raise UserError(f"the training list has {num_items} tiles, fewer than one batch of {global_batch}; "
                            f"lower the batch size flag or add tiles")
        self.num_items, self.global_batch, self.rank, self.world_size, self.seed = num_items, global_batch, rank, world_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_items // self.global_batch

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.num_items, generator=gen).tolist()
        per_rank = self.global_batch // self.world_size
        for b in range(len(self)):
            batch = order[b * self.global_batch:(b + 1) * self.global_batch]
            yield batch[self.rank * per_rank:(self.rank + 1) * per_rank]


@dataclass
class FitConfig:
    epochs: int
    batch_size: int
    seed: int = 0
    amp: str = "none"
    num_workers: int = 0
    resume: bool = True
    fingerprint: dict = field(default_factory=dict)  # what must match for a checkpoint to be resumed
    tag: str = "train"
    sync_bn: bool = False


def resume_path(final_path: str | Path) -> Path:
    final_path = Path(final_path)
    return final_path.with_name(final_path.stem + ".resume.pth")


def fit(model: nn.Module, dataset: Dataset, optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[nn.Module, dict], torch.Tensor], cfg: FitConfig, rt: Runtime,
        checkpoint: str | Path, on_epoch_end: Callable[[int], None] | None = None) -> list[float]:
    """Train `model` in place for cfg.epochs; returns the mean loss of each epoch run here.

    `loss_fn(model, batch)` returns the scalar loss of one batch (already on device).
    """
    ckpt_path = resume_path(checkpoint)
    start_epoch = _try_resume(ckpt_path, model, optimizer, cfg) if cfg.resume else 0
    train_model = model
    if rt.distributed and cfg.sync_bn:
        if rt.device.type == "cuda":  # same parameter names, so checkpoints are unchanged
            nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            log.warning("[%s] --sync_bn needs CUDA; batch norm stays per rank on CPU", cfg.tag)
    if rt.distributed:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    sampler = EpochBatchSampler(len(dataset), cfg.batch_size, rt.rank, rt.world_size, cfg.seed)
    data = DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.num_workers,
                      pin_memory=rt.device.type == "cuda", persistent_workers=False)
    losses = []
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        # dropout and other in-model randomness: a function of (seed, epoch, rank), so resuming is exact
        torch.manual_seed((cfg.seed * 1_000_003 + epoch) * 1009 + rt.rank)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        model.train()
        total, count, seen, t0 = 0.0, 0, 0, time.perf_counter()
        bar = progress(data, total=len(sampler), desc=f"{cfg.tag} epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                       disable=not rt.is_main)
        for batch in bar:
            batch = {k: v.to(rt.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
            with autocast(rt.device, cfg.amp):
                loss = loss_fn(train_model, batch)
            if not torch.isfinite(loss):
                raise RuntimeError(f"{cfg.tag}: the loss became {loss.item()} at epoch {epoch + 1}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
            count += 1
            seen += cfg.batch_size
            rate = seen / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{total / count:.4f}", img_s=f"{rate:.1f}", refresh=False)
        losses.append(total / max(count, 1))
        log.info("[%s] epoch %d/%d  loss %.4f  %.1f img/s", cfg.tag, epoch + 1, cfg.epochs, losses[-1],
                 seen / max(time.perf_counter() - t0, 1e-9))
        if rt.is_main:
            fileio.save_torch(ckpt_path, {"epoch": epoch + 1, "model": model.state_dict(),
                                          "optimizer": optimizer.state_dict(), "fingerprint": cfg.fingerprint})
        barrier()
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
    return losses


def _try_resume(ckpt_path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, cfg: FitConfig) -> int:
    if not ckpt_path.is_file():
        return 0
    try:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as err:
        log.warning("[%s] cannot read %s (%s); starting from epoch 0", cfg.tag, ckpt_path, err)
        return 0
    if state.get("fingerprint") != cfg.fingerprint:
        log.info("[%s] %s was made with other settings; starting from epoch 0", cfg.tag, ckpt_path)
        return 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    log.info("[%s] resuming after epoch %d from %s", cfg.tag, state["epoch"], ckpt_path)
    return int(state["epoch"])


def finished(final_path: str | Path, fingerprint: dict) -> bool:
    """True when `final_path` holds a training finished with the same settings (a rerun skips it)."""
    final_path = Path(final_path)
    if not final_path.is_file():
        return False
    try:
        ckpt = torch.load(final_path, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return isinstance(ckpt, dict) and ckpt.get("fingerprint") == fingerprint


def steps_per_epoch(num_items: int, batch_size: int) -> int:
    return max(1, math.floor(num_items / batch_size))


@dataclass
class TrainJob:
    """What one training stage fills in; `train` does the rest. `cfg` holds the loop's settings, the stage
    tag and the fingerprint (every input and setting the weights depend on)."""
    checkpoint: Path                                            # the final .pth (its .resume.pth beside it)
    dataset: Dataset
    build: Callable[[], nn.Module]                              # a fresh model (called after seeding)
    optimizer: Callable[[nn.Module, int], torch.optim.Optimizer]  # (model, total steps)
    loss: Callable[[nn.Module, dict], torch.Tensor]             # the scalar loss of one batch
    save: Callable[[nn.Module, Path, dict], None]               # (model on CPU, path, extra entries)
    cfg: FitConfig
    describe: str = ""                                          # extra words for the start line
    on_epoch_end: Callable[[nn.Module, int], None] | None = None
    after_fit: Callable[[nn.Module], None] | None = None        # e.g. statistics the checkpoint keeps


@dataclass
class TrainResult:
    trained: bool             # False: a finished checkpoint with the same fingerprint was kept
    seconds: float
    losses: list[float]


def train(job: TrainJob) -> TrainResult:
    """Train `job` (or keep its finished checkpoint); every rank returns the same `trained`."""
    rt, cfg, start = runtime(), job.cfg, time.perf_counter()
    tiles = len(job.dataset)
    if cfg.resume and finished(job.checkpoint, cfg.fingerprint):
        log.info("[%s] %s already trained with these settings (%d tiles, %d epochs); pass --resume False to "
                 "retrain", cfg.tag, job.checkpoint, tiles, cfg.epochs)
        return TrainResult(False, time.perf_counter() - start, [])
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank and rerun
    model = job.build().to(rt.device)
    optimizer = job.optimizer(model, steps_per_epoch(tiles, cfg.batch_size) * cfg.epochs)
    log.info("[%s] tiles=%d batch=%d epochs=%d%s device=%s ranks=%d", cfg.tag, tiles, cfg.batch_size, cfg.epochs,
             f" {job.describe}" if job.describe else "", rt.device, rt.world_size)
    epoch_end = (lambda epoch: job.on_epoch_end(model, epoch)) if job.on_epoch_end else None
    losses = fit(model, job.dataset, optimizer, job.loss, cfg, rt, job.checkpoint, on_epoch_end=epoch_end)
    if job.after_fit is not None:
        job.after_fit(model)
    if rt.is_main:
        job.save(model.cpu(), Path(job.checkpoint), {"fingerprint": cfg.fingerprint})
        resume_path(job.checkpoint).unlink(missing_ok=True)
    barrier()
    seconds = time.perf_counter() - start
    log.info("[%s] trained %d tiles for %d epochs in %.0fs (%.1f img/s), final loss %s -> %s", cfg.tag, tiles,
             cfg.epochs, seconds, tiles * cfg.epochs / max(seconds, 1e-9),
             f"{losses[-1]:.4f}" if losses else "n/a (resumed after the last epoch)", job.checkpoint)
    return TrainResult(True, seconds, losses)
