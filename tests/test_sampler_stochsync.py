"""StochSync (samplers/stochsync.py): max stochasticity, multi-step x0, alternating groups, refinement, cost."""

import pytest
import torch

from sync_canvas.projectors import IdentityProjector, WidePanoramaProjector
from sync_canvas.samplers import (
    DiscreteEpsSampling,
    FlowSampling,
    planned_model_evals,
    sample_ddim,
    sample_stochsync,
    stochsync_plan,
    stochsync_sigmas,
)
from sync_canvas.samplers.analytic import GaussianDenoiser, RandomConvDenoiser, gaussian_spectrum
from sync_canvas.samplers.engine import Engine
from sync_canvas.samplers.stochsync import background_mask, border_distance, inner_sigmas, inner_solve

EPS = DiscreteEpsSampling()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _panorama() -> WidePanoramaProjector:
    return WidePanoramaProjector(8, 32, window=8, stride=4, wrap=True)  # 8 views, 2 non-overlapping groups


def test_stochsync_sigmas_are_linear_in_timestep_with_a_trailing_zero():
    sigmas = stochsync_sigmas(EPS)
    assert sigmas.shape == (26,) and sigmas[-1] == 0
    expected = EPS.sigma(torch.linspace(900, 270, 25))
    assert torch.allclose(sigmas[:-1], expected)
    assert EPS.timestep(sigmas[:1]).item() == 900 and EPS.timestep(sigmas[24:25]).item() == 270
    flow = stochsync_sigmas(FlowSampling(), steps=3, start=1.0, stop=0.5)
    assert torch.allclose(flow, torch.tensor([1.0, 0.75, 0.5, 0.0]))
    with pytest.raises(ValueError, match="t_start=0.27, t_stop=0.9"):
        stochsync_sigmas(EPS, start=0.27, stop=0.9)
    with pytest.raises(ValueError, match="steps must be a positive int, got 0"):
        stochsync_sigmas(EPS, steps=0)


def test_max_stochasticity_noises_the_previous_x0_exactly():
    """c = 1: the model sees x = x0_prev + sigma * z, with z fresh from the generator at every step."""
    seen, returned = [], []

    def denoiser(x, sigma, ids):
        seen.append(x.clone())
        out = 0.5 * x + 0.1
        returned.append(out)
        return out

    sigmas = stochsync_sigmas(EPS, steps=3)
    noise = torch.zeros(4, 8, 8)
    sample_stochsync(denoiser, IdentityProjector(8, 8), sigmas, noise, EPS, generator=_gen(3), inner_steps=1,
                     inner_steps_last=1, refine_steps=0)
    g = _gen(3)
    previous = torch.zeros(1, 4, 8, 8)
    for i in range(3):
        z = torch.randn((1, 4, 8, 8), generator=g)
        assert torch.equal(seen[i], previous + sigmas[i] * z)
        previous = returned[i]


def test_inner_solve_with_one_step_is_tweedie_and_with_k_steps_is_deterministic_ddim():
    denoiser = GaussianDenoiser(EPS, spectrum=gaussian_spectrum((8, 8), 1.0))
    projector = IdentityProjector(8, 8, n_views=2)
    engine = Engine(denoiser, projector, EPS, torch.zeros(4, 8, 8), None, None, None, None)
    sigma = EPS.sigma(torch.tensor(600.0))
    x = torch.randn(2, 4, 8, 8, generator=_gen(0)) * sigma
    ids = torch.arange(2)
    one = inner_solve(engine, x, inner_sigmas(EPS, sigma, 1), ids)
    assert torch.equal(one, denoiser(x, sigma))
    levels = inner_sigmas(EPS, sigma, 10)
    assert levels.shape == (11,) and levels[0] == sigma and levels[-1] == 0 and (levels[1:] < levels[:-1]).all()
    multi = inner_solve(engine, x, levels, ids)
    assert torch.allclose(multi, sample_ddim(lambda v, s: denoiser(v, s), x, levels, EPS), atol=1e-6)
    assert not torch.allclose(multi, one, atol=1e-2)


