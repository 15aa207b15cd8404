#!/usr/bin/env bash
# Sets up everything the pack needs on a fresh machine, idempotently:
#   .venv/                 a virtual environment with torch, ComfyUI's requirements and the pack's
#   $COMFYUI_PATH          a ComfyUI checkout (default: .comfyui/ next to this file's repo, cloned once)
# Prints `export COMFYUI_PATH=... SYNC_VENV=...` as its last line. Safe to run again; it skips what is done.
#
# COMFYUI_VERSION picks one of the ComfyUI versions the pack is tested with, each in its own checkout and
# virtual environment (their requirements differ):
#   0.3.64 (default)  .comfyui/         .venv/
#   0.33.0            .comfyui-0.33.0/  .venv-0.33.0/
# COMFYUI_PATH, SYNC_VENV, COMFYUI_COMMIT and COMFYUI_GIT_URL override the defaults; SYNC_VENV_SEED names
# an existing venv to copy when this one does not exist yet (saves downloading torch again).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
version="${COMFYUI_VERSION:-0.3.64}"
case "$version" in
  0.3.64) default_commit=a125cd84b054a57729b5eecab930ca9408719832; default_url=https://github.com/Comfy-Org/ComfyUI; suffix="" ;;
  # upstream v0.33.0 as published by the public mirror yzkee/ComfyUI (master = v0.33.0)
  0.33.0) default_commit=783545f689a0af730065994b46b382ae24844c99; default_url=https://github.com/yzkee/ComfyUI; suffix="-0.33.0" ;;
  *) echo "setup: COMFYUI_VERSION=$version is not one the pack is tested with (0.3.64, 0.33.0)" >&2; exit 2 ;;
esac
venv="${SYNC_VENV:-$repo/.venv$suffix}"
comfy_commit="${COMFYUI_COMMIT:-$default_commit}"
comfy_url="${COMFYUI_GIT_URL:-$default_url}"

# A pack installed in ComfyUI/custom_nodes/<pack> uses that ComfyUI.
if [[ -z "${COMFYUI_PATH:-}" && -z "${COMFYUI_VERSION:-}" && -f "$repo/../../main.py" && -d "$repo/../../comfy" ]]; then
  COMFYUI_PATH=$(cd "$repo/../.." && pwd)
fi
COMFYUI_PATH="${COMFYUI_PATH:-$repo/.comfyui$suffix}"

if [[ ! -f "$COMFYUI_PATH/main.py" ]]; then
  echo "setup: cloning ComfyUI ($comfy_commit) into $COMFYUI_PATH" >&2
  if ! git clone -q --no-checkout "$comfy_url" "$COMFYUI_PATH"; then
    echo "setup: could not clone ComfyUI from $comfy_url; integration tests will be skipped" >&2
    COMFYUI_PATH=""
  fi
fi
if [[ -n "$COMFYUI_PATH" && ! -f "$COMFYUI_PATH/main.py" ]]; then
  # Some snapshots lack a few large blobs we never use (e.g. LLM tokenizers): check out all the others.
  tree=$(git -C "$COMFYUI_PATH" ls-tree -r "$comfy_commit")
  absent=$(awk '{print $3}' <<<"$tree" | git -C "$COMFYUI_PATH" cat-file --batch-check | awk '$2 == "missing" {print $1}')
  missing=$([[ -z "$absent" ]] || grep -F -f <(echo "$absent") <<<"$tree" | cut -f2)
  if [[ -n "$missing" ]]; then
    git -C "$COMFYUI_PATH" sparse-checkout init --no-cone 2>/dev/null
    { echo '/*'; sed 's|^|!/|' <<<"$missing"; } >"$COMFYUI_PATH/.git/info/sparse-checkout"
  fi
  # git still names the absent blobs while it writes its index; the files are not needed, say so once.
  git -C "$COMFYUI_PATH" checkout -q "$comfy_commit" 2> >(grep -v '^error: invalid object' >&2)
  [[ -z "$missing" ]] || echo "setup: left out files absent from the ComfyUI snapshot (unused by the pack): $(echo $missing)" >&2
fi

if [[ ! -x "$venv/bin/python" && -n "${SYNC_VENV_SEED:-}" && -x "${SYNC_VENV_SEED}/bin/python" ]]; then
  # A second ComfyUI version's venv starts as a copy of the first (torch and its CUDA libraries are GBs to
  # download); this version's requirements are then installed over it.
  echo "setup: creating $venv as a copy of $SYNC_VENV_SEED" >&2
  cp -a "$SYNC_VENV_SEED" "$venv"
  rm -f "$venv"/.sync-setup-*
fi
if [[ ! -x "$venv/bin/python" ]]; then
  echo "setup: creating $venv" >&2
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
if ! "$py" -c 'import torch, torchvision' 2>/dev/null; then
  # ComfyUI imports torchvision; PyPI's torch/torchvision pair runs on the CPU as well as on CUDA.
  # A CPU-only torch wheel from a local wheel folder would not match PyPI's torchvision, so bypass it.
  echo "setup: installing torch + torchvision (PyPI build)" >&2
  PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= "$py" -m pip install -q \
    "torch==2.13.0" "torchvision==0.28.0" "torchaudio==2.11.0" 2>&1 | tail -3 >&2 || \
  "$py" -m pip install -q torch torchvision torchaudio
fi
comfy_reqs=()
[[ -n "$COMFYUI_PATH" ]] && comfy_reqs=(-r "$COMFYUI_PATH/requirements.txt")
stamp="$venv/.sync-setup-$(cat "$repo/requirements.txt" "$repo/requirements-dev.txt" ${COMFYUI_PATH:+"$COMFYUI_PATH/requirements.txt"} | sha1sum | cut -c1-12)"
if [[ ! -f "$stamp" ]]; then
  echo "setup: installing ComfyUI's and the pack's requirements" >&2
  tv=$("$py" -c 'import torch, torchvision as tv; print("torch==" + torch.__version__.split("+")[0]); print("torchvision==" + tv.__version__.split("+")[0])')
  log=$(mktemp)
  if ! "$py" -m pip install -q "${comfy_reqs[@]}" -r "$repo/requirements-dev.txt" requests -c <(echo "$tv") >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    exit 1
  fi
  rm -f "$log"
  touch "$stamp"
fi
echo "export COMFYUI_PATH=$COMFYUI_PATH SYNC_VENV=$venv"
