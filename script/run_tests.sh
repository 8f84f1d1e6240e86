#!/usr/bin/env bash
# The test command: sets up the environment if needed, then runs the whole pytest suite.
# Extra arguments go to pytest, e.g. `bash script/run_tests.sh -m "not slow" -x`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source script/env.sh
echo "+ $PY -m pytest tests $*"
"$PY" -m pytest tests "$@"