def test_groups_alternate_do_not_overlap_and_cover_the_canonical_space():
    projector = _panorama()
    plan = stochsync_plan(projector, stochsync_sigmas(EPS, steps=6), EPS, inner_steps=4)
    groups = [step.views for step in plan]
    assert len(set(groups)) == 2 and all(groups[i] != groups[i + 1] for i in range(len(groups) - 1))
    overlap = projector.overlap_matrix()
    for group in set(groups):
        assert not any(overlap[i, j] for i in group for j in group if i != j)
    covered = torch.zeros(projector.canonical_shape, dtype=torch.bool)
    for group in set(groups):
        covered |= projector.coverage(list(group))
    assert covered.all()
    assert sorted(v for g in set(groups) for v in g) == list(range(projector.n_views))


def test_model_evals_equal_the_plan_formula_and_inner_steps_fall_linearly_from_50():
    projector = _panorama()
    sigmas = stochsync_sigmas(EPS, steps=25)
    plan = stochsync_plan(projector, sigmas, EPS)
    counts = [step.inner_steps for step in plan]
    assert counts[0] == 50 and counts[-1] == 15  # 50 * 270 / 900: the inner stride stays ~18 timesteps
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    assert [step.refine for step in plan] == [False] * 23 + [True] * 2
    assert planned_model_evals(plan) == sum(len(s.views) * s.inner_steps for s in plan)

    small = stochsync_sigmas(EPS, steps=4)
    denoiser = GaussianDenoiser(EPS)
    result = sample_stochsync(denoiser, projector, small, torch.zeros(4, 8, 32), EPS, inner_steps=5)
    expected = planned_model_evals(stochsync_plan(projector, small, EPS, inner_steps=5))
    assert result.model_evals == denoiser.evaluated_views == expected
    assert expected == 4 * (5 + 4 + 3 + 2)  # 4 views per group; K = 5 -> round(5 * 270 / 900) = 2


def test_chunking_gives_identical_results_and_checks_cancel_per_chunk():
    projector = _panorama()
    sigmas = stochsync_sigmas(EPS, steps=3)
    denoiser = GaussianDenoiser(EPS, spectrum=gaussian_spectrum((8, 8), 1.0))
    kwargs = dict(generator=_gen(1), inner_steps=3)
    whole = sample_stochsync(denoiser, projector, sigmas, torch.zeros(4, 8, 32), EPS, **kwargs)
    checks = []
    chunked = sample_stochsync(denoiser, projector, sigmas, torch.zeros(4, 8, 32), EPS, max_views_per_batch=3,
                               check_cancel=lambda: checks.append(1), **dict(kwargs, generator=_gen(1)))
    assert torch.equal(whole.canonical, chunked.canonical)
    assert len(checks) == sum(2 * s.inner_steps for s in stochsync_plan(projector, sigmas, EPS, 3))  # 4 views -> 3 + 1


def test_boundary_mask_shrinks_from_the_whole_view_to_a_border_band():
    distance = border_distance((9, 9))
    assert distance[0].eq(0).all() and distance[4, 4] == 1
    assert background_mask(distance, 0, 5, 0.25).all()
    last = background_mask(distance, 4, 5, 0.25)
    assert last[:2].all() and last[:, :2].all() and not last[2:7, 2:7].any()  # a 2-pixel ring (0.25 * 4)
    sizes = [background_mask(distance, k, 5, 0.25).sum() for k in range(5)]
    assert all(a >= b for a, b in zip(sizes, sizes[1:]))
    x_only = border_distance((9, 9), "x")
    assert x_only[0, 4] == 1 and x_only[4, 0] == 0
    with pytest.raises(ValueError, match="'z'"):
        border_distance((9, 9), "z")


