"""SyncDiffusion fuse rule: MultiDiffusion plus coherence guidance toward an anchor view.

Lee, Kim, Kim, Sung, "SyncDiffusion: Coherent Montage via Synchronized Joint Diffusions" (NeurIPS 2023).
Per step, before the MultiDiffusion update, every view's noisy latent takes one gradient step (Eq. 14)

    x_t^(i) <- x_t^(i) - w_k * grad_{x_t^(i)} L( D(phi(x_t^(i), t)), D(phi(x_t^(0), t)) )

where phi is the Tweedie ("foreseen denoised") estimate, D an optional decoder, L a perceptual loss
(LPIPS in the paper), view 0 the anchor, and w_k = w * decay^k (w = 20, decay 0.95). Then each view
takes its DDIM step from the updated latent and the canonical x_{t-1} is the overlap average
(MultiDiffusion, the "x_prev" synchronization of SyncTweedies case 6). w = 0 is MultiDiffusion.

Supplementary Table S3 options: guide every ``every``-th step (f = 50 / 10 / 5 of 50 steps) or only the
first ``first_steps`` steps (Init. 5 / Init. 3 steps keep most of the coherence at ~20% of the cost).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .ddim import ddim_noise_share, noise_term, posterior_mean, predicted_eps
from .engine import Denoiser, Engine, SyncResult, run_preamble
from .syncdiffusion_losses import PerceptualLoss, weight_free_loss


@dataclass
class SyncDiffusionResult(SyncResult):
    """``SyncResult`` (model_evals counts gradient passes too) + which loss guided the run."""

    loss_name: str = ""  # which perceptual loss guided the run (reported to the user)


def guidance_weights(
    steps: int, weight: float = 20.0, decay: float = 0.95, first_steps: int | None = None, every: int = 1
) -> list[float]:
    """w_k = weight * decay^k on guided steps, else 0 (Eq. 14 with supp. Table S3's schedules).

    ``first_steps``: guide only steps 0..first_steps-1 (None = all). ``every``: guide every
    ``every``-th step (the paper's f = steps / every).
    """
    if weight < 0 or not 0 < decay <= 1 or every < 1 or (first_steps is not None and first_steps < 0):
        raise ValueError(
            f"need weight >= 0, 0 < decay <= 1, every >= 1, first_steps >= 0; got {weight}, {decay}, {every}, {first_steps}"
        )
    limit = steps if first_steps is None else min(first_steps, steps)
    return [weight * decay**k if (k < limit and k % every == 0) else 0.0 for k in range(steps)]


def coherence_guidance(
    denoiser: Denoiser,
    x_views: torch.Tensor,
    sigma: torch.Tensor,
    view_ids: torch.Tensor,
    anchor_x0: torch.Tensor,
    loss: PerceptualLoss,
    weight: float,
    through_model: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SyncDiffusion gradient step; returns ``(x_views', x0_views')`` both ``[n, C, h, w]``.

    ``through_model=True`` is Eq. 14: the gradient flows through the denoiser to the noisy latents,
    which are updated, and x0 is re-predicted from them (one backward and one extra forward per view).
    ``through_model=False`` is the cheap variant: the gradient step is taken on the views' x0 directly
    (no backward through the model; latents unchanged).
    """
    anchor_x0 = anchor_x0.detach()
    with torch.enable_grad():
        if through_model:
            x = x_views.detach().requires_grad_(True)
            x0 = denoiser(x, sigma, view_ids)
            (grad,) = torch.autograd.grad(loss(x0, anchor_x0).sum(), x)
            x_new = (x - weight * grad).detach()
            with torch.no_grad():
                return x_new, denoiser(x_new, sigma, view_ids)
        with torch.no_grad():
            x0 = denoiser(x_views, sigma, view_ids)
        x0 = x0.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(x0, anchor_x0).sum(), x0)
        return x_views, (x0 - weight * grad).detach()


@torch.no_grad()
def sample_syncdiffusion(
    denoiser: Denoiser,
    projector,
    sigmas: torch.Tensor,
    noise: torch.Tensor,
    model_sampling,
    *,
    weight: float = 20.0,
    decay: float = 0.95,
    first_steps: int | None = None,
    every: int = 1,
    anchor_view: int = 0,
    loss: PerceptualLoss | None = None,
    through_model: bool = True,
    eta: float = 0.0,
    latent_image: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    max_views_per_batch: int | None = None,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    check_cancel: Callable[[], None] | None = None,
) -> SyncDiffusionResult:
    """MultiDiffusion over ``projector``'s windows with SyncDiffusion's coherence guidance.

    Args:
        denoiser: ``denoiser(x_views, sigma, view_ids) -> x0``; must be differentiable in x_views when
            ``through_model`` (ComfyUI models are, under ``torch.enable_grad``).
        projector: exact-crop windows (WidePanoramaProjector); any projector works.
        sigmas: ``[S+1]`` strictly decreasing. noise: ``[C, *S]`` canonical standard normal.
        weight, decay, first_steps, every: guidance schedule (``guidance_weights``); paper: 20, 0.95.
        anchor_view: the view every other view is pulled toward (paper: the first window).
        loss: a PerceptualLoss (``load_lpips_vgg``); None = the weight-free statistics loss.
        eta: DDIM stochasticity of each view's step (paper: 0, deterministic DDIM).
        latent_image: ``[C, *S]`` start for img2img; None = zeros.
        generator, max_views_per_batch, callback, check_cancel: as ``sample_synchronized``.
    With ``weight=0`` this is exactly ``sample_synchronized(case=6)`` (MultiDiffusion).
    """
    sigmas, noise, latent_image = run_preamble(sigmas, projector, noise, latent_image, generator, max_views_per_batch,
                                               None, eta)
    if not 0 <= anchor_view < projector.n_views:
        raise ValueError(f"anchor_view {anchor_view} out of range for {projector.n_views} views")
    loss = (loss if loss is not None else weight_free_loss()).to(noise.device)  # the run's copy
    engine = Engine(denoiser, projector, model_sampling, noise, generator, max_views_per_batch, None, check_cancel)
    projector = engine.projector
    sigmas = sigmas.to(device=noise.device, dtype=noise.dtype)
    steps = len(sigmas) - 1
    weights = guidance_weights(steps, weight, decay, first_steps, every)
    ids = torch.arange(projector.n_views, device=noise.device)
    anchor = ids[anchor_view : anchor_view + 1]
    start = torch.zeros_like(noise) if latent_image is None else latent_image.to(noise)
    x = model_sampling.noise_scaling(sigmas[0], noise.clone(), start)
    for k in range(steps):
        sigma, sigma_prev = sigmas[k], sigmas[k + 1]
        views = projector.project(x)
        if weights[k] > 0:
            anchor_x0 = engine.denoise(views[anchor], sigma, anchor)
            grad_denoiser = lambda v, s, i: engine.denoise(v, s, i)  # noqa: E731 (counts and chunks the calls)
            views, x0 = coherence_guidance(grad_denoiser, views, sigma, ids, anchor_x0, loss, weights[k], through_model)
            if not bool(torch.isfinite(x0).all()):
                raise ValueError(
                    f"SyncDiffusion guidance weight {weights[k]:.4g} at step {k} made x0 non-finite with the loss "
                    f"{loss.name!r}; lower the weight (losses other than LPIPS have other scales, supp. S.4)"
                )
        else:
            x0 = engine.denoise(views, sigma, ids)
        # MultiDiffusion: each view's DDIM step from its (guided) latent, then the overlap average of x_prev
        c = ddim_noise_share(model_sampling, sigma, sigma_prev, eta)
        mean = posterior_mean(model_sampling, sigma_prev, x0, predicted_eps(model_sampling, views, sigma, x0), c)
        x = engine.fuse(mean, "mean")
        if c > 0.0:
            x = x + noise_term(model_sampling, sigma_prev, engine.canonical_noise(), c)
        if callback is not None:
            callback(k, steps, x)
    result = engine.result(x, projector.project(x))
    return SyncDiffusionResult(canonical=result.canonical, views=result.views, model_evals=result.model_evals,
                               loss_name=loss.name)
