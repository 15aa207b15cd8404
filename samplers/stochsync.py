"""StochSync (Yeo et al., ICLR 2025, Alg. 4 and appendix B) on the synchronized-sampling skeleton.

Per outer step i at noise level sigma_i (t linear from T = 900 to T_stop = 270 of 1000, 25 steps; as
fractions of the model's noise schedule, so flow models such as SD3 and Flux get their own levels):

    views  = the next group of non-overlapping views (projector.view_groups(), alternating)
    x_t    = noise_scaling(sigma_i, z, f(z_canonical))        maximum stochasticity, c = 1 (Eq. 6)
    x0     = G(x_t): K_i-step deterministic DDIM from sigma_i to 0     (multi-step x_{0|t}, Sec. 6)
    z_canonical = A({g_j(x0_j)})  over the group; other elements keep their value       (Alg. 4 l. 16)

K_i decreases linearly over the run (paper: 50 at the start). In the last ``refine_steps`` outer steps
the inner solve blends, RePaint-style, the previous x0 (noised to the inner level) as background under a
mask that starts as the whole view and shrinks towards the view borders (appendix B), so the borders
stay consistent with the canvas while the interior is regenerated. Model evaluations: exactly
``sum_i len(group_i) * K_i``; blending and re-noising cost none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..projectors.base import Projector
from .ddim import ddim_step, predicted_eps
from .engine import Denoiser, Engine, RGBFuse, SyncResult, run_preamble
from .model_sampling import fraction_at_sigma, sigma_at_fraction


# The paper's T = 900 and T_stop = 270 on the 0..999 DDPM grid, as fractions of the model's noise schedule:
# exactly sigma(900) / sigma(270) on discrete models (ComfyUI's percent_to_sigma uses the 999 grid).
PAPER_START = 900 / 999
PAPER_STOP = 270 / 999


def stochsync_window(denoise: float = 1.0, start: float = PAPER_START, stop: float = PAPER_STOP) -> tuple[float, float]:
    """(first, last) fraction of the noise schedule: ``start * denoise`` and ``stop`` (image-to-image starts later).

    Raises a ValueError in the user's terms (denoise, t_stop) when they leave nothing to sample.
    """
    if not 0.0 <= stop < start <= 1.0:
        raise ValueError(f"need 0 <= t_stop < t_start <= 1 (fractions of the noise schedule), got t_start={start}, t_stop={stop}")
    if not 0.0 < denoise <= 1.0:
        raise ValueError(f"denoise must be in (0, 1], got {denoise}")
    first = start * denoise
    if first <= stop:
        raise ValueError(
            f"denoise={denoise:g} starts StochSync at {first:.3f} of the noise schedule, not above where it stops "
            f"(t_stop={stop:.3f}): use denoise > {stop / start:.3f} or a lower t_stop"
        )
    return first, stop


def stochsync_sigmas(model_sampling, steps: int = 25, start: float = PAPER_START, stop: float = PAPER_STOP,
                     denoise: float = 1.0) -> torch.Tensor:
    """Outer noise levels: :func:`sigma_at_fraction` of fractions linear from ``start * denoise`` to ``stop``,
    plus a trailing 0. Fractions, not timesteps, so it fits discrete and flow models (shift included).

    Returns ``[steps + 1]`` (the trailing 0 is what ComfyUI schedules end with; StochSync ignores it).
    Paper defaults: panoramas 25 steps, t 900 -> 270 (fractions 900/999 -> 270/999); meshes 1000 -> 270.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    first, last = stochsync_window(denoise, start, stop)
    fractions = torch.linspace(first, last, steps, dtype=torch.float64).tolist() if steps > 1 else [first]
    sig = torch.tensor([sigma_at_fraction(model_sampling, f) for f in fractions], dtype=torch.float32)
    return torch.cat([sig, sig.new_zeros(1)])


def inner_step_counts(n_outer: int, first: int = 50, last: int | None = None) -> list[int]:
    """K_i: inner DDIM steps per outer step, rounded linear from ``first`` to ``last`` (None: constant)."""
    if not isinstance(first, int) or first < 1 or (last is not None and (not isinstance(last, int) or last < 1)):
        raise ValueError(f"inner step counts must be positive ints, got first={first!r}, last={last!r}")
    last = first if last is None else last
    if n_outer == 1:
        return [first]
    return [int(round(first + (last - first) * i / (n_outer - 1))) for i in range(n_outer)]


