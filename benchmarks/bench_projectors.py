"""Projector cost on the CPU at the papers' sizes, next to the model step it synchronizes.

Prints, side by side in one run, for each setting: the precompute time (building the taps once), the
per-step round trip ``aggregate(project(z), previous=z)`` (what a canonical-space case does every
step; the instance-space cases do the same pair in the other order), one Voronoi ``fill``, and one
forward of a full-size SD1.5-architecture UNet (diffusers ``UNet2DConditionModel`` with SD1.5's
cross-attention width 768, random weights, 77 text tokens) on the same views, with ratios.

Settings (notes/prior-art.md, papers' A1.2 / A2 / Sec. 3.4):
* 360: 2048x4096x4 latent canvas, 8 views of 64x64 (SyncTweedies rig), nearest taps; and the
  pixel-density-matched default canvas of the 512 px rig at latent size (1080x2160 / 8 = 135x270);
* wide: 512x3072 RGB canvas, 41 windows of 512x512 (stride 64); model views: 41 latents of 64x64
  (UNet time = 41/8 x the measured 8-view forward: a 41-view batch does not fit in memory here);
* anagram: 256x256 RGB, 4 views (identity, rotate_cw, inner_rotate:45, jigsaw); model views: 4
  latents of 32x32 (a 256 px image for SD).

Run:  flock /tmp/cpu-heavy.lock .venv/bin/python benchmarks/bench_projectors.py [--skip-unet]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
import conftest  # noqa: E402,F401  (imports the pack as `sync_canvas`)

from sync_canvas.projectors import AnagramProjector, EquirectProjector, WidePanoramaProjector  # noqa: E402


# 64x64-latent self-attention costs ~0.5 GB per view in fp32: larger view counts are timed in batches
# of 8 and scaled linearly (stated in the output)
MAX_UNET_BATCH = 8


def timed(fn, repeats: int = 3):
    """(median seconds over ``repeats`` runs after one warm-up run when repeats > 1, last result)."""
    times, out = [], None
    if repeats > 1:
        fn()
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def unet_forward_seconds(n_views: int, latent: int, cache: dict) -> float:
    from diffusers import UNet2DConditionModel

    if "unet" not in cache:
        torch.manual_seed(0)
        cache["unet"] = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8).eval()
    unet = cache["unet"]
    x = torch.randn(n_views, 4, latent, latent)
    ctx = torch.randn(n_views, 77, 768)
    with torch.no_grad():
        seconds, _ = timed(lambda: unet(x, torch.tensor(500.0), encoder_hidden_states=ctx).sample, repeats=1)
    return seconds


def bench(name, build, channels, model_views, skip_unet, cache):
    build_s, proj = timed(build, repeats=1)
    torch.manual_seed(0)
    z = torch.randn(channels, *proj.canonical_shape)
    project_s, w = timed(lambda: proj.project(z))
    aggregate_s, _ = timed(lambda: proj.aggregate(w, previous=z))
    fill_s, _ = timed(lambda: proj.fill(z), repeats=1)
    step = project_s + aggregate_s
    print(f"\n[{name}] {proj.describe()}")
    print(f"  precompute            {build_s * 1e3:9.1f} ms")
    print(f"  round trip per step   {step * 1e3:9.1f} ms  (project {project_s * 1e3:.1f} + aggregate {aggregate_s * 1e3:.1f})")
    print(f"  Voronoi fill (once)   {fill_s * 1e3:9.1f} ms")
    if not skip_unet:
        n, latent = model_views
        batch = min(n, MAX_UNET_BATCH)
        key = (batch, latent)
        if key not in cache:
            cache[key] = unet_forward_seconds(batch, latent, cache)
        unet_s = cache[key] * n / batch
        how = "measured" if batch == n else f"{n}/{batch} x the measured {batch}-view forward"
        print(f"  UNet forward          {unet_s * 1e3:9.1f} ms  ({n} views of {latent}x{latent} latents, {how})")
        print(f"  ratios                round trip / UNet = {step / unet_s:.2e}, precompute / UNet = {build_s / unet_s:.2e}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-unet", action="store_true", help="projector timings only")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads", flush=True)
    cache: dict = {}
    bench("360, paper latent canvas", lambda: EquirectProjector(64, canvas_hw=(2048, 4096)), 4, (8, 64), args.skip_unet, cache)
    bench("360, density-matched latent canvas", lambda: EquirectProjector(64, canvas_hw=(135, 270)), 4, (8, 64), args.skip_unet, cache)
    bench("wide panorama, RGB", lambda: WidePanoramaProjector(512, 3072, 512, 64), 3, (41, 64), args.skip_unet, cache)
    views = ["identity", "rotate_cw", "inner_rotate:45", "jigsaw"]
    bench("anagram, RGB", lambda: AnagramProjector(256, 256, views), 3, (4, 32), args.skip_unet, cache)


if __name__ == "__main__":
    main()
