#!/usr/bin/env bash
# The README's test command: sets everything up (scripts/setup.sh) and runs every test.
# Integration tests against a real ComfyUI run when a checkout is available (COMFYUI_PATH, or the one
# setup.sh clones); otherwise they are skipped and the run says so. Exits non-zero on failure and on
# zero tests collected. Extra arguments go to pytest.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
setup_out=$(bash scripts/setup.sh) || { echo "test: setup failed" >&2; exit 1; }
eval "$(tail -n 1 <<<"$setup_out")"
[[ -f "${COMFYUI_PATH:-}/main.py" ]] || unset COMFYUI_PATH
export COMFYUI_PATH
"${SYNC_VENV:-$repo/.venv}/bin/python" -m pytest "$@"
rc=$?
if [[ $rc -eq 5 ]]; then
  echo "test: pytest collected no tests - failing on purpose" >&2
  exit 1
fi
exit $rc
