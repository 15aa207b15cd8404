#!/usr/bin/env python
"""The README's demo-model pictures: the shipped wide panorama and 360 workflows, run headless through a real
ComfyUI with the demo model at its own size (what `scripts/demo.sh` does), once as shipped (SyncTweedies
Case 2 / StochSync) and once with the sampler mode set to Case 0 (no synchronization). Real generation
results, nothing retouched; the images are copied as ComfyUI saved them.

    .venv/bin/python scripts/make_demo_figures.py [--out docs/figures] [--comfyui PATH]

Writes OUT/demo_<workflow>_<mode>.png and prints the runner's report for each run.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
RUNS = (("wide_panorama", None), ("wide_panorama", "case_0"), ("panorama360_stochsync", None),
        ("panorama360_stochsync", "case_0"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=REPO / "docs" / "figures")
    parser.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH"))
    parser.add_argument("--only", help="comma-separated workflow names to run")
    parser.add_argument("--models-dir", help="the runner's models folder (default: its own)")
    args = parser.parse_args(argv)
    if not args.comfyui:
        parser.error("set COMFYUI_PATH or pass --comfyui")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, mode in RUNS:
        if args.only and name not in args.only.split(","):
            continue
        graph = json.loads((REPO / "workflows" / "api" / f"{name}.json").read_text())
        for node in graph.values():
            if node["class_type"] == "SyncCanvasKSampler" and mode is not None:
                node["inputs"]["mode"] = mode
            if node["class_type"] == "SyncCanvasCrossViewAttention" and mode is not None:
                node["inputs"]["weight"] = 0.0  # case 0 means no coupling between views at all
        with tempfile.TemporaryDirectory() as tmp:
            tmp = pathlib.Path(tmp)
            (tmp / f"{name}.json").write_text(json.dumps(graph))
            out = tmp / "out"
            cmd = [sys.executable, str(REPO / "scripts" / "run_workflow.py"), str(tmp / f"{name}.json"), "--demo-size",
                   "--output", str(out), "--comfyui", args.comfyui, "--device", "cpu"]
            if args.models_dir:
                cmd += ["--models-dir", args.models_dir]
            print("$ " + " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
            canvases = sorted(p for p in out.rglob(f"{name}_*.png") if "_views" not in p.name)
            if not canvases:
                raise SystemExit(f"{name}: the run saved no canvas image under {out}")
            dest = args.out / f"demo_{name}_{mode or 'shipped'}.png"
            shutil.copyfile(canvases[0], dest)
            print(f"wrote {dest}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