def inner_sigmas(model_sampling, sigma: torch.Tensor, steps: int) -> torch.Tensor:
    """``[steps + 1]`` levels of the inner deterministic DDIM from sigma to 0: sigma, then the levels at
    fractions ``f * (steps - k) / steps`` of the schedule (f = sigma's own fraction; on discrete models
    ``sigma(t * (steps - k) / steps)``), then 0; kept strictly decreasing."""
    f = fraction_at_sigma(model_sampling, float(sigma))
    levels = [float(sigma)]
    for k in range(1, steps):
        s = sigma_at_fraction(model_sampling, f * (steps - k) / steps)
        if 0.0 < s < levels[-1]:
            levels.append(s)
    levels.append(0.0)
    return torch.tensor(levels, dtype=torch.as_tensor(sigma).dtype, device=torch.as_tensor(sigma).device)


@dataclass(frozen=True)
class OuterStep:
    """One StochSync outer step: its view group, the inner DDIM levels (``[K+1]``, from the outer sigma
    down to 0; K model calls per view) and whether it refines boundaries."""

    views: tuple[int, ...]
    levels: tuple[float, ...]
    refine: bool

    @property
    def sigma(self) -> float:
        return self.levels[0]

    @property
    def inner_steps(self) -> int:
        return len(self.levels) - 1


def stochsync_plan(projector: Projector, sigmas: torch.Tensor, model_sampling, inner_steps: int = 50,
                   inner_steps_last: int | None = None, refine_steps: int = 2) -> list[OuterStep]:
    """The whole run as data: one :class:`OuterStep` per positive sigma (a trailing 0 is dropped).

    Groups alternate through ``projector.view_groups()``. K goes linearly from ``inner_steps`` to
    ``inner_steps_last``; None keeps the inner stride of the first step, i.e. ``inner_steps * f_last /
    f_first`` in schedule fractions (50 -> 15 for t 900 -> 270). The last ``refine_steps`` steps refine boundaries.
    """
    if not isinstance(refine_steps, int) or refine_steps < 0:
        raise ValueError(f"refine_steps must be a non-negative int, got {refine_steps!r}")
    positive = [float(s) for s in sigmas if float(s) > 0.0]
    if inner_steps_last is None and isinstance(inner_steps, int) and inner_steps >= 1:
        ratio = fraction_at_sigma(model_sampling, positive[-1]) / max(fraction_at_sigma(model_sampling, positive[0]), 1e-9)
        inner_steps_last = max(1, int(round(round(inner_steps * ratio, 6))))  # 6 digits: bisection noise
    counts = inner_step_counts(len(positive), inner_steps, inner_steps_last)
    groups = projector.view_groups()
    n = len(positive)
    return [
        OuterStep(
            tuple(int(v) for v in groups[i % len(groups)]),
            tuple(inner_sigmas(model_sampling, torch.tensor(s, device="cpu"), counts[i]).tolist()),
            i >= n - refine_steps,
        )
        for i, s in enumerate(positive)
    ]


def planned_model_evals(plan: list[OuterStep]) -> int:
    """Exactly what :func:`sample_stochsync` spends: one evaluation per view per inner step."""
    return sum(len(step.views) * step.inner_steps for step in plan)


def border_distance(view_hw: tuple[int, int], axes: str = "both", device: torch.device | str = "cpu") -> torch.Tensor:
    """``[h, w]`` in [0, 1]: distance of each view pixel to the nearest view border along ``axes`` ("x",
    "y" or "both"), 0 on the border row/column and 1 at the centre."""
    h, w = view_hw
    ry, rx = torch.arange(h, device=device), torch.arange(w, device=device)
    dy = torch.minimum(ry, ry.flip(0)).float() / max((h - 1) / 2, 1e-9)
    dx = torch.minimum(rx, rx.flip(0)).float() / max((w - 1) / 2, 1e-9)
    if axes == "x":
        return dx.clamp(max=1).expand(h, w)
    if axes == "y":
        return dy.clamp(max=1)[:, None].expand(h, w)
    if axes == "both":
        return torch.minimum(dy[:, None], dx[None, :]).clamp(max=1)
    raise ValueError(f"boundary axes must be 'x', 'y' or 'both', got {axes!r}")


def background_mask(distance: torch.Tensor, k: int, steps: int, width: float) -> torch.Tensor:
    """Bool ``[h, w]`` at inner step k of ``steps``: kept from the previous x0 where the border distance is
    at most r_k, with r_k shrinking linearly from 1 (the whole view) to ``width`` (a band at the borders)."""
    r = 1.0 - (1.0 - width) * (k / max(steps - 1, 1))
    return distance <= r + 1e-6


