"""The SyncCanvas KSampler and SAMPLER nodes through ComfyUI's real sampling stack (tiny random models).

Skipped without COMFYUI_PATH. Every run is a few steps on 8x8-texel latent views on the CPU.
"""

from __future__ import annotations

import os

import pytest
import torch

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.slow,  # imports ComfyUI (~10 s on a loaded 2-core machine) and runs the tiny UNet
    pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH not set: ComfyUI node tests skipped"),
]


def run_sampler(model, positive, negative, projector, **options):
    from sync_canvas.nodes.sampler_nodes import SyncCanvasKSampler

    settings = dict(seed=3, steps=2, cfg=2.0, mode="case_2", scheduler="normal", eta=0.0, denoise=1.0)
    settings.update(options)
    with torch.inference_mode():
        return SyncCanvasKSampler.execute(model, positive, negative, projector, **settings).args


def four_view_projector():
    from sync_canvas.projectors import AnagramProjector

    return AnagramProjector(64, 64, ("identity", "flip_h", "flip_v", "rotate_180"))


def test_wide_panorama_run_gives_finite_canvas_and_views_of_the_right_shapes(tiny, model, vae):
    from sync_canvas.nodes.projector_nodes import SyncCanvasWidePanorama

    projector = SyncCanvasWidePanorama.execute(width=128, height=64, window=64, stride=64, wrap=False).args[0]
    latent, image, views = run_sampler(model, tiny.conditioning(0), tiny.conditioning(1), projector, vae=vae)
    assert latent["samples"].shape == (1, 4, 8, 16)
    assert image.shape == (1, 64, 128, 3) and views.shape == (2, 64, 64, 3)
    assert torch.isfinite(latent["samples"]).all() and latent["samples"].abs().sum() > 0
    assert 0 <= float(image.min()) and float(image.max()) <= 1
    # exact crops: the views are the canvas cut at the windows (final RGB synchronization)
    torch.testing.assert_close(views[0], image[0, :, :64])
    torch.testing.assert_close(views[1], image[0, :, 64:])


def test_identity_projector_with_one_view_equals_comfyui_euler_ksampler(tiny, model):
    # deterministic DDIM in sigma space is exactly Euler; noise scaling at sigma_max follows KSAMPLER
    import nodes as comfy_nodes

    from sync_canvas.projectors import IdentityProjector

    pos, neg = tiny.conditioning(0), tiny.conditioning(1)
    ours = run_sampler(model, pos, neg, IdentityProjector(64, 64), steps=3)[0]["samples"]
    with torch.inference_mode():
        stock = comfy_nodes.common_ksampler(model, 3, 3, 2.0, "euler", "normal", pos, neg, {"samples": torch.zeros(1, 4, 8, 8)})[0]
    torch.testing.assert_close(ours, stock["samples"], rtol=1e-4, atol=1e-4)


def test_sampler_select_through_sample_custom_equals_the_ksampler_node(tiny, model):
    import comfy.sample
    import comfy.samplers

    from sync_canvas.nodes.sampler_nodes import SyncCanvasSamplerSelect
    from sync_canvas.projectors import IdentityProjector

    projector = IdentityProjector(64, 64)
    pos, neg = tiny.conditioning(0), tiny.conditioning(1)
    node = run_sampler(model, pos, neg, projector, steps=3)[0]["samples"]
    sampler = SyncCanvasSamplerSelect.execute(projector, "case_2", 0.0).args[0]
    latent = torch.zeros(1, 4, 8, 8)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", 3).cpu()
    with torch.inference_mode():
        custom = comfy.sample.sample_custom(model, comfy.sample.prepare_noise(latent, 3), 2.0, sampler, sigmas, pos, neg, latent, disable_pbar=True, seed=3)
    torch.testing.assert_close(custom, node, rtol=1e-4, atol=1e-4)


def test_controlnet_hints_follow_the_views_of_each_chunk(tiny, model):
    # notes 1c: 4 hints, calls on 2 views with CFG must see [h_a, h_b, h_a, h_b], not [h0, h1, h2, h3]
    import nodes as comfy_nodes

    control = tiny.tiny_controlnet()
    values = torch.tensor([0.1, 0.2, 0.3, 0.4])
    hints = values[:, None, None, None].expand(4, 64, 64, 3).contiguous()
    pos, neg = comfy_nodes.ControlNetApplyAdvanced().apply_controlnet(tiny.conditioning(0), tiny.conditioning(1), control, hints, 1.0, 0.0, 1.0)
    seen = []
    handle = control.control_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["hint"][:, 0, 0, 0].tolist()), with_kwargs=True
    )
    try:
        run_sampler(model, pos, neg, four_view_projector(), steps=2, max_views_per_batch=2)
    finally:
        handle.remove()
    expected = [[0.1, 0.2, 0.1, 0.2], [0.3, 0.4, 0.3, 0.4]] * 2
    assert len(seen) == 4
    for got, want in zip(seen, expected):
        assert got == pytest.approx(want, abs=1e-6)
    # the full hint batch is restored after the run
    assert all(c.cond_hint_original.shape[0] == 4 for _, d in pos for c in [d["control"]])


