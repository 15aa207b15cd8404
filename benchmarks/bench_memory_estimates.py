"""Peak memory of small projector builds against projectors/memory.py's estimates (each build in a fresh
process; peak RSS growth from /proc/self/status VmHWM). The estimate should be >= the measured peak.

    OMP_NUM_THREADS=1 python benchmarks/bench_memory_estimates.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]

CHILD = r"""
import importlib.util, json, sys, pathlib
root = pathlib.Path(sys.argv[1])
spec = importlib.util.spec_from_file_location("sync_canvas", root / "__init__.py", submodule_search_locations=[str(root)])
m = importlib.util.module_from_spec(spec); sys.modules["sync_canvas"] = m; spec.loader.exec_module(m)
import torch
from sync_canvas import projectors
from sync_canvas.projectors import memory
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"): return int(line.split()[1]) * 1024
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"): return int(line.split()[1]) * 1024
case, args = json.loads(sys.argv[2])
before = rss()
if case == "wide":
    est = memory.wide_panorama(*args)
    p = projectors.WidePanoramaProjector(args[0], args[1], args[2], args[3], args[4]); p.rescaled(8)
elif case == "equirect":
    view, rig, interp = args
    n = 8 if rig == "synctweedies" else 10
    from sync_canvas.projectors.panorama360 import default_canvas
    est = memory.equirect(view, n, default_canvas(view, 72.0), interp)
    p = projectors.EquirectProjector(view, None, 0.0, 72.0, None, rig, False, interp); p.rescaled(8)
elif case == "splat":  # the projector node's build, then the latent twin the sampler builds
    from sync_canvas.assets.splat_procedural import procedural_splat_scene
    from sync_canvas.assets.splat_cameras import fit_orbit
    from sync_canvas.projectors.splat import SplatProjector
    from sync_canvas.projectors.splat_memory import build_estimate
    g, n, size = args
    scene = procedural_splat_scene(g, seed=1)
    cams = fit_orbit(scene.means, scene.opacities, n, 50.0, size, size)
    est = build_estimate(scene.means, scene.quats, scene.log_scales, scene.opacities, cams)
    before = rss()
    p = SplatProjector.from_scene(scene, cams); p.rescaled(8)
print(json.dumps([est.bytes, hwm() - before]))
"""

CASES = [
    ("wide", [512, 4096, 512, 64, False]),
    ("wide", [1024, 2048, 512, 128, True]),
    ("equirect", [512, "synctweedies", "nearest"]),
    ("equirect", [512, "stochsync", "bilinear"]),
    ("equirect", [1024, "synctweedies", "nearest"]),
    ("splat", [2000, 8, 128]),
    ("splat", [20000, 16, 256]),
    ("splat", [100000, 8, 256]),
    ("splat", [5000, 20, 512]),
]


def main() -> None:
    print(f"{'case':<40} {'estimate MiB':>13} {'measured MiB':>13} {'ratio':>7}")
    for case, args in CASES:
        out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), json.dumps([case, args])], capture_output=True, text=True)
        if out.returncode:
            print(case, args, "failed:", out.stderr[-300:])
            continue
        est, peak = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{case + ' ' + str(args):<40} {est / 2**20:>13.1f} {peak / 2**20:>13.1f} {est / max(peak, 1):>7.2f}")


if __name__ == "__main__":
    main()
