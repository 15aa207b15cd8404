"""Every model family through the SyncCanvas KSampler: SD1.5, SDXL, SD2 v-prediction, SD3, Flux.

Tiny in-memory models (tests/comfy_tiny.py ``family_model``) built from ComfyUI's own family classes,
initialised variance-preserving so that a run really moves the sample (asserted below): a bug that shows
only through the model's prediction cannot hide behind a model that predicts nothing.
"""

from __future__ import annotations

import os

import pytest
import torch

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH not set: ComfyUI node tests skipped"),
]

FAMILIES = ("sd15", "sdxl", "sd2_v", "sd3", "flux")


@pytest.fixture(scope="module")
def models():
    cache: dict = {}
    yield cache
    cache.clear()  # released while ComfyUI is still importable (ModelPatcher.__del__ needs it)


def family(tiny, name, models):
    if name not in models:
        models[name] = tiny.family_model(name)
    return models[name]


def run_sampler(model, positive, negative, projector, **options):
    from sync_canvas.nodes.sampler_nodes import SyncCanvasKSampler

    settings = dict(seed=3, steps=3, cfg=2.0, mode="case_2", scheduler="normal", eta=0.0, denoise=1.0)
    settings.update(options)
    with torch.inference_mode():
        return SyncCanvasKSampler.execute(model, positive, negative, projector, **settings).args


def stock_ksampler(tiny, name, model, steps=3, cfg=2.0):
    import nodes as comfy_nodes

    latent = torch.zeros(1, tiny.FAMILY_LATENT_CHANNELS[name], 8, 8)
    pos, neg = tiny.family_conditioning(name, 0), tiny.family_conditioning(name, 1)
    with torch.inference_mode():
        return comfy_nodes.common_ksampler(model, 3, steps, cfg, "euler", "normal", pos, neg, {"samples": latent})[0]["samples"]


def relative_change(tiny, name, model) -> float:
    """||x_out - x_T|| / ||x_T|| in model space for a 4-step euler run from pure noise (x_T at sigma_max)."""
    import comfy.sample

    out = stock_ksampler(tiny, name, model, steps=4, cfg=1.0)
    ms = model.get_model_object("model_sampling")
    noise = comfy.sample.prepare_noise(torch.zeros_like(out), 3)
    x_t = ms.noise_scaling(ms.sigma_max, noise, torch.zeros_like(noise), max_denoise=True)
    return float((model.model.process_latent_in(out) - x_t).norm() / x_t.norm())


@pytest.mark.parametrize("name", FAMILIES)
def test_tiny_family_models_are_the_right_family_and_really_denoise(tiny, name, models):
    import comfy.model_base
    import comfy.model_sampling

    model = family(tiny, name, models)
    ms = model.get_model_object("model_sampling")
    expected = {"sd15": comfy.model_sampling.EPS, "sdxl": comfy.model_sampling.EPS, "sd2_v": comfy.model_sampling.V_PREDICTION,
                "sd3": comfy.model_sampling.CONST, "flux": comfy.model_sampling.CONST}[name]
    assert isinstance(ms, expected)
    if name == "flux":
        assert isinstance(ms, comfy.model_sampling.ModelSamplingFlux) and isinstance(model.model, comfy.model_base.Flux)
    if name == "sdxl":
        assert isinstance(model.model, comfy.model_base.SDXL)
    assert relative_change(tiny, name, model) > 0.4


@pytest.mark.parametrize("name", FAMILIES)
def test_one_view_case_2_equals_comfyui_euler_ksampler_in_every_family(tiny, name, models):
    from sync_canvas.projectors import IdentityProjector

    model = family(tiny, name, models)
    pos, neg = tiny.family_conditioning(name, 0), tiny.family_conditioning(name, 1)
    ours = run_sampler(model, pos, neg, IdentityProjector(64, 64))[0]["samples"]
    stock = stock_ksampler(tiny, name, model)
    scale = float(stock.abs().max())
    torch.testing.assert_close(ours, stock, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("name", FAMILIES)
def test_cases_1_to_6_agree_on_a_one_to_one_anagram_in_every_family(tiny, name, models):
    from sync_canvas.projectors import AnagramProjector

    model = family(tiny, name, models)
    pos, neg = tiny.family_conditioning(name, 0), tiny.family_conditioning(name, 1)
    projector = AnagramProjector(64, 64, ("identity", "flip_h"))
    runs = {case: run_sampler(model, pos, neg, projector, mode=f"case_{case}")[0]["samples"] for case in range(1, 7)}
    scale = float(runs[1].abs().max())
    spread = max(float((runs[c] - runs[1]).abs().max()) for c in runs) / scale
    assert spread < 1e-4, spread
    assert float((runs[1] - run_sampler(model, pos, neg, projector, mode="case_0")[0]["samples"]).abs().max()) / scale > 1e-3


def test_the_tiny_sd3_is_what_comfyuis_own_detection_loads_from_its_weights(tiny):
    """SD3's detection reads its width from the weights (64 per joint block), so the tiny SD3 round-trips
    through ComfyUI's file loader path (UNETLoader's load_diffusion_model_state_dict) and predicts the same.
    (SD1.5/SD2/SDXL detection pins model_channels 320 and SDXL's depths, Flux's pins hidden size 3072.)"""
    import comfy.sd
    import comfy.supported_models

    model = tiny.family_model("sd3")
    state = {k: v.clone() for k, v in model.model.diffusion_model.state_dict().items()}
    loaded = comfy.sd.load_diffusion_model_state_dict(state, model_options={"dtype": torch.float32})
    assert isinstance(loaded.model.model_config, comfy.supported_models.SD3)
    x = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = tiny.family_conditioning("sd3", 0)[0]
    with torch.inference_mode():
        outs = [m.model.apply_model(x, torch.tensor([0.5]), c_crossattn=cond[0], y=cond[1]["pooled_output"])
                for m in (model, loaded)]
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