def inner_solve(engine: Engine, x: torch.Tensor, levels: torch.Tensor, view_ids: torch.Tensor,
                background: torch.Tensor | None = None, distance: torch.Tensor | None = None,
                width: float = 0.1) -> torch.Tensor:
    """G: deterministic DDIM through ``levels`` (``[K+1]``, ending at 0) -> x0 ``[n,C,h,w]``, K model calls.

    With ``background`` (the previous x0 of these views) each inner step first replaces the masked
    pixels by the background noised to the current level with fresh noise (RePaint).
    """
    ms = engine.ms
    steps = len(levels) - 1
    x0 = x
    for k in range(steps):
        sigma, sigma_next = levels[k], levels[k + 1]
        if background is not None and k > 0:
            keep = background_mask(distance, k, steps, width).to(x.device)
            noisy_bg = ms.noise_scaling(sigma, engine.randn(x.shape), background)
            x = torch.where(keep, noisy_bg, x)
        x0 = engine.denoise(x, sigma, view_ids)
        if k + 1 < steps:
            x = ddim_step(ms, x0, predicted_eps(ms, x, sigma, x0), sigma_next, 0.0)
    return x0


def sample_stochsync(
    denoiser: Denoiser,
    projector: Projector,
    sigmas: torch.Tensor,
    noise: torch.Tensor,
    model_sampling,
    *,
    latent_image: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    max_views_per_batch: int | None = None,
    rgb_fuse: RGBFuse | None = None,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    check_cancel: Callable[[], None] | None = None,
    inner_steps: int = 50,
    inner_steps_last: int | None = None,
    refine_steps: int = 2,
    boundary_axes: str = "both",
    boundary_width: float = 0.1,
) -> SyncResult:
    """StochSync: maximum-stochasticity synchronization with a multi-step x0 over alternating view groups.

    Args:
        sigmas: outer noise levels, strictly decreasing (e.g. :func:`stochsync_sigmas`); a trailing 0 is
            ignored. Every positive sigma is one outer step.
        noise: ``[C, *S]`` canonical standard normal; unused by the algorithm's per-view noise (drawn
            from ``generator``), checked for shape/device/dtype and kept in the contract for symmetry.
        latent_image: ``[C, *S]`` canonical start x0 (model space); None = zeros (paper: zero init).
        inner_steps / inner_steps_last: K at the first / last outer step (linear in between). Default
            last: ``inner_steps`` scaled by the last/first timestep ratio, keeping the inner stride.
        refine_steps: the last steps that blend the previous x0 at the view borders (appendix B).
        boundary_axes, boundary_width: which view borders ("x" for panoramas' side seams, "y", "both") and
            the final band width as a fraction of the half-size.
        Others as in :func:`sample_synchronized`. ``model_evals`` = :func:`planned_model_evals` of the plan.
    """
    if not 0.0 <= boundary_width <= 1.0:
        raise ValueError(f"boundary_width must be in [0, 1], got {boundary_width!r}")
    sigmas, noise, latent_image = run_preamble(sigmas, projector, noise, latent_image, generator, max_views_per_batch,
                                               rgb_fuse)
    engine = Engine(denoiser, projector, model_sampling, noise, generator, max_views_per_batch, rgb_fuse, check_cancel)
    projector = engine.projector
    ms = model_sampling
    plan = stochsync_plan(projector, sigmas, ms, inner_steps, inner_steps_last, refine_steps)
    distance = border_distance(projector.view_hw, boundary_axes, noise.device)

    canonical = torch.zeros_like(noise) if latent_image is None else latent_image.to(noise)
    engine.previous["x0"] = canonical
    for i, step in enumerate(plan):
        ids = torch.tensor(step.views, dtype=torch.long, device=noise.device)
        levels = torch.tensor(step.levels, dtype=noise.dtype, device=noise.device)
        previous_x0 = projector.project(canonical, ids)
        x = ms.noise_scaling(levels[0], engine.randn(previous_x0.shape), previous_x0)  # c = 1: x0 + sigma z
        x0 = inner_solve(engine, x, levels, ids, previous_x0 if step.refine else None, distance, boundary_width)
        if engine.rgb is not None and engine.rgb.every_step:
            x0 = engine.fuse_rgb(x0, ids)
        canonical = engine.fuse(x0, "x0", ids)
        if callback is not None:
            callback(i, len(plan), canonical)
    return engine.result(canonical, projector.project(canonical))
