"""Guard rails measured through the real nodes (ComfyUI imported, CPU): refusal time and memory growth of the
16384x16384 / stride-8 wide panorama, memory after a refused and after a failed (cancelled) run, and the
latency of ComfyUI's interrupt during a long (> 10 s) projector build.

    COMFYUI_PATH=/path/to/ComfyUI OMP_NUM_THREADS=1 python benchmarks/bench_guard_rails.py [--quick] [--gaps-only] [--root PACK]

RSS is read from /proc/self/status (Linux). ``--quick`` uses a smaller mesh (a build of a few seconds).
``--gaps-only`` prints only the table of the longest stretch between cancellation checks per long loop
(projector builds, fills, the splat colour fit), with where it starts and ends; ``--root`` measures the
pack at another path (an older checkout: the same table before a change).
"""

from __future__ import annotations

import gc
import importlib.util
import pathlib
import sys
import threading
import time

ROOT = pathlib.Path(sys.argv[sys.argv.index("--root") + 1] if "--root" in sys.argv else pathlib.Path(__file__).resolve().parents[1])


def _import_pack():
    spec = importlib.util.spec_from_file_location("sync_canvas", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["sync_canvas"] = module
    spec.loader.exec_module(module)
    spec = importlib.util.spec_from_file_location("comfy_tiny", ROOT / "tests" / "comfy_tiny.py")
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    tiny.import_comfy()


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def refusal() -> None:
    from sync_canvas.nodes.memory_check import NotEnoughMemory
    from sync_canvas.nodes.projector_nodes import SyncCanvasWidePanorama

    for wrap in (False, True):
        gc.collect()
        before = rss_mib()
        start = time.perf_counter()
        try:
            SyncCanvasWidePanorama.execute(width=16384, height=16384, window=512, stride=8, wrap=wrap)
            message = "NOT REFUSED"
        except NotEnoughMemory as err:
            message = str(err)
        took = time.perf_counter() - start
        gc.collect()
        print(f"refusal wrap={wrap}: {took * 1000:.2f} ms, RSS {before:.1f} -> {rss_mib():.1f} MiB "
              f"(growth {rss_mib() - before:+.1f} MiB, {100 * (rss_mib() - before) / before:+.2f}%)")
        print(f"  message: {message}")
    _splat_refusal()


def _splat_refusal() -> None:
    """The splat projector node on a 1M-splat scene seen by 128 views of 2048: estimated from a sample of the
    footprints and refused before any weight is built."""
    from sync_canvas.assets.splat_cameras import fit_orbit
    from sync_canvas.assets.splat_procedural import procedural_splat_scene
    from sync_canvas.nodes.memory_check import NotEnoughMemory
    from sync_canvas.nodes.splat import SyncCanvasSplatProjector

    scene = procedural_splat_scene(1_000_000, seed=0)
    orbit = fit_orbit(scene.means, scene.opacities, 128, 50.0, 2048, 2048)
    gc.collect()
    before = rss_mib()
    start = time.perf_counter()
    try:
        SyncCanvasSplatProjector.execute(scene, orbit)
        message = "NOT REFUSED"
    except NotEnoughMemory as err:
        message = str(err)
    took = time.perf_counter() - start
    gc.collect()
    print(f"splat refusal (1M splats, 128 views of 2048): {took * 1000:.0f} ms, RSS growth {rss_mib() - before:+.1f} MiB")
    print(f"  message: {message}")


def mesh_node_inputs(quick: bool):
    from sync_canvas.assets import cameras, procedural

    mesh = procedural.torus(64, 32) if quick else procedural.torus(128, 64)
    return dict(sync_mesh=mesh, cameras=cameras.paper_rig(fov=60.0, distance=2.0), view_size=768, texture_size=1024,
                latent_texture_ratio=1.5, cos_exponent=3.0, sampling="nearest", backend="torch")


def build_gaps(quick: bool) -> None:
    """The full mesh projector build, uninterrupted, and the largest gap between cancellation checks."""
    from sync_canvas.nodes.mesh import SyncCanvasMeshProjector
    from sync_canvas.projectors import cancel

    inputs = mesh_node_inputs(quick)
    # the full build, uninterrupted, with the largest gap between cancellation checks
    stamps = []
    real_check = cancel.check_cancel

    gc.collect()
    start = time.perf_counter()
    with cancel.cancellation(lambda: stamps.append(time.perf_counter())):
        SyncCanvasMeshProjector.execute.__func__.__wrapped__(SyncCanvasMeshProjector, **inputs)
    full = time.perf_counter() - start
    times = [start] + stamps + [start + full]
    gaps = [b - a for a, b in zip(times, times[1:])]
    print(f"mesh projector build ({'quick' if quick else 'full'}: torch raster, 10 views of 768, texture 1024): {full:.1f} s uninterrupted, "
          f"{len(stamps)} cancellation checks, largest gap between checks {max(gaps):.2f} s")
    del real_check
    return full


def _longest_gap(fn) -> tuple[float, float, str]:
    """(seconds ``fn`` took, the longest stretch without a cancellation check, "where it starts -> ends")."""
    import traceback

    from sync_canvas.projectors import cancel

    stamps: list[tuple[float, str]] = []

    def stamp():
        frame = traceback.extract_stack(limit=3)[0]
        stamps.append((time.perf_counter(), f"{frame.name}:{frame.lineno}"))

    gc.collect()
    start = time.perf_counter()
    with cancel.cancellation(stamp):
        fn()
    end = time.perf_counter()
    marks = [(start, "start")] + stamps + [(end, "end")]
    gap, a, b = max((t1 - t0, n0, n1) for (t0, n0), (t1, n1) in zip(marks, marks[1:]))
    return end - start, gap, f"{a} -> {b}"


def gap_table(quick: bool) -> None:
    """The longest stretch between cancellation checks of each long loop outside model calls."""
    import torch

    from sync_canvas import projectors
    from sync_canvas.assets import cameras, procedural
    from sync_canvas.assets.splat_cameras import fit_orbit
    from sync_canvas.assets.splat_procedural import procedural_splat_scene
    from sync_canvas.projectors.splat import SplatProjector

    torus = procedural.torus(64, 32) if quick else procedural.torus(128, 64)
    rig = cameras.paper_rig(fov=60.0, distance=2.0)
    scene = procedural_splat_scene(20_000, seed=0)
    orbit = fit_orbit(scene.means, scene.opacities, 8 if quick else 16, 50.0, 512, 512)
    splat = SplatProjector.from_scene(scene, fit_orbit(scene.means, scene.opacities, 8, 50.0, 256, 256))
    views = splat.project(torch.rand(3, splat.canonical_size))
    pano = projectors.EquirectProjector(512, None, 0.0, 72.0, None, "synctweedies", False, "nearest")
    canvas = torch.rand(3, pano.canonical_size)
    builds = [
        ("mesh projector, torch raster, 10 x 768, texture 1024", lambda: projectors.MeshTextureProjector(torus, rig, 768, 1024, backend="torch")),
        ("mesh projector, embree, 10 x 768, texture 1024", lambda: projectors.MeshTextureProjector(torus, rig, 768, 1024, backend="embree")),
        (f"splat projector, 20k splats, {len(orbit)} x 512, + latent twin", lambda: SplatProjector.from_scene(scene, orbit).rescaled(8)),
        ("splat colour fit, 8 x 256 (100 CG iterations)", lambda: splat.fit_colors(views)),
        ("wide panorama 512 x 8192, stride 32, + latent", lambda: projectors.WidePanoramaProjector(512, 8192, 512, 32).rescaled(8)),
        ("360 panorama, 10 x 1024 bilinear, + latent", lambda: projectors.EquirectProjector(1024, None, 0.0, 72.0, None, "stochsync", False, "bilinear").rescaled(8)),
        ("cube map, faces 1024, 16 x 768, + latent", lambda: projectors.CubeMapProjector(1024, 768).rescaled(8)),
        ("360 Voronoi fill, 8 x 512 views", lambda: pano.fill(canvas)),
    ]
    print(f"{'long loop':<58} {'total s':>8} {'longest gap s':>14}  where")
    for name, build in builds:
        total, gap, where = _longest_gap(build)
        print(f"{name:<58} {total:>8.1f} {gap:>14.2f}  {where}", flush=True)


def splat_node_inputs(quick: bool):
    from sync_canvas.assets.splat_cameras import fit_orbit
    from sync_canvas.assets.splat_procedural import procedural_splat_scene

    scene = procedural_splat_scene(20_000, seed=0)
    return dict(splat=scene, cameras=fit_orbit(scene.means, scene.opacities, 8 if quick else 24, 50.0, 512, 512))


def interrupt_once(quick: bool, after_s: float, splat: bool = False) -> None:
    """The mesh (or splat) projector build through its (guarded) node; ComfyUI's interrupt is raised
    ``after_s`` into it."""
    import comfy.model_management as mm

    from sync_canvas.nodes.memory_check import _trim_heap
    from sync_canvas.nodes.mesh import SyncCanvasMeshProjector
    from sync_canvas.nodes.splat import SyncCanvasSplatProjector

    node = SyncCanvasSplatProjector if splat else SyncCanvasMeshProjector
    inputs = splat_node_inputs(quick) if splat else mesh_node_inputs(quick)
    gc.collect()
    _trim_heap()  # the same baseline the failed run's cleanup ends with
    before = rss_mib()
    outcome = {}
    real_interrupt_check = mm.throw_exception_if_processing_interrupted

    def timed_check():  # the moment the interrupt takes effect (before the node's cleanup runs)
        try:
            real_interrupt_check()
        except mm.InterruptProcessingException:
            outcome.setdefault("raised", time.perf_counter())
            raise

    mm.throw_exception_if_processing_interrupted = timed_check

    def run():
        try:
            node.execute(**inputs)
            outcome["result"] = "finished"
        except mm.InterruptProcessingException:
            outcome["result"] = "interrupted"
        outcome["t"] = time.perf_counter()

    worker = threading.Thread(target=run)
    t0 = time.perf_counter()
    worker.start()
    time.sleep(after_s)
    t_interrupt = time.perf_counter()
    mm.interrupt_current_processing(True)
    worker.join()
    mm.interrupt_current_processing(False)
    mm.throw_exception_if_processing_interrupted = real_interrupt_check
    gc.collect()
    after = rss_mib()
    if outcome["result"] == "finished":
        print(f"interrupt {t_interrupt - t0:.1f} s in: the build had already finished (machine faster than the first build)")
        return
    raised = outcome.get("raised", float("nan"))
    print(f"interrupt {t_interrupt - t0:.1f} s into the {'splat' if splat else 'mesh'} build: {outcome['result']}; took effect (raised) "
          f"{(raised - t_interrupt) * 1000:.0f} ms after the interrupt, node returned (cleanup done) "
          f"{(outcome['t'] - t_interrupt) * 1000:.0f} ms after it")
    print(f"  RSS before {before:.1f} MiB, after the failed run {after:.1f} MiB ({100 * (after - before) / before:+.2f}%)")


def main() -> None:
    quick = "--quick" in sys.argv
    _import_pack()
    import torch

    torch.set_num_threads(1)
    if "--gaps-only" in sys.argv:
        gap_table(quick)
        return
    refusal()
    full = build_gaps(quick)
    gap_table(quick)
    for fraction in (0.5,) if quick else (0.15, 0.35, 0.55, 0.75):  # of the uninterrupted build time
        interrupt_once(quick, fraction * full)
    for after_s in (3.0,) if quick else (5.0, 11.0, 17.0):  # a build of 20+ s (24 views of 512, 20k splats)
        interrupt_once(quick, after_s, splat=True)


if __name__ == "__main__":
    main()
