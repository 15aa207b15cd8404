"""Honest fast paths (issue 12): ``backend="auto"`` picks only back-ends the test suite has run (embree,
pure torch); nvdiffrast and gsplat are opt-in and logged as unverified, gsplat is reachable for splat
renders on CUDA. Nothing here needs a GPU: availability is faked, and so is gsplat itself."""

from __future__ import annotations

import logging

import pytest
import torch

from sync_canvas.assets.splat_cameras import fit_orbit
from sync_canvas.assets.splat_procedural import procedural_splat_scene
from sync_canvas.projectors import raster, splat_render
from sync_canvas.projectors.splat import SplatProjector


@pytest.fixture
def everything_installed(monkeypatch):
    """As on a GPU machine with nvdiffrast, embree and gsplat installed."""
    monkeypatch.setattr(raster, "available_backends", lambda: ["nvdiffrast", "embree", "torch"])
    monkeypatch.setattr(splat_render, "_gsplat_available", lambda device: True)


def test_auto_rasteriser_picks_only_verified_backends(everything_installed):
    assert raster._pick_backend("auto", torch.device("cuda")) == "embree"
    assert raster._pick_backend("auto", torch.device("cpu")) == "embree"
    assert raster.preferred_device("auto") == torch.device("cpu")
    assert "nvdiffrast" not in raster.VERIFIED_BACKENDS


def test_nvdiffrast_is_opt_in_and_logged_as_unverified(everything_installed, caplog):
    with caplog.at_level(logging.WARNING):
        assert raster._pick_backend("nvdiffrast", torch.device("cuda")) == "nvdiffrast"
    assert "UNVERIFIED" in caplog.text
    assert raster.preferred_device("nvdiffrast") == torch.device("cuda")


@pytest.fixture(scope="module")
def splats():
    scene = procedural_splat_scene(60, seed=1)
    cams = fit_orbit(scene.means, scene.opacities, n_views=2, width=12, height=12)
    return scene, cams, SplatProjector.from_scene(scene, cams)


def test_auto_splat_render_uses_the_weights_path_even_with_gsplat_on_cuda(everything_installed, monkeypatch, splats):
    scene, cams, _ = splats

    def no_gsplat(*args):
        raise AssertionError("auto picked the unverified gsplat")

    monkeypatch.setattr(splat_render, "_render_gsplat", no_gsplat)
    colors = torch.rand(3, scene.means.shape[0])
    image, alpha, _ = splat_render.render(scene.means, scene.quats, scene.log_scales, scene.opacities, colors, cams)
    assert image.shape == (2, 3, 12, 12) and float(alpha.max()) > 0


def test_gsplat_is_reachable_for_splat_turntables_on_the_gpu(everything_installed, monkeypatch, splats, caplog):
    """``turntable(backend="gsplat")`` hands gsplat the scene and colours on the GPU (meta stands in for
    CUDA here) and returns the frames on the colours' device."""
    _, _, projector = splats
    calls = []

    def fake_gsplat(means, quats, log_scales, opacities, colors, cameras):
        calls.append({t.device.type for t in (means, quats, log_scales, opacities, colors)})
        n = len(cameras)
        return (torch.zeros(n, 3, cameras.height, cameras.width, device=means.device),
                torch.ones(n, 1, cameras.height, cameras.width, device=means.device),
                torch.zeros(n, 1, cameras.height, cameras.width, device=means.device))

    monkeypatch.setattr(splat_render, "_render_gsplat", fake_gsplat)
    colors = torch.rand(3, projector.canonical_size)
    with caplog.at_level(logging.WARNING):
        frames = projector.turntable(colors.to("meta"), frames=3, size=8, backend="gsplat", device="meta")
    assert calls == [{"meta"}]
    assert frames.shape == (3, 3, 8, 8) and frames.device.type == "meta"
    assert "UNVERIFIED" in caplog.text
