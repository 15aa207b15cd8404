"""The model-sampling twins and the sigma-space DDIM step against diffusers and closed forms."""

import math
import os

import pytest
import torch

from sync_canvas.projectors import IdentityProjector
from sync_canvas.samplers import (
    DiscreteEpsSampling,
    DiscreteVSampling,
    FlowSampling,
    alpha_bar,
    ddim_noise_share,
    ddim_step,
    predicted_eps,
    sample_ddim,
    sample_synchronized,
    timesteps_to_sigmas,
    x0_from_eps,
)
from sync_canvas.samplers.analytic import GaussianDenoiser, gaussian_spectrum


def _diffusers_ddim():
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=1,
        timestep_spacing="leading",
    )


def test_discrete_schedule_matches_diffusers_alphas_and_sd15_range():
    ms = DiscreteEpsSampling()
    abar = _diffusers_ddim().alphas_cumprod.double()
    assert torch.allclose(ms.sigmas.double(), ((1 - abar) / abar).sqrt(), rtol=2e-5)
    assert ms.sigma_min.item() == pytest.approx(0.0292, abs=1e-4)
    assert ms.sigma_max.item() == pytest.approx(14.6146, abs=1e-3)
    t = torch.tensor([0, 1, 250, 999])
    assert torch.equal(ms.timestep(ms.sigmas[t]), t)
    # log-interpolation between integer timesteps
    mid = ms.sigma(torch.tensor(250.5))
    assert mid.item() == pytest.approx(math.sqrt(ms.sigmas[250].item() * ms.sigmas[251].item()), rel=1e-5)
    assert alpha_bar(ms, ms.sigmas[500]) == pytest.approx(abar[500].item(), rel=1e-5)


needs_comfyui = pytest.mark.skipif(
    not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH not set: checked against diffusers only"
)


def _import_comfy():
    import sys

    if os.environ["COMFYUI_PATH"] not in sys.path:
        sys.path.insert(0, os.environ["COMFYUI_PATH"])
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.k_diffusion.sampling as k_sampling
    import comfy.model_sampling as cms

    return cms, k_sampling


@needs_comfyui
def test_discrete_twin_matches_comfyui_model_sampling():
    cms, _ = _import_comfy()

    class EpsDiscrete(cms.ModelSamplingDiscrete, cms.EPS):
        pass

    theirs, ours = EpsDiscrete(), DiscreteEpsSampling()
    assert torch.allclose(theirs.sigmas, ours.sigmas, rtol=1e-6)
    sig = torch.tensor([14.0, 3.3, 0.5, 0.03])
    assert torch.equal(theirs.timestep(sig), ours.timestep(sig))
    t = torch.tensor([10.25, 500.5, 998.9])
    assert torch.allclose(theirs.sigma(t), ours.sigma(t))
    x0, n = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    assert torch.allclose(theirs.noise_scaling(sig[1], n.clone(), x0), ours.noise_scaling(sig[1], n, x0))


@needs_comfyui
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_identity_one_view_equals_comfyui_ddim_and_ddpm_samplers(eta):
    """eta 0 = ComfyUI's 'ddim' (= k-diffusion Euler), eta 1 = its 'ddpm' sampler, on the same noise."""
    _, k_sampling = _import_comfy()
    ms = DiscreteEpsSampling()
    sigmas = timesteps_to_sigmas(ms, [999, 749, 500, 250, 0])
    denoiser = GaussianDenoiser(ms, mean=-0.1, spectrum=gaussian_spectrum((8, 8), 1.0))
    noise = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(2))
    ours = sample_synchronized(denoiser, IdentityProjector(8, 8), sigmas, noise, ms, case=5, eta=eta,
                               generator=torch.Generator().manual_seed(6)).canonical
    x = (noise * sigmas[0])[None]
    model = lambda v, s, **kw: denoiser(v, s[0])  # noqa: E731
    if eta == 0.0:
        theirs = k_sampling.sample_euler(model, x, sigmas, disable=True)
    else:
        generator = torch.Generator().manual_seed(6)
        draws = lambda s, sp: torch.randn(noise.shape, generator=generator)[None]  # noqa: E731
        theirs = k_sampling.sample_ddpm(model, x, sigmas, disable=True, noise_sampler=draws)
    assert torch.allclose(ours, theirs[0], atol=2e-5), (ours - theirs[0]).abs().max()