def test_refinement_keeps_view_borders_on_the_previous_x0_at_no_extra_model_cost():
    """In the refinement steps the view borders end close to the canvas they replace."""
    projector = _panorama()
    sigmas = stochsync_sigmas(EPS, steps=4)
    latent = torch.randn(4, 8, 32, generator=_gen(5))
    denoiser = GaussianDenoiser(EPS, variance=4.0)
    band = border_distance(projector.view_hw, "x") <= 0.1
    drift = {}
    for refine in (0, 1):
        captured = {}

        def callback(i, total, x0):
            captured[i] = x0.clone()

        result = sample_stochsync(denoiser, projector, sigmas[-2:], torch.zeros(4, 8, 32), EPS, latent_image=latent,
                                  generator=_gen(0), inner_steps=8, refine_steps=refine, boundary_axes="x",
                                  callback=callback)
        views = list(stochsync_plan(projector, sigmas[-2:], EPS, 8)[0].views)
        before = projector.project(latent, views)
        after = projector.project(captured[0], views)
        drift[refine] = (after - before).abs()[..., band].mean().item()
        drift[(refine, "evals")] = result.model_evals
    assert drift[(0, "evals")] == drift[(1, "evals")]
    assert drift[1] < 0.35 * drift[0], drift


def test_random_network_runs_deterministically_and_reports_progress():
    projector = _panorama()
    net = RandomConvDenoiser(EPS, seed=2)
    sigmas = stochsync_sigmas(EPS, steps=3)
    steps = []
    a = sample_stochsync(net, projector, sigmas, torch.zeros(4, 8, 32), EPS, generator=_gen(4), inner_steps=2,
                         callback=lambda i, n, x0: steps.append((i, n, tuple(x0.shape))))
    b = sample_stochsync(net, projector, sigmas, torch.zeros(4, 8, 32), EPS, generator=_gen(4), inner_steps=2)
    assert torch.isfinite(a.canonical).all() and torch.equal(a.canonical, b.canonical)
    assert steps == [(i, 3, (4, 8, 32)) for i in range(3)]
    assert torch.allclose(a.views, projector.project(a.canonical))


def test_bad_input():
    projector = _panorama()
    noise = torch.zeros(4, 8, 32)
    denoiser = GaussianDenoiser(EPS)
    with pytest.raises(ValueError, match="strictly decreasing"):
        sample_stochsync(denoiser, projector, torch.tensor([1.0, 2.0, 0.0]), noise, EPS)
    with pytest.raises(ValueError, match=r"\(4, 8, 30\)"):
        sample_stochsync(denoiser, projector, stochsync_sigmas(EPS, 2), torch.zeros(4, 8, 30), EPS)
    with pytest.raises(ValueError, match="boundary_width.*1.5"):
        sample_stochsync(denoiser, projector, stochsync_sigmas(EPS, 2), noise, EPS, boundary_width=1.5)
    with pytest.raises(ValueError, match="first=0"):
        sample_stochsync(denoiser, projector, stochsync_sigmas(EPS, 2), noise, EPS, inner_steps=0)


def test_rgb_fuse_every_step_with_a_lossless_vae_equals_latent_fusing():
    from sync_canvas.samplers import RGBFuse

    pixel = WidePanoramaProjector(16, 64, window=16, stride=8, wrap=True)
    latent_projector = pixel.rescaled(2)

    def decode(z):
        return torch.nn.functional.interpolate(z, scale_factor=2, mode="nearest")

    def encode(rgb):
        return torch.nn.functional.avg_pool2d(rgb, 2)

    denoiser = GaussianDenoiser(EPS, spectrum=gaussian_spectrum((8, 8), 1.0))
    sigmas = stochsync_sigmas(EPS, steps=3)
    kwargs = dict(inner_steps=3, refine_steps=1)
    plain = sample_stochsync(denoiser, latent_projector, sigmas, torch.zeros(3, 8, 32), EPS, generator=_gen(0), **kwargs)
    fused = sample_stochsync(denoiser, latent_projector, sigmas, torch.zeros(3, 8, 32), EPS, generator=_gen(0),
                             rgb_fuse=RGBFuse(decode, encode, pixel, every_step=True), **kwargs)
    assert torch.allclose(fused.canonical, plain.canonical, atol=1e-5)
    assert torch.allclose(fused.canonical_rgb, decode(plain.canonical[None])[0], atol=1e-5)
    assert fused.model_evals == plain.model_evals
