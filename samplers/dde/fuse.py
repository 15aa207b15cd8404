"""DDE as a fuse rule: x0 of all views -> coordinator -> overlap average, inside the engine's step.

The sampler is the engine's canonical-state x0-synchronized step (SyncTweedies case 5, which is where
DDE sits: notes/paper-dde.md 4.1) with the plain average A replaced by ``A o C``. Without a coordinator
it *is* case 5, and the result says so (``fuse_rule``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch

from ...projectors.base import Projector
from ..ddim import ddim_noise_share
from ..engine import Denoiser, Engine, SyncResult, module_on, run_preamble
from ..synchronized import CASES, sync_step
from .coordinator import Coordinator

AVERAGING = "averaging (MultiDiffusion; no DDE coordinator loaded)"


def view_positions(projector: Projector) -> torch.Tensor:
    """``[N, h, w, 2]`` global (row, col) canvas coordinates of every view pixel (nearest taps).

    Asked of the projector (``grid_positions``: wide panoramas, identity/anagram canvases, cube maps, ...);
    the coordinator's rotary embeddings read these, so overlapping view pixels share positions (DDE B.3.2).
    """
    try:
        pos = projector.grid_positions()  # [N, P, 2]
    except ValueError as e:
        raise ValueError(f"DDE needs canvas positions: {e}") from e
    return pos.to(torch.float32).reshape(projector.n_views, *projector.view_hw, 2)


def dde_fuse(
    coordinator: Coordinator | None,
    projector: Projector,
    x0_views: torch.Tensor,
    sigma,
    previous: torch.Tensor | None = None,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """``A(C(x0_views))`` -> canonical ``[C, *S]`` (Eq. 4); ``coordinator=None`` is the plain average."""
    if coordinator is not None:
        positions = view_positions(projector) if positions is None else positions
        x0_views = coordinator(x0_views[None], positions, torch.as_tensor(sigma).reshape(1))[0].to(x0_views.dtype)
    return projector.aggregate(x0_views, previous=previous)


def dde_fuse_cfg(
    coordinator: Coordinator | None,
    projector: Projector,
    x0_cond: torch.Tensor,
    x0_uncond: torch.Tensor,
    sigma,
    cfg: float,
    previous: torch.Tensor | None = None,
) -> torch.Tensor:
    """CFG through the coordinator (Eq. 6): ``cfg * A(C(x0_cond)) - (cfg - 1) * A(C(x0_uncond))``.

    ``cfg`` is ComfyUI's scale (the paper's (1 + w), w = 20 for CLEVR). With an untrained coordinator
    this equals averaging the usual CFG-combined x0, because A is linear.
    """
    positions = view_positions(projector) if coordinator is not None else None
    cond = dde_fuse(coordinator, projector, x0_cond, sigma, previous, positions)
    uncond = dde_fuse(coordinator, projector, x0_uncond, sigma, previous, positions)
    return cfg * cond - (cfg - 1.0) * uncond


class _CoordinatedEngine(Engine):
    """The engine with its x0 fuse replaced by ``A o C`` (sigma is remembered from the denoiser call)."""

    def __init__(self, coordinator: Coordinator, *args) -> None:
        super().__init__(*args)
        self.coordinator = coordinator
        self.positions = view_positions(self.projector).to(self.device)
        self.sigma = None

    def denoise(self, x, sigma, view_ids):
        self.sigma = sigma
        return super().denoise(x, sigma, view_ids)

    def fuse(self, views, key, view_ids=None):
        if key == "x0":
            views = self.coordinator(views[None], self.positions, torch.as_tensor(self.sigma).reshape(1))[0].to(views.dtype)
        return super().fuse(views, key, view_ids)


@dataclass
class DDEResult(SyncResult):
    fuse_rule: str = AVERAGING  # what fused the views: the coordinator, or averaging (said visibly)


@torch.no_grad()
def sample_dde(
    denoiser: Denoiser,
    projector: Projector,
    sigmas: torch.Tensor,
    noise: torch.Tensor,
    model_sampling,
    *,
    coordinator: Coordinator | None = None,
    eta: float = 0.0,
    latent_image: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    max_views_per_batch: int | None = None,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    check_cancel: Callable[[], None] | None = None,
) -> DDEResult:
    """Canonical-state DDIM whose per-step x0 is ``A(C([D(x_i)]_i))`` (DDE Eq. 4).

    Arguments as ``sample_synchronized`` (case fixed to 5). ``coordinator=None`` falls back to
    averaging and ``fuse_rule`` reports it. The denoiser should return CFG-combined x0; CFG *through*
    the coordinator needs cond/uncond x0 separately (``dde_fuse_cfg``).
    """
    sigmas, noise, latent_image = run_preamble(sigmas, projector, noise, latent_image, generator, max_views_per_batch,
                                               None, eta)
    args = (denoiser, projector, model_sampling, noise, generator, max_views_per_batch, None, check_cancel)
    if coordinator is None:
        engine, rule = Engine(*args), AVERAGING
    else:
        run = module_on(coordinator, noise.device)  # the run's copy; the node output stays as it is
        coordinator = (copy.deepcopy(run) if run is coordinator else run).eval() if run.training else run
        engine, rule = _CoordinatedEngine(coordinator, *args), f"DDE coordinator ({sum(p.numel() for p in coordinator.parameters())} parameters)"
    sigmas = sigmas.to(device=noise.device, dtype=noise.dtype)
    latent = torch.zeros_like(noise) if latent_image is None else latent_image.to(noise)
    engine.previous["x0"] = latent
    state = model_sampling.noise_scaling(sigmas[0], noise.clone(), latent)
    total = len(sigmas) - 1
    for i in range(total):
        c = ddim_noise_share(model_sampling, sigmas[i], sigmas[i + 1], eta)
        state, canonical_x0 = sync_step(engine, CASES[5], state, sigmas[i], sigmas[i + 1], c, want_x0=callback is not None)
        if callback is not None:
            callback(i, total, canonical_x0)
    result = engine.result(state, engine.projector.project(state))
    return DDEResult(**vars(result), fuse_rule=rule)