def test_flow_alpha_bar_is_the_vp_normalisation_and_shift_maps_timesteps():
    ms = FlowSampling(shift=3.0)
    s = 0.4
    assert alpha_bar(ms, s) == pytest.approx((1 - s) ** 2 / ((1 - s) ** 2 + s**2))
    assert ms.sigma(torch.tensor(500.0)).item() == pytest.approx(3 * 0.5 / (1 + 2 * 0.5))
    assert ms.timestep(torch.tensor(0.25)).item() == pytest.approx(250.0)
    with pytest.raises(ValueError, match="-1"):
        FlowSampling(shift=-1)


@pytest.mark.parametrize("ms", [DiscreteEpsSampling(), DiscreteVSampling(), FlowSampling(shift=2.0)], ids=["eps", "v", "flow"])
def test_eps_and_x0_are_inverse_through_noise_scaling(ms):
    torch.manual_seed(0)
    x0, eps = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    sigma = torch.tensor(0.6)
    x = ms.noise_scaling(sigma, eps, x0)
    assert torch.allclose(predicted_eps(ms, x, sigma, x0), eps, atol=1e-5)
    assert torch.allclose(x0_from_eps(ms, x, sigma, eps), x0, atol=1e-5)


def test_v_prediction_denoised_matches_eps_for_the_true_v_target():
    ms = DiscreteVSampling()
    torch.manual_seed(1)
    x0, eps, sigma = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4), torch.tensor(2.0)
    x = ms.noise_scaling(sigma, eps, x0)
    # the v target in ComfyUI's units (sigma_data = 1): v = (eps - sigma x0) / sqrt(1 + sigma^2)
    v = (eps - sigma * x0) / (1 + sigma**2) ** 0.5
    assert torch.allclose(ms.calculate_denoised(sigma, v, x), x0, atol=1e-5)


def test_max_stochasticity_step_is_x0_plus_sigma_z_exactly():
    ms = DiscreteEpsSampling()
    torch.manual_seed(2)
    x0, eps, z = torch.randn(3, 4, 6, 6), torch.randn(3, 4, 6, 6), torch.randn(3, 4, 6, 6)
    sigma_prev = torch.tensor(1.7)
    assert torch.equal(ddim_step(ms, x0, eps, sigma_prev, 1.0, z), x0 + sigma_prev * z)
    flow = FlowSampling()
    assert torch.allclose(ddim_step(flow, x0, eps, 0.3, 1.0, z), 0.7 * x0 + 0.3 * z)


def test_noise_share_from_eta_matches_ddim_sigma_and_ddpm():
    ms = DiscreteEpsSampling()
    s, sp = ms.sigmas[600], ms.sigmas[400]
    ab, abp = 1 / (1 + s.item() ** 2), 1 / (1 + sp.item() ** 2)
    ddpm_sigma = math.sqrt((1 - abp) / (1 - ab) * (1 - ab / abp))
    assert ddim_noise_share(ms, s, sp, 1.0) == pytest.approx(ddpm_sigma / math.sqrt(1 - abp), rel=1e-5)
    assert ddim_noise_share(ms, s, sp, 0.0) == 0.0
    assert ddim_noise_share(ms, s, 0.0, 1.0) == 0.0
    assert 0.0 < ddim_noise_share(ms, s, sp, 0.5) < ddim_noise_share(ms, s, sp, 1.0) < 1.0


