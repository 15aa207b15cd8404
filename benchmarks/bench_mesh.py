"""Mesh texturing cost on the CPU: geometry precompute and per-step synchronization vs the model.

Prints, side by side in one run:
* precompute: rasterise 10 views (paper rig) at 768^2 on a 100k-face mesh + build the RGB taps
  (texture 1024^2), and the latent projector (views 96^2, texture 1536^2; SyncTweedies A1.3);
* per-step sync at latent resolution: ``project(aggregate(x0, previous))`` on ``[10, 4, 96, 96]``
  (what the engine runs every step; with and without the texel pull), plus one Voronoi fill;
* one forward of a full-size SD1.5-architecture UNet (diffusers ``UNet2DConditionModel``, random
  weights) on the 10 views (96^2 latents, batch 10, 77 text tokens).
Targets (issue 5): precompute < one model step; per-step sync <= 5% of the model step.

Run:  flock /tmp/cpu-heavy.lock .venv/bin/python benchmarks/bench_mesh.py [--skip-unet]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
import conftest  # noqa: E402,F401  (imports the pack as `sync_canvas`)

from sync_canvas.assets import procedural  # noqa: E402
from sync_canvas.assets.cameras import paper_rig  # noqa: E402
from sync_canvas.projectors.mesh_texture import MeshTextureProjector  # noqa: E402
from sync_canvas.projectors.raster import rasterize  # noqa: E402


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def unet_forward_seconds(n_views: int, size: int) -> float:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8, sample_size=size).eval()
    x = torch.randn(n_views, 4, size, size)
    ctx = torch.randn(n_views, 77, 768)
    with torch.inference_mode():
        seconds, _ = timed(lambda: unet(x, torch.tensor(500.0), encoder_hidden_states=ctx).sample)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-unet", action="store_true", help="skip the (slow) UNet forward")
    parser.add_argument("--backend", default="auto", help="rasteriser back-end (auto, embree, torch)")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")

    mesh = procedural.torus(250, 200)  # 100,000 faces
    rig = paper_rig(mesh.vertices)
    print(f"mesh: {mesh.n_faces} faces, {mesh.n_vertices} vertices; rig: {len(rig)} views")

    t_raster, raster = timed(lambda: rasterize(mesh, rig, (768, 768), args.backend))
    t_rgb, rgb = timed(lambda: MeshTextureProjector(mesh, rig, 768, 1024, 1536, raster=raster))
    t_latent, latent = timed(lambda: rgb.rescaled(8))
    precompute = t_raster + t_rgb + t_latent
    print(f"backend {raster.backend}; coverage RGB {100 * rgb.coverage_fraction():.1f}%, latent {100 * latent.coverage_fraction():.1f}%")

    x0 = torch.randn(10, 4, 96, 96)
    previous = torch.randn(4, 1536, 1536)
    t_sync, _ = timed(lambda: latent.project(latent.aggregate(x0, previous)), repeat=3)
    latent.fill(previous)  # warm the cached index map (computed once per coverage pattern)
    t_fill, _ = timed(lambda: latent.fill(previous), repeat=3)
    scatter = MeshTextureProjector(mesh, rig, 96, 1536, unprojection="scatter", raster=latent.raster)
    t_scatter, _ = timed(lambda: scatter.project(scatter.aggregate(x0, previous)), repeat=3)
    rgb_views = torch.rand(10, 3, 768, 768)
    t_bake, _ = timed(lambda: rgb.bake(rgb_views))

    rows = [
        ("rasterise 10 x 768^2 (100k faces)", t_raster),
        ("RGB taps + texel pull (texture 1024^2)", t_rgb),
        ("latent projector 10 x 96^2 -> 1536^2 (raster, taps, pull)", t_latent),
        ("precompute total", precompute),
        ("per-step sync: project(aggregate(x0, prev)) [10,4,96,96]", t_sync),
        ("  same, scatter-only unprojection (no texel pull)", t_scatter),
        ("Voronoi fill 1536^2 (cached index map)", t_fill),
        ("final RGB bake 10 x 768^2 -> 1024^2 (aggregate + fill)", t_bake),
    ]
    if not args.skip_unet:
        rows.append(("SD1.5 UNet forward, 10 views, 96^2 latents", unet_forward_seconds(10, 96)))
    model = rows[-1][1] if not args.skip_unet else None
    print(f"\n{'what':60s} {'seconds':>9s} {'/ UNet step':>12s}")
    for name, sec in rows:
        ratio = f"{100 * sec / model:10.2f}%" if model else f"{'-':>11s}"
        print(f"{name:60s} {sec:9.3f} {ratio:>12s}")
    if model:
        print(f"\ntarget precompute < one step: {precompute:.2f} s vs {model:.2f} s -> {'MET' if precompute < model else 'MISSED'}")
        print(f"target sync <= 5% of the step: {100 * t_sync / model:.2f}% -> {'MET' if t_sync <= 0.05 * model else 'MISSED'}")


if __name__ == "__main__":
    main()