def test_per_view_prompts_reach_their_views_in_single_view_calls(tiny, model):
    from sync_canvas.nodes.conditioning_nodes import SyncCanvasPerViewConditioning

    projector = four_view_projector()
    prompts = {f"prompt_{i}": tiny.conditioning(10 + i) for i in range(1, 3)}
    positive = SyncCanvasPerViewConditioning.execute(projector, "2,0,1,2", tiny.conditioning(10), **prompts).args[0]
    contexts = []
    handle = model.model.diffusion_model.register_forward_pre_hook(
        lambda module, args, kwargs: contexts.append(kwargs["context"][:, 0, 0].clone()), with_kwargs=True
    )
    try:
        run_sampler(model, positive, tiny.conditioning(1), projector, steps=1, max_views_per_batch=1)
    finally:
        handle.remove()
    firsts = [float(tiny.conditioning(10 + p)[0][0][0, 0, 0]) for p in (2, 0, 1, 2)]
    negative = float(tiny.conditioning(1)[0][0][0, 0, 0])
    assert len(contexts) == 4
    for view, context in enumerate(contexts):
        assert sorted(context.tolist()) == pytest.approx(sorted([firsts[view], negative]))


def test_cancel_stops_within_one_model_call(tiny, model):
    import comfy.model_management

    calls = []

    def interrupt_after_first_call(module, args, kwargs):
        calls.append(1)
        comfy.model_management.interrupt_current_processing(True)

    handle = model.model.diffusion_model.register_forward_pre_hook(interrupt_after_first_call, with_kwargs=True)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            run_sampler(model, tiny.conditioning(0), tiny.conditioning(1), four_view_projector(), steps=4, max_views_per_batch=1)
    finally:
        handle.remove()
        comfy.model_management.interrupt_current_processing(False)
    assert len(calls) == 1


def test_stochsync_mode_runs_on_groups_and_honours_seed_and_inner_steps(tiny, model):
    from sync_canvas.projectors import WidePanoramaProjector

    projector = WidePanoramaProjector(64, 192, 64, 64, wrap=False)

    def run(**options):
        settings = dict(mode="stochsync", steps=2, inner_steps=2)
        settings.update(options)
        return run_sampler(model, tiny.conditioning(0), tiny.conditioning(1), projector, **settings)[0]["samples"]

    latent = run()
    assert latent.shape == (1, 4, 8, 24) and torch.isfinite(latent).all()
    assert torch.equal(run(), latent)  # same seed, same canvas
    assert (run(seed=4) - latent).abs().max() > 1e-3  # the seed reaches the noise
    assert (run(inner_steps=1) - latent).abs().max() > 1e-3  # inner_steps reaches StochSync


def test_bad_inputs_raise_clear_errors(tiny, model):
    import nodes as comfy_nodes

    from sync_canvas.projectors import WidePanoramaProjector

    projector = WidePanoramaProjector(64, 128, 64, 64)
    pos, neg = tiny.conditioning(0), tiny.conditioning(1)
    with pytest.raises(ValueError, match="128x64 pixel canvas"):
        run_sampler(model, pos, neg, projector, latent={"samples": torch.zeros(1, 4, 8, 8)})
    hints = torch.zeros(3, 64, 64, 3)
    cpos, cneg = comfy_nodes.ControlNetApplyAdvanced().apply_controlnet(pos, neg, tiny.tiny_controlnet(), hints, 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="3 images but the projector has 2 views"):
        run_sampler(model, cpos, cneg, projector)
    with pytest.raises(ValueError, match=r"mode='case_9' is not one of its options: 'No sync: views alone, fused once at the end \(case 0\)', 'SyncTweedies: noise eps in views \(case 1\)'"):
        run_sampler(model, pos, neg, projector, mode="case_9")
    with pytest.raises(ValueError, match="needs a latent"):
        run_sampler(model, pos, neg, projector, denoise=0.5)


