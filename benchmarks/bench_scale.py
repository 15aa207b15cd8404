"""Sync cost at real scale (issue 17): splat scenes of 100k-1M splats, the mesh pull, the 360 canvas.

One run prints, side by side:
* splats (procedural two-sphere scenes; each size in its own process, so its peak RSS is its own):
  precompute time and weights' size at latent (size/8) and RGB resolution, peak RSS, the per-step fuse
  (a step warm-started from the previous step's fit, views drifting as in sampling; CG iterations it
  needed) at latent and RGB resolution, against the same step on the old paths
  (benchmarks/reference_paths.py: per-view index_add_, fixed 30 CG iterations) and against the model
  step for the same views (SD1.5-layout UNet, random weights, timed on one view and scaled); "run": the
  mean fuse over five steps whose x0 views settle (the steady state of sampling, where each warm start is
  closer), with each step's CG iterations;
* ``--section mesh`` / ``pano``: the per-step sync of the mesh (10 views, 1536^2 latent texture) and of
  the 360 panorama (2048x4096 latent canvas) before / after (see those sections' docstrings).

Default sizes are modest (minutes on 2 shared cores); ``--full`` runs the issue's sizes
(100k / 300k / 1M splats, 50 views, 512^2 RGB), which takes about an hour single-threaded.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_scale.py [--full] [--skip-unet] [--section splat]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import conftest  # noqa: E402,F401  (imports the pack as `sync_canvas`)


DEVICE = torch.device("cpu")  # --device: where the splat section builds and fits (cuda on a lent GPU)


def timed(fn):
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - start, out


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def peak_device_gib() -> float | None:
    return torch.cuda.max_memory_allocated(DEVICE) / 2**30 if DEVICE.type == "cuda" else None


# ---- splats ------------------------------------------------------------------------------------
def splat_child(g: int, views: int, size: int, reference: bool, ref_rgb_iterations: int) -> dict:
    """Everything for one scene size; runs in its own process (peak RSS of this size alone)."""
    from sync_canvas.assets.splat_cameras import fit_orbit
    from sync_canvas.assets.splat_procedural import procedural_splat_scene
    from sync_canvas.benchmarks.reference_paths import ReferenceSplat
    from sync_canvas.projectors.splat import SplatProjector

    torch.manual_seed(0)
    scene = procedural_splat_scene(g, seed=0)
    cams = fit_orbit(scene.means, scene.opacities, n_views=views, width=size, height=size)
    out = {"splats": g, "views": views, "size": size}
    gen = torch.Generator().manual_seed(0)
    for name, cam, ch in (("latent", cams.rescaled(8), 4), ("rgb", cams, 3)):
        t_pre, proj = timed(lambda: SplatProjector.from_scene(scene, cam, device=DEVICE))
        hw = proj.view_hw
        target = proj.project(torch.rand(ch, g, generator=gen).to(DEVICE))
        drift = 0.05 * torch.randn(views, ch, *hw, generator=gen).to(DEVICE)
        # the fit's fixed terms (coverage, block-Jacobi blocks), part of the build: timed again on their own
        proj.weights.cache.clear()
        t_fixed, _ = timed(lambda: proj._fixed_terms(torch.arange(views, device=DEVICE), True))
        first = proj.aggregate(target + drift)  # the step before (cold start; fills the geometry cache)
        cold_it = proj.last_solve.iterations
        step_views = target + 0.8 * drift
        t_step, fit = timed(lambda: proj.aggregate(step_views, previous=first))
        out[name] = {"precompute_s": t_pre, "fixed_s": t_fixed, "block": proj.weights.block_size(), "entries": proj.weights.n_entries, "bytes": proj.weights.nbytes,
                     "coverage": float(proj.coverage().float().mean()), "cold_iterations": cold_it,
                     "step_s": t_step, "step_iterations": proj.last_solve.iterations,
                     "relative_residual": proj.last_solve.relative_residual,
                     "fitted": float(proj.fitted().float().mean())}
        # a run of steps: the x0 views settle (drift shrinking), each fit warm-started from the last one
        run_s, run_it, z = [t_step], [proj.last_solve.iterations], fit
        for settle in RUN_DRIFT[1:]:
            seconds, z = timed(lambda: proj.aggregate(target + settle * drift, previous=z))
            run_s.append(seconds)
            run_it.append(proj.last_solve.iterations)
        out[name].update(run_s=sum(run_s) / len(run_s), run_iterations=run_it)
        del z
        out[name]["peak_rss_gib"] = peak_rss_gib()  # before any reference copy exists
        out[name]["peak_device_gib"] = peak_device_gib()
        if reference and DEVICE.type == "cpu":  # the old paths ran on the CPU only
            ref = ReferenceSplat(proj)
            k = 30 if name == "latent" else ref_rgb_iterations
            t_setup, _ = timed(lambda: ref.aggregate(step_views, previous=first, iterations=0))
            t_k, old = timed(lambda: ref.aggregate(step_views, previous=first, iterations=k, tolerance=0))
            out[name]["old_step_s"] = t_setup + (t_k - t_setup) * 30 / k
            out[name]["old_step_note"] = "" if k == 30 else f"({k} it. scaled to 30)"
            pw = proj.alpha_maps()
            if k == 30:
                diff = (proj.project(fit) - proj.project(old)).pow(2) * pw
                out[name]["render_rms_vs_old"] = float(diff.sum() / (pw.sum() * ch)) ** 0.5
            del ref
        del proj, first, fit
    return out


RUN_DRIFT = (0.8, 0.6, 0.45, 0.35, 0.3)  # the x0 views' drift from the scene's render, step by step


def unet_seconds_per_view(latent: int) -> float:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    dtype = torch.float16 if DEVICE.type == "cuda" else torch.float32  # what GPU users run
    unet = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8).eval().to(DEVICE, dtype)
    x = torch.randn(1, 4, latent, latent, device=DEVICE, dtype=dtype)
    ctx = torch.randn(1, 77, 768, device=DEVICE, dtype=dtype)
    with torch.inference_mode():
        unet(x, 500, encoder_hidden_states=ctx)  # warm-up
        seconds, _ = timed(lambda: unet(x, 500, encoder_hidden_states=ctx))
    return seconds


def splat_section(args) -> None:
    rows = []
    for g in args.splats:
        cmd = [sys.executable, __file__, "--child", str(g), "--views", str(args.views), "--size", str(args.size),
               "--ref-rgb-iterations", str(args.ref_rgb_iterations), "--device", str(DEVICE)] + (
                   ["--no-reference"] if args.no_reference else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{g} splats: failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    unet_view = None if args.skip_unet else unet_seconds_per_view(args.size // 8)
    model = None if unet_view is None else unet_view * args.views
    print(f"\nsplats: {args.views} views, RGB {args.size}^2, latent {args.size // 8}^2; model step = SD1.5 UNet "
          + (f"{unet_view:.2f} s/view x {args.views} = {model:.1f} s (one forward, no CFG)" if model else "skipped"))
    head = (f"{'splats':>8s} {'res':>6s} {'precomp s':>9s} {'weights':>9s} {'ent/px':>6s} {'cover':>6s} {'peak GiB':>8s} "
            f"{'step s':>8s} {'CG it':>5s} {'old s':>8s} {'speedup':>7s} {'% model':>8s} {'old %':>7s} {'rms vs old':>10s} "
            f"{'run s':>8s} {'run %':>7s} run CG it")
    print(head)
    for r in rows:
        for name in ("latent", "rgb"):
            m = r[name]
            side = args.size // 8 if name == "latent" else args.size
            old = m.get("old_step_s")
            pct = f"{100 * m['step_s'] / model:7.2f}%" if model else f"{'-':>8s}"
            old_pct = f"{100 * old / model:6.1f}%" if (model and old) else f"{'-':>7s}"
            print(f"{r['splats']:8d} {side:5d}^2 {m['precompute_s']:9.1f} {m['bytes'] / 2**20:7.0f}Mi "
                  f"{m['entries'] / (r['views'] * side * side):6.1f} {m['coverage']:6.2f} {m['peak_rss_gib']:8.2f} "
                  f"{m['step_s']:8.3f} {m['step_iterations']:5d} {old if old else float('nan'):8.2f} "
                  f"{(old / m['step_s']) if old else float('nan'):6.1f}x {pct} {old_pct} "
                  f"{m.get('render_rms_vs_old', float('nan')):10.1e} {m['run_s']:8.3f} "
                  + (f"{100 * m['run_s'] / model:6.2f}% " if model else f"{'-':>7s} ")
                  + "/".join(str(k) for k in m["run_iterations"]) + f" {m.get('old_step_note', '')}")
    print(f"run: the mean over {len(RUN_DRIFT)} steps whose x0 views settle (drift x {RUN_DRIFT}), each warm-started "
          "from the last fit; cover: solved fraction (fitted: " + ", ".join(
              f"{r['splats']}: {r['latent']['fitted']:.3f}/{r['rgb']['fitted']:.3f}" for r in rows) + ")")
    if any(r[name].get("peak_device_gib") for r in rows for name in ("latent", "rgb")):
        print("peak device memory GiB (latent/rgb): " + ", ".join(
            f"{r['splats']}: {r['latent']['peak_device_gib']:.2f}/{r['rgb']['peak_device_gib']:.2f}" for r in rows))
    print("of the precompute: the fit's fixed terms (coverage, block-Jacobi preconditioner; block size) in s: " + ", ".join(
        f"{r['splats']}: {r['latent']['fixed_s']:.1f} ({r['latent']['block']})/{r['rgb']['fixed_s']:.1f} ({r['rgb']['block']})"
        for r in rows))
    print("step: one sampling step's fuse warm-started from the previous fit (CG to the default relative residual); "
          "old: per-view index_add_ + 30 CG iterations; cold start iterations: "
          + ", ".join(f"{r['splats']}: {r['latent']['cold_iterations']}/{r['rgb']['cold_iterations']}" for r in rows))


# ---- mesh and 360 -------------------------------------------------------------------------------
def best_of(fn, repeat: int = 3) -> float:
    fn()  # warm: caches (unprojection matrices, index maps) are built once per selection
    return min(timed(fn)[0] for _ in range(repeat))


def mesh_section(args) -> None:
    """Per-step sync of the mesh texture, ``project(aggregate(x0, previous))`` (what the engine runs every
    step), old (base scatter over the whole texture + pull gather + index_add_) vs new (one prebuilt CSR
    product over the touched texels); and the end-of-run Voronoi fill, old (full EDT index map, whole
    canvas gathered) vs new (indices only, uncovered texels)."""
    import numpy as np
    from scipy.ndimage import distance_transform_edt

    from sync_canvas.assets import procedural
    from sync_canvas.assets.cameras import paper_rig
    from sync_canvas.benchmarks.reference_paths import reference_mesh_aggregate
    from sync_canvas.projectors.fill import fill_from_sources, voronoi_sources
    from sync_canvas.projectors.mesh_texture import MeshTextureProjector

    view, tex = (96, 1536) if args.full else (64, 768)
    mesh = procedural.torus(250, 200) if args.full else procedural.torus(120, 100)
    rig = paper_rig(mesh.vertices)
    t_build, proj = timed(lambda: MeshTextureProjector(mesh, rig, view, tex))
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(len(rig), 4, view, view, generator=gen)
    previous = torch.randn(4, tex, tex, generator=gen)
    t_old = best_of(lambda: proj.project(reference_mesh_aggregate(proj, x0, previous)))
    own = previous.clone()  # the engine's own canvas: written where the views touch it (in_place)
    t_new = best_of(lambda: proj.project(proj.aggregate(x0, own, in_place=True)))
    t_copy = best_of(lambda: proj.project(proj.aggregate(x0, previous)))
    t_matrix, _ = timed(lambda: proj._unprojection([0, 2, 4]))  # one new selection's matrix, once
    mask = proj.coverage().numpy()

    def old_fill():
        _, nearest = distance_transform_edt(~mask, return_indices=True)
        flat = torch.as_tensor(np.ravel_multi_index(tuple(nearest), mask.shape)).reshape(-1)
        return previous.reshape(4, -1)[:, flat]

    t_fill_old = best_of(old_fill, 1)
    t_fill_new = best_of(lambda: fill_from_sources(previous, *voronoi_sources(mask)), 1)
    print(f"\nmesh: {mesh.n_faces} faces, {len(rig)} views of {view}^2, latent texture {tex}^2 "
          f"(coverage {100 * mask.mean():.1f}%; projector built in {t_build:.1f} s, a new selection's matrix {t_matrix:.2f} s)")
    print(f"{'what':44s} {'old ms':>9s} {'new ms':>9s} {'speedup':>8s}")
    for name, old, new in (("per-step sync project(aggregate(x0, prev))", t_old, t_new),
                           ("  same, new fuse into a copy of prev", t_old, t_copy),
                           ("Voronoi fill of the texture (index + gather)", t_fill_old, t_fill_new)):
        print(f"{name:44s} {1e3 * old:9.1f} {1e3 * new:9.1f} {old / new:7.1f}x")


def pano_section(args) -> None:
    """Per-step sync of the 360 panorama on the papers' latent canvas, old (the fuse copies the whole
    canvas) vs new (the engine's own canvas written where the views touch it, ``in_place``), and its
    end-of-run Voronoi fill at RGB size (each fill in its own process: time and peak RSS), old vs new."""
    from sync_canvas.projectors.panorama360 import PAPER_LATENT_CANVAS, EquirectProjector

    canvas = PAPER_LATENT_CANVAS if args.full else (1024, 2048)
    proj = EquirectProjector(64, canvas_hw=canvas)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(proj.n_views, 4, 64, 64, generator=gen)
    previous = torch.randn(4, *canvas, generator=gen)
    t_step = best_of(lambda: proj.project(proj.aggregate(x0, previous)))
    own = previous.clone()
    t_in_place = best_of(lambda: proj.project(proj.aggregate(x0, own, in_place=True)))
    t_clone = best_of(lambda: previous.clone())
    print(f"\n360: {proj.n_views} views of 64^2 on a {canvas[0]}x{canvas[1]} latent canvas "
          f"(views touch {100 * proj.coverage_fraction():.2f}% of it)")
    print(f"per-step sync project(aggregate(x0, prev)): old {1e3 * t_step:.1f} ms (the canvas copy alone "
          f"{1e3 * t_clone:.1f} ms), new {1e3 * t_in_place:.1f} ms -> {t_step / t_in_place:.1f}x")
    rgb = (canvas[0] * 2, canvas[1] * 2)
    print(f"{'Voronoi fill, RGB canvas ' + str(rgb[0]) + 'x' + str(rgb[1]):44s} {'seconds':>9s} {'peak RSS GiB':>13s}")
    for how in ("old", "new"):
        proc = subprocess.run([sys.executable, __file__, "--fill-child", how, str(rgb[0]), str(rgb[1])],
                              capture_output=True, text=True)
        if proc.returncode:
            print(f"{how}: failed {proc.stderr.strip().splitlines()[-1:]}")
            continue
        sec, base, peak = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{how + ' (+ ' + format(peak - base, '.2f') + ' GiB over the canvas and mask)':44s} {sec:9.2f} {peak:13.2f}")


def fill_child(how: str, h: int, w: int) -> list:
    """One 360 fill at RGB size from the 8-view rig's coverage (views 512^2)."""
    import numpy as np
    from scipy.ndimage import distance_transform_edt

    from sync_canvas.projectors.fill import fill_from_sources, voronoi_sources
    from sync_canvas.projectors.panorama360 import EquirectProjector

    mask = EquirectProjector(512, canvas_hw=(h, w)).coverage().numpy()
    z = torch.rand(3, h, w)
    base = peak_rss_gib()
    if how == "new":
        sec, _ = timed(lambda: fill_from_sources(z, *voronoi_sources(mask, wrap_columns=True)))
    else:  # the pre-issue-17 EquirectProjector.fill
        def old():
            pad = w // 2
            wide = np.concatenate([mask[:, w - pad :], mask, mask[:, :pad]], axis=1)
            _, (rows, cols) = distance_transform_edt(~wide, return_indices=True)
            rows, cols = rows[:, pad : pad + w], (cols[:, pad : pad + w] - pad) % w
            flat = torch.as_tensor(rows * w + cols).reshape(-1)
            return z.reshape(3, -1)[:, flat].reshape(z.shape)

        sec, _ = timed(old)
    return [sec, base, peak_rss_gib()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the issue's sizes: 100k/300k/1M splats, 50 views, 512^2")
    parser.add_argument("--splats", type=lambda s: [int(v) for v in s.split(",")], default=None)
    parser.add_argument("--views", type=int, default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--section", default="all", choices=["all", "splat", "mesh", "pano"])
    parser.add_argument("--skip-unet", action="store_true")
    parser.add_argument("--no-reference", action="store_true", help="skip the old paths (they need a second copy of the weights)")
    parser.add_argument("--ref-rgb-iterations", type=int, default=2, help="old RGB fit timed over this many iterations, scaled to 30")
    parser.add_argument("--device", default="cpu", help="splat section: build and fit on this device (e.g. cuda; "
                        "the model step then times an fp16 UNet there, the old paths are skipped)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--fill-child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    args.splats = args.splats or ([100_000, 300_000, 1_000_000] if args.full else [20_000, 60_000])
    args.views = args.views or (50 if args.full else 16)
    args.size = args.size or (512 if args.full else 256)
    if args.fill_child is not None:
        print(json.dumps(fill_child(args.fill_child[0], int(args.fill_child[1]), int(args.fill_child[2]))))
        return
    if args.child is not None:
        print(json.dumps(splat_child(args.child, args.views, args.size, not args.no_reference, args.ref_rgb_iterations)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"splat device {DEVICE}" + (f" ({torch.cuda.get_device_name(DEVICE)})" if DEVICE.type == "cuda" else ""))
    if args.section in ("all", "mesh"):
        mesh_section(args)
    if args.section in ("all", "pano"):
        pano_section(args)
    if args.section in ("all", "splat"):
        splat_section(args)


if __name__ == "__main__":
    main()
