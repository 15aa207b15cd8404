"""Node outputs are never changed by a run (issue 12), through ComfyUI's real sampling stack.

A SYNC_PROJECTOR, and the SAMPLER that SyncCanvas Sampler Select makes around its latent projector, live
in ComfyUI's output cache. A run that moved them to the GPU in place pinned that memory after the run and
handed GPU tensors to the next CPU-side node; here (CPU only) any change at all is caught: attributes,
caches, tensors' device and storage. Skipped without COMFYUI_PATH.
"""

from __future__ import annotations

import os
import pathlib
import sys

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from projector_state import state_of  # noqa: E402

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH not set: ComfyUI node tests skipped"),
]


def _wide():
    from sync_canvas.projectors import WidePanoramaProjector

    return WidePanoramaProjector(64, 128, 64, 64)


@pytest.mark.parametrize("mode", ["case_2", "stochsync", "ddr"])
def test_the_ksampler_leaves_its_projector_unchanged(tiny, model, vae, mode):
    from sync_canvas.nodes.sampler_nodes import SyncCanvasKSampler

    projector = _wide()
    before = state_of(projector)
    settings = dict(seed=3, steps=2, cfg=2.0, mode=mode, scheduler="normal", eta=0.0, denoise=1.0, vae=vae, inner_steps=2)
    with torch.inference_mode():
        SyncCanvasKSampler.execute(model, tiny.conditioning(0), tiny.conditioning(1), projector, **settings)
    assert state_of(projector) == before


def test_a_cached_sampler_node_output_is_unchanged_by_the_runs_that_use_it(tiny, model, vae):
    import comfy.sample
    import comfy.samplers

    from sync_canvas.nodes.sampler_nodes import SyncCanvasSamplerSelect

    projector = _wide()
    sampler = SyncCanvasSamplerSelect.execute(projector, "case_2", 0.0, vae=vae).args[0]
    latent_projector = sampler.extra_options["projector"]
    before = (state_of(projector), state_of(latent_projector))
    latent = torch.zeros(1, 4, 8, 16)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", 2).cpu()
    for seed in (1, 2):  # the cached SAMPLER is reused by the next run
        with torch.inference_mode():
            comfy.sample.sample_custom(model, comfy.sample.prepare_noise(latent, seed), 2.0, sampler, sigmas,
                                       tiny.conditioning(0), tiny.conditioning(1), latent, disable_pbar=True, seed=seed)
    assert (state_of(projector), state_of(latent_projector)) == before


@pytest.mark.parametrize("mode", ["case_2", "ddr"])
def test_cross_view_attention_keeps_no_tensors_of_a_finished_run(tiny, model, mode):
    """The patch caches the reference view's keys/values of the current step; the patch belongs to the
    cached MODEL output, so the run empties that cache when it ends (else it stays pinned on the GPU)."""
    from sync_canvas.nodes.cross_view_attention import patch_model
    from sync_canvas.nodes.sampler_nodes import SyncCanvasKSampler

    projector = _wide()
    patched = patch_model(model, projector.rescaled(8), reference_view=0, reference_weight=1.0, reference_end=1.0)
    patches = {id(p): p for p in patched.model_options["transformer_options"]["patches_replace"]["attn1"].values()}
    seen = []
    for p in patches.values():  # record that the cache was used during the run
        original = p._reference

        def spy(*args, _original=original, _p=p):
            out = _original(*args)
            seen.append(len(_p._ref_cache))
            return out

        p._reference = spy
    settings = dict(seed=3, steps=2, cfg=2.0, mode=mode, scheduler="normal", eta=0.0, denoise=1.0)
    with torch.inference_mode():
        SyncCanvasKSampler.execute(patched, tiny.conditioning(0), tiny.conditioning(1), projector, **settings)
    assert max(seen) > 0, "the reference cache was never filled: the test does not exercise it"
    assert all(len(p._ref_cache) == 0 for p in patches.values())
