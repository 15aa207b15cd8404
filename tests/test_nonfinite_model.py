"""A model that returns NaN stops the run with an error naming it and the noise level (samplers/engine.py)."""

import pytest
import torch

from sync_canvas.projectors import WidePanoramaProjector
from sync_canvas.samplers import DiscreteEpsSampling, sample_stochsync, sample_synchronized, timesteps_to_sigmas
from sync_canvas.samplers.engine import NonFiniteModelOutput

EPS = DiscreteEpsSampling()
SIGMAS = timesteps_to_sigmas(EPS, [901, 701, 501, 301, 101, 1])


def _nan_at(call: int):
    calls = []

    def denoiser(x, sigma, view_ids):
        calls.append(float(sigma))
        out = x * 0.5
        return out.fill_(float("nan")) if len(calls) == call else out

    return denoiser, calls


@pytest.mark.parametrize("case", [0, 2, 5])
def test_nan_from_the_model_stops_the_run_at_that_step(case):
    projector = WidePanoramaProjector(8, 24, 8, 8)
    denoiser, calls = _nan_at(5)  # the second of the 3 one-view calls of the second step
    with pytest.raises(NonFiniteModelOutput, match=r"non-finite values .* at sigma=") as err:
        sample_synchronized(denoiser, projector, SIGMAS, torch.randn(4, 8, 24), EPS, case=case, max_views_per_batch=1)
    # checked once per step (one host sync, not one per model call): the step's last call ran, nothing after
    assert len(calls) == 6 and calls[3] == calls[5] != calls[2]
    assert f"sigma={calls[4]:.6g} (model evaluation 5, views [1])" in str(err.value)


def test_inf_from_the_model_stops_stochsync():
    projector = WidePanoramaProjector(8, 24, 8, 8)

    def denoiser(x, sigma, view_ids):
        return torch.full_like(x, float("inf"))

    with pytest.raises(NonFiniteModelOutput, match="non-finite"):
        sample_stochsync(denoiser, projector, SIGMAS, torch.randn(4, 8, 24), EPS, inner_steps=2)
