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
RESUME=${RESUME:-True}

WORK_SPACE=${WORK_SPACE:-result_rrdsd}
SESS=${SESS:-sess_rrdsd}
DEVICE=${DEVICE:-auto}
AMP=${AMP:-bf16}            # bf16 autocast: 2.3x faster S1 on CPU (AMX); S2 building IoU unchanged (BENCHMARKS.md)
NUM_WORKERS=${NUM_WORKERS:-$(( $(nproc) > 1 ? $(nproc) / 2 : 1 ))}

if [ -z "${DATASET_ROOT:-}" ]; then
  # Demo: a small backbone trained from scratch, so the chain runs in minutes on a laptop CPU.
  echo "+ $PY -m voc12.demo --out Dataset/demo"
  "$PY" -m voc12.demo --out Dataset/demo
  DATASET_ROOT=Dataset/demo
  BACKBONE=${BACKBONE:-RepVGG-Tiny}
  CAM_EPOCHS=${CAM_EPOCHS:-30}
  CAM_BATCH=${CAM_BATCH:-16}
  CAM_LR=${CAM_LR:-0.02}
  CAM_MOMENTUM=${CAM_MOMENTUM:-0.9}
  BAC_SAMPLES=${BAC_SAMPLES:-0}
  AMN_EPOCHS=${AMN_EPOCHS:-10}
else
  # The reference script's settings (SPEC section 6).
  BACKBONE=${BACKBONE:-RepVGG-B1g2}
  CAM_EPOCHS=${CAM_EPOCHS:-20}
  CAM_BATCH=${CAM_BATCH:-16}
  CAM_LR=${CAM_LR:-0.01}
  CAM_MOMENTUM=${CAM_MOMENTUM:-0.0001}
  BAC_SAMPLES=${BAC_SAMPLES:-3000}
  AMN_EPOCHS=${AMN_EPOCHS:-10}
fi
LAMBDA1=${LAMBDA1:-0.4}   # weight of the multi-scale consistency loss (MCL) in S6

COMMON=(--voc12_root "$DATASET_ROOT" --work_space "$WORK_SPACE" --backbone "$BACKBONE"
        --cam_weights_name "$SESS/repvgg_cam" --amn_weights_name "$SESS/repvgg_amn" --device "$DEVICE" --amp "$AMP"
        --num_workers "$NUM_WORKERS" --resume "$RESUME")

run() {
  echo "+ $PY run_sample.py $*"
  "$PY" run_sample.py "$@"
}

if [ "$TRAIN_CAM" = True ] || [ "$MAKE_CAM" = True ]; then
  run "${COMMON[@]}" \
    --train_cam_pass "$TRAIN_CAM" --make_cam_pass "$MAKE_CAM" \
    --cam_num_epoches "$CAM_EPOCHS" --cam_batch_size "$CAM_BATCH" \
    --cam_learning_rate "$CAM_LR" --cam_momentum "$CAM_MOMENTUM"
fi
if [ "$EVAL_SEED_CAM" = True ]; then
  run "${COMMON[@]}" --eval_cam_pass True --eval_cam_dir "$WORK_SPACE/cam" --cam_eval_sweep True
fi
if [ "$MAKE_LPCAM" = True ]; then
  run "${COMMON[@]}" --make_lpcam_pass True --bac_num_samples "$BAC_SAMPLES"
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
    --eval_amn_cam_pass "$EVAL_AMN_CAM" --make_pseudo_mask_pass "$MAKE_PSEUDO_MASK" \
    --amn_num_epoches "$AMN_EPOCHS" --Lambda1 "$LAMBDA1"
fi

echo
echo "Stage metrics ($WORK_SPACE/metrics_*.json):"
"$PY" -m misc.report --work_space "$WORK_SPACE"