def test_lora_style_weight_patches_apply_like_in_the_stock_ksampler(tiny, model):
    # a ModelPatcher weight patch (what LoraLoader adds) must reach the views' UNet calls
    import nodes as comfy_nodes

    from sync_canvas.projectors import IdentityProjector

    patched = model.clone()
    key = "diffusion_model.out.2.weight"
    weight = model.model.state_dict()[key]
    patched.add_patches({key: (torch.full_like(weight, 0.05),)}, 1.0)
    pos, neg = tiny.conditioning(0), tiny.conditioning(1)
    plain = run_sampler(model, pos, neg, IdentityProjector(64, 64), steps=2)[0]["samples"]
    ours = run_sampler(patched, pos, neg, IdentityProjector(64, 64), steps=2)[0]["samples"]
    with torch.inference_mode():
        stock = comfy_nodes.common_ksampler(patched, 3, 2, 2.0, "euler", "normal", pos, neg, {"samples": torch.zeros(1, 4, 8, 8)})[0]
    assert (ours - plain).abs().max() > 1e-3
    torch.testing.assert_close(ours, stock["samples"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["case_2", "stochsync"])
def test_progress_previews_show_the_canonical_x0(tiny, model, mode):
    import comfy.cli_args
    import comfy.utils
    import latent_preview

    from sync_canvas.projectors import WidePanoramaProjector

    updates = []
    previous_method, previous_hook = comfy.cli_args.args.preview_method, comfy.utils.PROGRESS_BAR_HOOK
    comfy.cli_args.args.preview_method = latent_preview.LatentPreviewMethod.Latent2RGB
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: updates.append((value, total, preview)))
    try:
        run_sampler(model, tiny.conditioning(0), tiny.conditioning(1), WidePanoramaProjector(64, 192, 64, 64),
                    steps=2, mode=mode, inner_steps=1)
    finally:
        comfy.cli_args.args.preview_method = previous_method
        comfy.utils.set_progress_bar_global_hook(previous_hook)
    assert [(v, t) for v, t, _ in updates] == [(1, 2), (2, 2)]
    for _, _, (kind, image, _) in updates:
        assert kind == "JPEG" and image.size == (24, 8)  # the 192x64 canvas at latent resolution


def test_view_ids_of_each_call_reach_the_model_patches(tiny, model):
    # the cross-view attention patch reads them from transformer_options["sync_canvas_views"]
    patched = model.clone()
    seen = []

    def unet_wrapper(apply_model, args):
        views = args["c"]["transformer_options"]["sync_canvas_views"]
        seen.append((views["view_ids"].tolist(), views["n_views"]))
        return apply_model(args["input"], args["timestep"], **args["c"])

    patched.set_model_unet_function_wrapper(unet_wrapper)
    run_sampler(patched, tiny.conditioning(0), tiny.conditioning(1), four_view_projector(), steps=1, max_views_per_batch=3)
    assert seen == [([0, 1, 2], 4), ([3], 4)]


@pytest.mark.parametrize("rule", ["ddr", "dde", "syncdiffusion"])
def test_fuse_rule_modes_of_the_ksampler_equal_their_own_nodes_at_the_paper_defaults(tiny, model, vae, rule):
    from sync_canvas.nodes import fuse_rules
    from sync_canvas.nodes.projector_nodes import SyncCanvasWidePanorama
    from sync_canvas.nodes.sampler_nodes import SyncCanvasKSampler

    projector = SyncCanvasWidePanorama.execute(width=128, height=64, window=64, stride=32, wrap=False).args[0]
    pos, neg = tiny.conditioning(0), tiny.conditioning(1)
    with torch.inference_mode():
        output = SyncCanvasKSampler.execute(
            model, pos, neg, projector, seed=3, steps=2, cfg=2.0, mode=rule, scheduler="normal", eta=0.0,
            denoise=1.0, vae=vae)
    latent, image, views = output.args
    report = " ".join(map(str, output.ui.as_dict().values()))
    common = dict(model=model, positive=pos, negative=neg, projector=projector, seed=3, steps=2, cfg=2.0,
                  scheduler="normal", vae=vae)
    with torch.inference_mode():
        if rule == "ddr":
            own = fuse_rules.SyncCanvasDDRKSampler.execute(**common, eta=0.0, representation="canvas", jump_length=0,
                                                           jump_interval=1, jump_repeat=1, adam_steps=200, adam_lr=1e-4,
                                                           consistent_noise=True)
        elif rule == "dde":
            own = fuse_rules.SyncCanvasDDEKSampler.execute(**common, eta=0.0)
        else:
            own = fuse_rules.SyncCanvasSyncDiffusionKSampler.execute(**common, weight=20.0, decay=0.95, first_steps=0,
                                                                     every=1, anchor_view=0, eta=0.0)
    torch.testing.assert_close(latent["samples"], own.args[0]["samples"])
    assert image.shape == (1, 64, 128, 3) and views.shape == (3, 64, 64, 3)
    assert torch.isfinite(latent["samples"]).all()
    assert {"ddr": "DDR", "dde": "averaging", "syncdiffusion": "SyncDiffusion"}[rule] in report


def test_fuse_rule_modes_refuse_an_image_to_image_start(tiny, model):
    from sync_canvas.projectors import IdentityProjector

    with pytest.raises(ValueError, match="denoise"):
        run_sampler(model, tiny.conditioning(0), tiny.conditioning(1), IdentityProjector(64, 64), mode="ddr", denoise=0.5)
