"""Guard rails measured through the real nodes (ComfyUI imported, CPU): refusal time and memory growth of the
16384x16384 / stride-8 wide panorama, memory after a refused and after a failed (cancelled) run, and the
latency of ComfyUI's interrupt during a long (> 10 s) projector build.

    COMFYUI_PATH=/path/to/ComfyUI OMP_NUM_THREADS=1 python benchmarks/bench_guard_rails.py [--quick]

RSS is read from /proc/self/status (Linux). ``--quick`` uses a smaller mesh (a build of a few seconds).
"""

from __future__ import annotations

import gc
import importlib.util
import pathlib
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


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


def interrupt_once(quick: bool, after_s: float) -> None:
    """The build through its (guarded) node; ComfyUI's interrupt is raised ``after_s`` into it."""
    import comfy.model_management as mm

    from sync_canvas.nodes.memory_check import _trim_heap
    from sync_canvas.nodes.mesh import SyncCanvasMeshProjector

    inputs = mesh_node_inputs(quick)
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
            SyncCanvasMeshProjector.execute(**inputs)
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
    print(f"interrupt {t_interrupt - t0:.1f} s into the build: {outcome['result']}; took effect (raised) "
          f"{(raised - t_interrupt) * 1000:.0f} ms after the interrupt, node returned (cleanup done) "
          f"{(outcome['t'] - t_interrupt) * 1000:.0f} ms after it")
    print(f"  RSS before {before:.1f} MiB, after the failed run {after:.1f} MiB ({100 * (after - before) / before:+.2f}%)")


def main() -> None:
    quick = "--quick" in sys.argv
    _import_pack()
    import torch

    torch.set_num_threads(1)
    refusal()
    full = build_gaps(quick)
    for fraction in (0.5,) if quick else (0.15, 0.35, 0.55, 0.75):  # of the uninterrupted build time
        interrupt_once(quick, fraction * full)


if __name__ == "__main__":
    main()
