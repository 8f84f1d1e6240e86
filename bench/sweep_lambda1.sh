#!/usr/bin/env bash
# The reference's Lambda1 sweep (weight of the multi-scale consistency loss, MCL, in S6) on the confident
# labels of a finished run of script/generate_pseudo_mask.sh: for each value, S6 -> S7 -> S8 in folders of
# their own, then one table of the AR maps' building IoU at the fixed threshold (--amn_eval_thres 0.67).
#
#   bash bench/sweep_lambda1.sh                                   # the demo run in result_rrdsd/
#   LAMBDAS="0.2 0.4" WORK_SPACE=result_fair SESS=sess_fair DATASET_ROOT=Dataset/fair bash bench/sweep_lambda1.sh
#
# Same environment variables as script/generate_pseudo_mask.sh (script/settings.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source script/env.sh
source script/settings.sh
LAMBDAS=${LAMBDAS:-0.2 0.4 0.6 0.8 1.0}

for lambda in $LAMBDAS; do
  # each value in a work space of its own (metrics, maps, log), reading the run's confident labels
  run "${COMMON[@]}" --work_space "$WORK_SPACE/sweep_l$lambda" --ir_label_out_dir "$WORK_SPACE/ir_label" \
    --amn_weights_name "$SESS/sweep/repvgg_amn_l$lambda" --train_amn_pass True --make_amn_cam_pass True \
    --eval_amn_cam_pass True --amn_num_epoches "$AMN_EPOCHS" --Lambda1 "$lambda" --num_vis 0
done

echo
echo "| Lambda1 | building IoU | F1 | precision | recall |"
echo "|---|---|---|---|---|"
for lambda in $LAMBDAS; do
  "$PY" - "$WORK_SPACE/sweep_l$lambda/metrics_amn_cam.json" "$lambda" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["scores"]
print(f"| {sys.argv[2]} | {s['building_iou']:.4f} | {s['f1']:.4f} | {s['precision']:.4f} | {s['recall']:.4f} |")
PY
done