@pytest.mark.parametrize("eta", [0.0, 0.6, 1.0])
def test_identity_one_view_sampler_equals_diffusers_ddim_scheduler(eta):
    """Same timesteps, same eta, same noise: the synchronized sampler over an identity projector with one
    view reproduces diffusers' DDIMScheduler (in VP space) to float tolerance."""
    ms = DiscreteEpsSampling()
    scheduler = _diffusers_ddim()
    scheduler.set_timesteps(6)
    timesteps = scheduler.timesteps.tolist()  # [834, 667, 500, 333, 166, 1] style "leading" spacing
    sigmas = timesteps_to_sigmas(ms, timesteps)
    denoiser = GaussianDenoiser(ms, mean=0.1, spectrum=gaussian_spectrum((8, 8), 1.2))
    noise = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(5))

    ours = sample_synchronized(denoiser, IdentityProjector(8, 8), sigmas, noise, ms, case=2, eta=eta,
                               generator=torch.Generator().manual_seed(9)).canonical

    generator = torch.Generator().manual_seed(9)  # the sampler draws one [C,h,w] normal per step with c > 0
    x_vp = (1 - scheduler.alphas_cumprod[timesteps[0]]).sqrt() * noise[None]
    for i, t in enumerate(timesteps):
        sigma = sigmas[i]
        x = x_vp * (1 + sigma**2).sqrt()
        x0 = denoiser(x, sigma)
        eps = (x - x0) / sigma
        c = ddim_noise_share(ms, sigma, sigmas[i + 1], eta)
        z = torch.randn(noise.shape, generator=generator)[None] if c > 0 else torch.zeros_like(x_vp)
        x_vp = scheduler.step(eps, t, x_vp, eta=eta, variance_noise=z).prev_sample
    assert torch.allclose(ours, x_vp[0], atol=2e-4), (ours - x_vp[0]).abs().max()
    assert not torch.allclose(ours, noise, atol=1e-2)


@pytest.mark.parametrize("ms", [DiscreteEpsSampling(), FlowSampling(shift=3.0)], ids=["eps", "flow"])
def test_sigma_space_ddim_equals_vp_ddim_for_any_family(ms):
    """x_prev = noise_scaling(sigma', sqrt(1-c^2) eps + c z, x0), rescaled to VP units, is DDIM's Eq. 3 + noise."""
    torch.manual_seed(3)
    x0, eps, z = torch.randn(4, 4, 4), torch.randn(4, 4, 4), torch.randn(4, 4, 4)
    sigma, sigma_prev = ms.sigma(torch.tensor(700.0)), ms.sigma(torch.tensor(500.0))
    c = ddim_noise_share(ms, sigma, sigma_prev, 0.8)
    x_prev = ddim_step(ms, x0, eps, sigma_prev, c, z)
    ab, abp = alpha_bar(ms, sigma), alpha_bar(ms, sigma_prev)
    sigma_eta = 0.8 * math.sqrt((1 - abp) / (1 - ab) * (1 - ab / abp))
    vp_prev = math.sqrt(abp) * x0 + math.sqrt(1 - abp - sigma_eta**2) * eps + sigma_eta * z
    one = ms.noise_scaling(sigma_prev, torch.zeros(1), torch.ones(1))  # x = vp * a / sqrt(ab)
    assert torch.allclose(x_prev, vp_prev * one / math.sqrt(abp), atol=1e-5)


def test_plain_ddim_reference_equals_euler_in_sigma_space():
    """Deterministic DDIM in sigma space is ComfyUI's 'ddim' (= euler) step: x' = x + (s' - s)(x - x0)/s."""
    ms = DiscreteEpsSampling()
    denoiser = GaussianDenoiser(ms, variance=0.5)
    sigmas = timesteps_to_sigmas(ms, [900, 600, 300, 50])
    x = torch.randn(1, 4, 5, 5, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    ours = sample_ddim(lambda v, s: denoiser(v, s), x.clone(), sigmas, ms)
    for i in range(len(sigmas) - 1):
        x = x + (sigmas[i + 1] - sigmas[i]) * (x - denoiser(x, sigmas[i])) / sigmas[i]
    assert torch.allclose(ours, x, atol=1e-5)
