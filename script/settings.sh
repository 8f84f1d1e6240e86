# Sourced by generate_pseudo_mask.sh and train_segmentation.sh (after env.sh): the dataset and the
# settings both scripts share. Every value can be overridden from the environment.
# Without DATASET_ROOT the synthetic demo dataset is made (deterministic, a no-op when it already exists)
# and a small backbone trained from scratch keeps the whole chain to minutes on a laptop CPU; with
# DATASET_ROOT the reference script's settings apply (SPEC section 6).
WORK_SPACE=${WORK_SPACE:-result_rrdsd}
SESS=${SESS:-sess_rrdsd}
DEVICE=${DEVICE:-auto}
AMP=${AMP:-auto}            # bf16 where the CPU or GPU has bf16 hardware, else fp32 (misc/hardware.py)
NUM_WORKERS=${NUM_WORKERS:-auto}  # loader and CRF workers of each rank from the cores (docs/ARCHITECTURE.md, Speed)
RESUME=${RESUME:-True}

if [ -z "${DATASET_ROOT:-}" ]; then
  echo "+ $PY -m voc12.demo --out Dataset/demo"
  "$PY" -m voc12.demo --out Dataset/demo
  DATASET_ROOT=Dataset/demo
  BACKBONE=${BACKBONE:-RepVGG-Tiny}
  CAM_EPOCHS=${CAM_EPOCHS:-30}
  CAM_LR=${CAM_LR:-0.02}
  CAM_MOMENTUM=${CAM_MOMENTUM:-0.9}
  BAC_SAMPLES=${BAC_SAMPLES:-0}
else
  BACKBONE=${BACKBONE:-RepVGG-B1g2}
  CAM_EPOCHS=${CAM_EPOCHS:-20}
  CAM_LR=${CAM_LR:-0.01}
  CAM_MOMENTUM=${CAM_MOMENTUM:-0.0001}
  BAC_SAMPLES=${BAC_SAMPLES:-3000}
fi
CAM_BATCH=${CAM_BATCH:-16}
AMN_EPOCHS=${AMN_EPOCHS:-10}
SEG_EPOCHS=${SEG_EPOCHS:-20}
LAMBDA1=${LAMBDA1:-0.4}     # weight of the multi-scale consistency loss (MCL) in S6
SEG_BATCH=${SEG_BATCH:-8}
SEG_LR=${SEG_LR:-0.01}

AMN_BACKBONE=${AMN_BACKBONE:-$BACKBONE}   # the AR network's (S6) backbone

COMMON=(--voc12_root "$DATASET_ROOT" --work_space "$WORK_SPACE" --backbone "$BACKBONE" --amn_backbone "$AMN_BACKBONE"
        --cam_weights_name "$SESS/repvgg_cam" --amn_weights_name "$SESS/repvgg_amn" --device "$DEVICE" --amp "$AMP"
        --num_workers "$NUM_WORKERS" --resume "$RESUME")

run() {
  echo "+ $PY run_sample.py $*"
  "$PY" run_sample.py "$@"
}
