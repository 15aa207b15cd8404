"""DDR (Savani et al., Algorithm 1): identity = stochastic DDIM, closed form = Adam fit, RePaint jumps."""

import math

import pytest
import torch

from sync_canvas.projectors.identity import IdentityProjector
from sync_canvas.projectors.panorama import WidePanoramaProjector
from sync_canvas.samplers import DiscreteEpsSampling, FlowSampling, ddim_noise_share, sample_ddim, sample_synchronized
from sync_canvas.samplers.analytic import GaussianDenoiser
from sync_canvas.samplers.ddr import langevin_fraction, noise_to_signal, repaint_schedule, sample_ddr
from sync_canvas.samplers.ddr_representations import CanonicalRepresentation, SirenRepresentation

pytestmark = pytest.mark.usefixtures("one_thread")

EPS_SIGMAS = torch.tensor([14.6, 6.0, 2.5, 1.0, 0.4, 0.0])
FLOW_SIGMAS = torch.tensor([1.0, 0.8, 0.5, 0.3, 0.1, 0.0])


@pytest.mark.parametrize("ms, sigmas", [(DiscreteEpsSampling(), EPS_SIGMAS), (FlowSampling(), FLOW_SIGMAS)], ids=["eps", "flow"])
def test_identity_representation_is_stochastic_ddim(ms, sigmas):
    torch.manual_seed(0)
    noise = torch.randn(4, 6, 5)
    rep = CanonicalRepresentation(IdentityProjector(6, 5), channels=4)
    out = sample_ddr(GaussianDenoiser(ms), rep, sigmas, ms, eta=0.75, noise=noise, generator=torch.Generator().manual_seed(7))
    x_start = ms.noise_scaling(sigmas[0], noise, torch.zeros_like(noise))[None]
    ref = sample_ddim(lambda x, s: GaussianDenoiser(ms)(x, s), x_start, sigmas, ms, eta=0.75, generator=torch.Generator().manual_seed(7))[0]
    assert out.model_evals == 5
    torch.testing.assert_close(out.canonical, ref, atol=1e-5, rtol=1e-5)
    # and the engine's SyncTweedies case 2 on the same noise
    sync = sample_synchronized(GaussianDenoiser(ms), IdentityProjector(6, 5), sigmas, noise, ms, case=2, eta=0.75,
                               generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(out.canonical, sync.canonical, atol=1e-5, rtol=1e-5)
    # stochasticity is real: another seed gives another sample
    other = sample_ddr(GaussianDenoiser(ms), CanonicalRepresentation(IdentityProjector(6, 5), 4), sigmas, ms, eta=0.75,
                       noise=noise, generator=torch.Generator().manual_seed(8))
    assert (other.canonical - ref).abs().max() > 1e-2


def test_langevin_fraction_is_the_engine_ddim_noise_share():
    ms = DiscreteEpsSampling()
    for s, s_next in [(14.6, 6.0), (2.5, 1.0), (0.4, 0.05)]:
        mine = langevin_fraction(noise_to_signal(ms, torch.tensor(s)), noise_to_signal(ms, torch.tensor(s_next)), 0.75)
        assert mine == pytest.approx(ddim_noise_share(ms, torch.tensor(s), torch.tensor(s_next), 0.75), rel=1e-6)
    # the note's numeric check: alpha_bar 0.3 -> 0.5, eta 0.75
    assert langevin_fraction(math.sqrt(0.7 / 0.3), 1.0, 0.75) == pytest.approx(0.566947, abs=1e-6)


def test_crops_eta0_equal_canonical_ddim_with_averaged_x0():
    """Note 1.10.4: exact crops + consistent noise + eta 0 = canonical DDIM with averaged x0 (case 5)."""
    torch.manual_seed(1)
    ms = DiscreteEpsSampling()
    proj = WidePanoramaProjector(8, 20, window=8, stride=4)
    sigmas = torch.tensor([10.0, 3.0, 1.0, 0.3, 0.0])
    noise = torch.randn(3, 8, 20)
    base = GaussianDenoiser(ms)

    def view_denoiser(x, sigma, ids):  # views disagree, so the least-squares average matters
        return base(x, sigma, ids) + 0.1 * ids.float().reshape(-1, 1, 1, 1)

    out = sample_ddr(view_denoiser, CanonicalRepresentation(proj, 3), sigmas, ms, eta=0.0, noise=noise)
    ref = sample_synchronized(view_denoiser, proj, sigmas, noise, ms, case=5)
    torch.testing.assert_close(out.canonical, ref.canonical, atol=1e-5, rtol=1e-5)


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
    ms = DiscreteEpsSampling()
    proj = WidePanoramaProjector(8, 16, window=8, stride=4)
    rep = CanonicalRepresentation(proj, 2)
    sigmas = torch.tensor([8.0, 3.0, 1.0, 0.3, 0.0])
    thetas = []
    out = sample_ddr(
        GaussianDenoiser(ms), rep, sigmas, ms, eta=0.75, jump_length=1, jump_interval=1,
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
    ms = DiscreteEpsSampling()
    sigmas = torch.tensor([6.0, 2.0, 0.7, 0.0])
    noise = torch.randn(2, 8, 8)
    rep = SirenRepresentation(IdentityProjector(8, 8), channels=2, width=64, depth=2, adam_steps=200, adam_lr=2e-3)
    out = sample_ddr(GaussianDenoiser(ms), rep, sigmas, ms, eta=0.0, noise=noise)
    ref = sample_ddim(lambda x, s: GaussianDenoiser(ms)(x, s), sigmas[0] * noise[None], sigmas, ms)[0]
    rel = (out.canonical - ref).pow(2).mean() / ref.pow(2).mean()
    assert rel < 0.1, float(rel)


def test_bad_inputs_raise():
    rep = CanonicalRepresentation(IdentityProjector(4, 4), 1)
    with pytest.raises(ValueError, match="strictly decreasing"):
        sample_ddr(GaussianDenoiser(DiscreteEpsSampling()), rep, torch.tensor([1.0, 2.0]), DiscreteEpsSampling())
    with pytest.raises(ValueError, match="eta"):
        sample_ddr(GaussianDenoiser(DiscreteEpsSampling()), rep, torch.tensor([2.0, 0.0]), DiscreteEpsSampling(), eta=1.5)
    with pytest.raises(ValueError, match="solver"):
        CanonicalRepresentation(IdentityProjector(4, 4), 1, solver="lbfgs")
