"""Confident {0, 1, 255} labels for every tile of a list, from a folder of building maps: the shared body of
S5 (BAC maps, channel 0) and S9b (AR maps, channel 1), with resume and the summary.

The CRF runs in a process pool (misc.crf.label_tiles, args.pool_workers processes per rank); under
torchrun each rank takes its share of the list and the counts are summed over the ranks.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from misc import thresholds
from misc.crf import CRF_PARAMS, LabelJob, Tile, label_tiles, quality_scores
from misc.pyutils import Timer, format_duration
from misc.torchutils import runtime, shard
from step.kit.common import inference_names, map_levels
from step.kit.stamps import files_digest, made_from, reusable_outputs

log = logging.getLogger(__name__)
COUNT_KEYS = ("pixels", "building", "background", "building_correct", "background_correct")


def make_ir_labels(names: Sequence[str], cls_labels: Mapping[str, int], image_paths: Mapping[str, Path],
                   map_dir: str | Path, out_dir: str | Path, *, channel: int, fg_thres: float | str,
                   bg_thres: float | str, num_workers: int, gt_dir: str | Path | None = None, resume: bool = True,
                   map_stage: str = "the stage that writes the maps", tag: str = "labels",
                   stage: str | None = None, flags: tuple[str, str] = ("--conf_fg_thres", "--conf_bg_thres")) -> dict:
    """Confident labels for every tile of `names`; returns the summary (all ranks' counts summed).

    Positives read `high_res[channel]` of <map_dir>/<name>.npy, negatives get all zeros. Outputs made
    from the same maps, images and settings are kept when `resume` is true (only counted again).
    A threshold 'auto' is picked from the maps (`pick_confident_thresholds`); `flags` name the two.
    """
    rt, timer = runtime(), Timer()
    map_dir, out_dir = Path(map_dir), Path(out_dir)
    positives = [n for n in names if cls_labels[n] == 1]
    fg_thres, bg_thres = pick_confident_thresholds(fg_thres, bg_thres, flags, map_dir, positives, channel,
                                                   map_stage, tag)
    map_paths = {n: map_dir / f"{n}.npy" for n in positives}
    fingerprint = _fingerprint(names, image_paths, map_paths, map_dir, channel, fg_thres, bg_thres, map_stage)
    # a rerun never mixes labels from other inputs: reusable_outputs deletes them (and their palettes) first
    done = reusable_outputs(out_dir, fingerprint, resume, suffix=".png", also=("_palette.png",), stage=stage) & set(names)
    gt_paths = _gt_paths(positives, gt_dir, tag)

    def tile(name: str, reuse: bool) -> Tile:
        return Tile(name, Path(image_paths[name]), map_paths.get(name), gt_paths.get(name), reuse)

    tiles = ([tile(n, False) for n in inference_names(names, done)]  # this rank's share
             + [tile(n, True) for n in shard([n for n in names if n in done], rt.rank, rt.world_size)])
    job = LabelJob(out_dir, channel, fg_thres, bg_thres, map_stage)
    counts = _sum_over_ranks(label_tiles(job, tiles, num_workers, tag, show=rt.is_main))
    summary = _summary(counts, names, positives, done, gt_paths, job, map_dir, timer.elapsed, tag)
    _log_summary(summary, tag)
    return summary


def pick_confident_thresholds(fg_thres: float | str, bg_thres: float | str, flags: tuple[str, str],
                              map_dir: str | Path, positives: Sequence[str], channel: int, map_stage: str,
                              tag: str) -> tuple[float, float]:
    """The (building, background) thresholds, each as given or, for 'auto', from the maps of the positives
    (misc.thresholds.confident_levels; no ground truth)."""
    if thresholds.AUTO in (fg_thres, bg_thres):
        auto_fg, auto_bg = thresholds.confident_levels(map_levels(map_dir, positives, channel, map_stage, tag))
        picked = [f"{flag} auto -> {value:.4f}" for flag, value, given in
                  zip(flags, (auto_fg, auto_bg), (fg_thres, bg_thres)) if given == thresholds.AUTO]
        fg_thres = auto_fg if fg_thres == thresholds.AUTO else fg_thres
        bg_thres = auto_bg if bg_thres == thresholds.AUTO else bg_thres
        if runtime().is_main:
            log.info("[%s] %s (from the maps of %d positives in %s; no ground truth read)", tag, ", ".join(picked),
                     len(positives), map_dir)
    return float(fg_thres), float(bg_thres)


def _fingerprint(names: Sequence[str], image_paths: Mapping[str, Path], map_paths: Mapping[str, Path],
                 map_dir: Path, channel: int, fg_thres: float, bg_thres: float, map_stage: str) -> dict:
    """Settings, the map folder's stamp, and digests of (name, size, mtime) of every image and map; a missing
    map is an error."""
    return {"map_dir": str(map_dir.resolve()), "maps": made_from(map_dir), "channel": channel,
            "conf_fg_thres": fg_thres, "conf_bg_thres": bg_thres, "crf": CRF_PARAMS, "tiles": len(names),
            "maps_sha256": files_digest(map_paths.items(), "{path} is missing for the listed positive {name!r}; "
                                        f"run {map_stage} first, or point the map folder at its output"),
            "images_sha256": files_digest(((n, image_paths[n]) for n in names), "image {path} of {name!r} disappeared")}


def _gt_paths(positives: Sequence[str], gt_dir: str | Path | None, tag: str) -> dict[str, Path]:
    """Ground-truth masks of the positives, if every one is there; else none (the summary skips precision)."""
    if gt_dir is None or not Path(gt_dir).is_dir():
        return {}
    paths = {n: Path(gt_dir) / f"{n}.png" for n in positives}
    missing = [n for n, p in paths.items() if not p.is_file()]
    if missing:
        log.warning("[%s] %d of %d positives have no mask in %s (first: %s); precision not reported",
                    tag, len(missing), len(paths), gt_dir, missing[0])
        return {}
    return paths


def _sum_over_ranks(counts: Counter) -> Counter:
    import torch

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return counts
    vec = torch.tensor([counts.get(k, 0) for k in COUNT_KEYS] + [int("building_correct" in counts)],
                       dtype=torch.int64, device=runtime().device)
    torch.distributed.all_reduce(vec)
    total = Counter(dict(zip(COUNT_KEYS, vec.tolist())))
    if vec[-1].item() == 0:  # no rank had ground truth
        del total["building_correct"], total["background_correct"]
    return total


def _summary(counts: Counter, names: Sequence[str], positives: Sequence[str], done: set[str],
             gt_paths: Mapping[str, Path], job: LabelJob, map_dir: Path, seconds: float, tag: str) -> dict:
    made = len(names) - len(done)
    full = {k: counts.get(k, 0) for k in COUNT_KEYS[:3]} | {k: counts[k] for k in COUNT_KEYS[3:] if k in counts}
    return {"stage": tag, "map_dir": str(map_dir), "out_dir": str(job.out_dir), "channel": job.channel,
            "conf_fg_thres": job.fg_thres, "conf_bg_thres": job.bg_thres, "tiles": len(names),
            "positives": len(positives), "reused": len(done), "ground_truth": bool(gt_paths),
            "scores_over": "positives (negatives are all confident background)",
            **quality_scores(full), "counts": full, "wall_s": round(seconds, 2),
            "img_per_s": round(made / seconds, 3) if seconds > 0 else None}


def _log_summary(s: dict, tag: str) -> None:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    quality = (f"precision building {pct(s['building_precision'])} background {pct(s['background_precision'])}"
               if "building_precision" in s else "precision n/a (no ground truth)")
    log.info("[%s] %d tiles (%d positives, %d reused): coverage %s (building %s, background %s), %s; "
             "in %s (%.2f img/s) -> %s", tag, s["tiles"], s["positives"], s["reused"], pct(s["coverage"]),
             pct(s["building_fraction"]), pct(s["background_fraction"]), quality, format_duration(s["wall_s"]),
             s["img_per_s"] or 0.0, s["out_dir"])
