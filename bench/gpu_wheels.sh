#!/usr/bin/env bash
# Download what bench/gpu_check.sh installs on a lent GPU machine (bench/gpu_wheels.txt) into .whl/ at the
# repository root, for CPython 3.12 on x86-64 Linux, and check that it fits the 64 MiB working tree.
#
#   bash bench/gpu_wheels.sh            # then: the device tool's run, with carry [".whl"] (BENCHMARKS.md, "GPU check")
#
# .whl/ is ignored by git (never commit wheels). PYTHON picks the pip to use [python3].
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
LIMIT_MB=${LIMIT_MB:-50}   # the tree that travels holds 64 MiB; the rest of the repository is about 1 MB
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
mkdir -p .whl
while read -r spec kind; do
  case "$spec" in ""|\#*) continue ;; esac
  if [ "${kind:-}" = sdist ]; then
    echo "+ $PYTHON -m pip download --no-deps --no-binary=:all: -d .whl $spec"
    "$PYTHON" -m pip download -q --no-deps --no-binary=:all: --no-build-isolation -d .whl "$spec"
  else
    echo "+ $PYTHON -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp ${PLATFORMS[*]} -d .whl $spec"
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      "${PLATFORMS[@]}" -d .whl "$spec"
  fi
done < bench/gpu_wheels.txt
ls -l .whl
total=$(du -cb .whl/* | tail -1 | cut -f1)
echo "gpu_wheels: $(ls .whl | wc -l) files, $((total / 1048576)) MiB in .whl/ (limit ${LIMIT_MB} MiB)"
if [ "$total" -gt $((LIMIT_MB * 1048576)) ]; then
  echo "error: .whl/ holds more than ${LIMIT_MB} MiB: remove what bench/gpu_wheels.txt no longer lists" >&2
  exit 2
fi
