"""StochSync's schedule on every model family: fractions of the model's own noise schedule, not timesteps.

The pure part runs on the pack's twins; the ComfyUI part checks the twins against ComfyUI's model
samplings (discrete EPS/V, SD3 flow, Flux, each with and without a shift node) through the node's own
``sync_sigmas``.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

from sync_canvas.samplers import (
    PAPER_START,
    PAPER_STOP,
    DiscreteEpsSampling,
    FlowSampling,
    FluxSampling,
    fraction_at_sigma,
    sigma_at_fraction,
    stochsync_plan,
    stochsync_sigmas,
)
from sync_canvas.projectors import WidePanoramaProjector
from sync_canvas.samplers.stochsync import inner_sigmas

TWINS = {"sd15": DiscreteEpsSampling(), "sd3_shift3": FlowSampling(shift=3.0), "flux": FluxSampling(1.15),
         "flux_shift_2.5": FluxSampling(2.5)}


def _check_schedule(sigmas: torch.Tensor, sigma_max: float) -> None:
    positive = sigmas[:-1]
    assert sigmas[-1] == 0
    assert bool((positive > 0).all()) and float(positive.max()) <= sigma_max * (1 + 1e-6)
    assert bool((positive[1:] < positive[:-1]).all()), positive


@pytest.mark.parametrize("name", sorted(TWINS))
def test_stochsync_sigmas_lie_inside_every_familys_range_and_decrease(name):
    ms = TWINS[name]
    sigmas = stochsync_sigmas(ms)
    _check_schedule(sigmas, float(ms.sigma_max))
    assert math.isclose(float(sigmas[0]), ms.percent_to_sigma(1 - PAPER_START), rel_tol=1e-6)
    assert math.isclose(float(sigmas[-2]), ms.percent_to_sigma(1 - PAPER_STOP), rel_tol=1e-6)


def test_discrete_models_keep_the_papers_timesteps_900_to_270():
    eps = TWINS["sd15"]
    sigmas = stochsync_sigmas(eps)
    assert torch.allclose(sigmas[:-1], eps.sigma(torch.linspace(900, 270, 25)))
    half = stochsync_sigmas(eps, steps=2, denoise=0.5)
    assert torch.allclose(half[:2], eps.sigma(torch.tensor([450.0, 270.0])))


def test_fraction_and_sigma_are_inverse_on_flow_models_with_shift():
    for ms in (FluxSampling(1.15), FluxSampling(3.0), FlowSampling(shift=3.0)):
        for f in (0.05, 0.27, 0.6, 0.9):
            assert math.isclose(fraction_at_sigma(ms, sigma_at_fraction(ms, f)), f, abs_tol=1e-6)


def test_inner_levels_on_flux_keep_every_step_below_the_outer_level():
    """Old code round-tripped sigma -> timestep -> sigma, which on Flux (timestep = sigma, shifted sigma(t))
    put the first inner level above the outer one and dropped it."""
    flux = FluxSampling(1.15)
    sigma = sigma_at_fraction(flux, 0.6)
    levels = inner_sigmas(flux, torch.tensor(sigma), 10)
    assert levels.shape == (11,) and math.isclose(float(levels[0]), sigma, rel_tol=1e-6) and levels[-1] == 0
    assert bool((levels[1:] < levels[:-1]).all())
    expected = [sigma_at_fraction(flux, 0.6 * (10 - k) / 10) for k in range(1, 10)]
    assert torch.allclose(levels[1:-1], torch.tensor(expected, dtype=levels.dtype), rtol=1e-5)


def test_plan_keeps_the_inner_stride_in_schedule_fractions():
    projector = WidePanoramaProjector(8, 32, window=8, stride=4, wrap=True)
    for ms in TWINS.values():
        plan = stochsync_plan(projector, stochsync_sigmas(ms, steps=4), ms, inner_steps=50)
        assert plan[0].inner_steps == 50 and plan[-1].inner_steps == 15


def test_denoise_that_leaves_nothing_to_sample_names_denoise_and_t_stop():
    with pytest.raises(ValueError, match=r"denoise=0.3 .*t_stop=0.270.*denoise > 0.300"):
        stochsync_sigmas(TWINS["sd15"], denoise=0.3)
    stochsync_sigmas(TWINS["sd15"], denoise=0.31)


# --- against ComfyUI's own model samplings, through the node ---------------------------------------------


class _Config:
    def __init__(self, **settings):
        self.sampling_settings = settings


class _Model:
    """What ``sync_sigmas`` reads of a ModelPatcher."""

    def __init__(self, model_sampling):
        self.model_sampling = model_sampling

    def get_model_object(self, name):
        assert name == "model_sampling"
        return self.model_sampling


def _comfy_samplings():
    import comfy.model_sampling as ms

    def make(sampling, prediction, **settings):
        cls = type("ModelSamplingAdvanced", (sampling, prediction), {})
        return cls(_Config(**settings))

    flux_node = make(ms.ModelSamplingFlux, ms.CONST)
    # ModelSamplingFlux node at 2048x1024 (max_shift 1.15, base_shift 0.5): shift = 4096 * mm + b
    mm = (1.15 - 0.5) / (4096 - 256)
    flux_node.set_parameters(shift=(2048 * 1024 / (8 * 8 * 2 * 2)) * mm + (0.5 - mm * 256))
    sd3_node = make(ms.ModelSamplingDiscreteFlow, ms.CONST, shift=3.0)
    sd3_node.set_parameters(shift=6.0, multiplier=1000)
    return {
        "sd15": (make(ms.ModelSamplingDiscrete, ms.EPS), DiscreteEpsSampling()),
        "sd2_v": (make(ms.ModelSamplingDiscrete, ms.V_PREDICTION), DiscreteEpsSampling()),
        "sd3": (make(ms.ModelSamplingDiscreteFlow, ms.CONST, shift=3.0), FlowSampling(shift=3.0)),
        "sd3+ModelSamplingSD3(6)": (sd3_node, FlowSampling(shift=6.0)),
        "flux": (make(ms.ModelSamplingFlux, ms.CONST, shift=1.15), FluxSampling(1.15)),
        "flux+ModelSamplingFlux(2048x1024)": (flux_node, FluxSampling(float(flux_node.shift))),
    }


comfyui = pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH not set")


@comfyui
def test_node_schedule_fits_every_comfyui_family_and_honours_shift_nodes(tiny):
    from sync_canvas.nodes.sampler_nodes import sync_sigmas

    firsts = {}
    for name, (comfy_ms, twin) in _comfy_samplings().items():
        sigmas = sync_sigmas(_Model(comfy_ms), "stochsync", "normal", 25, 1.0)
        _check_schedule(sigmas, float(comfy_ms.sigma_max))
        assert torch.allclose(sigmas, stochsync_sigmas(twin), rtol=1e-5), name
        for p in (0.0, 0.1, 0.5, 0.73, 0.99):
            assert math.isclose(comfy_ms.percent_to_sigma(p), twin.percent_to_sigma(p), rel_tol=1e-5), (name, p)
        firsts[name] = float(sigmas[0])
    assert firsts["flux+ModelSamplingFlux(2048x1024)"] > firsts["flux"] and firsts["sd3+ModelSamplingSD3(6)"] > firsts["sd3"]
    assert firsts["flux"] < 1.0  # old code: ms.sigma(900) on Flux = 1.463, above its sigma_max of 1


@comfyui
def test_node_denoise_error_names_denoise_and_t_stop(tiny):
    from sync_canvas.nodes.sampler_nodes import sync_sigmas

    model = _Model(_comfy_samplings()["flux"][0])
    with pytest.raises(ValueError, match=r"denoise=0.3 .*t_stop"):
        sync_sigmas(model, "stochsync", "normal", 25, 0.3)
