"""How close the per-step splat fit is to the exact least-squares colours, old solver against new (issue 17).

For one procedural scene and a run of sampling-like steps (x0 views drifting from the scene's render and
settling, each fit warm-started from the previous one, as ``bench_scale.py`` does), prints side by side:

* old: the pre-issue-17 fit (Jacobi-preconditioned CG, fixed 30 iterations, ``reference_paths``);
* new: ``SplatProjector.aggregate`` as shipped (block-Jacobi CG to the default relative residual);
* exact: the same problem solved to a relative residual of 1e-6 (at most 400 iterations).

Columns: CG iterations, seconds, and the renders' RMS distance to the exact fit's renders (alpha-weighted
over the views' pixels, what the sampler uses), plus the weighted misfit ||W^1/2 (F z - w)||^2 of each
(lower is a better fit of the views). The renders, not the colours, are compared: with more splats than
pixels the colours are ill-determined.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_splat_fit.py [--splats 100000] [--views 50] [--size 64] [--channels 4]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import conftest  # noqa: E402,F401  (imports the pack as `sync_canvas`)

SETTLE = (1.0, 0.8, 0.6, 0.45, 0.35, 0.3)  # the x0 views' drift, step by step (the first step is cold)


def main() -> None:
    from sync_canvas.assets.splat_cameras import fit_orbit
    from sync_canvas.assets.splat_procedural import procedural_splat_scene
    from sync_canvas.benchmarks.reference_paths import ReferenceSplat
    from sync_canvas.projectors.splat import SplatProjector

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splats", type=int, default=100_000)
    parser.add_argument("--views", type=int, default=50)
    parser.add_argument("--size", type=int, default=64, help="view side in pixels (64: the latent of 512^2 views)")
    parser.add_argument("--channels", type=int, default=4, help="4: latents, 3: RGB")
    args = parser.parse_args()

    scene = procedural_splat_scene(args.splats, seed=0)
    cams = fit_orbit(scene.means, scene.opacities, n_views=args.views, width=args.size, height=args.size)
    proj = SplatProjector.from_scene(scene, cams)
    ref = ReferenceSplat(proj)
    gen = torch.Generator().manual_seed(0)
    target = proj.project(torch.rand(args.channels, args.splats, generator=gen))
    drift = 0.05 * torch.randn(args.views, args.channels, args.size, args.size, generator=gen)
    pw = proj.alpha_maps()

    def rms(a, b):
        return float(((proj.project(a) - proj.project(b)).pow(2) * pw).sum() / (pw.sum() * args.channels)) ** 0.5

    def misfit(z, views):
        return float(((proj.project(z) - views).pow(2) * pw).sum())

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.splats} splats, {args.views} views of "
          f"{args.size}^2, {args.channels} channels, preconditioner blocks of {proj.weights.block_size()}")
    print(f"{'step':>4s} {'drift':>5s} | {'old it':>6s} {'old s':>7s} {'old rms':>9s} | {'new it':>6s} {'new s':>7s} "
          f"{'new rms':>9s} | {'exact it':>8s} | {'misfit old':>11s} {'new':>11s} {'exact':>11s}")
    old = new = exact = None
    for step, settle in enumerate(SETTLE):
        views = target + settle * drift
        t_old, old = timed(lambda: ref.aggregate(views, previous=old, iterations=30))
        t_new, new = timed(lambda: proj.aggregate(views, previous=new))
        new_it = proj.last_solve.iterations
        exact = proj.aggregate(views, previous=new, iterations=400, tolerance=1e-6)
        print(f"{step:4d} {settle:5.2f} | {30:6d} {t_old:7.2f} {rms(old, exact):9.2e} | {new_it:6d} {t_new:7.2f} "
              f"{rms(new, exact):9.2e} | {proj.last_solve.iterations:8d} | {misfit(old, views):11.4e} "
              f"{misfit(new, views):11.4e} {misfit(exact, views):11.4e}")
    print("rms: the renders' alpha-weighted RMS distance to the exact fit's renders; step 0 is a cold start")


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


if __name__ == "__main__":
    main()
