"""DDE (Lifar, Savkin et al.): untrained coordinator == averaging exactly; trained one beats it."""

import pytest
import torch

from sync_canvas.projectors.identity import IdentityProjector
from sync_canvas.projectors.panorama import WidePanoramaProjector
from sync_canvas.samplers import DiscreteEpsSampling, sample_synchronized
from sync_canvas.samplers.analytic import GaussianDenoiser, gaussian_spectrum
from sync_canvas.samplers.dde import (
    AVERAGING,
    Coordinator,
    CoordinatorConfig,
    dde_fuse,
    dde_fuse_cfg,
    load_coordinator,
    sample_dde,
    save_coordinator,
    view_positions,
)
from sync_canvas.samplers.dde.coordinator import apply_rope, rope_2d
from sync_canvas.samplers.dde.training import WindowGaussianDenoiser, evaluate_fuse, train_coordinator

pytestmark = pytest.mark.usefixtures("one_thread")

SIGMAS = torch.tensor([10.0, 4.0, 1.5, 0.5, 0.1, 0.0])


def _perturbed_base(ms):
    base = GaussianDenoiser(ms)
    return lambda x, s, ids: base(x, s, ids) + 0.1 * ids.float().reshape(-1, 1, 1, 1)


def test_untrained_coordinator_is_averaging_bit_for_bit():
    torch.manual_seed(0)
    ms = DiscreteEpsSampling()
    proj = WidePanoramaProjector(8, 24, window=8, stride=4)
    coordinator = Coordinator(CoordinatorConfig.tiny(3))
    x0 = torch.randn(1, proj.n_views, 3, 8, 8)
    assert torch.equal(coordinator(x0, view_positions(proj), torch.tensor([1.3])), x0)
    noise = torch.randn(3, 8, 24)
    denoiser = _perturbed_base(ms)
    with_coord = sample_dde(denoiser, proj, SIGMAS, noise, ms, coordinator=coordinator)
    without = sample_dde(denoiser, proj, SIGMAS, noise, ms)
    engine_case5 = sample_synchronized(denoiser, proj, SIGMAS, noise, ms, case=5)
    assert torch.equal(with_coord.canonical, without.canonical)
    assert torch.equal(without.canonical, engine_case5.canonical)
    assert without.fuse_rule == AVERAGING and "coordinator" in with_coord.fuse_rule


def test_cfg_through_untrained_coordinator_is_cfg_of_the_average():
    torch.manual_seed(1)
    proj = WidePanoramaProjector(8, 16, window=8, stride=4)
    coordinator = Coordinator(CoordinatorConfig.tiny(2))
    cond, uncond = torch.randn(2, proj.n_views, 2, 8, 8)
    fused = dde_fuse_cfg(coordinator, proj, cond, uncond, 1.0, cfg=7.5)
    torch.testing.assert_close(fused, proj.aggregate(7.5 * cond - 6.5 * uncond), atol=1e-5, rtol=1e-5)
    # a trained (here: perturbed) coordinator is non-linear, so the two orders differ: CFG really runs through it
    with torch.no_grad():
        for p in coordinator.parameters():
            p.add_(0.1 * torch.randn_like(p))
    assert not torch.allclose(dde_fuse_cfg(coordinator, proj, cond, uncond, 1.0, 7.5),
                              dde_fuse(coordinator, proj, 7.5 * cond - 6.5 * uncond, 1.0), atol=1e-3)


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(2)
    q, k = torch.randn(2, 1, 1, 2, 16)
    pos = torch.tensor([[3.0, 5.0], [7.0, 1.0]])
    shifted = pos + torch.tensor([11.0, -4.0])

    def score(p):
        cos, sin = rope_2d(p, 16, 100.0)
        return (apply_rope(q, cos, sin)[..., 0, :] * apply_rope(k, cos, sin)[..., 1, :]).sum()

    torch.testing.assert_close(score(pos), score(shifted), atol=1e-4, rtol=1e-4)
    assert abs(float(score(pos) - score(torch.tensor([[3.0, 5.0], [9.0, 1.0]])))) > 1e-3


