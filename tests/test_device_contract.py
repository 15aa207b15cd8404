"""Device contract, checked without a GPU (issue 12).

Every projector, every sampler mode, the RGB fuse and the cross-view attention must work entirely on
the device of their input, and moving a projector must move every tensor it uses. A GPU is not needed
to catch violations:

* the hot paths run with the data on ``DEVICE`` (the CPU here; ``cuda`` under ``scripts/gpu_check.py``)
  while torch's default device is ``meta``: a tensor made without an explicit device is a meta tensor,
  and meeting the data raises ("Tensor on device meta is not on the expected device cpu"), as a CPU
  tensor meeting CUDA data would on a GPU;
* ``projector.to("meta")`` must give a projector whose every tensor (found by walking its attributes
  recursively) is on ``meta``, except the ones a projector declares host-side on purpose
  (``Projector.host_attributes``: inputs of scipy on the CPU), and must leave the original untouched.

``SYNC_CANVAS_TEST_DEVICE=cuda`` runs the same tests with the data on a GPU.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pathlib
import sys
import weakref

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

from sync_canvas.assets import procedural
from sync_canvas.assets.cameras import paper_rig, stochsync_rig
from sync_canvas.assets.splat_cameras import fit_orbit
from sync_canvas.assets.splat_procedural import procedural_splat_scene
from sync_canvas.projectors import (
    AnagramProjector,
    CubeMapProjector,
    EquirectProjector,
    IdentityProjector,
    MultiplaneProjector,
    SplatProjector,
    WidePanoramaProjector,
)
from sync_canvas.projectors.base import Projector
from sync_canvas.projectors.mesh_texture import MeshTextureProjector
from sync_canvas.samplers import DiscreteEpsSampling, RGBFuse, sample_stochsync, sample_synchronized
from sync_canvas.samplers.analytic import GaussianDenoiser
from sync_canvas.samplers.cross_view_attention import cross_view_attention, ring_neighbours
from sync_canvas.samplers.cross_view_patch import CrossViewAttentionPatch, CrossViewSettings
from sync_canvas.samplers.ddr import sample_ddr
from sync_canvas.samplers.ddr_representations import CanonicalRepresentation
from sync_canvas.samplers.dde import sample_dde
from sync_canvas.samplers.dde.coordinator import Coordinator, CoordinatorConfig
from sync_canvas.samplers.engine import module_on
from sync_canvas.samplers.syncdiffusion import sample_syncdiffusion
from sync_canvas.samplers.syncdiffusion_losses import PerceptualLoss

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from projector_state import snapshot, state_of, tensors_in  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

DEVICE = torch.device(os.environ.get("SYNC_CANVAS_TEST_DEVICE", "cpu"))
EPS = DiscreteEpsSampling()
SIGMAS = torch.tensor([14.6, 4.0, 1.2, 0.3, 0.0])


class StrayTensorTrap(TorchFunctionMode):
    """``torch.set_default_device("meta")``, except for ``torch.as_tensor(t)`` / ``torch.tensor(t)`` of an
    existing tensor: those keep ``t``'s device (as they do on a GPU), where the default-device mode would
    move ``t`` to meta and fail on a conversion that is harmless on a GPU."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        converts = func in (torch.as_tensor, torch.tensor) and args and isinstance(args[0], torch.Tensor)
        if func in _device_constructors() and kwargs.get("device") is None and not converts:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


@contextlib.contextmanager
def strict_device():
    """Tensors made without an explicit device become meta tensors, which raise when they meet the data."""
    with StrayTensorTrap():
        yield


# --------------------------------------------------------------------------------------------------
# small instances of every projector (built on the CPU, as the nodes build them)
def _mesh(unprojection: str) -> MeshTextureProjector:
    sphere = procedural.uv_sphere(8, 16)
    return MeshTextureProjector(sphere, paper_rig(sphere.vertices), 16, 32, cos_exponent=2.0, backend="torch",
                                unprojection=unprojection)


def _mesh_stochsync() -> MeshTextureProjector:
    sphere = procedural.uv_sphere(8, 16)
    return MeshTextureProjector(sphere, stochsync_rig(sphere.vertices), 16, 32, backend="torch")


def _splat() -> SplatProjector:
    scene = procedural_splat_scene(120, seed=3)
    return SplatProjector.from_scene(scene, fit_orbit(scene.means, scene.opacities, n_views=4, width=16, height=16))


