#!/usr/bin/env bash
# The main job: image-level labels -> seed CAMs -> BAC expanded CAMs -> confident labels -> AR network
# -> AR maps -> pseudo masks, with the evaluation of each map and a table of the stage metrics at the end.
#
#   bash script/generate_pseudo_mask.sh                          # the built-in demo dataset (no download)
#   DATASET_ROOT=Dataset/RRDSD bash script/generate_pseudo_mask.sh   # your data, paper settings
#
# To rerun one stage, set the others to False below (or e.g. `MAKE_CAM=False bash ...`). Finished
# work is kept: training resumes from its last epoch and map stages skip the tiles already done
# (set RESUME=False to redo everything).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source script/env.sh

# ---- stages (True / False) ----
TRAIN_CAM=${TRAIN_CAM:-True}          # S1  classifier (+ S1d deploy)
MAKE_CAM=${MAKE_CAM:-True}            # S2  seed CAMs
EVAL_SEED_CAM=${EVAL_SEED_CAM:-True}  # S2e evaluate the seed CAMs
MAKE_LPCAM=${MAKE_LPCAM:-True}        # S3  building-aware clustering -> expanded CAMs
EVAL_CAM=${EVAL_CAM:-True}            # S4  evaluate the expanded CAMs
CAM_TO_IR_LABEL=${CAM_TO_IR_LABEL:-True}  # S5  confident labels with dense CRF
TRAIN_AMN=${TRAIN_AMN:-True}          # S6  AR network (+ S6d deploy)
MAKE_AMN_CAM=${MAKE_AMN_CAM:-True}    # S7  AR maps
EVAL_AMN_CAM=${EVAL_AMN_CAM:-True}    # S8  evaluate the AR maps
MAKE_PSEUDO_MASK=${MAKE_PSEUDO_MASK:-True}  # S9  pseudo masks {0,1} PNG

source script/settings.sh   # dataset (the demo without DATASET_ROOT), backbone, epochs, COMMON flags, run()

if [ "$TRAIN_CAM" = True ] || [ "$MAKE_CAM" = True ]; then
  run "${COMMON[@]}" \
    --train_cam_pass "$TRAIN_CAM" --make_cam_pass "$MAKE_CAM" "${S1_FLAGS[@]}"
fi
if [ "$EVAL_SEED_CAM" = True ]; then
  run "${COMMON[@]}" --eval_cam_pass True --eval_cam_dir "$WORK_SPACE/cam" --cam_eval_sweep True
fi
if [ "$MAKE_LPCAM" = True ]; then
  run "${COMMON[@]}" --make_lpcam_pass True "${S3_FLAGS[@]}"
fi
if [ "$EVAL_CAM" = True ]; then
  run "${COMMON[@]}" --eval_cam_pass True --eval_cam_dir "$WORK_SPACE/lpcam_mask" --cam_eval_sweep True
fi
if [ "$CAM_TO_IR_LABEL" = True ]; then
  run "${COMMON[@]}" --cam_to_ir_label_pass True
fi
if [ "$TRAIN_AMN" = True ] || [ "$MAKE_AMN_CAM" = True ] || [ "$EVAL_AMN_CAM" = True ] || [ "$MAKE_PSEUDO_MASK" = True ]; then
  run "${COMMON[@]}" \
    --train_amn_pass "$TRAIN_AMN" --make_amn_cam_pass "$MAKE_AMN_CAM" \
    --eval_amn_cam_pass "$EVAL_AMN_CAM" --make_pseudo_mask_pass "$MAKE_PSEUDO_MASK" "${S6_FLAGS[@]}"
fi

echo
echo "Next: bash script/train_segmentation.sh (DeepLabV3+ on these pseudo masks)"
echo "Stage metrics ($WORK_SPACE/metrics_*.json):"
"$PY" -m step.report --work_space "$WORK_SPACE"
