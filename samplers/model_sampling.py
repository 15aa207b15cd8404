"""The model-sampling adapter: ComfyUI's sigma parameterisation, and pure-torch twins for tests.

Every sampler in this package works in ComfyUI's "k-diffusion" sigma space and never assumes a model
family: the state at noise level sigma is ``x = ms.noise_scaling(sigma, noise, x0)`` (``x0 + sigma*noise``
for EPS and V-prediction models, ``sigma*noise + (1-sigma)*x0`` for flow models), and the denoiser returns
x0. ComfyUI's ``model.get_model_object("model_sampling")`` satisfies :class:`ModelSamplingLike`; the
classes below reproduce the ones the pack needs for tests without importing ComfyUI:

* :class:`DiscreteEpsSampling` = ``ModelSamplingDiscrete`` + ``EPS`` (SD1.5/2.x-base/SDXL),
* :class:`DiscreteVSampling`   = ``ModelSamplingDiscrete`` + ``V_PREDICTION`` (SD2.x-768),
* :class:`FlowSampling`        = ``ModelSamplingDiscreteFlow`` + ``CONST`` (SD3, with shift),
* :class:`FluxSampling`        = ``ModelSamplingFlux`` + ``CONST`` (Flux: timesteps in [0, 1], exponential shift).

Schedules written in "timesteps out of 1000" only make sense for discrete models; anything the pack
schedules itself is written as a *fraction of the model's noise schedule* (1 = its sigma_max, 0 = clean)
and mapped with :func:`sigma_at_fraction`, i.e. ComfyUI's own ``percent_to_sigma(1 - fraction)``, which
every ComfyUI model sampling has and which honours shift nodes (ModelSamplingDiscrete/SD3/Flux).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import math

import torch


@runtime_checkable
class ModelSamplingLike(Protocol):
    """What the samplers use of ComfyUI's ``model_sampling`` object."""

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False) -> torch.Tensor: ...

    def sigma(self, timestep) -> torch.Tensor: ...  # timestep in the model's own range ([0, 1000) or [0, 1])

    def timestep(self, sigma) -> torch.Tensor: ...

    def percent_to_sigma(self, percent: float) -> float: ...  # ComfyUI: 0 = start of sampling, 1 = end


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

    def percent_to_sigma(self, percent: float) -> float:
        """ComfyUI's rule: ``sigma((1 - percent) * 999)``; percent <= 0 is "above everything", >= 1 is 0."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return self.sigma(torch.tensor((1.0 - percent) * 999.0, device="cpu")).item()


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

    def percent_to_sigma(self, percent: float) -> float:
        """ComfyUI's rule: the shifted ``1 - percent``; percent <= 0 gives 1, >= 1 gives 0."""
        if percent <= 0.0:
            return 1.0
        if percent >= 1.0:
            return 0.0
        return float(self.sigma(torch.tensor((1.0 - percent) * self.multiplier, device="cpu")))

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


class FluxSampling(FlowSampling):
    """ComfyUI ``ModelSamplingFlux`` + ``CONST``: the model's timestep *is* sigma, in [0, 1], and
    ``sigma(t) = e^shift / (e^shift + 1/t - 1)`` (``flux_time_shift(shift, 1, t)``; Flux dev: shift 1.15).

    Note ``sigma(timestep(s)) != s`` unless shift = 0: never round-trip through timesteps.
    """

    def __init__(self, shift: float = 1.15, timesteps: int = 10000) -> None:
        self.shift = float(shift)
        self.multiplier = 1.0
        self.sigmas = self.sigma(torch.arange(1, timesteps + 1, dtype=torch.float32) / timesteps)

    def timestep(self, sigma) -> torch.Tensor:
        return torch.as_tensor(sigma)

    def sigma(self, timestep) -> torch.Tensor:
        t = torch.as_tensor(timestep)
        return math.exp(self.shift) / (math.exp(self.shift) + (1 / t - 1))


def sigma_at_fraction(model_sampling: ModelSamplingLike, fraction: float) -> float:
    """sigma at ``fraction`` of the model's noise schedule: 1 -> sigma_max, 0 -> 0, in between ComfyUI's
    ``percent_to_sigma(1 - fraction)`` (discrete: ``sigma(fraction * 999)``; flow: the shifted fraction).

    This is the family-independent way to say "timestep 900 of 1000": fraction 900/999 gives
    ``sigma(900)`` on SD1.5/SDXL/SD2 and a level inside (0, 1] on SD3/Flux, shift included.
    """
    if not hasattr(model_sampling, "percent_to_sigma"):
        raise TypeError(f"{type(model_sampling).__name__} has no percent_to_sigma: not a ComfyUI model sampling")
    fraction = float(fraction)
    if fraction >= 1.0:
        return float(model_sampling.sigma_max)
    if fraction <= 0.0:
        return 0.0
    return float(model_sampling.percent_to_sigma(1.0 - fraction))


def fraction_at_sigma(model_sampling: ModelSamplingLike, sigma: float, iterations: int = 60) -> float:
    """The inverse of :func:`sigma_at_fraction` (bisection; sigma is increasing in the fraction)."""
    sigma = float(sigma)
    if sigma <= 0.0:
        return 0.0
    if sigma >= float(model_sampling.sigma_max):
        return 1.0
    low, high = 0.0, 1.0
    for _ in range(iterations):
        mid = 0.5 * (low + high)
        if sigma_at_fraction(model_sampling, mid) < sigma:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def scaling_coefficients(model_sampling: ModelSamplingLike, sigma: torch.Tensor) -> tuple[float, float]:
    """(a, b) with ``noise_scaling(sigma, n, x0) = a * x0 + b * n``, read off the adapter itself.

    Works for every ComfyUI prediction type whose noise scaling is affine (EPS, V, CONST, ...), so the
    samplers never branch on the model family.
    """
    # host-side numbers: the adapter may live on the GPU, ComfyUI's moves its argument to its own device
    sigma = torch.as_tensor(sigma).detach().to("cpu", torch.float64)
    one, zero = torch.ones(1, dtype=torch.float64, device="cpu"), torch.zeros(1, dtype=torch.float64, device="cpu")
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
    return float(model_sampling.sigma(torch.tensor(float(t), device="cpu")))


def timesteps_to_sigmas(model_sampling: ModelSamplingLike, timesteps, append_zero: bool = True) -> torch.Tensor:
    """``ms.sigma(t)`` for descending timesteps (e.g. a diffusers DDIM set), plus a trailing 0 -> ``[S(+1)]``."""
    sig = [sigma_at_timestep(model_sampling, t) for t in timesteps]
    if append_zero:
        sig.append(0.0)
    return torch.tensor(sig, dtype=torch.float32)
