"""SyncDiffusion (Lee et al. 2023): w = 0 is MultiDiffusion; w > 0 makes windows measurably more coherent."""

import pytest
import torch

from sync_canvas.projectors.panorama import WidePanoramaProjector
from sync_canvas.samplers.syncdiffusion import guidance_weights, sample_syncdiffusion
from sync_canvas.samplers.syncdiffusion_losses import load_lpips_vgg, statistics_loss, weight_free_loss
from sync_canvas.samplers import DiscreteEpsSampling, sample_synchronized
from sync_canvas.samplers.analytic import GaussianDenoiser

pytestmark = pytest.mark.usefixtures("one_thread")


SIGMAS = torch.cat([torch.exp(torch.linspace(torch.log(torch.tensor(14.0)), torch.log(torch.tensor(0.05)), 12)), torch.zeros(1)])


def tiles(canvas, size=16):
    """Non-overlapping windows of the final canvas, the anchor window first."""
    return torch.stack([canvas[:, :, i * size : (i + 1) * size] for i in range(canvas.shape[-1] // size)])


def test_zero_weight_is_multidiffusion():
    torch.manual_seed(0)
    ms = DiscreteEpsSampling()
    proj = WidePanoramaProjector(8, 24, window=8, stride=4)
    base = GaussianDenoiser(ms)

    def denoiser(x, sigma, ids):  # views disagree, so the overlap average matters
        return base(x, sigma, ids) + 0.05 * ids.float().reshape(-1, 1, 1, 1)

    noise = torch.randn(3, 8, 24)
    out = sample_syncdiffusion(denoiser, proj, SIGMAS, noise, ms, weight=0.0)
    x = SIGMAS[0] * noise
    ids = torch.arange(proj.n_views)
    for k in range(len(SIGMAS) - 1):
        v = proj.project(x)
        x0 = denoiser(v, SIGMAS[k], ids)
        x = proj.aggregate(x0 + SIGMAS[k + 1] * (v - x0) / SIGMAS[k])
    torch.testing.assert_close(out.canonical, x, atol=1e-5, rtol=1e-5)
    engine_md = sample_synchronized(denoiser, proj, SIGMAS, noise, ms, case=6, eta=0.5, generator=torch.Generator().manual_seed(3))
    ours = sample_syncdiffusion(denoiser, proj, SIGMAS, noise, ms, weight=0.0, eta=0.5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(ours.canonical, engine_md.canonical, atol=1e-5, rtol=1e-5)
    assert out.model_evals == proj.n_views * (len(SIGMAS) - 1)
    assert "weight-free" in out.loss_name


@pytest.mark.parametrize("through_model", [True, False], ids=["eq14", "x0-step"])
def test_guidance_improves_window_coherence(through_model):
    ms = DiscreteEpsSampling()
    proj = WidePanoramaProjector(16, 64, window=16, stride=8)
    for seed in range(2):
        noise = torch.randn(4, 16, 64, generator=torch.Generator().manual_seed(seed))
        plain = tiles(sample_syncdiffusion(GaussianDenoiser(ms), proj, SIGMAS, noise, ms, weight=0.0).canonical)
        synced = tiles(
            sample_syncdiffusion(GaussianDenoiser(ms), proj, SIGMAS, noise, ms, weight=20.0, through_model=through_model).canonical
        )
        style_plain = statistics_loss(plain[1:], plain[:1]).mean()
        style_synced = statistics_loss(synced[1:], synced[:1]).mean()
        spread_plain = plain.mean((2, 3)).std(0).mean()  # how much window mean colours differ
        spread_synced = synced.mean((2, 3)).std(0).mean()
        print(f"seed {seed} {'eq14' if through_model else 'x0'}: intra-style {style_plain:.4f} -> {style_synced:.4f}, "
              f"mean-colour spread {spread_plain:.4f} -> {spread_synced:.4f}")
        assert style_synced < 0.6 * style_plain
        assert spread_synced < 0.8 * spread_plain
        # coherence is not bought by collapsing the image to a constant
        assert synced.std() > 0.7 * plain.std()


def test_first_steps_only_still_helps_but_less():
    ms = DiscreteEpsSampling()
    proj = WidePanoramaProjector(16, 64, window=16, stride=8)
    noise = torch.randn(4, 16, 64, generator=torch.Generator().manual_seed(0))

    def style(**kw):
        t = tiles(sample_syncdiffusion(GaussianDenoiser(ms), proj, SIGMAS, noise, ms, **kw).canonical)
        return float(statistics_loss(t[1:], t[:1]).mean())

    plain, first5, every = style(weight=0.0), style(weight=100.0, first_steps=5), style(weight=100.0)
    assert every < first5 < plain


def test_guidance_weight_schedule():
    w = guidance_weights(6, weight=20.0, decay=0.95, first_steps=3)
    assert w == pytest.approx([20.0, 19.0, 18.05, 0.0, 0.0, 0.0])
    assert guidance_weights(6, 20.0, 0.95, every=2)[1::2] == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="decay"):
        guidance_weights(5, 20.0, decay=0.0)


def test_statistics_loss_is_zero_on_itself_and_positive_otherwise():
    torch.manual_seed(1)
    a = torch.randn(1, 4, 8, 8)
    b = torch.stack([a[0], 2 * a[0] + 1])
    loss = statistics_loss(b, a)
    assert loss[0] == 0 and loss[1] > 1.0
    feat = weight_free_loss(lambda x: x.tanh())
    assert "decoded" in feat.name and feat(b, a)[1] > 0


@pytest.fixture(scope="module")
def vgg_state():
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(2)
    return {f"features.{k}": v.contiguous() for k, v in make_layers(cfgs["D"]).state_dict().items()}


def _random_vgg_file(tmp_path, state, with_lins=True, drop=None):
    from safetensors.torch import save_file

    state = dict(state)
    if with_lins:
        for k, c in enumerate((64, 128, 256, 512, 512)):
            state[f"lin{k}.model.1.weight"] = torch.rand(1, c, 1, 1)
    if drop:
        del state[drop]
    path = tmp_path / "vgg_lpips.safetensors"
    save_file(state, str(path))
    return str(path)


def test_lpips_loader_builds_a_working_metric_from_a_user_file(tmp_path, vgg_state):
    loss = load_lpips_vgg(_random_vgg_file(tmp_path, vgg_state))
    assert loss.name == "LPIPS-VGG"
    torch.manual_seed(3)
    img = torch.rand(1, 3, 32, 32)
    views = torch.cat([img, (img + 0.3 * torch.rand_like(img)).clamp(0, 1)])
    views.requires_grad_(True)
    d = loss(views, img)
    assert d[0].abs() < 1e-6 and d[1] > 0
    d.sum().backward()
    assert views.grad[1].abs().sum() > 0


def test_lpips_loader_rejects_bad_files(tmp_path, vgg_state):
    with pytest.raises(FileNotFoundError):
        load_lpips_vgg(str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="features.28.weight"):
        load_lpips_vgg(_random_vgg_file(tmp_path, vgg_state, drop="features.28.weight"))
    plain = load_lpips_vgg(_random_vgg_file(tmp_path, vgg_state, with_lins=False))
    assert "no LPIPS calibration" in plain.name
