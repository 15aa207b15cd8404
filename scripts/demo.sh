#!/usr/bin/env bash
# Fresh machine to a result in one command: set everything up, run a shipped workflow headless through
# a real ComfyUI, copy what it made into ./output/.
#
#   scripts/demo.sh [CHECKPOINT]
#
#   CHECKPOINT / $SYNC_CHECKPOINT  a checkpoint: a path to the file, or its name in your ComfyUI's models/checkpoints (e.g.
#                                  v1-5-pruned-emaonly.safetensors). Without one, the pack's demo model
#                                  (trained on procedural landscapes, scripts/train_demo_model.py) is built
#                                  from assets/weights and run at its own size (256 px views, <= 12 steps):
#                                  a recognisable landscape panorama. It paints five scene classes
#                                  (mountains, desert, ocean, night, forest); other prompts are replaced.
#   $SYNC_CONTROLNET               depth ControlNet (path or name) for the depth workflows with your checkpoint
#   $SYNC_WORKFLOW                 workflow to run (default: workflows/api/wide_panorama.json, else the
#                                  first workflows/api/*.json; UI files from example_workflows/ work too)
#   $SYNC_FAST                     1: the smallest sizes and 2 steps (a smoke run); 0 (default): as shipped
#                                  with your checkpoint, the demo model's own size without one
#   $SYNC_OUTPUT                   where to copy the outputs (default: ./output)
#   $COMFYUI_PATH                  an existing ComfyUI checkout (default: the one scripts/setup.sh provides)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

# setup.sh is idempotent and prints `export COMFYUI_PATH=...` as its last line.
eval "$(bash scripts/setup.sh | tail -n 1)"
py="${SYNC_VENV:-$repo/.venv}/bin/python"

checkpoint="${1:-${SYNC_CHECKPOINT:-}}"
workflow="${SYNC_WORKFLOW:-}"
if [[ -z "$workflow" ]]; then
  workflow=workflows/api/wide_panorama.json
  if [[ ! -f "$workflow" ]]; then
    workflow=$(ls workflows/api/*.json 2>/dev/null | head -n 1 || true)
  fi
fi
if [[ -z "$workflow" || ! -f "$workflow" ]]; then
  echo "demo: no workflow to run (SYNC_WORKFLOW='${SYNC_WORKFLOW:-}', nothing in workflows/api/*.json)" >&2
  exit 2
fi

args=("$workflow" --output "${SYNC_OUTPUT:-$repo/output}")
if [[ -n "$checkpoint" ]]; then
  args+=(--checkpoint "$checkpoint")
  fast="${SYNC_FAST:-0}"
else
  echo "demo: no checkpoint given (first argument or SYNC_CHECKPOINT): using the demo model (landscapes) at its own size" >&2
  fast="${SYNC_FAST:-0}"
  [[ "$fast" != 1 ]] && args+=(--demo-size)
fi
[[ -n "${SYNC_CONTROLNET:-}" ]] && args+=(--controlnet "$SYNC_CONTROLNET")
[[ "$fast" == 1 ]] && args+=(--fast)

echo "demo: $py scripts/run_workflow.py ${args[*]}" >&2
exec "$py" scripts/run_workflow.py "${args[@]}"