BUILDERS = {
    "identity": lambda: IdentityProjector(8, 8, n_views=2),
    "wide": lambda: WidePanoramaProjector(8, 24, window=8, stride=4),
    "wide_wrap": lambda: WidePanoramaProjector(8, 24, window=8, stride=4, wrap=True),
    "equirect_nearest": lambda: EquirectProjector(8, canvas_hw=(16, 32), rig="stochsync"),
    "equirect_bilinear": lambda: EquirectProjector(8, canvas_hw=(16, 32), interpolation="bilinear", pole_views=True),
    "cubemap": lambda: CubeMapProjector(8, 8),
    "anagram": lambda: AnagramProjector(8, 8, ("identity", "rotate_cw", "negate", "inner_rotate:30", "jigsaw:2:0")),
    "multiplane": lambda: MultiplaneProjector(AnagramProjector(8, 8, ("identity", "flip_h")), planes=3),
    "mesh_pull": lambda: _mesh("pull"),
    "mesh_scatter": lambda: _mesh("scatter"),
    "mesh_stochsync": _mesh_stochsync,
    "splat": _splat,
}
_BUILT: dict[str, Projector] = {}


def built(name: str) -> Projector:
    if name not in _BUILT:
        _BUILT[name] = BUILDERS[name]()
    return _BUILT[name]


def on_device(name: str) -> Projector:
    return built(name).to(DEVICE)


def _channels(p: Projector) -> int:
    return 4


