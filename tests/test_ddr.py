"""DDR (Savani et al., Algorithm 1): identity = stochastic DDIM, closed form = Adam fit, RePaint jumps."""

import pytest
import torch

from sync_canvas.projectors.identity import IdentityProjector
from sync_canvas.projectors.panorama import WidePanoramaProjector
from sync_canvas.samplers.ddr import langevin_fraction, repaint_schedule, sample_ddr
from sync_canvas.samplers.ddr_representations import CanonicalRepresentation, SirenRepresentation


class VESampling:
    """ComfyUI's EPS/V noise_scaling: x = x0 + sigma * noise."""

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        return latent_image + sigma.reshape(-1, *[1] * (noise.dim() - 1)) * noise


class FlowSampling:
    """ComfyUI's CONST (flow) noise_scaling: x = (1 - sigma) x0 + sigma * noise."""

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        s = sigma.reshape(-1, *[1] * (noise.dim() - 1))
        return (1 - s) * latent_image + s * noise


def gaussian_denoiser(ms):
    """Exact E[x0 | x] for an iid unit-variance Gaussian prior under ``ms``'s noise scaling."""

    def denoise(x, sigma, view_ids):
        one = torch.ones(1, 1, 1, 1)
        a = ms.noise_scaling(sigma.reshape(1), torch.zeros_like(one), one).reshape(())
        b = ms.noise_scaling(sigma.reshape(1), one, torch.zeros_like(one)).reshape(())
        return a * x / (a**2 + b**2)

    return denoise


def reference_ddim(ms, sigmas, noise, eta, generator):
    """Plain DDIM(eta) on one image, drawing its fresh noise in the same order as sample_ddr."""
    denoise = gaussian_denoiser(ms)
    one = torch.ones(1, 1, 1, 1)

    def ab(s):
        return (ms.noise_scaling(s.reshape(1), 0 * one, one).reshape(()), ms.noise_scaling(s.reshape(1), one, 0 * one).reshape(()))

    a, b = ab(sigmas[0])
    x = b * noise[None]
    for i in range(len(sigmas) - 1):
        a, b = ab(sigmas[i])
        an, bn = ab(sigmas[i + 1])
        x0 = denoise(x, sigmas[i], None)
        eps_hat = (x - a * x0) / b
        c = langevin_fraction(b / a, bn / an, eta)
        z = torch.randn(noise.shape, generator=generator)[None]
        x = an * x0 + bn * (torch.sqrt(1 - c**2) * eps_hat + c * z)
    return x[0]


@pytest.mark.parametrize("ms", [VESampling(), FlowSampling()], ids=["eps", "flow"])
def test_identity_representation_is_stochastic_ddim(ms):
    torch.manual_seed(0)
    sigmas = torch.tensor([14.6, 6.0, 2.5, 1.0, 0.4, 0.0]) if isinstance(ms, VESampling) else torch.tensor([0.99, 0.8, 0.5, 0.3, 0.1, 0.0])
    noise = torch.randn(4, 6, 5)
    rep = CanonicalRepresentation(IdentityProjector(6, 5), channels=4)
    out = sample_ddr(gaussian_denoiser(ms), rep, sigmas, ms, eta=0.75, noise=noise, generator=torch.Generator().manual_seed(7))
    ref = reference_ddim(ms, sigmas, noise, 0.75, torch.Generator().manual_seed(7))
    assert out.model_evals == 5
    torch.testing.assert_close(out.canonical, ref, atol=1e-5, rtol=1e-5)
    # stochasticity is real: another seed gives another sample
    other = reference_ddim(ms, sigmas, noise, 0.75, torch.Generator().manual_seed(8))
    assert (other - ref).abs().max() > 1e-2


def test_crops_eta0_equal_canonical_ddim_with_averaged_x0():
    """Note 1.10.4: exact crops + consistent noise + eta 0 = canonical DDIM with averaged x0 (MultiDiffusion)."""
    torch.manual_seed(1)
    ms = VESampling()
    proj = WidePanoramaProjector(8, 20, window=8, stride=4)
    sigmas = torch.tensor([10.0, 3.0, 1.0, 0.3, 0.0])
    noise = torch.randn(3, 8, 20)
    denoise = gaussian_denoiser(ms)
    # a denoiser that differs per view so averaging matters
    def view_denoiser(x, sigma, ids):
        return denoise(x, sigma, ids) + 0.1 * ids.float().reshape(-1, 1, 1, 1)

    out = sample_ddr(view_denoiser, CanonicalRepresentation(proj, 3), sigmas, ms, eta=0.0, noise=noise)
    x = sigmas[0] * noise
    for i in range(len(sigmas) - 1):
        ids = torch.arange(proj.n_views)
        x0 = proj.aggregate(view_denoiser(proj.project(x), sigmas[i], ids))
        x = x0 + sigmas[i + 1] * (x - x0) / sigmas[i]
    torch.testing.assert_close(out.canonical, x, atol=1e-5, rtol=1e-5)


