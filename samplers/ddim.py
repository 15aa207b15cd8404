"""The DDIM step in ComfyUI's sigma space (SyncTweedies Eq. 3-5, StochSync Eq. 5-6), any model family.

With ``a = sqrt(1 - c^2)`` the DDIM update from sigma to sigma_prev is

    eps    = (x - ms.noise_scaling(sigma, 0, x0)) / sigma                       (Tweedie inverted, Eq. 4)
    x_prev = ms.noise_scaling(sigma_prev, a * eps + c * z, x0)                  (Eq. 3 + noise, Eq. 5)

where c in [0, 1] is the share of fresh noise z ~ N(0, I): ``c = sigma_t^eta / sqrt(1 - alpha_bar_prev)``
with DDIM's ``sigma_t^eta = eta * sqrt((1 - ab_prev) / (1 - ab)) * sqrt(1 - ab / ab_prev)``; eta = 0 is
DDIM, eta = 1 is DDPM, and c = 1 is StochSync's maximum stochasticity (``x_prev = x0 + sigma_prev z``).
The posterior mean (SyncTweedies' psi) is the same expression with z = 0; the noise term is additive
because every ComfyUI ``noise_scaling`` is affine in the noise.
"""

from __future__ import annotations

import math

import torch

from .model_sampling import ModelSamplingLike, alpha_bar, scaling_coefficients


def ddim_noise_share(model_sampling: ModelSamplingLike, sigma, sigma_prev, eta: float) -> float:
    """c in [0, 1]: the fraction of x_prev's noise that is fresh, from DDIM's eta (0 at sigma_prev = 0)."""
    if float(sigma_prev) <= 0.0 or eta == 0.0:
        return 0.0
    ab, ab_prev = alpha_bar(model_sampling, sigma), alpha_bar(model_sampling, sigma_prev)
    if ab_prev >= 1.0:
        return 0.0
    sigma_eta = eta * math.sqrt(max((1 - ab_prev) / max(1 - ab, 1e-30) * (1 - ab / ab_prev), 0.0))
    return min(sigma_eta / math.sqrt(1 - ab_prev), 1.0)


def _sigma_like(sigma, x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(sigma, dtype=x.dtype, device=x.device)


def predicted_eps(model_sampling: ModelSamplingLike, x: torch.Tensor, sigma, x0: torch.Tensor) -> torch.Tensor:
    """eps = (x - noise_scaling(sigma, 0, x0)) / sigma: the noise implied by x0 (any shape)."""
    s = _sigma_like(sigma, x)
    return (x - model_sampling.noise_scaling(s, torch.zeros_like(x0), x0)) / s


def x0_from_eps(model_sampling: ModelSamplingLike, x: torch.Tensor, sigma, eps: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`predicted_eps` (Tweedie, Eq. 4): x0 with ``noise_scaling(sigma, eps, x0) = x``.

    Uses the affine form ``x = a x0 + b eps`` read off the adapter, so it holds for EPS and flow models.
    """
    s = _sigma_like(sigma, x)
    ones, zeros = torch.ones_like(x), torch.zeros_like(x)
    b = model_sampling.noise_scaling(s, ones, zeros)
    a = model_sampling.noise_scaling(s, zeros, ones)
    return (x - b * eps) / a


def posterior_mean(model_sampling: ModelSamplingLike, sigma_prev, x0: torch.Tensor, eps: torch.Tensor, c: float):
    """psi: the deterministic part of x_prev, ``noise_scaling(sigma_prev, sqrt(1-c^2) eps, x0)``."""
    return model_sampling.noise_scaling(_sigma_like(sigma_prev, x0), math.sqrt(1.0 - c * c) * eps, x0)


def noise_term(model_sampling: ModelSamplingLike, sigma_prev, z: torch.Tensor, c: float) -> torch.Tensor:
    """The fresh-noise part of x_prev: ``noise_scaling(sigma_prev, c z, x0) - noise_scaling(sigma_prev, 0, x0)``
    = ``b(sigma_prev) c z`` (noise scaling is affine; b read off the adapter once, no full-size temporaries)."""
    _, b = scaling_coefficients(model_sampling, sigma_prev)
    return (b * c) * z


def ddim_step(
    model_sampling: ModelSamplingLike,
    x0: torch.Tensor,
    eps: torch.Tensor,
    sigma_prev,
    c: float,
    z: torch.Tensor | None = None,
) -> torch.Tensor:
    """x_prev = noise_scaling(sigma_prev, sqrt(1 - c^2) eps + c z, x0); z is required when c > 0."""
    if c > 0.0 and z is None:
        raise ValueError(f"ddim_step with noise share c={c} needs fresh noise z")
    noise = math.sqrt(1.0 - c * c) * eps + (c * z if c > 0.0 else 0.0)
    return model_sampling.noise_scaling(_sigma_like(sigma_prev, x0), noise, x0)


def sample_ddim(denoiser, x: torch.Tensor, sigmas: torch.Tensor, model_sampling: ModelSamplingLike, eta: float = 0.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Plain (unsynchronized) DDIM from the noisy start x at sigmas[0]; the reference the cases reduce to.

    ``denoiser(x, sigma) -> x0``; fresh noise is drawn from ``generator`` once per step where c > 0.
    """
    for i in range(len(sigmas) - 1):
        sigma, sigma_prev = sigmas[i], sigmas[i + 1]
        x0 = denoiser(x, sigma)
        c = ddim_noise_share(model_sampling, sigma, sigma_prev, eta)
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) if c > 0 else None
        x = ddim_step(model_sampling, x0, predicted_eps(model_sampling, x, sigma, x0), sigma_prev, c, z)
    return x
