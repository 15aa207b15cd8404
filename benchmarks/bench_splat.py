"""Gaussian-splat texturing cost on the CPU at the paper's size (SyncTweedies Sec. 5.3 / A1.4).

One run prints, side by side: the precompute (compositing weights of 50 views, once per scene) at
64x64 latent and 512x512 RGB resolution, the per-step fuse (least-squares fit of the splat colours by
preconditioned CG, warm-started, the default 30 iterations) at both resolutions, and the model time
for the same 50 views (diffusers UNet2DConditionModel with SD1.5's layout, random weights, 77 tokens),
with ratios. Scene: the procedural two-sphere scene with 100k flat splats.

The RGB fuse at 512x512 is timed over a few CG iterations and scaled to 30 (stated in the output);
the UNet is timed on a small batch of views and scaled to 50 (a 50-view batch of 64x64 latents needs
~25 GB in fp32 here). CFG doubles the model time per step; the table shows the single forward.

Run:  flock /tmp/cpu-heavy.lock .venv/bin/python benchmarks/bench_splat.py [--skip-unet]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
import conftest  # noqa: E402,F401  (imports the pack as `sync_canvas`)

from sync_canvas.assets.splat_cameras import fit_orbit  # noqa: E402
from sync_canvas.assets.splat_procedural import procedural_splat_scene  # noqa: E402
from sync_canvas.projectors.splat import SplatProjector  # noqa: E402


def seconds(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def unet_seconds_per_view(batch: int) -> float:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8).eval()
    x = torch.randn(batch, 4, 64, 64)
    text = torch.randn(batch, 77, 768)
    with torch.no_grad():
        unet(x[:1], 500, encoder_hidden_states=text[:1])  # warm-up
        elapsed, _ = seconds(lambda: unet(x, 500, encoder_hidden_states=text))
    return elapsed / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaussians", type=int, default=100_000)
    parser.add_argument("--views", type=int, default=50)
    parser.add_argument("--size", type=int, default=512, help="RGB view size; latent = size / 8")
    parser.add_argument("--rgb-cg-iterations", type=int, default=3, help="timed, then scaled to 30")
    parser.add_argument("--unet-batch", type=int, default=2)
    parser.add_argument("--skip-unet", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; scene: {args.gaussians} splats, "
          f"{args.views} views, RGB {args.size}^2, latent {args.size // 8}^2")

    scene = procedural_splat_scene(args.gaussians, seed=0)
    cams = fit_orbit(scene.means, scene.opacities, n_views=args.views, width=args.size, height=args.size)
    t_latent_pre, latent = seconds(lambda: SplatProjector.from_scene(scene, cams.rescaled(8)))
    t_rgb_pre, rgb = seconds(lambda: SplatProjector.from_scene(scene, cams))
    g = args.gaussians
    print(f"compositing entries: latent {latent.weights.n_entries / 1e6:.1f} M "
          f"({latent.weights.nbytes / 2**20:.0f} MiB), RGB {rgb.weights.n_entries / 1e6:.1f} M "
          f"({rgb.weights.nbytes / 2**20:.0f} MiB); coverage {100 * rgb.coverage_fraction():.1f}% of splats")

    # latent fuse: 4-channel x0 views, warm-started from the previous step's colours (as in sampling)
    z_prev = torch.randn(4, g)
    x0_views = latent.project(torch.randn(4, g)) + 0.1 * torch.randn(args.views, 4, args.size // 8, args.size // 8)
    t_latent_project, _ = seconds(lambda: latent.project(z_prev))
    # the first fuse of a view selection also caches its coverage and Jacobi diagonal (geometry only)
    t_latent_first, _ = seconds(lambda: latent.aggregate(x0_views, previous=z_prev, iterations=0))
    t_latent_fuse, _ = seconds(lambda: latent.aggregate(x0_views, previous=z_prev, iterations=30, tolerance=0))

    # RGB fuse (paper A1.4): 3-channel decoded views at full resolution; a few CG iterations, scaled
    rgb_prev = torch.rand(3, g)
    rgb_views = rgb.project(torch.rand(3, g))
    t_rgb_project, _ = seconds(lambda: rgb.project(rgb_prev))
    k = args.rgb_cg_iterations
    t_rgb_first, _ = seconds(lambda: rgb.aggregate(rgb_views, previous=rgb_prev, iterations=0))
    t_rgb_setup, _ = seconds(lambda: rgb.aggregate(rgb_views, previous=rgb_prev, iterations=0))
    t_rgb_k, _ = seconds(lambda: rgb.aggregate(rgb_views, previous=rgb_prev, iterations=k, tolerance=0))
    t_rgb_fuse = t_rgb_setup + (t_rgb_k - t_rgb_setup) * 30 / max(k, 1)

    t_unet = None
    if not args.skip_unet:
        t_unet = unet_seconds_per_view(args.unet_batch) * args.views

    print()
    print(f"{'stage':44s} {'seconds':>9s} {'x UNet':>8s}")

    def row(name, value):
        ratio = f"{value / t_unet:8.2f}" if t_unet else "       -"
        print(f"{name:44s} {value:9.2f} {ratio}")

    row(f"precompute latent weights ({args.views} x {args.size // 8}^2, once)", t_latent_pre)
    row(f"precompute RGB weights ({args.views} x {args.size}^2, once)", t_rgb_pre)
    row("latent project (render 4 channels, all views)", t_latent_project)
    row("latent fuse, first call (0 it., fills cache)", t_latent_first)
    row("latent fuse per step (PCG 30 it.)", t_latent_fuse)
    row("RGB project (render 3 channels, all views)", t_rgb_project)
    row("RGB fuse, first call (0 it., fills cache)", t_rgb_first)
    row(f"RGB fuse per step (PCG 30 it., from {k} it.)", t_rgb_fuse)
    if t_unet:
        row(f"UNet forward, {args.views} views (from batch {args.unet_batch})", t_unet)
    else:
        print("UNet skipped (--skip-unet)")


if __name__ == "__main__":
    main()
