"""SyncTweedies Cases 0-6 (samplers/synchronized.py) with the exact Gaussian denoiser and a random net."""

import pytest
import torch

from sync_canvas.projectors import AnagramProjector, IdentityProjector, PixelPermute, Projector, SparseViewMap
from sync_canvas.projectors import WidePanoramaProjector
from sync_canvas.samplers import (
    CASES,
    DiscreteEpsSampling,
    FlowSampling,
    RGBFuse,
    sample_ddim,
    sample_synchronized,
    timesteps_to_sigmas,
)
from sync_canvas.samplers.analytic import GaussianDenoiser, RandomConvDenoiser, gaussian_spectrum

EPS = DiscreteEpsSampling()
SIGMAS = timesteps_to_sigmas(EPS, [901, 701, 501, 301, 101, 1])


def flow_sigmas(steps: int = 5) -> torch.Tensor:
    return torch.cat([torch.linspace(1.0, 0.1, steps), torch.zeros(1)])


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _noise(shape, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=_gen(seed))


class MixedPlanes(Projector):
    """3-plane multiplane image whose view i mixes the planes with weights ``mix[i]`` (rows sum to 1).

    n-to-1 (each view pixel averages 3 canonical elements). Unlike the plain plane mean, each view weighs
    the planes differently, so N = 3 views determine the planes and A(F(.)) is exact: the views are not
    redundant copies (with copies every x0-averaging case averages independent processes).
    """

    n_to_one = True

    def __init__(self, h: int, w: int, mix: torch.Tensor) -> None:
        n, planes = mix.shape
        pixels = torch.arange(h * w)
        index = torch.stack([pixels + j * h * w for j in range(planes)], -1).expand(n, h * w, planes).contiguous()
        weight = mix[:, None, :].expand(n, h * w, planes).contiguous()
        super().__init__(SparseViewMap(index, weight, torch.ones(n, h * w)), (h, w), (planes, h, w))


MIX = torch.tensor([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6]])


# --------------------------------------------------------------------------------------------------
# identity, one view: every case is plain DDIM
@pytest.mark.parametrize("family", ["eps", "flow"])
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_identity_one_view_every_case_is_plain_ddim(family, eta):
    ms, sigmas = (EPS, SIGMAS) if family == "eps" else (FlowSampling(shift=3.0), flow_sigmas())
    denoiser = GaussianDenoiser(ms, mean=0.2, spectrum=gaussian_spectrum((8, 8), 1.5))
    noise = _noise((4, 8, 8))
    start = ms.noise_scaling(sigmas[0], noise[None].clone(), torch.zeros(1, 4, 8, 8))
    reference = sample_ddim(lambda x, s: denoiser(x, s), start, sigmas, ms, eta, _gen(7))[0]
    for case in CASES:
        result = sample_synchronized(denoiser, IdentityProjector(8, 8), sigmas, noise, ms, case=case, eta=eta,
                                     generator=_gen(7))
        assert torch.allclose(result.canonical, reference, atol=1e-5), (case, (result.canonical - reference).abs().max())
        assert torch.allclose(result.views[0], reference, atol=1e-5)
        assert result.model_evals == len(sigmas) - 1


# --------------------------------------------------------------------------------------------------
# 1-to-1 projections: cases 1-6 agree (SyncTweedies Table A6), case 0 does not
def _one_to_one_projectors():
    perm = tuple(torch.randperm(64, generator=_gen(3)).tolist())
    return {
        "anagram": AnagramProjector(8, 8, ("identity", "rotate_cw", "flip_h", "negate", PixelPermute(perm))),
        "crops": WidePanoramaProjector(8, 20, window=8, stride=4),
    }


