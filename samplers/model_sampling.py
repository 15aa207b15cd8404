"""The model-sampling adapter: ComfyUI's sigma parameterisation, and pure-torch twins for tests.

Every sampler in this package works in ComfyUI's "k-diffusion" sigma space and never assumes a model
family: the state at noise level sigma is ``x = ms.noise_scaling(sigma, noise, x0)`` (``x0 + sigma*noise``
for EPS and V-prediction models, ``sigma*noise + (1-sigma)*x0`` for flow models), and the denoiser returns
x0. ComfyUI's ``model.get_model_object("model_sampling")`` satisfies :class:`ModelSamplingLike`; the
classes below reproduce the ones the pack needs for tests without importing ComfyUI:

* :class:`DiscreteEpsSampling` = ``ModelSamplingDiscrete`` + ``EPS`` (SD1.5/2.x-base/SDXL),
* :class:`DiscreteVSampling`   = ``ModelSamplingDiscrete`` + ``V_PREDICTION`` (SD2.x-768),
* :class:`FlowSampling`        = ``ModelSamplingDiscreteFlow`` + ``CONST`` (SD3, Flux-like, with shift).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class ModelSamplingLike(Protocol):
    """What the samplers use of ComfyUI's ``model_sampling`` object."""

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False) -> torch.Tensor: ...

    def sigma(self, timestep) -> torch.Tensor: ...  # timestep in [0, 1000)

    def timestep(self, sigma) -> torch.Tensor: ...


def _reshape_sigma(sigma: torch.Tensor, ndim: int) -> torch.Tensor:
    """A 0-d sigma stays 0-d; a per-sample sigma ``[n]`` broadcasts over ``[n, ...]`` (as ComfyUI)."""
    if sigma.numel() == 1:
        return sigma.reshape(())
    return sigma.reshape(sigma.shape[:1] + (1,) * (ndim - 1))


class _DiscreteSchedule:
    """ModelSamplingDiscrete: 1000 scaled-linear betas; sigma(t) log-interpolated, t(sigma) nearest in log."""

    sigma_data = 1.0

    def __init__(self, linear_start: float = 0.00085, linear_end: float = 0.012, timesteps: int = 1000) -> None:
        # float64 like ComfyUI's make_beta_schedule("linear", ...) (= diffusers "scaled_linear")
        betas = torch.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=torch.float64) ** 2
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.alphas_cumprod = alphas_cumprod
        self.sigmas = (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).float()
        self.log_sigmas = self.sigmas.log()
        self.num_timesteps = timesteps

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma)
        dists = sigma.log().to(self.log_sigmas.device) - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape).to(sigma.device)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        timestep = torch.as_tensor(timestep)
        t = torch.clamp(timestep.float(), min=0, max=len(self.sigmas) - 1)
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp().to(timestep.device)


class DiscreteEpsSampling(_DiscreteSchedule):
    """ComfyUI ``ModelSamplingDiscrete`` + ``EPS``: x = x0 + sigma * noise; model input x / sqrt(sigma^2 + 1)."""

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False) -> torch.Tensor:
        sigma = _reshape_sigma(torch.as_tensor(sigma, dtype=noise.dtype, device=noise.device), noise.ndim)
        scale = torch.sqrt(1.0 + sigma**2) if max_denoise else sigma
        return noise * scale + latent_image

    def inverse_noise_scaling(self, sigma, latent) -> torch.Tensor:
        return latent

    def calculate_input(self, sigma, x) -> torch.Tensor:
        sigma = _reshape_sigma(torch.as_tensor(sigma, dtype=x.dtype, device=x.device), x.ndim)
        return x / (sigma**2 + self.sigma_data**2) ** 0.5

    def calculate_denoised(self, sigma, model_output, x) -> torch.Tensor:
        """EPS: x0 = x - sigma * eps."""
        sigma = _reshape_sigma(torch.as_tensor(sigma, dtype=x.dtype, device=x.device), x.ndim)
        return x - model_output * sigma