def test_closed_form_fit_equals_adam_fit_on_crops():
    torch.manual_seed(2)
    proj = WidePanoramaProjector(6, 14, window=6, stride=4)
    targets = torch.randn(proj.n_views, 2, 6, 6)
    closed = CanonicalRepresentation(proj, 2)
    adam = CanonicalRepresentation(proj, 2, solver="adam", adam_steps=600, adam_lr=0.05)
    closed.fit(targets)
    adam.fit(targets)
    # overlapping crops disagree, so the fit is a real least-squares compromise, not a copy
    assert (proj.project(closed.theta) - targets).abs().max() > 0.1
    torch.testing.assert_close(adam.theta, closed.theta, atol=2e-3, rtol=0)


def test_repaint_schedule_walk():
    assert repaint_schedule(3) == [(0, 1), (1, 2), (2, 3)]
    assert repaint_schedule(3, jump_length=1, jump_interval=1) == [(0, 1), (1, 0), (0, 1), (1, 2), (2, 1), (1, 2), (2, 3)]
    walk = repaint_schedule(10, jump_length=2, jump_interval=4, jump_repeat=2)
    assert sum(j < i for i, j in walk) == 2 * 2 * 2  # jump points 4 and 8, twice each, 2 levels
    assert walk[-1] == (9, 10) and all(abs(i - j) == 1 for i, j in walk)
    with pytest.raises(ValueError, match="jump_interval"):
        repaint_schedule(5, jump_length=1, jump_interval=0)


def test_repaint_jumps_leave_theta_unchanged_and_cost_no_model_call():
    torch.manual_seed(3)
    ms = VESampling()
    proj = WidePanoramaProjector(8, 16, window=8, stride=4)
    rep = CanonicalRepresentation(proj, 2)
    sigmas = torch.tensor([8.0, 3.0, 1.0, 0.3, 0.0])
    thetas = []
    out = sample_ddr(
        gaussian_denoiser(ms), rep, sigmas, ms, eta=0.75, jump_length=1, jump_interval=1,
        generator=torch.Generator().manual_seed(0), callback=lambda k, n, canon: thetas.append(canon.clone()),
    )
    forward = [k for k, (i, j) in enumerate(out.schedule) if j < i]
    assert len(forward) == 3
    for k in forward:
        assert torch.equal(thetas[k], thetas[k - 1])
    reverse = len(out.schedule) - len(forward)
    assert out.model_evals == reverse * proj.n_views
    # the refit a forward step would do (Alg. 1 line 16) is already satisfied: re-fitting is a no-op
    before = rep.theta.clone()
    rep.fit(rep.render())
    torch.testing.assert_close(rep.theta, before)


def test_siren_renders_zero_then_fits():
    torch.manual_seed(4)
    proj = IdentityProjector(8, 8)
    rep = SirenRepresentation(proj, channels=2, width=32, depth=2, adam_steps=150, adam_lr=1e-3)
    assert torch.equal(rep.render(), torch.zeros(1, 2, 8, 8))
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 8), torch.linspace(-1, 1, 8), indexing="ij")
    target = torch.stack([torch.sin(2 * xx), yy * xx])[None]
    rep.fit(target)
    err = (rep.render() - target).pow(2).mean() / target.pow(2).mean()
    assert err < 0.05


def test_siren_ddr_sample_tracks_ddim():
    """Paper Table 1: SIREN samples nearly match the plain sampler on the same noise."""
    torch.manual_seed(5)
    ms = VESampling()
    sigmas = torch.tensor([6.0, 2.0, 0.7, 0.0])
    noise = torch.randn(2, 8, 8)
    rep = SirenRepresentation(IdentityProjector(8, 8), channels=2, width=64, depth=2, adam_steps=200, adam_lr=2e-3)
    out = sample_ddr(gaussian_denoiser(ms), rep, sigmas, ms, eta=0.0, noise=noise)
    ref = reference_ddim(ms, sigmas, noise, 0.0, torch.Generator())
    rel = (out.canonical - ref).pow(2).mean() / ref.pow(2).mean()
    assert rel < 0.1, float(rel)


def test_bad_inputs_raise():
    rep = CanonicalRepresentation(IdentityProjector(4, 4), 1)
    with pytest.raises(ValueError, match="strictly decreasing"):
        sample_ddr(gaussian_denoiser(VESampling()), rep, torch.tensor([1.0, 2.0]), VESampling())
    with pytest.raises(ValueError, match="eta"):
        sample_ddr(gaussian_denoiser(VESampling()), rep, torch.tensor([2.0, 0.0]), VESampling(), eta=1.5)
    with pytest.raises(ValueError, match="solver"):
        CanonicalRepresentation(IdentityProjector(4, 4), 1, solver="lbfgs")