def _canonical(p: Projector, channels: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(channels, *p.canonical_shape, generator=g).to(DEVICE)


def _views(p: Projector, channels: int = 4, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(p.n_views, channels, *p.view_hw, generator=g).to(DEVICE)


# --------------------------------------------------------------------------------------------------
# 1. projector hot paths on the data's device
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_projector_hot_paths_stay_on_the_data_device(name):
    p = on_device(name)
    z, w = _canonical(p), _views(p)
    sub = [0, p.n_views - 1]
    with strict_device():
        outputs = [
            p.project(z), p.project(z, nearest=True), p.project(z, sub), p.adjoint(w), *p.unproject(w),
            p.aggregate(w), p.aggregate(w, previous=z), p.aggregate(w[sub], previous=z, views=sub),
            p.coverage(), p.coverage(sub), p.fill(z), p.overlap_matrix(),
        ]
        groups = p.view_groups()
    assert sorted(v for g in groups for v in g) == list(range(p.n_views))
    for out in outputs:
        assert out.device.type == DEVICE.type


def test_equirect_depth_views_stay_on_the_data_device():
    p = on_device("equirect_nearest")
    depth = torch.rand(*p.canvas_hw).to(DEVICE)
    with strict_device():
        out = p.depth_views(depth)
    assert out.device.type == DEVICE.type


@pytest.mark.parametrize("name", ["mesh_pull", "splat"])
def test_conditioning_renders_stay_on_the_projector_device(name):
    p = on_device(name)
    texture = _canonical(p, 3)
    with strict_device():
        outputs = [p.depth_maps()]
        if isinstance(p, MeshTextureProjector):
            outputs += [p.normal_maps(), p.masks(), p.render(texture)]
        else:
            outputs += [p.alpha_maps()]
    for out in outputs:
        assert out.device.type == DEVICE.type


# --------------------------------------------------------------------------------------------------
# 2. every sampler mode on the data's device
def _denoiser():
    prior = GaussianDenoiser(EPS)
    return lambda x, sigma, ids: prior(x, sigma)


def _noise(p: Projector) -> torch.Tensor:
    return _canonical(p, 4, seed=5)


def _generator() -> torch.Generator:
    return torch.Generator(DEVICE).manual_seed(0)


@pytest.mark.parametrize("case", range(7))
@pytest.mark.parametrize("name", ["wide", "multiplane", "equirect_bilinear", "cubemap", "mesh_pull", "splat"])
def test_synchronized_cases_stay_on_the_data_device(case, name):
    p = built(name)
    noise = _noise(p)
    seen = []
    with strict_device():
        result = sample_synchronized(_denoiser(), p, SIGMAS, noise, EPS, case=case, eta=0.5, generator=_generator(),
                                     max_views_per_batch=2, callback=lambda i, n, x0: seen.append(x0))
    assert result.canonical.device.type == DEVICE.type and result.views.device.type == DEVICE.type
    assert all(x.device.type == DEVICE.type for x in seen)


@pytest.mark.parametrize("name", ["equirect_nearest", "mesh_stochsync", "splat", "wide"])
def test_stochsync_stays_on_the_data_device(name):
    p = built(name)
    noise = _noise(p)
    with strict_device():
        result = sample_stochsync(_denoiser(), p, SIGMAS, noise, EPS, generator=_generator(), inner_steps=2,
                                  inner_steps_last=1, refine_steps=1)
    assert result.canonical.device.type == DEVICE.type


def test_ddr_stays_on_the_data_device():
    p = on_device("wide")
    rep, noise = CanonicalRepresentation(p, 4), _noise(p)
    with strict_device():
        result = sample_ddr(_denoiser(), rep, SIGMAS, EPS, eta=0.75, noise=noise, generator=_generator(),
                            jump_length=1, jump_interval=1)
    assert result.canonical.device.type == DEVICE.type


@pytest.mark.parametrize("with_coordinator", [False, True])
def test_dde_stays_on_the_data_device(with_coordinator):
    p = built("wide")
    coordinator = Coordinator(CoordinatorConfig(channels=4, patch=2, hidden=16, depth=1, heads=2)) if with_coordinator else None
    noise = _noise(p)
    with strict_device():
        result = sample_dde(_denoiser(), p, SIGMAS, noise, EPS, coordinator=coordinator, eta=0.5, generator=_generator())
    assert result.canonical.device.type == DEVICE.type


def test_syncdiffusion_stays_on_the_data_device():
    p = built("wide")
    noise = _noise(p)
    with strict_device():
        result = sample_syncdiffusion(_denoiser(), p, SIGMAS, noise, EPS, weight=5.0, through_model=False,
                                      generator=_generator())
    assert result.canonical.device.type == DEVICE.type


# --------------------------------------------------------------------------------------------------
# 3. the RGB fuse and the cross-view attention
def _rgb_fuse(pixel: Projector, every_step: bool) -> RGBFuse:
    def decode(latents):  # [n, 4, h, w] -> [n, 3, 2h, 2w], a linear stand-in for a VAE
        return torch.nn.functional.interpolate(latents[:, :3], scale_factor=2, mode="nearest") * 0.5 + 0.5

    def encode(rgb):
        small = torch.nn.functional.avg_pool2d(rgb * 2 - 1, 2)
        return torch.cat([small, small[:, :1]], 1)

    return RGBFuse(decode, encode, pixel, every_step)


@pytest.mark.parametrize("mode", ["case_2", "case_5", "stochsync"])
def test_rgb_fuse_stays_on_the_data_device(mode):
    pixel = built("splat")
    latent = pixel.rescaled(2)
    fuse, noise = _rgb_fuse(pixel, every_step=True), _noise(latent)
    with strict_device():
        if mode == "stochsync":
            result = sample_stochsync(_denoiser(), latent, SIGMAS, noise, EPS, generator=_generator(),
                                      rgb_fuse=fuse, inner_steps=2, inner_steps_last=1, refine_steps=1)
        else:
            result = sample_synchronized(_denoiser(), latent, SIGMAS, noise, EPS, case=int(mode[-1]),
                                         generator=_generator(), rgb_fuse=fuse)
    assert result.canonical_rgb.device.type == DEVICE.type and result.views_rgb.device.type == DEVICE.type


def test_cross_view_attention_stays_on_the_data_device():
    n, t, c = 4, 6, 8
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2 * n, t, c, generator=g).to(DEVICE) for _ in range(3))
    neighbours = ring_neighbours(n)
    with strict_device():
        out = cross_view_attention(q, k, v, 2, torch.arange(n, device=DEVICE), neighbours, n_chunks=2,
                                   ref_view=0, ref_weight=1.0)
        patch = CrossViewAttentionPatch(CrossViewSettings(neighbours, weight=0.5))
        options = {"n_heads": 2, "cond_or_uncond": [0, 1], "sigmas": torch.tensor([3.0], device=DEVICE),
                   "sync_canvas_views": {"view_ids": torch.tensor([1, 2], device=DEVICE), "n_views": n}}
        patched = patch(q[:4], k[:4], v[:4], options)
    assert out.device.type == DEVICE.type and patched.device.type == DEVICE.type


# --------------------------------------------------------------------------------------------------
# 4. moving a projector moves every tensor it uses, and leaves the original as it was
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_to_moves_every_tensor_and_leaves_the_original(name):
    p = BUILDERS[name]()
    p.aggregate(_views(p).cpu()), p.view_groups()  # fill the caches a run fills
    before = snapshot(p)
    moved = p.to("meta")
    host = getattr(moved, "host_attributes", ())
    left = [f"{path} ({t.device})" for path, t in tensors_in(moved, skip=host) if t.device.type != "meta"]
    assert not left, f"{type(p).__name__}.to('meta') left tensors behind: {left}"
    assert moved.device.type == "meta"
    assert snapshot(p) == before, f"{type(p).__name__}.to() changed the original projector"
    assert p.device.type == "cpu"


