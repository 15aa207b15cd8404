"""Nodes refuse, before allocating, what the estimate says cannot fit; the message names the estimate, the
memory available and the setting to change. Needs ComfyUI (the check lives at the node boundary)."""

import os
import resource

import pytest
import torch

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH not set: ComfyUI node tests skipped"),
]


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


def test_4m_window_panorama_is_refused_before_allocating(tiny):
    from sync_canvas.nodes.memory_check import NotEnoughMemory
    from sync_canvas.nodes.projector_nodes import SyncCanvasWidePanorama

    before = _rss_kib()
    with pytest.raises(NotEnoughMemory, match=r"SyncCanvas Wide Panorama: needs about .* TiB \(3940225 windows .*\) but only .* of RAM is available; raise stride"):
        SyncCanvasWidePanorama.execute(width=16384, height=16384, window=512, stride=8, wrap=False)
    assert _rss_kib() - before < 100 * 1024  # < 100 MB growth


def test_large_360_canvas_and_mesh_projector_are_refused(tiny, monkeypatch):
    from sync_canvas.assets import cameras, procedural
    from sync_canvas.nodes.memory_check import LIMIT_ENV, NotEnoughMemory
    from sync_canvas.nodes.mesh import SyncCanvasMeshProjector
    from sync_canvas.nodes.projector_nodes import SyncCanvas360Panorama

    with pytest.raises(NotEnoughMemory, match=r"360 Panorama: .* lower view_size or width"):
        SyncCanvas360Panorama.execute("synctweedies", 16384, 72.0, 0.0, True, 16384, "bilinear")
    monkeypatch.setenv(LIMIT_ENV, "0.25")  # a 256 MiB server
    rig = cameras.paper_rig(fov=60.0, distance=2.0)
    with pytest.raises(NotEnoughMemory, match=r"Mesh Texture: needs about .* but only 256.0 MiB of RAM .* lower view_size, texture_size"):
        SyncCanvasMeshProjector.execute(procedural.torus(8, 4), rig, 1024, 4096, 1.5, 3.0, "nearest", "torch")


def test_sampler_refuses_a_run_that_cannot_fit(tiny, monkeypatch):
    from sync_canvas.nodes.memory_check import LIMIT_ENV, NotEnoughMemory
    from sync_canvas.nodes.sampler_nodes import SyncCanvasKSampler
    from sync_canvas.projectors import WidePanoramaProjector

    model = tiny.tiny_model()
    monkeypatch.setenv(LIMIT_ENV, "0.00001")  # 10 KiB
    pos, neg = tiny.conditioning(0), tiny.conditioning(1)
    with pytest.raises(NotEnoughMemory, match=r"SyncCanvas KSampler: needs about .* views x 4x8x8 latents"):
        SyncCanvasKSampler.execute(model, pos, neg, WidePanoramaProjector(64, 128, 64, 64), 0, 2, 2.0, "case_2", "normal", 0.0, 1.0)


def test_splat_projector_is_refused_before_building(tiny, monkeypatch):
    """(How long the refusal takes: benchmarks/bench_guard_rails.py.)"""
    from sync_canvas.assets.splat_cameras import fit_orbit
    from sync_canvas.assets.splat_procedural import procedural_splat_scene
    from sync_canvas.nodes.memory_check import LIMIT_ENV, NotEnoughMemory
    from sync_canvas.nodes.splat import SyncCanvasSplatProjector

    scene = procedural_splat_scene(200_000, seed=0)
    cameras = fit_orbit(scene.means, scene.opacities, 64, 50.0, 1024, 1024)
    monkeypatch.setenv(LIMIT_ENV, "4")  # a 4 GiB server
    before = _rss_kib()
    with pytest.raises(NotEnoughMemory, match=r"Gaussian Splat: needs about .* GiB \(64 views of 1024x1024: .* but only 4.0 GiB of RAM"):
        SyncCanvasSplatProjector.execute(scene, cameras)
    assert _rss_kib() - before < 100 * 1024  # < 100 MB growth: nothing was built
    small = fit_orbit(scene.means, scene.opacities, 2, 50.0, 64, 64)
    assert SyncCanvasSplatProjector.execute(procedural_splat_scene(500), small).args[0].n_views == 2  # what fits is built


def _refusals():
    """(node display name, call) for every node that allocates a batch in proportion to its settings or its
    projector: each must refuse with its name when the memory is not there."""
    from sync_canvas.assets import cameras, procedural
    from sync_canvas.assets.splat_cameras import fit_orbit
    from sync_canvas.assets.splat_procedural import procedural_splat_scene
    from sync_canvas.nodes import cubemap, mesh, splat, view_nodes
    from sync_canvas.projectors import CubeMapProjector, MeshTextureProjector, WidePanoramaProjector
    from sync_canvas.projectors.splat import SplatProjector

    wide = WidePanoramaProjector(64, 128, 64, 64)
    image = torch.rand(1, 64, 128, 3)
    views = torch.rand(2, 64, 64, 3)
    scene = procedural_splat_scene(300)
    splat_projector = SplatProjector.from_scene(scene, fit_orbit(scene.means, scene.opacities, 2, 50.0, 32, 32))
    mesh_projector = MeshTextureProjector(procedural.torus(8, 4), cameras.paper_rig(fov=60.0, distance=2.0), 32, 32)
    cube = CubeMapProjector(16, 16)
    return [
        ("Render Views", lambda: view_nodes.SyncCanvasRenderViews.execute(wide, image, "bilinear")),
        ("View Masks", lambda: view_nodes.SyncCanvasViewMasks.execute(wide)),
        ("Fuse Views", lambda: view_nodes.SyncCanvasFuseViews.execute(wide, views, True)),
        ("Empty Canonical Latent", lambda: view_nodes.SyncCanvasEmptyLatent.execute(wide, 4)),
        ("Project Latent", lambda: view_nodes.SyncCanvasProjectLatent.execute(wide, {"samples": torch.zeros(1, 4, 8, 16)})),
        ("Cube Map", lambda: cubemap.SyncCanvasCubeMap.execute(64, 64, 72.0, 60.0)),
        ("Cube Map Export", lambda: cubemap.SyncCanvasCubeMapExport.execute(cube, torch.rand(6, 16, 16, 3), 0)),
        ("Mesh Depth/Normal Views", lambda: mesh.SyncCanvasMeshConditioning.execute(mesh_projector)),
        ("Mesh Turntable", lambda: mesh.SyncCanvasMeshTurntable.execute(mesh_projector, torch.rand(1, 32, 32, 3), 2, 32, 15.0, 1.0)),
        ("Splat Depth Views", lambda: splat.SyncCanvasSplatDepth.execute(splat_projector)),
        ("Splat Turntable", lambda: splat.SyncCanvasSplatTurntable.execute(splat_projector, scene, 2, 32, 15.0, 1.0)),
    ]


def test_every_batch_allocating_node_refuses_what_does_not_fit(tiny, monkeypatch):
    from sync_canvas.nodes.memory_check import LIMIT_ENV, NotEnoughMemory

    refusals = _refusals()
    monkeypatch.setenv(LIMIT_ENV, "0.000001")  # 1 KiB
    for name, call in refusals:
        with pytest.raises(NotEnoughMemory, match=rf"SyncCanvas {name}: needs about .* but only 1.0 KiB of RAM is available; (lower|use)"):
            call()
    monkeypatch.delenv(LIMIT_ENV)
    for name, call in refusals:
        assert call() is not None, name  # the same calls run when the memory is there
