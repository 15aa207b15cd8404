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

from dataclasses import dataclass, field
from typing import Callable

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class DDRResult:
    """What ``sample_ddr`` returns (field names shared with the engine's SyncResult)."""

    canonical: torch.Tensor  # [C, *S] final canonical (theta's canonical value)
    views: torch.Tensor  # [N, C, h, w] final renders f(theta, pi)
    model_evals: int  # view-denoiser evaluations (one per view per reverse step)
    schedule: list[tuple[int, int]] = field(default_factory=list)  # (from, to) sigma indices walked


def affine_noise_scaling(model_sampling, sigma: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) with ``noise_scaling(sigma, noise, x0) = a * x0 + b * noise`` (0-d tensors)."""
    s = sigma.reshape(1).to(like)
    one = torch.ones(1, 1, 1, 1, dtype=like.dtype, device=like.device)
    zero = torch.zeros_like(one)
    a = model_sampling.noise_scaling(s, zero, one).reshape(())
    b = model_sampling.noise_scaling(s, one, zero).reshape(())
    return a, b


def noise_to_signal(model_sampling, sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """s(sigma) = b / a: the VE sigma of DDR's main text (paper Sec. 2); 0 at sigma = 0."""
    a, b = affine_noise_scaling(model_sampling, sigma, like)
    return b / a


def langevin_fraction(s: torch.Tensor, s_next: torch.Tensor, eta: float) -> torch.Tensor:
    """sigma_langevin of Algorithm 1, line 8, as a fraction of the next noise level.

    ``eta * sqrt(sigma^-2 + 1) * sqrt(1 - (s_next^2 + 1)/(s^2 + 1))`` simplifies to
    ``eta * sqrt(1 - s_next^2 / s^2)``: DDIM's stochastic std divided by the next total noise std
    (note 1.10.1). Here s > s_next >= 0.
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    return eta * torch.sqrt((1 - (s_next / s) ** 2).clamp(0.0, 1.0))


def reverse_blend(s: torch.Tensor, s_next: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """lam_t = 1 - (s_next / s) sqrt(1 - c^2): the weight of x0 in DDR's fit target (note 1.10.3)."""
    return 1 - (s_next / s) * torch.sqrt(1 - c**2)


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


def _normal(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)


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
            nearest taps); None draws each view's noise independently (Algorithm 1's eps(pi) ~ N(0, I)).
        consistent_noise: fresh Langevin noise drawn on the canvas and rendered per view (overlaps agree;
            for exact crops this reduces to canonical DDIM with averaged x0, note 1.10.4); False draws
            it per view as in Algorithm 1.
        jump_length, jump_interval, jump_repeat: RePaint schedule (``repaint_schedule``).
        generator: for every random draw (reproducibility).
        max_views_per_batch: chunk the denoiser calls.
        callback: ``callback(step, total, canonical)`` after every schedule entry.
        check_cancel: called between model calls; raises to cancel.
    """
    sigmas = torch.as_tensor(sigmas)
    if sigmas.dim() != 1 or sigmas.numel() < 2 or not bool((sigmas[1:] < sigmas[:-1]).all()):
        raise ValueError(f"sigmas must be a strictly decreasing 1-D tensor of length >= 2, got {sigmas.tolist()}")
    projector = representation.projector
    like = representation.render([0])
    channels = like.shape[1]
    all_views = torch.arange(representation.n_views, device=projector.device)
    canvas_shape = (channels, *projector.canonical_shape)

    def fresh(shape_views: int) -> torch.Tensor:
        if consistent_noise:
            return projector.project(_normal(canvas_shape, like, generator), all_views, nearest=True)
        return _normal((shape_views, channels, *projector.view_hw), like, generator)

    if noise is not None:
        if tuple(noise.shape) != canvas_shape:
            raise ValueError(f"noise has shape {tuple(noise.shape)}, expected canonical {canvas_shape}")
        eps = projector.project(noise.to(like), all_views, nearest=True)
    else:
        eps = fresh(len(all_views))

    schedule = repaint_schedule(len(sigmas) - 1, jump_length, jump_interval, jump_repeat)
    chunk = max_views_per_batch or len(all_views)
    evals = 0
    for k, (i, j) in enumerate(schedule):
        if j > i:  # reverse step sigma_i -> sigma_j
            sigma, sigma_next = sigmas[i], sigmas[j]
            a, b = affine_noise_scaling(model_sampling, sigma, like)
            s, s_next = b / a, noise_to_signal(model_sampling, sigma_next, like)
            c = langevin_fraction(s, s_next, eta)
            lam = reverse_blend(s, s_next, c)
            render = representation.render(all_views)
            x0 = torch.empty_like(render)
            for start in range(0, len(all_views), chunk):
                if check_cancel is not None:
                    check_cancel()
                ids = all_views[start : start + chunk]
                x = model_sampling.noise_scaling(sigma.reshape(1).to(like), eps[ids], render[ids])
                x0[ids] = denoiser(x, sigma.to(like), ids)
                evals += len(ids)
            representation.fit(render + lam * (x0 - render), all_views)
        else:  # RePaint forward step sigma_i -> sigma_j (higher): refresh noise only, theta unchanged
            s_low = noise_to_signal(model_sampling, sigmas[i], like)
            s_high = noise_to_signal(model_sampling, sigmas[j], like)
            c = langevin_fraction(s_high, s_low, eta)
        eps = torch.sqrt(1 - c**2) * eps + c * fresh(len(all_views))
        if callback is not None:
            callback(k, len(schedule), representation.canonical())
    return DDRResult(representation.canonical(), representation.render(all_views), evals, schedule)
