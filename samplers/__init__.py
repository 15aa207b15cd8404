"""The synchronized sampling math. Pure torch; no ComfyUI imports (see CONTRACT.md and DESIGN.md)."""

from .ddim import ddim_noise_share, ddim_step, posterior_mean, predicted_eps, sample_ddim, x0_from_eps
from .engine import Denoiser, RGBFuse, SamplingCancelled, SyncResult
from .model_sampling import (
    DiscreteEpsSampling,
    DiscreteVSampling,
    FlowSampling,
    FluxSampling,
    ModelSamplingLike,
    alpha_bar,
    fraction_at_sigma,
    sigma_at_fraction,
    timesteps_to_sigmas,
)
from .stochsync import PAPER_START, PAPER_STOP, planned_model_evals, sample_stochsync, stochsync_plan, stochsync_sigmas
from .synchronized import CASES, SyncCase, sample_synchronized

__all__ = [
    "CASES",
    "PAPER_START",
    "PAPER_STOP",
    "Denoiser",
    "DiscreteEpsSampling",
    "DiscreteVSampling",
    "FlowSampling",
    "FluxSampling",
    "ModelSamplingLike",
    "RGBFuse",
    "SamplingCancelled",
    "SyncCase",
    "SyncResult",
    "alpha_bar",
    "ddim_noise_share",
    "ddim_step",
    "fraction_at_sigma",
    "planned_model_evals",
    "posterior_mean",
    "predicted_eps",
    "sample_ddim",
    "sample_stochsync",
    "sample_synchronized",
    "sigma_at_fraction",
    "stochsync_plan",
    "stochsync_sigmas",
    "timesteps_to_sigmas",
    "x0_from_eps",
]
