"""Precision (issue 12): ComfyUI runs models and VAEs in float16/bfloat16 on GPUs. The sampler state, the
fuses and the conjugate-gradient solves stay in float32 whatever the model, the VAE or the caller's
latents hand over; results match a float32 run to the half-precision rounding of the model outputs."""

from __future__ import annotations

import pytest
import torch

from sync_canvas.projectors import AnagramProjector, EquirectProjector, MultiplaneProjector, WidePanoramaProjector
from sync_canvas.samplers import DiscreteEpsSampling, RGBFuse, sample_stochsync, sample_synchronized
from sync_canvas.samplers.analytic import GaussianDenoiser
from sync_canvas.samplers.dde import sample_dde
from sync_canvas.samplers.syncdiffusion import sample_syncdiffusion

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = DiscreteEpsSampling()
SIGMAS = torch.tensor([14.6, 4.0, 1.2, 0.3, 0.0])
HALF = (torch.float16, torch.bfloat16)
# one rounding of x0 to the model's precision, carried through a few steps: bf16 has 8 mantissa bits
TOLERANCE = {torch.float16: 5e-3, torch.bfloat16: 4e-2}


def _denoiser(dtype, seen: list | None = None):
    """The exact Gaussian denoiser, returning its x0 in ``dtype`` as a half-precision model would; records
    the dtype of every state it is handed."""
    prior = GaussianDenoiser(EPS)

    def denoise(x, sigma, ids):
        if seen is not None:
            seen.append(x.dtype)
        return prior(x, sigma).to(dtype)

    return denoise


def _noise(p, seed=0):
    return torch.randn(4, *p.canonical_shape, generator=torch.Generator().manual_seed(seed))


PROJECTORS = {
    "wide": lambda: WidePanoramaProjector(8, 24, window=8, stride=4),
    "multiplane": lambda: MultiplaneProjector(AnagramProjector(8, 8, ("identity", "flip_h")), planes=3),
    "equirect_bilinear": lambda: EquirectProjector(8, canvas_hw=(16, 32), interpolation="bilinear"),
}


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("case", [2, 5])
@pytest.mark.parametrize("name", sorted(PROJECTORS))
def test_a_half_precision_denoiser_leaves_the_state_in_float32(name, case, dtype):
    p = PROJECTORS[name]()
    noise = _noise(p)
    seen, previews = [], []
    run = sample_synchronized(_denoiser(dtype, seen), p, SIGMAS, noise, EPS, case=case, eta=0.5,
                              generator=torch.Generator().manual_seed(1), callback=lambda i, n, x0: previews.append(x0))
    reference = sample_synchronized(_denoiser(torch.float32), p, SIGMAS, noise, EPS, case=case, eta=0.5,
                                    generator=torch.Generator().manual_seed(1))
    assert set(seen) == {torch.float32}, "the model was handed a state that is not float32"
    assert run.canonical.dtype == run.views.dtype == torch.float32
    assert all(x.dtype == torch.float32 for x in previews)
    torch.testing.assert_close(run.canonical, reference.canonical, atol=TOLERANCE[dtype], rtol=0)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_half_precision_latents_from_the_caller_are_sampled_in_float32(dtype):
    p = PROJECTORS["multiplane"]()
    noise = _noise(p)
    seen = []
    for sampler in (
        lambda n, lat: sample_synchronized(_denoiser(dtype, seen), p, SIGMAS, n, EPS, case=2, latent_image=lat),
        lambda n, lat: sample_stochsync(_denoiser(dtype, seen), p, SIGMAS, n, EPS, latent_image=lat, inner_steps=2),
        lambda n, lat: sample_dde(_denoiser(dtype, seen), p, SIGMAS, n, EPS, latent_image=lat),
    ):
        out = sampler(noise.to(dtype), torch.zeros_like(noise, dtype=dtype))
        assert out.canonical.dtype == torch.float32
    wide = PROJECTORS["wide"]()
    out = sample_syncdiffusion(_denoiser(dtype, seen), wide, SIGMAS, _noise(wide).to(dtype), EPS, weight=5.0,
                               through_model=False)
    assert out.canonical.dtype == torch.float32
    assert set(seen) == {torch.float32}


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_a_half_precision_vae_is_fused_in_float32(dtype):
    """RGB fusing through a VAE that decodes and encodes in half precision: the RGB canvas and its
    least-squares fuse stay float32 (a 360 canvas with bilinear taps: the fuse is a CG solve)."""
    pixel = EquirectProjector(16, canvas_hw=(32, 64), interpolation="bilinear")
    latent = pixel.rescaled(2)

    def fuse(vae_dtype):
        def decode(latents):
            return (torch.nn.functional.interpolate(latents[:, :3], scale_factor=2, mode="nearest") * 0.5 + 0.5).to(vae_dtype)

        def encode(rgb):
            small = torch.nn.functional.avg_pool2d(rgb.float() * 2 - 1, 2)
            return torch.cat([small, small[:, :1]], 1).to(vae_dtype)

        return RGBFuse(decode, encode, pixel, every_step=True)

    noise = _noise(latent)
    run = sample_synchronized(_denoiser(dtype), latent, SIGMAS, noise, EPS, case=2, rgb_fuse=fuse(dtype))
    reference = sample_synchronized(_denoiser(torch.float32), latent, SIGMAS, noise, EPS, case=2, rgb_fuse=fuse(torch.float32))
    assert run.canonical_rgb.dtype == run.views_rgb.dtype == run.canonical.dtype == torch.float32
    torch.testing.assert_close(run.canonical_rgb, reference.canonical_rgb, atol=2 * TOLERANCE[dtype], rtol=0)


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", ["multiplane", "equirect_bilinear"])
def test_the_least_squares_solve_of_half_views_runs_in_float32(name, dtype):
    """The fuse of half-precision views equals the float32 fuse of the same views, rounded once: the CG
    iterations themselves do not run in half precision."""
    p = PROJECTORS[name]()
    w = p.project(_noise(p)) + 0.1 * torch.randn(p.n_views, 4, *p.view_hw, generator=torch.Generator().manual_seed(2))
    half = w.to(dtype)
    fused = p.aggregate(half, iterations=60)
    exact = p.aggregate(half.float(), iterations=60)
    assert fused.dtype == dtype
    torch.testing.assert_close(fused, exact.to(dtype), atol=0, rtol=0)
