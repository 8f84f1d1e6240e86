"""How long S11 should train: building IoU of DeepLabV3+ after each epoch of one schedule, on lists of tiles
with ground truth (the test area and the training positives), for the pseudo-mask or the ground-truth model.

    python bench/seg_schedule.py --voc12_root Dataset/fair --work_space result_fair --augment dihedral \
        --seg_num_epoches 9 --curve_lists Dataset/fair/test.txt,Dataset/fair/train_aug_building.txt
    ... --seg_label_dir Dataset/fair/SegmentationClassAug        # the same curve for the ground-truth model

Every run_sample flag is accepted and means the same (the same parser and defaults, the same training set,
optimiser and augmentation as S11). The poly learning rate decays over the whole --seg_num_epoches, so the
point at epoch e < E is a model still at a higher learning rate than a run of e epochs would end at: the curve
says whether the last epochs still add, not what a shorter schedule reaches. Tiles are predicted as make_seg
predicts them (--seg_context included). The weights live in a temporary folder, deleted at the end: the
stage's own checkpoint is never touched. Prints a markdown table.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

import run_sample  # noqa: E402
from misc import imutils, metrics  # noqa: E402
from misc.torchutils import setup_runtime  # noqa: E402
from step import train_seg  # noqa: E402
from misc.tilegrid import TileContext  # noqa: E402
from step.kit.segmentation import seg_settings, tile_logits  # noqa: E402
from voc12 import dataloader  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = run_sample.build_parser()
    parser.add_argument("--curve_lists", type=str, required=True,
                        help="comma-separated tile lists scored after every epoch (their masks in --gt_dir)")
    args = parser.parse_args(argv)
    run_sample.resolve_workers(args)
    args = run_sample.resolve_paths(args)
    rt = setup_runtime(args.device, args.amp, args.num_threads)
    args.amp = rt.amp
    s = seg_settings(args)
    dataset = train_seg.training_set(args, s)
    lists, images = {}, {}
    for list_path in args.curve_lists.split(","):
        names = dataloader.read_list(list_path, "--curve_lists")
        lists[Path(list_path).stem] = names
        images.update(dataloader.check_dataset(names, Path(args.image_dir), list_flag="--curve_lists",
                                               list_path=list_path, decode=False))
    gts = {name: imutils.read_gt(Path(args.gt_dir) / f"{name}.png") for name in images}
    context = TileContext.of_folders({p.parent for p in images.values()}, args.seg_context, args.xyz_name_pattern)
    rows: list[tuple[int, float, dict[str, float]]] = []
    start = time.perf_counter()

    @torch.no_grad()
    def score(model: torch.nn.Module, epoch: int) -> None:
        model.eval()
        ious = {}
        for list_name, names in lists.items():
            conf = metrics.ConfusionMeter()
            for name in names:
                logits = tile_logits(model, images[name], context, args, rt.device)[1]
                conf.add(gts[name], logits.argmax(0).numpy())
            ious[list_name] = conf.scores()["building_iou"]
        model.train()
        rows.append((epoch, time.perf_counter() - start, ious))
        print(f"epoch {epoch}: " + "  ".join(f"{k} {v:.4f}" for k, v in ious.items()), flush=True)

    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = Path(scratch) / "deeplabv3plus_schedule.pth"
        args.resume = False
        train_seg.fit_seg(args, s, dataset, {"bench": "seg_schedule"}, checkpoint, args.seg_num_epoches,
                          f"schedule curve on {s.trained_on}", on_epoch_end=score)
    print(f"\nS11 schedule, DeepLabV3+ ({args.seg_backbone}) on {s.trained_on}, {len(dataset)} tiles, "
          f"{args.seg_num_epoches} epochs, augment {args.augment}, context {args.seg_context} px, precision {args.amp}, "
          f"device {rt.device}\n")
    print("| epoch | minutes | " + " | ".join(lists) + " |")
    print("|---|---|" + "---|" * len(lists))
    for epoch, seconds, ious in rows:
        print(f"| {epoch} | {seconds / 60:.1f} | " + " | ".join(f"{ious[k]:.4f}" for k in lists) + " |")


if __name__ == "__main__":
    main()