def test_view_positions_are_global_canvas_coordinates():
    proj = WidePanoramaProjector(8, 24, window=8, stride=4)
    pos = view_positions(proj)
    assert pos.shape == (proj.n_views, 8, 8, 2)
    assert pos[1, 0, 0].tolist() == [0.0, 4.0] and pos[1, 7, 7].tolist() == [7.0, 11.0]
    # overlapping pixels of neighbouring windows share positions (DDE B.3.2)
    assert torch.equal(pos[0, :, 4:], pos[1, :, :4])


def test_paper_config_sizes_and_bad_input():
    paper = Coordinator(CoordinatorConfig.paper(4))
    n_params = sum(p.numel() for p in paper.parameters())
    assert 10e6 < n_params < 30e6  # paper's map coordinator: 26M with its conditioning branch
    with pytest.raises(ValueError, match="head size"):
        CoordinatorConfig(hidden=60, heads=4)
    tiny = Coordinator(CoordinatorConfig.tiny(4))
    with pytest.raises(ValueError, match="not divisible"):
        tiny(torch.zeros(1, 1, 4, 7, 8), torch.zeros(1, 7, 8, 2), torch.tensor([1.0]))


def test_checkpoint_round_trip_and_foreign_files(tmp_path):
    torch.manual_seed(3)
    coordinator = Coordinator(CoordinatorConfig.tiny(2))
    with torch.no_grad():
        coordinator.out.weight.normal_(0, 0.1)
    path = str(tmp_path / "coord.safetensors")
    save_coordinator(coordinator, path, {"note": "test"})
    loaded = load_coordinator(path)
    proj = WidePanoramaProjector(8, 16, window=8, stride=4)
    x0 = torch.randn(1, proj.n_views, 2, 8, 8)
    torch.testing.assert_close(loaded(x0, view_positions(proj), torch.tensor([0.7])),
                               coordinator(x0, view_positions(proj), torch.tensor([0.7])))
    from safetensors.torch import save_file

    foreign = str(tmp_path / "other.safetensors")
    save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="not a DDE coordinator"):
        load_coordinator(foreign)
    with pytest.raises(FileNotFoundError):
        load_coordinator(str(tmp_path / "missing.safetensors"))


def test_window_base_model_is_exact():
    """On a window that is the whole (periodic) canvas, the window posterior is the analytic one."""
    torch.manual_seed(4)
    ms = DiscreteEpsSampling()
    spectrum = gaussian_spectrum((8, 12), 2.0)
    x = torch.randn(1, 3, 8, 12)
    window = WindowGaussianDenoiser(spectrum, IdentityProjector(8, 12), ms)
    exact = GaussianDenoiser(ms, spectrum=spectrum)
    torch.testing.assert_close(window(x, torch.tensor(1.7), torch.tensor([0])), exact(x, torch.tensor(1.7)), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_short_cpu_training_beats_averaging_on_held_out_canvases():
    """~20 s of Adam on procedural canvases; held-out MSE of x0 vs the clean canvas, printed side by side."""
    from sync_canvas.samplers.dde.training import procedural_spectrum

    ms = DiscreteEpsSampling()
    proj = WidePanoramaProjector(8, 32, window=8, stride=4)
    spectrum = procedural_spectrum((8, 32), correlation_length=3.0, global_variance=1.0)
    config = CoordinatorConfig.tiny(4)
    coordinator, losses = train_coordinator(proj, spectrum, ms, config, steps=500, batch=16, lr=1e-3, p_mean=0.5, seed=0)
    report = evaluate_fuse(coordinator, proj, spectrum, ms, sigmas=(0.3, 1.0, 3.0, 10.0), count=64)
    for sigma, row in report.items():
        print(f"sigma {sigma:5.1f}: averaging {row['averaging']:.4f}  coordinator {row['coordinator']:.4f}  "
              f"oracle {row['oracle']:.4f}  ratio {row['coordinator'] / row['averaging']:.3f}")
    for row in report.values():
        assert row["coordinator"] <= 1.01 * row["averaging"]
    assert report[10.0]["coordinator"] < 0.96 * report[10.0]["averaging"]
    assert report[3.0]["coordinator"] < report[3.0]["averaging"]