# --------------------------------------------------------------------------------------------------
# 5. a run never changes its inputs (node outputs in ComfyUI's cache) and frees what it moved
class _TinyNetLoss(torch.nn.Module):
    """A SyncDiffusion loss with weights (as LPIPS has): ``[n]`` distances of 1x1-conv features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 3, 1)

    def forward(self, views, anchor):
        return (self.conv(views) - self.conv(anchor)).pow(2).mean((1, 2, 3))


RUNS = {
    "case_2_rgb": lambda lat, pix, noise: sample_synchronized(
        _denoiser(), lat, SIGMAS, noise, EPS, case=2, generator=_generator(), rgb_fuse=_rgb_fuse(pix, True)),
    "case_5": lambda lat, pix, noise: sample_synchronized(_denoiser(), lat, SIGMAS, noise, EPS, case=5, eta=0.5,
                                                          generator=_generator()),
    "stochsync_rgb": lambda lat, pix, noise: sample_stochsync(
        _denoiser(), lat, SIGMAS, noise, EPS, generator=_generator(), rgb_fuse=_rgb_fuse(pix, True), inner_steps=2,
        inner_steps_last=1, refine_steps=1),
    "dde": lambda lat, pix, noise: sample_dde(
        _denoiser(), lat, SIGMAS, noise, EPS, generator=_generator(),
        coordinator=Coordinator(CoordinatorConfig(channels=4, patch=2, hidden=16, depth=1, heads=2))),
    "syncdiffusion": lambda lat, pix, noise: sample_syncdiffusion(
        _denoiser(), lat, SIGMAS, noise, EPS, weight=5.0, through_model=False, generator=_generator(),
        loss=PerceptualLoss("tiny net", _TinyNetLoss())),
}
PIXEL_PROJECTORS = {"wide": lambda: WidePanoramaProjector(8, 32, window=8, stride=4), "splat": _splat,
                    "mesh": lambda: _mesh("pull")}


@pytest.mark.parametrize("kind", sorted(PIXEL_PROJECTORS))
@pytest.mark.parametrize("run", sorted(RUNS))
def test_a_run_leaves_the_cached_projectors_unchanged_and_frees_its_copies(run, kind, monkeypatch):
    """The projectors are node outputs in ComfyUI's cache. A run must work on copies of its own (on the
    data's device), leave the cached objects exactly as they were (attributes, caches, tensors' device
    and storage) and drop its copies when it ends, so nothing it moved to a GPU stays pinned."""
    if kind != "wide" and run in ("dde", "syncdiffusion"):
        pytest.skip("DDE and SyncDiffusion run on 2-D image canvases")
    pixel = PIXEL_PROJECTORS[kind]()
    latent = pixel.rescaled(2)
    pixel.view_groups(), latent.view_groups(), latent.coverage()  # what the nodes compute before a run
    before = (state_of(pixel), state_of(latent))
    copies = []
    original_to = Projector.to

    def recording_to(self, device, copy=False):
        out = original_to(self, device, copy)
        if out is not self:
            copies.append(weakref.ref(out))
        return out

    monkeypatch.setattr(Projector, "to", recording_to)
    result = RUNS[run](latent, pixel, _noise(latent))
    assert result.canonical.device.type == DEVICE.type and torch.isfinite(result.canonical).all()
    assert (state_of(pixel), state_of(latent)) == before, "the run changed the projector it was given"
    assert copies, "the run used the projectors it was given instead of copies of its own"
    del result
    gc.collect()
    assert all(ref() is None for ref in copies), "the run's projector copies outlive the run"


@pytest.mark.parametrize("kind", ["loss", "coordinator"])
def test_networks_given_to_a_run_are_copied_not_moved(kind):
    net = _TinyNetLoss() if kind == "loss" else Coordinator(CoordinatorConfig(channels=4, patch=2, hidden=16, depth=1, heads=2))
    moved = PerceptualLoss("tiny net", net).to("meta").fn if kind == "loss" else module_on(net, "meta")
    assert next(net.parameters()).device.type == "cpu" and next(moved.parameters()).device.type == "meta"
    assert module_on(net, "cpu") is net  # no copy when already there
