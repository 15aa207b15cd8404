"""Cross-View Attention node in front of the SyncCanvas KSampler node (real ComfyUI sampling, tiny UNet).

Skipped without COMFYUI_PATH. 3 overlapping 8x8-latent windows, 2 steps of Case 2 with CFG.
"""

from __future__ import annotations

import os

import pytest
import torch

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH not set: ComfyUI tests skipped"),
    pytest.mark.usefixtures("one_thread"),
]


def sample(tiny, model, **options):
    from sync_canvas.nodes.projector_nodes import SyncCanvasWidePanorama
    from sync_canvas.nodes.sampler_nodes import SyncCanvasKSampler

    projector = SyncCanvasWidePanorama.execute(width=128, height=64, window=64, stride=32, wrap=False).args[0]
    settings = dict(seed=3, steps=2, cfg=2.0, mode="case_2", scheduler="normal", eta=0.0, denoise=1.0)
    settings.update(options)
    with torch.inference_mode():
        latent = SyncCanvasKSampler.execute(model, tiny.conditioning(0), tiny.conditioning(1), projector, **settings)
    return latent.args[0]["samples"], projector


def patched(model, projector, **options):
    from sync_canvas.nodes.cross_view_attention import SyncCanvasCrossViewAttention

    settings = dict(neighbours="overlap", max_neighbours=2, weight=1.0, reference_view=0, reference_weight=1.0,
                    reference_end=0.2, start=0.0, end=1.0)
    settings.update(options)
    return SyncCanvasCrossViewAttention.execute(model, projector, **settings).args[0]


def test_node_off_is_the_unpatched_sampler_and_on_changes_the_canvas(tiny, model):
    plain, projector = sample(tiny, model)
    off, _ = sample(tiny, patched(model, projector, weight=0.0))
    assert torch.equal(off, plain)
    on, _ = sample(tiny, patched(model, projector))
    assert torch.isfinite(on).all()
    assert (on - plain).abs().max() > 1e-4          # the patch is reached through the real sampling stack
