# Sourced by the other scripts: pick the Python to use and make sure requirements.txt is installed.
# - An active virtualenv / conda env (not base) is used as it is; otherwise ./.venv is created.
# - requirements.txt is (re)installed only when its hash differs from the one recorded last time,
#   so a second run is a fast no-op.
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${VIRTUAL_ENV:-}" ]; then
  env_dir="$VIRTUAL_ENV"; PY="$VIRTUAL_ENV/bin/python"
elif [ -n "${CONDA_PREFIX:-}" ] && [ "${CONDA_DEFAULT_ENV:-base}" != "base" ]; then
  env_dir="$CONDA_PREFIX"; PY="$CONDA_PREFIX/bin/python"
else
  env_dir="$repo_root/.venv"; PY="$env_dir/bin/python"
  if [ ! -x "$PY" ]; then
    echo "+ python3 -m venv .venv"
    python3 -m venv "$env_dir"
  fi
fi
stamp="$env_dir/.bac_ar_net_requirements.sha256"
want="$(sha256sum "$repo_root/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "+ $PY -m pip install -r requirements.txt"
  "$PY" -m pip install -q --disable-pip-version-check -r "$repo_root/requirements.txt"
  echo "$want" > "$stamp"
fi
export PYTHONPATH="$repo_root${PYTHONPATH:+:$PYTHONPATH}"