@pytest.mark.parametrize("name", ["anagram", "crops"])
@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_one_to_one_projections_cases_1_to_6_agree(name, eta):
    projector = _one_to_one_projectors()[name]
    denoiser = GaussianDenoiser(EPS, mean=0.0, spectrum=gaussian_spectrum(projector.view_hw, 1.0))
    noise = _noise((4, *projector.canonical_shape), seed=1)
    results = {
        case: sample_synchronized(denoiser, projector, SIGMAS, noise, EPS, case=case, eta=eta, generator=_gen(2))
        for case in CASES
    }
    reference = results[2].canonical
    for case in range(1, 7):
        diff = (results[case].canonical - reference).abs().max()
        assert diff < 1e-4, (case, diff)
        assert torch.allclose(results[case].views, results[2].views, atol=1e-4)
    # views are consistent with the canonical result, and the unsynchronized case 0 is not the same
    assert torch.allclose(projector.project(reference), results[2].views, atol=1e-4)
    assert (results[0].canonical - reference).abs().max() > 1e-2


# --------------------------------------------------------------------------------------------------
# n-to-1: case 5 loses variance (SyncTweedies Sec. 3.4, Eq. 9), case 2 does not
def test_n_to_one_multiplane_case5_loses_variance_case2_keeps_it():
    ms = EPS
    sigmas = timesteps_to_sigmas(ms, torch.linspace(951, 1, 25).round().tolist())
    projector = MixedPlanes(8, 8, MIX)
    denoiser = GaussianDenoiser(ms, variance=1.0)  # prior N(0, 1) per pixel
    variance = {}
    for case in (0, 2, 5):
        runs = []
        for seed in range(2):
            noise = _noise((4, *projector.canonical_shape), seed)
            result = sample_synchronized(denoiser, projector, sigmas, noise, ms, case=case, generator=_gen(10 + seed))
            runs.append(result.views.var().item())
        variance[case] = sum(runs) / len(runs)
    print(f"view variance: prior 1.000, plain DDIM (case 0) {variance[0]:.3f}, case 2 {variance[2]:.3f}, "
          f"case 5 {variance[5]:.3f}")
    assert variance[2] > 0.8  # the prior's variance, less DDIM's 25-step discretisation loss
    assert abs(variance[2] - variance[0]) < 0.02 * variance[0]
    assert variance[5] < 0.55 * variance[2]


