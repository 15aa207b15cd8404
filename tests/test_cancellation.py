"""Long loops outside model calls check for cancellation through the callback a node installs
(projectors/cancel.py); here the callback is a plain function that counts and raises."""

import pytest
import torch

from sync_canvas.assets import cameras, procedural
from sync_canvas.projectors import WidePanoramaProjector
from sync_canvas.projectors.solve import conjugate_gradient
from sync_canvas.projectors.cancel import cancellation, check_cancel
from sync_canvas.projectors.raster import rasterize


class Cancelled(Exception):
    pass


def cancel_on_call(k: int):
    """A callback that raises on its k-th call; ``calls`` counts them."""
    calls = []

    def callback():
        calls.append(1)
        if len(calls) >= k:
            raise Cancelled

    return callback, calls


def test_no_callback_no_effect_and_the_block_restores_the_previous_one():
    check_cancel()  # nothing installed: a no-op
    outer, outer_calls = cancel_on_call(100)
    with cancellation(outer):
        with cancellation(None):
            check_cancel()
        check_cancel()
    check_cancel()
    assert len(outer_calls) == 1


def test_conjugate_gradient_stops_at_the_iteration_the_callback_raises():
    a = torch.linspace(1, 100, 50)  # diagonal SPD system that takes many iterations unpreconditioned
    callback, calls = cancel_on_call(3)
    with cancellation(callback), pytest.raises(Cancelled):
        conjugate_gradient(lambda v: v * a, torch.ones(1, 50), torch.zeros(1, 50), torch.ones(1, 50), torch.ones(1, 50),
                           tolerance=1e-12)
    assert len(calls) == 3


def test_wide_panorama_build_checks_every_window():
    callback, calls = cancel_on_call(10**9)
    with cancellation(callback):
        projector = WidePanoramaProjector(64, 2048, 64, 2)  # 993 windows
    assert len(calls) >= projector.n_views
    stop, stop_calls = cancel_on_call(2)
    with cancellation(stop), pytest.raises(Cancelled):
        WidePanoramaProjector(64, 2048, 64, 2)
    assert len(stop_calls) == 2


@pytest.mark.parametrize("build", ["equirect", "cube map"])
def test_sphere_projectors_check_per_view(build):
    from sync_canvas.projectors import CubeMapProjector, EquirectProjector

    make = {"equirect": lambda: EquirectProjector(32, None, 0.0, 72.0, None, "synctweedies", False, "nearest"),
            "cube map": lambda: CubeMapProjector(16, 32)}[build]
    callback, calls = cancel_on_call(10**9)
    with cancellation(callback):
        projector = make()
    assert len(calls) >= projector.n_views
    stop, stop_calls = cancel_on_call(3)
    with cancellation(stop), pytest.raises(Cancelled):
        make()


def test_coverage_in_checked_slices_equals_one_piece(monkeypatch):
    from sync_canvas.projectors import EquirectProjector, base

    projector = EquirectProjector(32, None, 0.0, 72.0, None, "stochsync", True, "bilinear")
    whole = projector.coverage()
    monkeypatch.setattr(base, "COVERAGE_TAPS", 32 * 32 * 4 * 3)  # three views per slice
    callback, calls = cancel_on_call(10**9)
    with cancellation(callback):
        sliced = projector.coverage()
    assert torch.equal(whole, sliced) and len(calls) == -(-projector.n_views // 3)
    assert torch.equal(projector.coverage([1, 4]), sliced.new_zeros(sliced.shape) | projector.coverage([1]) | projector.coverage([4]))


def test_a_library_call_is_abandoned_as_soon_as_the_run_is_cancelled():
    import threading
    import time

    from sync_canvas.projectors.cancel import run_checked

    assert run_checked(lambda a, b=0: a + b, 2, b=3) == 5  # no callback: a plain call
    release = threading.Event()
    stop, _ = cancel_on_call(3)
    start = time.perf_counter()
    with cancellation(stop), pytest.raises(Cancelled):
        run_checked(release.wait, 30.0)  # a call that would take 30 s
    assert time.perf_counter() - start < 5.0
    release.set()
    with cancellation(lambda: None), pytest.raises(ZeroDivisionError):
        run_checked(lambda: 1 / 0)  # the worker's error reaches the caller


@pytest.mark.parametrize("backend", ["torch", "embree"])
def test_rasterisation_checks_per_camera(backend):
    mesh = procedural.torus(12, 6)
    rig = cameras.paper_rig(fov=60.0, distance=2.0)
    callback, calls = cancel_on_call(3)
    with cancellation(callback), pytest.raises(Cancelled):
        rasterize(mesh, rig, (32, 32), backend)
    assert len(calls) == 3  # stopped at the third camera (torch) / ray slice (embree), not after all ten


def test_splat_weights_check_per_chunk():
    from sync_canvas.assets.splat_cameras import fit_orbit
    from sync_canvas.assets.splat_procedural import procedural_splat_scene
    from sync_canvas.projectors.splat_render import compositing_weights

    scene = procedural_splat_scene(200, seed=0)
    cams = fit_orbit(scene.means, scene.opacities, n_views=2, width=24, height=24)
    counter, counted = cancel_on_call(10**9)
    with cancellation(counter):
        compositing_weights(scene.means, scene.quats, scene.log_scales, scene.opacities, cams, max_pairs=256)
    assert len(counted) > 2  # several chunks per view, each checked
    callback, calls = cancel_on_call(2)
    with cancellation(callback), pytest.raises(Cancelled):
        compositing_weights(scene.means, scene.quats, scene.log_scales, scene.opacities, cams, max_pairs=256)
    assert len(calls) == 2


@pytest.mark.parametrize("wrap", [False, True])
def test_sliced_taps_equal_one_piece_taps_and_check_between_slices(monkeypatch, wrap):
    from sync_canvas.projectors import grid

    gen = torch.Generator().manual_seed(0)
    y, x = torch.rand(3, 500, generator=gen, dtype=torch.float64) * 20, torch.rand(3, 500, generator=gen, dtype=torch.float64) * 30
    valid = torch.rand(3, 500, generator=gen) > 0.2
    whole = grid.grid_taps(y, x, valid, (20, 30), wrap)
    monkeypatch.setattr(grid, "TAPS_CHUNK", 3 * 64)
    callback, calls = cancel_on_call(10**9)
    with cancellation(callback):
        sliced = grid.grid_taps(y, x, valid, (20, 30), wrap)
    assert len(calls) == -(-500 // 64)
    for a, b in zip(whole, sliced):
        for field in ("index", "weight", "pixel_weight"):
            assert torch.equal(getattr(a, field), getattr(b, field))
