"""Model stand-ins for tests: exact denoisers for Gaussian priors (sampler math checked exactly) and a
tiny random conv net.

For x0 ~ N(mu, Sigma) and the state ``x = a x0 + b n`` (a, b from the model's ``noise_scaling``;
EPS: a = 1, b = sigma; flow: a = 1 - s, b = s), Tweedie's estimate is closed form:

    E[x0 | x] = mu + Sigma a (a^2 Sigma + b^2 I)^-1 (x - a mu)

* :class:`GaussianDenoiser` with an iid prior (Sigma = variance * I, per element),
* or a stationary prior (circulant Sigma, diagonal in the orthonormal 2-D FFT with eigenvalues
  ``spectrum [.., h, w]``), which gives images with spatial correlation and a known power spectrum.

Both follow the :data:`~.engine.Denoiser` signature ``(x [n,C,h,w], sigma, view_ids) -> x0`` and count
their calls. A sample of the prior (for a reference variance) comes from :meth:`GaussianDenoiser.sample`.
"""

from __future__ import annotations

import torch

from .model_sampling import ModelSamplingLike


def gaussian_spectrum(hw: tuple[int, int], correlation_length: float, variance: float = 1.0) -> torch.Tensor:
    """``[h, w]`` eigenvalues of a periodic Gaussian-kernel covariance with per-pixel ``variance``.

    Mean of the spectrum = variance (orthonormal FFT), so every pixel has exactly that marginal variance.
    """
    h, w = hw
    fy = torch.fft.fftfreq(h).reshape(-1, 1)
    fx = torch.fft.fftfreq(w).reshape(1, -1)
    spectrum = torch.exp(-2 * (torch.pi * correlation_length) ** 2 * (fy**2 + fx**2))
    return spectrum / spectrum.mean() * variance


class GaussianDenoiser:
    """x0 = E[x0 | x] for a Gaussian prior, at any noise level of any affine ``noise_scaling``.

    Args:
        model_sampling: the adapter whose ``noise_scaling`` defines x(x0, noise, sigma).
        mean: prior mean (scalar or broadcastable to ``[n, C, h, w]``).
        variance: iid prior variance (scalar or broadcastable), used when ``spectrum`` is None.
        spectrum: ``[h, w]`` (or ``[C, h, w]``) FFT eigenvalues of a stationary prior (see
            :func:`gaussian_spectrum`); overrides ``variance``.
    """

    def __init__(self, model_sampling: ModelSamplingLike, mean=0.0, variance=1.0, spectrum: torch.Tensor | None = None):
        self.ms = model_sampling
        self.mean = mean
        self.variance = variance
        self.spectrum = spectrum
        self.calls = 0
        self.evaluated_views = 0

    def _coefficients(self, sigma, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = torch.as_tensor(sigma, dtype=like.dtype, device=like.device).reshape(())
        one, zero = torch.ones((), dtype=like.dtype, device=like.device), torch.zeros((), dtype=like.dtype, device=like.device)
        a = self.ms.noise_scaling(s, zero.clone(), one.clone())
        b = self.ms.noise_scaling(s, one.clone(), zero.clone())
        return a, b

    def __call__(self, x: torch.Tensor, sigma, view_ids: torch.Tensor | None = None) -> torch.Tensor:
        self.calls += 1
        self.evaluated_views += x.shape[0]
        a, b = self._coefficients(sigma, x)
        residual = x - a * self.mean
        if self.spectrum is None:
            gain = self.variance * a / (a * a * self.variance + b * b)
            return self.mean + gain * residual
        spectrum = self.spectrum.to(device=x.device, dtype=x.dtype)
        gain = spectrum * a / (a * a * spectrum + b * b)
        return self.mean + torch.fft.ifft2(gain * torch.fft.fft2(residual, norm="ortho"), norm="ortho").real

    def sample(self, shape, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draws from the prior, ``shape`` = ``[..., h, w]``."""
        white = torch.randn(tuple(shape), generator=generator)
        if self.spectrum is None:
            return self.mean + white * torch.as_tensor(self.variance) ** 0.5
        colored = torch.fft.ifft2(self.spectrum.sqrt() * torch.fft.fft2(white, norm="ortho"), norm="ortho").real
        return self.mean + colored


class RandomConvDenoiser:
    """A tiny random-weight eps network (two 3x3 convs) wrapped as x0 through the adapter's
    ``calculate_input`` / ``calculate_denoised``, like ComfyUI's BaseModel: a deterministic stand-in that
    is not linear, for "runs through every case, finite, deterministic by seed" tests."""

    def __init__(self, model_sampling, channels: int = 4, hidden: int = 8, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ms = model_sampling
        self.w1 = torch.randn(hidden, channels + 1, 3, 3, generator=generator) * 0.2
        self.w2 = torch.randn(channels, hidden, 3, 3, generator=generator) * 0.2
        self.evaluated_views = 0

    def __call__(self, x: torch.Tensor, sigma, view_ids: torch.Tensor | None = None) -> torch.Tensor:
        self.evaluated_views += x.shape[0]
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(())
        inp = self.ms.calculate_input(s, x)
        level = torch.log1p(s).expand(x.shape[0], 1, *x.shape[2:])  # timestep conditioning
        h = torch.nn.functional.conv2d(torch.cat([inp, level], 1), self.w1.to(x), padding=1).tanh()
        out = torch.nn.functional.conv2d(h, self.w2.to(x), padding=1)
        return self.ms.calculate_denoised(s, out, x)
