"""The DDR, DDE and SyncDiffusion nodes through ComfyUI's real sampling stack (tiny random models).

Skipped without COMFYUI_PATH. A few steps on 8x16-texel latent canvases on the CPU.
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


@pytest.fixture(scope="module")
def panorama(tiny):
    from sync_canvas.nodes.projector_nodes import SyncCanvasWidePanorama

    return SyncCanvasWidePanorama.execute(width=128, height=64, window=64, stride=32, wrap=False).args[0]


SETTINGS = dict(seed=3, steps=3, cfg=2.0, scheduler="normal")


def run(node, model, tiny, projector, **options):
    with torch.inference_mode():
        return node.execute(model, tiny.conditioning(0), tiny.conditioning(1), projector, **SETTINGS, **options).args


def test_ddr_node_canvas_and_siren(tiny, model, panorama):
    from sync_canvas.nodes.fuse_rules import SyncCanvasDDRKSampler

    base = dict(eta=0.75, jump_length=1, jump_interval=1, jump_repeat=1, adam_steps=5, adam_lr=1e-3, consistent_noise=True)
    latent, image, report = run(SyncCanvasDDRKSampler, model, tiny, panorama, representation="canvas", **base)
    assert latent["samples"].shape == (1, 4, 8, 16) and torch.isfinite(latent["samples"]).all()
    assert latent["samples"].abs().sum() > 0
    # 3 steps with one RePaint jump after each of the first two: 5 reverse + 2 forward entries, 5 x 3 views evaluated
    assert "DDR (canvas" in report and "7 schedule entries" in report and "15 view evaluations" in report
    latent_siren, _, report_siren = run(SyncCanvasDDRKSampler, model, tiny, panorama, representation="siren", **base)
    assert "siren" in report_siren and torch.isfinite(latent_siren["samples"]).all()
    # the representation option is honoured: a SIREN fit is not the canvas itself
    assert (latent_siren["samples"] - latent["samples"]).abs().max() > 1e-3


def test_dde_node_without_coordinator_says_it_averages_and_untrained_equals_it(tiny, model, panorama):
    from sync_canvas.nodes.fuse_rules import SyncCanvasDDEKSampler
    from sync_canvas.samplers.dde import Coordinator, CoordinatorConfig

    plain, _, report = run(SyncCanvasDDEKSampler, model, tiny, panorama, eta=0.0)
    assert "averaging" in report and "no DDE coordinator" in report
    coordinated, _, report_c = run(SyncCanvasDDEKSampler, model, tiny, panorama, eta=0.0,
                                   coordinator=Coordinator(CoordinatorConfig.tiny(4)))
    assert "DDE coordinator" in report_c
    assert torch.equal(plain["samples"], coordinated["samples"])


def test_syncdiffusion_node_weight_zero_differs_from_guided(tiny, model, panorama):
    from sync_canvas.nodes.fuse_rules import SyncCanvasSyncDiffusionKSampler

    opts = dict(decay=0.95, first_steps=0, every=1, anchor_view=0, eta=0.0)
    plain, _, report0 = run(SyncCanvasSyncDiffusionKSampler, model, tiny, panorama, weight=0.0, **opts)
    guided, _, report = run(SyncCanvasSyncDiffusionKSampler, model, tiny, panorama, weight=20.0, **opts)
    assert "weight-free" in report and torch.isfinite(guided["samples"]).all()
    assert (plain["samples"] - guided["samples"]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="lower the weight"):
        run(SyncCanvasSyncDiffusionKSampler, model, tiny, panorama, weight=1e4, **opts)
    with pytest.raises(ValueError, match="anchor_view"):
        run(SyncCanvasSyncDiffusionKSampler, model, tiny, panorama, weight=1.0, **{**opts, "anchor_view": 9})


def test_syncdiffusion_node_with_a_user_lpips_file(tiny, model, panorama, tmp_path):
    from safetensors.torch import save_file
    from torchvision.models.vgg import cfgs, make_layers

    from sync_canvas.nodes.fuse_rules import SyncCanvasSyncDiffusionKSampler
    from sync_canvas.samplers.syncdiffusion_losses import load_lpips_vgg

    torch.manual_seed(0)
    state = {f"features.{k}": v.contiguous() for k, v in make_layers(cfgs["D"]).state_dict().items()}
    state.update({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate((64, 128, 256, 512, 512))})
    save_file(state, str(tmp_path / "vgg_lpips.safetensors"))
    loss = load_lpips_vgg(str(tmp_path / "vgg_lpips.safetensors"))
    opts = dict(decay=0.95, first_steps=2, every=1, anchor_view=0, eta=0.0)
    plain, _, _ = run(SyncCanvasSyncDiffusionKSampler, model, tiny, panorama, weight=0.0, **opts)
    guided, _, report = run(SyncCanvasSyncDiffusionKSampler, model, tiny, panorama, weight=20.0, loss=loss, **opts)
    assert "LPIPS-VGG on preview RGB" in report
    assert torch.isfinite(guided["samples"]).all() and (guided["samples"] - plain["samples"]).abs().max() > 0


NODE_OPTIONS = {
    "ddr": dict(eta=0.75, representation="canvas", jump_length=0, jump_interval=1, jump_repeat=1, adam_steps=1,
                adam_lr=1e-3, consistent_noise=True),
    "dde": dict(eta=0.0),
    "syncdiffusion": dict(weight=20.0, decay=0.95, first_steps=0, every=1, anchor_view=0, eta=0.0),
}


@pytest.mark.parametrize("node", ["ksampler", "own node"])
@pytest.mark.parametrize("mode", ["ddr", "dde", "syncdiffusion"])
def test_fuse_rules_send_a_41_window_panorama_in_chunks(tiny, model, mode, node):
    """max_views_per_batch reaches the fuse rules (as KSampler modes and on their own nodes): 41 windows x 2
    CFG rows arrive as chunks of <= 2 x 8 rows."""
    from sync_canvas.nodes import fuse_rules
    from sync_canvas.nodes.projector_nodes import SyncCanvasWidePanorama
    from sync_canvas.nodes.sampler_nodes import SyncCanvasKSampler

    projector = SyncCanvasWidePanorama.execute(width=64 + 40 * 8, height=64, window=64, stride=8, wrap=False).args[0]
    assert projector.n_views == 41
    own = {"ddr": fuse_rules.SyncCanvasDDRKSampler, "dde": fuse_rules.SyncCanvasDDEKSampler,
           "syncdiffusion": fuse_rules.SyncCanvasSyncDiffusionKSampler}[mode]
    rows = []
    handle = model.model.diffusion_model.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    try:
        with torch.inference_mode():
            common = dict(seed=1, steps=1, cfg=2.0, scheduler="normal", max_views_per_batch=8)
            if node == "ksampler":
                latent = SyncCanvasKSampler.execute(model, tiny.conditioning(0), tiny.conditioning(1), projector,
                                                    mode=mode, eta=0.0, denoise=1.0, **common).args[0]
            else:
                latent = own.execute(model, tiny.conditioning(0), tiny.conditioning(1), projector, **common,
                                     **NODE_OPTIONS[mode]).args[0]
    finally:
        handle.remove()
    assert max(rows) <= 16 and sum(rows) >= 82, rows  # every view evaluated, never more than 8 views per call
    assert latent["samples"].shape == (1, 4, 8, 48)


def test_ksampler_fuse_rule_modes_refuse_rgb_every_step(tiny, model, panorama):
    from sync_canvas.nodes.sampler_nodes import SyncCanvasKSampler

    with pytest.raises(ValueError, match="rgb_every_step"):
        SyncCanvasKSampler.execute(model, tiny.conditioning(0), tiny.conditioning(1), panorama, seed=1, steps=1, cfg=2.0,
                                   mode="dde", scheduler="normal", eta=0.0, denoise=1.0, rgb_every_step=True)
