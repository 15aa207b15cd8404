"""DDR fuse rule: sample a differentiable representation by pulling the reverse process back to theta.

Savani, Finzi, Kolter, "Diffusing Differentiable Representations" (Algorithm 1, "DDRep with RePaint");
derivations in notes/paper-ddr.md. State: theta (renders the *noise-free* signal x0_hat(t), Sec. 3.2)
and a per-view noise store eps_pi. One reverse step sigma -> sigma_next, per view pi:

    x_pi      = noise_scaling(sigma, eps_pi, f(theta, pi))                  # model input
    x0_pi     = D(x_pi, sigma)                                              # Tweedie, Eq. 2
    c         = eta * sqrt(1 - s_next^2 / s^2)                              # sigma_langevin, Alg. 1 l.8
    y_pi      = (1 - lam) f(theta, pi) + lam x0_pi,  lam = 1 - (s_next/s) sqrt(1 - c^2)   # note 1.10.3
    theta     = argmin sum_pi ||f(theta, pi) - y_pi||^2                     # Eq. 5 / Eq. 8
    eps_pi    = sqrt(1 - c^2) eps_pi + c z                                  # Alg. 1 "update noise"

with s = b(sigma)/a(sigma) the noise-to-signal ratio of the model's ``noise_scaling`` (= sigma for
EPS/V models, sigma/(1-sigma) for flow models). With f = identity this *is* the DDIM(eta) step.
A RePaint forward step sigma_low -> sigma_high (Eq. 15, Theorem B.1) only refreshes the noise store;
theta is untouched (note 1.10.2), so it costs no model call and no fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .ddim import ddim_noise_share
from .engine import Denoiser, Engine, SyncResult, check_eta, check_sigmas
from .model_sampling import scaling_coefficients


@dataclass
class DDRResult(SyncResult):
    """``SyncResult`` (canonical = theta's canonical value, views = the renders f(theta, pi)) + the walk."""

    schedule: list[tuple[int, int]] = field(default_factory=list)  # (from, to) sigma indices walked


def noise_to_signal(model_sampling, sigma) -> float:
    """s(sigma) = b / a of ``noise_scaling = a x0 + b n``: the VE sigma of DDR's main text (Sec. 2)."""
    a, b = scaling_coefficients(model_sampling, sigma)
    return b / a if a > 0 else math.inf  # flow models at sigma = 1: pure noise


def langevin_fraction(s: float, s_next: float, eta: float) -> float:
    """sigma_langevin of Algorithm 1, line 8, as a fraction of the next noise level (s > s_next >= 0).

    ``eta * sqrt(sigma^-2 + 1) * sqrt(1 - (s_next^2 + 1)/(s^2 + 1))`` simplifies to
    ``eta * sqrt(1 - s_next^2 / s^2)``: DDIM's stochastic std divided by the next total noise std
    (note 1.10.1); the engine's ``ddim_noise_share`` computes the same number from alpha-bar.
    """
    check_eta(eta)
    return eta * math.sqrt(min(max(1 - (s_next / s) ** 2, 0.0), 1.0))


def reverse_blend(s: float, s_next: float, c: float) -> float:
    """lam_t = 1 - (s_next / s) sqrt(1 - c^2): the weight of x0 in DDR's fit target (note 1.10.3)."""
    return 1 - (s_next / s) * math.sqrt(1 - c * c)


def repaint_schedule(steps: int, jump_length: int = 0, jump_interval: int = 1, jump_repeat: int = 1) -> list[tuple[int, int]]:
    """RePaint (Lugmayr et al. 2022) walk over sigma indices 0..steps as ``(from, to)`` pairs.

    ``to == from + 1`` is a reverse (denoising) step; ``to == from - 1`` a forward (noising) step.
    After every ``jump_interval``-th reverse step (not the last) the walk goes back up ``jump_length``
    levels and down again, ``jump_repeat`` times. ``jump_length=0`` gives the plain reverse walk.
    DDR's NeRF run (one forward step per reverse step) is ``jump_length=1, jump_interval=1``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if jump_length < 0 or jump_interval < 1 or jump_repeat < 0:
        raise ValueError(
            f"need jump_length >= 0, jump_interval >= 1, jump_repeat >= 0; got {jump_length}, {jump_interval}, {jump_repeat}"
        )
    walk: list[tuple[int, int]] = []
    jumps_done: dict[int, int] = {}
    i = 0
    while i < steps:
        walk.append((i, i + 1))
        i += 1
        if jump_length and i < steps and i % jump_interval == 0 and i >= jump_length:
            if jumps_done.get(i, 0) < jump_repeat:
                jumps_done[i] = jumps_done.get(i, 0) + 1
                for _ in range(jump_length):
                    walk.append((i, i - 1))
                    i -= 1
    return walk


@torch.no_grad()
def sample_ddr(
    denoiser: Denoiser,
    representation,
    sigmas: torch.Tensor,
    model_sampling,
    *,
    eta: float = 0.75,
    noise: torch.Tensor | None = None,
    consistent_noise: bool = True,
    jump_length: int = 0,
    jump_interval: int = 1,
    jump_repeat: int = 1,
    generator: torch.Generator | None = None,
    max_views_per_batch: int | None = None,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    check_cancel: Callable[[], None] | None = None,
) -> DDRResult:
    """DDR (Algorithm 1) with RePaint jumps on any representation (see ddr_representations.py).

    Args:
        denoiser: ``denoiser(x_views [n,C,h,w], sigma 0-d, view_ids [n]) -> x0 [n,C,h,w]``.
        representation: CanonicalRepresentation, SirenRepresentation, ... (its theta starts at zero).
        sigmas: ``[S+1]`` strictly decreasing, last may be 0.
        model_sampling: has ``noise_scaling(sigma, noise, latent)`` (ComfyUI's model_sampling).
        eta: DDIM stochasticity (paper: 0.75). 0 = deterministic DDIM.
        noise: ``[C, *S]`` canonical standard normal that seeds the per-view noise store (rendered with
            nearest taps); None draws it from ``generator`` the same way.
        consistent_noise: fresh Langevin noise drawn on the canvas and rendered per view (overlaps agree;
            for exact crops this reduces to canonical DDIM with averaged x0, note 1.10.4); False draws
            it per view, as Algorithm 1's eps(pi) ~ N(0, I) (always so for n-to-1 projectors).
        jump_length, jump_interval, jump_repeat: RePaint schedule (``repaint_schedule``).
        generator: for every random draw (None: seed 0, as the engine).
        max_views_per_batch: chunk the denoiser calls.
        callback: ``callback(step, total, canonical)`` after every schedule entry.
        check_cancel: called between model calls; raises to cancel.
    """
    sigmas = check_sigmas(sigmas)
    check_eta(eta)
    projector = representation.projector
    like = representation.render([0])
    canvas_shape = (like.shape[1], *projector.canonical_shape)
    if noise is not None and tuple(noise.shape) != canvas_shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)}, expected canonical {canvas_shape}")
    start = noise if noise is not None else torch.zeros(canvas_shape, dtype=like.dtype, device=like.device)
    engine = Engine(denoiser, projector, model_sampling, start.to(like), generator, max_views_per_batch, None, check_cancel)
    # the run's own copy (the Engine's): the caller's projector is never used, or changed, below
    projector = representation.projector = engine.projector
    all_views = torch.arange(representation.n_views, device=projector.device)

    def fresh() -> torch.Tensor:
        if consistent_noise:
            return engine.view_noise()  # independent per view anyway for n-to-1 projectors
        return engine.randn((len(all_views), *like.shape[1:]))

    eps = projector.project(noise.to(like), all_views, nearest=True) if noise is not None else fresh()
    schedule = repaint_schedule(len(sigmas) - 1, jump_length, jump_interval, jump_repeat)
    for k, (i, j) in enumerate(schedule):
        if j > i:  # reverse step sigma_i -> sigma_j
            sigma, sigma_next = sigmas[i], sigmas[j]
            c = ddim_noise_share(model_sampling, sigma, sigma_next, eta)
            lam = reverse_blend(noise_to_signal(model_sampling, sigma), noise_to_signal(model_sampling, sigma_next), c)
            render = representation.render(all_views)
            x = model_sampling.noise_scaling(sigma.to(like), eps, render)
            x0 = engine.denoise(x, sigma, all_views)
            representation.fit(render + lam * (x0 - render), all_views)
        else:  # RePaint forward step sigma_i -> sigma_j (higher): refresh noise only, theta unchanged
            c = ddim_noise_share(model_sampling, sigmas[j], sigmas[i], eta)
        if c > 0.0:
            eps = math.sqrt(1 - c * c) * eps + c * fresh()
        if callback is not None:
            callback(k, len(schedule), representation.canonical())
    return DDRResult(canonical=representation.canonical(), views=representation.render(all_views),
                     model_evals=engine.model_evals, schedule=schedule)