class DiscreteVSampling(DiscreteEpsSampling):
    """ComfyUI ``ModelSamplingDiscrete`` + ``V_PREDICTION``: the same noise scaling, v-target denoising."""

    def calculate_denoised(self, sigma, model_output, x) -> torch.Tensor:
        sigma = _reshape_sigma(torch.as_tensor(sigma, dtype=x.dtype, device=x.device), x.ndim)
        sd2 = self.sigma_data**2
        return x * sd2 / (sigma**2 + sd2) - model_output * sigma * self.sigma_data / (sigma**2 + sd2) ** 0.5


class FlowSampling:
    """ComfyUI ``ModelSamplingDiscreteFlow`` + ``CONST``: x = sigma * noise + (1 - sigma) * x0, sigma in (0, 1].

    ``sigma(t) = shift * s / (1 + (shift - 1) * s)`` with ``s = t / multiplier``; ``timestep = sigma * multiplier``.
    """

    def __init__(self, shift: float = 1.0, multiplier: float = 1000.0, timesteps: int = 1000) -> None:
        if shift <= 0:
            raise ValueError(f"flow shift must be > 0, got {shift}")
        self.shift = float(shift)
        self.multiplier = float(multiplier)
        self.sigmas = self.sigma(torch.arange(1, timesteps + 1, dtype=torch.float32) / timesteps * multiplier)

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def timestep(self, sigma) -> torch.Tensor:
        return torch.as_tensor(sigma) * self.multiplier

    def sigma(self, timestep) -> torch.Tensor:
        s = torch.as_tensor(timestep) / self.multiplier
        if self.shift == 1.0:
            return s
        return self.shift * s / (1 + (self.shift - 1) * s)

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False) -> torch.Tensor:
        sigma = _reshape_sigma(torch.as_tensor(sigma, dtype=noise.dtype, device=noise.device), noise.ndim)
        return sigma * noise + (1.0 - sigma) * latent_image

    def inverse_noise_scaling(self, sigma, latent) -> torch.Tensor:
        sigma = _reshape_sigma(torch.as_tensor(sigma, dtype=latent.dtype, device=latent.device), latent.ndim)
        return latent / (1.0 - sigma)

    def calculate_input(self, sigma, x) -> torch.Tensor:
        return x

    def calculate_denoised(self, sigma, model_output, x) -> torch.Tensor:
        """CONST (rectified flow, velocity v = noise - x0): x0 = x - sigma * v."""
        sigma = _reshape_sigma(torch.as_tensor(sigma, dtype=x.dtype, device=x.device), x.ndim)
        return x - model_output * sigma


def scaling_coefficients(model_sampling: ModelSamplingLike, sigma: torch.Tensor) -> tuple[float, float]:
    """(a, b) with ``noise_scaling(sigma, n, x0) = a * x0 + b * n``, read off the adapter itself.

    Works for every ComfyUI prediction type whose noise scaling is affine (EPS, V, CONST, ...), so the
    samplers never branch on the model family.
    """
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    a = float(model_sampling.noise_scaling(sigma, zero.clone(), one.clone()).reshape(-1)[0])
    b = float(model_sampling.noise_scaling(sigma, one.clone(), zero.clone()).reshape(-1)[0])
    return a, b


def alpha_bar(model_sampling: ModelSamplingLike, sigma) -> float:
    """The variance-preserving alpha-bar of noise level sigma: ``a^2 / (a^2 + b^2)`` (SyncTweedies Eq. 2-3).

    EPS/V: ``1 / (1 + sigma^2)``; flow: ``(1-s)^2 / ((1-s)^2 + s^2)``. sigma = 0 gives 1.
    """
    if float(sigma) == 0.0:
        return 1.0
    a, b = scaling_coefficients(model_sampling, sigma)
    return a * a / (a * a + b * b)


def sigma_at_timestep(model_sampling: ModelSamplingLike, t: float) -> float:
    """sigma of a (possibly fractional) model timestep t in [0, 1000)."""
    return float(model_sampling.sigma(torch.tensor(float(t))))


def timesteps_to_sigmas(model_sampling: ModelSamplingLike, timesteps, append_zero: bool = True) -> torch.Tensor:
    """``ms.sigma(t)`` for descending timesteps (e.g. a diffusers DDIM set), plus a trailing 0 -> ``[S(+1)]``."""
    sig = [sigma_at_timestep(model_sampling, t) for t in timesteps]
    if append_zero:
        sig.append(0.0)
    return torch.tensor(sig, dtype=torch.float32)