def test_n_to_one_instance_cases_start_views_from_independent_noise():
    projector = MixedPlanes(4, 4, MIX)
    seen = []

    def denoiser(x, sigma, ids):
        seen.append(x.clone())
        return torch.zeros_like(x)

    noise = _noise((2, *projector.canonical_shape))
    sample_synchronized(denoiser, projector, SIGMAS[:2], noise, EPS, case=2, generator=_gen(0))
    first = seen[0] / SIGMAS[0]
    assert first.var().item() > 0.6  # projecting canonical noise through the mix would give 0.44
    expected = torch.randn((3, 2, 4, 4), generator=_gen(0))
    assert torch.allclose(first, expected, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# chunking, determinism, callbacks, cancellation, a real (random) network
@pytest.mark.parametrize("case", [1, 2, 5, 6])
def test_chunking_gives_identical_results(case):
    projector = _one_to_one_projectors()["anagram"]
    calls = []

    class Counting(GaussianDenoiser):
        def __call__(self, x, sigma, ids=None):
            calls.append(ids.tolist())
            return super().__call__(x, sigma, ids)

    denoiser = Counting(EPS, variance=0.7)
    noise = _noise((4, 8, 8))
    whole = sample_synchronized(denoiser, projector, SIGMAS, noise, EPS, case=case, eta=0.3, generator=_gen(4))
    calls.clear()
    chunked = sample_synchronized(denoiser, projector, SIGMAS, noise, EPS, case=case, eta=0.3, generator=_gen(4),
                                  max_views_per_batch=2)
    assert torch.equal(whole.canonical, chunked.canonical)
    assert calls[:3] == [[0, 1], [2, 3], [4]]
    assert chunked.model_evals == whole.model_evals == 5 * (len(SIGMAS) - 1)


@pytest.mark.parametrize("case", sorted(CASES))
def test_random_network_runs_every_case_deterministically(case):
    projector = AnagramProjector(8, 8, ("identity", "flip_v", "rotate_180"))
    net = RandomConvDenoiser(EPS, channels=4, seed=3)
    noise = _noise((4, 8, 8), seed=5)
    a = sample_synchronized(net, projector, SIGMAS, noise, EPS, case=case, eta=0.5, generator=_gen(1))
    b = sample_synchronized(net, projector, SIGMAS, noise, EPS, case=case, eta=0.5, generator=_gen(1))
    c = sample_synchronized(net, projector, SIGMAS, noise, EPS, case=case, eta=0.5, generator=_gen(2))
    chunked = sample_synchronized(net, projector, SIGMAS, noise, EPS, case=case, eta=0.5, generator=_gen(1),
                                  max_views_per_batch=1)
    assert torch.isfinite(a.canonical).all() and torch.isfinite(a.views).all()
    assert torch.equal(a.canonical, b.canonical)
    assert not torch.allclose(a.canonical, c.canonical, atol=1e-3)
    # a conv backend may round differently per batch size; the sampler itself adds nothing
    assert torch.allclose(a.canonical, chunked.canonical, atol=1e-5)
    assert a.canonical.shape == (4, 8, 8) and a.views.shape == (3, 4, 8, 8)


def test_callback_gets_every_step_with_canonical_x0_and_cancel_stops_before_a_model_call():
    projector = _one_to_one_projectors()["crops"]
    denoiser = GaussianDenoiser(EPS)
    noise = _noise((4, *projector.canonical_shape))
    steps = []
    sample_synchronized(denoiser, projector, SIGMAS, noise, EPS, case=3,
                        callback=lambda i, total, x0: steps.append((i, total, tuple(x0.shape))))
    assert steps == [(i, 6, (4, 8, 20)) for i in range(6)]

    class Stop(Exception):
        pass

    checks = []

    def check_cancel():
        checks.append(denoiser.calls)
        if len(checks) == 4:
            raise Stop

    denoiser.calls = 0
    with pytest.raises(Stop):
        sample_synchronized(denoiser, projector, SIGMAS, noise, EPS, max_views_per_batch=2, check_cancel=check_cancel)
    assert checks == [0, 1, 2, 3] and denoiser.calls == 3  # checked before every chunk's model call


@pytest.mark.parametrize("case", [2, 5])
def test_latent_image_starts_at_noise_scaling_of_the_latent_sdedit(case):
    """denoise < 1: the run starts from noise_scaling(sigma_0, noise, latent) and is plain DDIM from there."""
    latent = 0.5 * _noise((4, 8, 8), seed=8)
    noise = _noise((4, 8, 8))
    sigmas = timesteps_to_sigmas(EPS, [301, 151, 1])
    denoiser = GaussianDenoiser(EPS)
    out = sample_synchronized(denoiser, IdentityProjector(8, 8), sigmas, noise, EPS, case=case, latent_image=latent)
    reference = sample_ddim(lambda x, s: denoiser(x, s), (latent + sigmas[0] * noise)[None], sigmas, EPS)[0]
    assert torch.allclose(out.canonical, reference, atol=1e-5)
    zero_start = sample_synchronized(denoiser, IdentityProjector(8, 8), sigmas, noise, EPS, case=case)
    assert (zero_start.canonical - out.canonical).abs().mean() > 0.1


# --------------------------------------------------------------------------------------------------
# fusing in RGB
def _upsample_vae():
    def decode(z):  # [n, 3, h, w] -> [n, 3, 2h, 2w]
        return torch.nn.functional.interpolate(z, scale_factor=2, mode="nearest")

    def encode(rgb):
        return torch.nn.functional.avg_pool2d(rgb, 2)

    return decode, encode


def test_rgb_fuse_every_step_with_a_lossless_vae_equals_latent_fusing():
    pixel = AnagramProjector(16, 16, ("identity", "rotate_cw", "flip_h"))
    latent_projector = pixel.rescaled(2)
    decode, encode = _upsample_vae()
    denoiser = GaussianDenoiser(EPS, spectrum=gaussian_spectrum((8, 8), 1.0))
    noise = _noise((3, 8, 8))
    plain = sample_synchronized(denoiser, latent_projector, SIGMAS, noise, EPS, case=2, eta=0.4, generator=_gen(0))
    fused = sample_synchronized(denoiser, latent_projector, SIGMAS, noise, EPS, case=2, eta=0.4, generator=_gen(0),
                                rgb_fuse=RGBFuse(decode, encode, pixel, every_step=True), max_views_per_batch=2)
    assert torch.allclose(fused.canonical, plain.canonical, atol=1e-5)
    assert fused.canonical_rgb.shape == (3, 16, 16) and fused.views_rgb.shape == (3, 3, 16, 16)
    assert torch.allclose(fused.canonical_rgb, decode(plain.canonical[None])[0], atol=1e-5)
    assert torch.allclose(fused.views_rgb, pixel.project(fused.canonical_rgb))


def test_final_rgb_sync_fills_uncovered_pixels():
    pixel = WidePanoramaProjector(16, 40, window=16, stride=8)
    latent_projector = pixel.rescaled(2)
    decode, encode = _upsample_vae()
    out = sample_synchronized(GaussianDenoiser(EPS), latent_projector, SIGMAS, _noise((3, 8, 20)), EPS,
                              rgb_fuse=RGBFuse(decode, encode, pixel))
    assert out.canonical_rgb.shape == (3, 16, 40) and torch.isfinite(out.canonical_rgb).all()
    assert torch.allclose(out.canonical_rgb, decode(out.canonical[None])[0], atol=1e-5)


# --------------------------------------------------------------------------------------------------
# bad input
def test_bad_input_raises_value_errors_naming_the_value():
    projector = IdentityProjector(4, 4)
    denoiser = GaussianDenoiser(EPS)
    noise = _noise((4, 4, 4))
    with pytest.raises(ValueError, match="unknown case 7"):
        sample_synchronized(denoiser, projector, SIGMAS, noise, EPS, case=7)
    with pytest.raises(ValueError, match="unknown case '2'"):
        sample_synchronized(denoiser, projector, SIGMAS, noise, EPS, case="2")
    with pytest.raises(ValueError, match=r"strictly decreasing.*sigmas\[1\]=3"):
        sample_synchronized(denoiser, projector, torch.tensor([2.0, 3.0, 0.0]), noise, EPS)
    with pytest.raises(ValueError, match="1.5"):
        sample_synchronized(denoiser, projector, SIGMAS, noise, EPS, eta=1.5)
    with pytest.raises(ValueError, match="-0.1"):
        sample_synchronized(denoiser, projector, SIGMAS, noise, EPS, eta=-0.1)
    with pytest.raises(ValueError, match=r"\(4, 4, 5\)"):
        sample_synchronized(denoiser, projector, SIGMAS, _noise((4, 4, 5)), EPS)
    with pytest.raises(ValueError, match=r"latent_image has shape \(4, 2, 2\)"):
        sample_synchronized(denoiser, projector, SIGMAS, noise, EPS, latent_image=torch.zeros(4, 2, 2))
    with pytest.raises(ValueError, match=r"denoiser returned shape \(1, 4, 2, 2\) for input \(1, 4, 4, 4\)"):
        sample_synchronized(lambda x, s, i: x[..., :2, :2], projector, SIGMAS, noise, EPS)
    with pytest.raises(ValueError, match="max_views_per_batch.*0"):
        sample_synchronized(denoiser, projector, SIGMAS, noise, EPS, max_views_per_batch=0)
    decode, encode = _upsample_vae()
    with pytest.raises(ValueError, match="case=1"):
        sample_synchronized(denoiser, projector, SIGMAS, noise, EPS, case=1,
                            rgb_fuse=RGBFuse(decode, encode, IdentityProjector(8, 8), every_step=True))
    with pytest.raises(ValueError, match="2 views"):
        sample_synchronized(denoiser, projector, SIGMAS, noise, EPS,
                            rgb_fuse=RGBFuse(decode, encode, IdentityProjector(8, 8, n_views=2)))


@pytest.mark.parametrize("case", [2, 5])
def test_max_denoise_scales_the_start_noise_like_comfyui(case):
    seen = []

    def denoiser(x, sigma, ids):
        seen.append(x.clone())
        return torch.zeros_like(x)

    noise = _noise((4, 8, 8))
    sample_synchronized(denoiser, IdentityProjector(8, 8), SIGMAS[:2], noise, EPS, case=case, max_denoise=True)
    assert torch.allclose(seen[0][0], noise * (1 + SIGMAS[0] ** 2).sqrt())
