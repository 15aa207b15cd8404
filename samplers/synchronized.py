"""SyncTweedies' joint denoising processes, Cases 0-6, as a table and one step function.

The cases differ only in where the state lives and which layer of the DDIM step is synchronized
(SyncTweedies Sec. 3.2 and appendix A5; psi = posterior mean Eq. 3, phi = Tweedie Eq. 4):

| case | state lives in | synchronized   | paper                                               |
|------|----------------|----------------|-----------------------------------------------------|
| 0    | views          | nothing        | independent processes, fused once at the end      |
| 1    | views          | eps            | w' = psi(w, phi(w, F A g(eps)))                     |
| 2    | views          | x0             | w' = psi(w, F A g(phi(w, eps)))  (SyncTweedies)     |
| 3    | views          | x_prev (psi)   | w' = F A g(psi(w, ...))                             |
| 4    | canonical      | eps            | z' = psi(z, phi(z, A g(eps(f z))))  (Visual Anagrams)|
| 5    | canonical      | x0             | z' = psi(z, A g(phi(f z, ...)))  (SyncMVD)          |
| 6    | canonical      | x_prev (psi)   | z' = A g(psi(f z, ...))  (MultiDiffusion)           |

One step: compute, per view, the synchronized layer; fuse it with A(g(.)); then either project it back
(state in views: sync(v) = F(A(g(v)))) or go on in the canonical space; finish the DDIM step from that
layer; add fresh noise in the state's space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..projectors.base import Projector
from .ddim import ddim_noise_share, noise_term, posterior_mean, predicted_eps, x0_from_eps
from .engine import Denoiser, Engine, RGBFuse, SyncResult, run_preamble
from .model_sampling import scaling_coefficients


@dataclass(frozen=True)
class SyncCase:
    """Where the state lives ("views" or "canonical") and which layer is synchronized ("none", "eps",
    "x0" or "mean", the posterior mean psi = x_prev without its fresh noise)."""

    state: str
    synced: str


CASES: dict[int, SyncCase] = {
    0: SyncCase("views", "none"),
    1: SyncCase("views", "eps"),
    2: SyncCase("views", "x0"),
    3: SyncCase("views", "mean"),
    4: SyncCase("canonical", "eps"),
    5: SyncCase("canonical", "x0"),
    6: SyncCase("canonical", "mean"),
}


def get_case(case) -> SyncCase:
    if isinstance(case, bool) or not isinstance(case, int) or case not in CASES:
        raise ValueError(f"unknown case {case!r}; expected one of {sorted(CASES)}")
    return CASES[case]


def layer_from_views(ms, w: torch.Tensor, x0: torch.Tensor, sigma, sigma_prev, c: float, layer: str) -> torch.Tensor:
    """The value of ``layer`` ("eps", "x0" or "mean") for views w at sigma with denoised x0."""
    if layer == "x0":
        return x0
    eps = predicted_eps(ms, w, sigma, x0)
    if layer == "eps":
        return eps
    return posterior_mean(ms, sigma_prev, x0, eps, c)


def mean_from_layer(ms, x: torch.Tensor, value: torch.Tensor, sigma, sigma_prev, c: float, layer: str):
    """Finish the DDIM step from a (synchronized) layer value: ``(posterior mean, x0 or None)``."""
    if layer == "mean":
        return value, None
    if layer == "eps":
        eps, x0 = value, x0_from_eps(ms, x, sigma, value)
    else:
        eps, x0 = predicted_eps(ms, x, sigma, value), value
    return posterior_mean(ms, sigma_prev, x0, eps, c), x0


def sync_step(engine: Engine, case: SyncCase, state: torch.Tensor, sigma, sigma_prev, c: float, want_x0: bool):
    """One synchronized DDIM step of ``case`` from sigma to sigma_prev.

    state: views ``[N,C,h,w]`` or canonical ``[C,*S]`` at sigma. Returns ``(new state, canonical x0 or
    None)``; the canonical x0 (for previews) is computed only when ``want_x0`` or when it is free.
    """
    ms, projector = engine.ms, engine.projector
    ids = torch.arange(projector.n_views, device=state.device)
    views = state if case.state == "views" else projector.project(state)
    x0 = engine.denoise(views, sigma, ids)
    layer = case.synced
    if layer == "eps" and scaling_coefficients(ms, sigma)[0] < 1e-6:
        layer = "x0"  # flow models at sigma = 1 hold no signal: x0 cannot be recovered from eps there
    if layer == "x0" and engine.rgb is not None and engine.rgb.every_step:
        x0 = engine.fuse_rgb(x0)
    canonical_x0 = None

    if layer == "none":
        mean, _ = mean_from_layer(ms, views, x0, sigma, sigma_prev, c, "x0")
    else:
        value = layer_from_views(ms, views, x0, sigma, sigma_prev, c, layer)
        fused = engine.fuse(value, layer)
        if layer == "x0":
            canonical_x0 = fused
        if case.state == "views":
            mean, _ = mean_from_layer(ms, views, projector.project(fused), sigma, sigma_prev, c, layer)
        else:
            mean, x0_canon = mean_from_layer(ms, state, fused, sigma, sigma_prev, c, layer)
            canonical_x0 = x0_canon if x0_canon is not None else canonical_x0
    if canonical_x0 is None and want_x0:
        canonical_x0 = engine.fuse(x0, "x0")

    if c > 0.0:
        z = engine.view_noise() if case.state == "views" else engine.canonical_noise()
        mean = mean + noise_term(ms, sigma_prev, z, c)
    return mean, canonical_x0


def sample_synchronized(
    denoiser: Denoiser,
    projector: Projector,
    sigmas: torch.Tensor,
    noise: torch.Tensor,
    model_sampling,
    *,
    case: int = 2,
    eta: float = 0.0,
    latent_image: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    max_views_per_batch: int | None = None,
    rgb_fuse: RGBFuse | None = None,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    check_cancel: Callable[[], None] | None = None,
    max_denoise: bool = False,
) -> SyncResult:
    """Synchronized DDIM over a projector, SyncTweedies Cases 0-6 (default: Case 2, SyncTweedies).

    Args:
        denoiser: ``(x_views [n,C,h,w], sigma 0-d, view_ids [n]) -> x0 [n,C,h,w]`` in model space.
        projector: canonical ``[C, *S]`` <-> views ``[N, C, h, w]`` at latent resolution.
        sigmas: ``[S+1]`` strictly decreasing, >= 0 (last usually 0), ComfyUI sigma space.
        noise: ``[C, *S]`` standard normal canonical noise.
        model_sampling: ComfyUI's ``model_sampling`` or a twin (:mod:`.model_sampling`).
        case: 0..6, see the module table.
        eta: DDIM stochasticity in [0, 1] (0 = DDIM, 1 = DDPM).
        latent_image: ``[C, *S]`` model-space start for denoise < 1 (SDEdit); None = zeros.
        generator: torch.Generator on the data's device for the fresh noise (None: seed 0). Draw order:
            for n-to-1 projectors in a views-state case one ``[N,C,h,w]`` draw at the start, then one
            draw per step with c > 0 (``[N,C,h,w]`` for n-to-1 views-state cases, else ``[C,*S]``).
        max_views_per_batch: at most this many views per denoiser call (results are identical).
        rgb_fuse: decode/fuse/encode x0 in RGB every step (cases 2 and 5) and/or the final RGB sync.
        callback: ``callback(step, total_steps, canonical_x0 [C,*S])`` after each step.
        check_cancel: called before every model call; raise from it to cancel.
        max_denoise: scale the start noise as ComfyUI does at the schedule's maximum sigma.
    Returns:
        :class:`SyncResult` (canonical filled by nearest covered texel where no view sees it).
    """
    spec = get_case(case)
    sigmas, noise, latent_image = run_preamble(sigmas, projector, noise, latent_image, generator, max_views_per_batch,
                                               rgb_fuse, eta)
    if rgb_fuse is not None and rgb_fuse.every_step and spec.synced != "x0":
        raise ValueError(f"rgb_fuse.every_step fuses x0, so it needs case 2 or 5, got case={case}")
    engine = Engine(denoiser, projector, model_sampling, noise, generator, max_views_per_batch, rgb_fuse, check_cancel)
    projector = engine.projector
    sigmas = sigmas.to(device=noise.device, dtype=noise.dtype)
    latent = torch.zeros_like(noise) if latent_image is None else latent_image.to(noise)
    engine.previous["x0"] = latent

    if spec.state == "canonical":
        state = model_sampling.noise_scaling(sigmas[0], noise.clone(), latent, max_denoise)
    else:
        view_noise = engine.view_noise(noise)
        state = model_sampling.noise_scaling(sigmas[0], view_noise, projector.project(latent), max_denoise)

    total = len(sigmas) - 1
    for i in range(total):
        sigma, sigma_prev = sigmas[i], sigmas[i + 1]
        c = ddim_noise_share(model_sampling, sigma, sigma_prev, eta)
        state, canonical_x0 = sync_step(engine, spec, state, sigma, sigma_prev, c, want_x0=callback is not None)
        if callback is not None:
            callback(i, total, canonical_x0)

    if spec.state == "canonical":
        return engine.result(state, projector.project(state))
    return engine.result(projector.aggregate(state, previous=engine.previous.get("x0")), state)
