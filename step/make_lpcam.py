"""S3: building-aware clustering (BAC) and the expanded CAM, S3a -> S3b -> S3c in one pass (the release ran S3c only).

Reads:  <cam_weights_name>_deploy.pt; the positives of --train_list under <voc12_root>/JPEGImages; the
        seed CAMs <seed_cam_dir>/<name>.npy of the sampled positives (S2).
Writes: <work_space>/cluster_result/clusters.npz = {k, bld_centres float32[k, C], bld_ids int64[n1],
        ctx_centres float32[k, C], ctx_ids int64[n2], bld_iterations, ctx_iterations};
        <work_space>/cluster_result/prototypes_k{k}.npz = {k, P float32[|P|, C], Q float32[|Q|, C],
        P_scores, Q_scores}; <lpcam_out_dir>/<name>.npy = {"keys": int64[1] = [0],
        "high_res": float32[1, H, W] in [0, 1)} for every positive of --train_list.
S3a: stage-4 features (scale 1, no flip) of --bac_num_samples positives drawn WITH replacement (seed 3),
     computed once per unique tile, split by the seed CAM at --bac_select_thres, kept in memory as float16.
S3b: cosine k-means (k = --num_cluster) on the building candidates and on the context, in draw order;
     P = {sigmoid(w.c) > --bac_class_thres}, Q = {low <= sigmoid(w.c) < --bac_context_thres}.
     --load_cluster True reloads clusters.npz and only re-selects.
S3c: E = mean_s crop(up(ReLU(mean_p cos(f_s, p) - mean_q cos(f_s, q)))), E /= max E + 1e-5 (misc.bac).
Under torchrun, S3a and S3c are sharded by rank; rank 0 clusters and broadcasts the prototypes, so the
result does not depend on the number of ranks.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from misc import bac, fileio
from misc.camutils import merge_flips, stack_pyramids
from misc.errors import UserError
from misc.pyutils import Timer, format_duration, progress, weights_paths
from misc.torchutils import Runtime, autocast, barrier, broadcast_from_main, gather_to_main, runtime
from net import cam
from net.checkpoints import load_net
from step.kit.common import Split, inference_names, load_split, loader, same_size_groups
from step.kit.stages import stage_tag
from step.kit.stamps import check_made_with, file_sha256, images_digest, made_from, model_identity, reusable_outputs
from voc12.dataloader import ClassificationDatasetMSF

log = logging.getLogger(__name__)
TAG = stage_tag(__name__)
SAMPLE_SEED = 3  # the reference's np.random.seed(3)


@dataclass
class Summary:
    """What the summary line reports (filled on rank 0)."""
    sampled: int = 0
    unique: int = 0
    n_bld: int = 0
    n_ctx: int = 0
    iterations: tuple[int, int] = (0, 0)
    kmeans_s: float = 0.0
    loaded: bool = False
    info: dict = field(default_factory=dict)


def run(args: argparse.Namespace) -> None:
    rt, timer, summary = runtime(), Timer(), Summary()
    _, deploy_path = weights_paths(args.cam_weights_name)
    model = load_net(cam.Net, deploy_path, deploy=True, device=rt.device)
    split = load_split(args, "train_list")
    if not split.positives:
        raise UserError(f"--train_list {args.train_list} has no positive tile (label 1); BAC clusters positives only")
    cluster_dir = Path(args.work_space) / "cluster_result"
    proto_path = cluster_dir / f"prototypes_k{args.num_cluster}.npz"
    model_id = model_identity(deploy_path)
    clusters = None if args.load_cluster else sample_and_cluster(model, split, args, rt, summary, model_id)
    prototypes = None
    if rt.is_main:
        if clusters is None:
            clusters, summary.loaded = load_clusters(cluster_dir / "clusters.npz", args.num_cluster), True
        else:
            fileio.save_npz(cluster_dir / "clusters.npz", clusters)
        prototypes = select(clusters, model.classifier_weight.cpu(), args.bac_class_thres, args.bac_context_thres,
                            args.bac_context_thres_low, summary)
        fileio.save_npz(proto_path, prototypes, only_if_changed=True)
    prototypes = broadcast_from_main(prototypes)
    # the seeds reach the maps through the prototypes; their stamp keeps the chain back to S1 for later stages
    fingerprint = {"weights": model_id, "prototypes": file_sha256(proto_path),
                   "seed_cams": None if args.load_cluster else made_from(args.seed_cam_dir),
                   "images": images_digest(split.positives, split.image_paths), "scales": list(args.cam_scales),
                   "amp": args.amp}
    written, reused = write_expanded_cams(model, split, prototypes, fingerprint, args, rt)
    log.info("[%s] %s; %d maps written, %d reused -> %s; wall %s", TAG, _describe(summary, prototypes), written,
             reused, args.lpcam_out_dir, format_duration(timer.elapsed))


# ------------------------------------------------------------------------------------------ S3a + S3b

def sample_and_cluster(model: cam.Net, split: Split, args: argparse.Namespace, rt: Runtime,
                       summary: Summary, model_id: dict) -> dict[str, np.ndarray] | None:
    """S3a features of the sampled positives (this rank's share), gathered to rank 0 and clustered there.
    Returns the clusters on rank 0, None elsewhere."""
    rng = np.random.RandomState(SAMPLE_SEED)
    draws = bac.sample_positives(split.positives, args.bac_num_samples, rng=rng)
    unique = list(dict.fromkeys(draws))
    check_made_with(args.seed_cam_dir, model_id, "--seed_cam_dir", stage="make_cam",
                    fix="rerun --make_cam_pass True first (S2 makes the seeds of the current classifier)")
    seed_paths = check_seed_cams(unique, args.seed_cam_dir)
    share = unique[rt.rank::rt.world_size]
    local = tile_features(model, share, split, seed_paths, args.bac_select_thres, rt.device, args.amp, args.num_workers)
    features = gather_to_main(local)
    if features is None:
        return None
    summary.sampled, summary.unique = len(draws), len(unique)
    timer = Timer()
    clusters = cluster(features, draws, args.num_cluster, args.bac_tol, args.bac_max_iter, rng, rt.device, summary)
    summary.kmeans_s = timer.elapsed
    return clusters


def check_seed_cams(names: list[str], seed_dir: str) -> dict[str, Path]:
    """{name: seed CAM path}; a missing file is a UserError naming it and the fix."""
    paths = {name: Path(seed_dir) / f"{name}.npy" for name in names}
    for name, path in paths.items():
        if not path.is_file():
            raise UserError(f"seed CAM {path} of the sampled positive {name!r} (--train_list) does not exist; "
                            f"run --make_cam_pass True first or point --seed_cam_dir at the S2 output")
    return paths


@torch.no_grad()
def tile_features(model: cam.Net, names: list[str], split: Split, seed_paths: dict[str, Path],
                  select_thres: float, device: torch.device, amp: str = "none", num_workers: int = 0
                  ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """S3a for `names`: {name: (building rows [n1, C], context rows [n2, C])}, float16 on the CPU.

    One tile per forward pass, so a tile's features do not depend on which tiles share its batch
    (hence on the number of ranks).
    """
    dataset = ClassificationDatasetMSF(names, split.image_paths, split.cls_labels, scales=(1.0,))
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    bar = progress(None, total=len(names), desc=f"{TAG} features", disable=not runtime().is_main)
    for (pack,) in loader(dataset, num_workers, batch_size=1):
        x = pack["img"][0][:1].to(device)  # scale 1.0, the unflipped view
        with autocast(device, amp):
            feats = model.features(x)
        seed_map = torch.from_numpy(_building_map(seed_paths[pack["name"]]))
        bld, ctx = bac.split_features(feats[0].float(), seed_map, select_thres)
        out[pack["name"]] = (bld.half().cpu(), ctx.half().cpu())
        bar.update(1)
    bar.close()
    return out


def _building_map(path: Path) -> np.ndarray:
    seed = fileio.load_npy_dict(path)
    channel = np.flatnonzero(np.asarray(seed.get("keys", [])).reshape(-1) == 0)
    if "high_res" not in seed or channel.size == 0:
        raise UserError(f"seed CAM {path} has no building map (keys {seed.get('keys')}, fields {sorted(seed)}); "
                        f"rerun --make_cam_pass True")
    return np.asarray(seed["high_res"][channel[0]], dtype=np.float32)


def cluster(features: dict[str, tuple[torch.Tensor, torch.Tensor]], draws: list[str], k: int, tol: float,
            max_iter: int, rng: np.random.RandomState, device: torch.device, summary: Summary) -> dict[str, np.ndarray]:
    """S3b.2-3: stack the rows in draw order (repeated draws repeat their rows, as in the reference) and run
    the two k-means; initial centres continue the sampling RandomState, as the reference's global one does."""
    result: dict[str, np.ndarray] = {"k": np.int64(k)}
    for part, which in ((0, "bld"), (1, "ctx")):
        x = torch.cat([features[name][part] for name in draws])
        setattr(summary, f"n_{which}", x.shape[0])
        if which == "ctx" and x.shape[0] < k:
            # |Q| = 0 is a valid outcome (S3c then uses A_s without a context term), so too few context pixels is no error
            log.warning("[%s] only %d context features for k = %d: no context prototypes; raise "
                        "--bac_select_thres or sample more tiles to get some", TAG, x.shape[0], k)
            result.update({"ctx_centres": np.zeros((0, x.shape[1]), np.float32), "ctx_ids": np.zeros(0, np.int64),
                           "ctx_iterations": np.int64(0)})
            continue
        _check_rows(x.shape[0], k, which)
        init = rng.choice(x.shape[0], k, replace=False)
        ids, centres, iterations = bac.kmeans_cosine(x.to(device), k, tol=tol, max_iter=max_iter, seed=SAMPLE_SEED,
                                                     init_index=init)
        result.update({f"{which}_centres": centres.float().cpu().numpy(), f"{which}_ids": ids.cpu().numpy(),
                       f"{which}_iterations": np.int64(iterations)})
        del x
    summary.iterations = (int(result["bld_iterations"]), int(result["ctx_iterations"]))
    return result


def _check_rows(n: int, k: int, which: str) -> None:
    if which == "bld" and n == 0:
        raise UserError("no building candidates: no seed-CAM value above --bac_select_thres in any sampled tile; check "
                        "the seed CAMs in --seed_cam_dir (rerun --make_cam_pass True) or lower --bac_select_thres")
    if n < k:
        kind = "building-candidate" if which == "bld" else "context"
        raise UserError(f"only {n} {kind} features for k = --num_cluster {k}; lower --num_cluster, sample more tiles "
                        f"(--bac_num_samples) or adjust --bac_select_thres")


def load_clusters(path: Path, k: int) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise UserError(f"--load_cluster True but {path} does not exist; run once with --load_cluster False")
    with np.load(path) as data:
        clusters = {key: data[key] for key in data.files}
    if int(clusters.get("k", -1)) != k:
        raise UserError(f"{path} holds k = {int(clusters.get('k', -1))} clusters but --num_cluster is {k}; "
                        f"pass --num_cluster {int(clusters.get('k', -1))} or rerun with --load_cluster False")
    return clusters


def select(clusters: dict[str, np.ndarray], w: torch.Tensor, class_thres: float, context_thres: float,
           context_thres_low: float, summary: Summary) -> dict[str, np.ndarray]:
    """S3b.4 on saved or fresh clusters: the prototype file's content."""
    bld, ctx = torch.from_numpy(clusters["bld_centres"]), torch.from_numpy(clusters["ctx_centres"])
    if bld.shape[1] != w.numel():
        raise UserError(f"the saved clusters have {bld.shape[1]}-dim centres but the classifier has {w.numel()} "
                        f"channels; rerun with --load_cluster False")
    prototypes, context, info = bac.select_prototypes(bld, ctx, w, class_thres, context_thres, context_thres_low)
    summary.info = info
    if not summary.iterations[0]:
        summary.iterations = (int(clusters.get("bld_iterations", 0)), int(clusters.get("ctx_iterations", 0)))
    return {"k": clusters["k"], "P": prototypes.numpy(), "Q": context.numpy(),
            "P_scores": info["bld_scores"][info["bld_index"]].numpy(),
            "Q_scores": info["ctx_scores"][info["ctx_index"]].numpy()}


# ------------------------------------------------------------------------------------------ S3c

@torch.no_grad()
def write_expanded_cams(model: cam.Net, split: Split, prototypes: dict[str, np.ndarray], fingerprint: dict,
                        args: argparse.Namespace, rt: Runtime) -> tuple[int, int]:
    """S3c for every positive of the split (this rank's share); returns (maps to write in all, reused)."""
    done = reusable_outputs(args.lpcam_out_dir, fingerprint, args.resume, stage="make_lpcam")
    names = inference_names(split.positives, done)
    todo = sum(1 for n in split.positives if n not in done)
    p = torch.from_numpy(prototypes["P"]).to(rt.device)
    q = torch.from_numpy(prototypes["Q"]).to(rt.device)
    dataset = ClassificationDatasetMSF(names, split.image_paths, split.cls_labels, scales=args.cam_scales)
    bar = progress(None, total=len(names), desc=f"{TAG} maps", disable=not rt.is_main)
    for packs in same_size_groups(iter(loader(dataset, args.num_workers, batch_size=args.cam_infer_batch))):
        feats = []
        for s in range(len(args.cam_scales)):
            with autocast(rt.device, args.amp):
                f = model.features(stack_pyramids(packs, s).to(rt.device))
            feats.append(merge_flips(f.float()))  # f(I_s) + flip(f(flip I_s))
        maps = bac.expanded_cam(feats, p, q, tuple(int(v) for v in packs[0]["size"]))
        for i, pack in enumerate(packs):
            fileio.save_npy_dict(Path(args.lpcam_out_dir) / f"{pack['name']}.npy", {
                "keys": np.zeros(1, dtype=np.int64), "high_res": maps[i:i + 1].cpu().numpy().astype(np.float32)})
        bar.update(len(packs))
    bar.close()
    barrier()
    return todo, len(done & set(split.positives))


def _describe(summary: Summary, prototypes: dict[str, np.ndarray]) -> str:
    info = summary.info
    if summary.loaded:
        head = f"clusters loaded (k-means iterations {summary.iterations[0]}+{summary.iterations[1]})"
    else:
        head = (f"sampled {summary.sampled} tiles ({summary.unique} unique), features building {summary.n_bld} "
                f"context {summary.n_ctx}, k-means {summary.iterations[0]}+{summary.iterations[1]} iterations "
                f"in {summary.kmeans_s:.1f}s")
    if not info:  # ranks other than 0
        return f"{head}; |P|={len(prototypes['P'])} |Q|={len(prototypes['Q'])}"
    fallback = " (top-1 fallback)" if info["fallback"] else ""
    return (f"{head}; |P|={len(prototypes['P'])}{fallback} of building scores "
            f"[{bac.format_scores(info['bld_scores'], info['bld_index'])}], |Q|={len(prototypes['Q'])} of context "
            f"scores [{bac.format_scores(info['ctx_scores'], info['ctx_index'])}]")
