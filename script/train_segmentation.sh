#!/usr/bin/env bash
# S11 after script/generate_pseudo_mask.sh: DeepLabV3+ trained on the pseudo masks, its masks of the held-out
# test tiles (<dataset>/test.txt: every tile of the test scenes or areas, negatives included, and the unlabelled
# tiles of a dataset from image-level labels) and their scores, then (S12) their building footprints.
# With UPPER_BOUND=True (the default) the same network is also trained on the ground-truth masks with the same
# budget: the ratio of the two building IoUs is how close image-level labels come to full supervision. A
# dataset without ground truth (`python -m voc12.prepare labels`) skips it, and the scores say "no ground truth".
#
#   bash script/train_segmentation.sh                            # the demo dataset, after generate_pseudo_mask.sh
#   DATASET_ROOT=Dataset/RRDSD bash script/train_segmentation.sh
#
# Same environment variables as generate_pseudo_mask.sh (script/settings.sh), plus SEG_EPOCHS, SEG_BATCH, SEG_LR and
# SELF_TRAIN_ROUNDS (rounds of the pseudo-mask model learning from its own predictions, --seg_self_train_rounds).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source script/env.sh
source script/settings.sh

TRAIN_SEG=${TRAIN_SEG:-True}        # S11 DeepLabV3+ on the pseudo masks, then its test masks and scores
UPPER_BOUND=${UPPER_BOUND:-True}    # S11 the same on ground truth (fully supervised upper bound)
FOOTPRINTS=${FOOTPRINTS:-True}      # S12 building footprints from the masks of the pseudo-mask model

GT_DIR=$("$PY" -c 'import sys; from voc12.layout import default_paths; print(default_paths(sys.argv[1])["gt_dir"])' "$DATASET_ROOT")
if [ "$UPPER_BOUND" = True ] && [ ! -d "$GT_DIR" ]; then
  echo "no ground truth in $GT_DIR (a dataset of image-level labels): the upper bound on ground truth is skipped"
  UPPER_BOUND=False
fi
if [ "$TRAIN_SEG" = True ]; then
  run "${COMMON[@]}" "${S11_FLAGS[@]}" "${SELF_TRAIN_FLAGS[@]}" --train_seg_pass True --make_seg_pass True \
    --eval_seg_pass True --seg_weights_name "$SESS/deeplabv3plus" --seg_out_dir "$WORK_SPACE/seg"
fi
if [ "$UPPER_BOUND" = True ]; then
  run "${COMMON[@]}" "${S11_FLAGS[@]}" --train_seg_pass True --make_seg_pass True --eval_seg_pass True \
    --seg_label_dir "$GT_DIR" \
    --seg_weights_name "$SESS/deeplabv3plus_gt" --seg_out_dir "$WORK_SPACE/seg_gt"
fi
if [ "$FOOTPRINTS" = True ]; then
  run "${COMMON[@]}" --make_footprints_pass True --seg_weights_name "$SESS/deeplabv3plus" --seg_out_dir "$WORK_SPACE/seg"
fi

echo
echo "Stage metrics ($WORK_SPACE/metrics_*.json):"
"$PY" -m step.report --work_space "$WORK_SPACE"
