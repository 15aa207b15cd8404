"""Cross-view attention patch on a tiny random-weight SD1.5-layout UNet inside real ComfyUI (CPU).

Skipped without COMFYUI_PATH. The UNet is built file-less (notes/comfyui-integration.md §3): SD15 model
config with model_channels 32, two levels, a transformer in every level, the middle and the output.
"""

import os
import sys

import pytest
import torch

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.skipif(not COMFYUI_PATH, reason="COMFYUI_PATH is not set: ComfyUI cross-view tests skipped"),
    pytest.mark.usefixtures("one_thread"),
]

N_VIEWS = 4
SIGMA = 5.0


@pytest.fixture(scope="module")
def comfy():
    if COMFYUI_PATH not in sys.path:
        sys.path.insert(0, COMFYUI_PATH)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401  (device picked now: the CPU)
    import comfy.model_patcher
    import comfy.sample
    import comfy.samplers
    import comfy.supported_models

    return comfy


@pytest.fixture(scope="module")
def unet(comfy):
    """ModelPatcher around a 1.6 M-parameter SD1.5-layout UNet with seeded random weights."""
    config = dict(
        image_size=32, in_channels=4, out_channels=4, model_channels=32, num_res_blocks=[1, 1], channel_mult=[1, 2],
        transformer_depth=[1, 1], transformer_depth_output=[1, 1, 1, 1], transformer_depth_middle=1,
        context_dim=768, use_linear_in_transformer=False, use_spatial_transformer=True, legacy=False,
        adm_in_channels=None, use_temporal_resblock=False, use_temporal_attention=False, use_checkpoint=False,
    )
    model_config = comfy.supported_models.SD15(config)
    model_config.set_inference_dtype(torch.float32, None)
    base = model_config.get_model({})
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in base.parameters():   # std 0.1 everywhere, so attention is far from uniform
            param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(base, load_device=cpu, offload_device=cpu)


@pytest.fixture(scope="module")
def projector():
    """Four 16x16 windows on a 16x40 strip, stride 8: a chain 0-1-2-3 of overlaps."""
    from sync_canvas.projectors import WidePanoramaProjector

    return WidePanoramaProjector(height=16, width=40, window=16, stride=8)


@pytest.fixture(scope="module")
def patch_model(comfy):
    from sync_canvas.nodes.cross_view_attention import patch_model

    return patch_model


def latents(n, seed=1):
    return torch.randn(n, 4, 16, 16, generator=torch.Generator().manual_seed(seed))


CONTEXT = torch.randn(2, 77, 768, generator=torch.Generator().manual_seed(2))


def run(model, x, view_ids=None, chunks=(0,), sigma=SIGMA, **conds):
    """One UNet call the way ``calc_cond_batch`` makes it: chunks of views, merged transformer_options."""
    options = {k: v for k, v in model.model_options.get("transformer_options", {}).items()}
    options["cond_or_uncond"] = list(chunks)
    options["sigmas"] = torch.full((x.shape[0],), sigma)
    if view_ids is not None:
        options["sync_canvas_views"] = {"view_ids": torch.tensor(view_ids), "n_views": N_VIEWS}
    per_chunk = x.shape[0] // len(chunks)
    context = torch.cat([CONTEXT[c:c + 1].expand(per_chunk, -1, -1) for c in chunks])
    with torch.inference_mode():
        return model.model.apply_model(x, torch.full((x.shape[0],), sigma), c_crossattn=context,
                                       transformer_options=options, **conds)


def test_patch_reaches_every_self_attention_of_the_unet(unet, projector, patch_model):
    from sync_canvas.nodes.cross_view_attention import attn1_keys

    n_blocks = sum(1 for m in unet.model.diffusion_model.modules() if type(m).__name__ == "BasicTransformerBlock")
    keys = attn1_keys(unet.model.diffusion_model)
    assert len(keys) == n_blocks == 7
    patched = patch_model(unet, projector)
    assert set(patched.model_options["transformer_options"]["patches_replace"]["attn1"]) == set(keys)
    only_middle = patch_model(unet, projector, blocks=("middle",))
    assert list(only_middle.model_options["transformer_options"]["patches_replace"]["attn1"]) == [("middle", 0, 0)]
    assert "patches_replace" not in unet.model_options.get("transformer_options", {})   # input untouched


def test_weight_zero_and_one_view_equal_the_unpatched_model_bit_for_bit(unet, projector, patch_model):
    x = latents(N_VIEWS)
    plain = run(unet, x, list(range(N_VIEWS)))
    off = patch_model(unet, projector, weight=0.0)
    assert torch.equal(run(off, x, list(range(N_VIEWS))), plain)
    on = patch_model(unet, projector, reference_view=0, reference_end=1.0)
    assert not torch.equal(run(on, x, list(range(N_VIEWS))), plain)
    for view in range(N_VIEWS):             # each view alone (also the reference view alone)
        on.model_options["transformer_options"]["patches_replace"]["attn1"][("input", 1, 0)].clear_cache()
        assert torch.equal(run(on, x[view:view + 1], [view]), run(unet, x[view:view + 1], [view])), view


class TableProjector:
    """Stands in for a projector whose views overlap in two pairs, {0,1} and {2,3} (the node reads only this)."""

    n_views = N_VIEWS
    reads = [[0, 1], [1, 2], [3, 4], [4, 5]]       # canonical elements each view reads

    def coverage(self, views):
        mask = torch.zeros(6, dtype=torch.bool)
        mask[self.reads[views[0]]] = True
        return mask


def test_view_output_changes_with_neighbours_only(unet, patch_model):
    # Through 7 stacked attention layers a view sees every view it is *connected* to, so "non-neighbour"
    # here means another component of the overlap graph.
    patched = patch_model(unet, TableProjector(), reference_view=-1)
    x = latents(N_VIEWS)
    base = run(patched, x, [0, 1, 2, 3])
    for j, changes_view_0 in [(1, True), (2, False), (3, False)]:
        x2 = x.clone()
        x2[j] = latents(1, seed=10 + j)[0]
        out = run(patched, x2, [0, 1, 2, 3])
        assert (not torch.equal(out[0], base[0])) == changes_view_0, j
    unpatched_base = run(unet, x, [0, 1, 2, 3])
    x2 = x.clone()
    x2[1] = latents(1, seed=11)[0]
    assert torch.equal(run(unet, x2, [0, 1, 2, 3])[0], unpatched_base[0])    # the UNet alone never mixes views


def test_cond_and_uncond_halves_never_mix(unet, projector, patch_model):
    patched = patch_model(unet, projector, reference_view=0, reference_end=1.0)
    x = torch.cat([latents(N_VIEWS), latents(N_VIEWS, seed=3)])
    base = run(patched, x, [0, 1, 2, 3], chunks=(0, 1))
    x2 = x.clone()
    x2[N_VIEWS:] = latents(N_VIEWS, seed=4)
    out = run(patched, x2, [0, 1, 2, 3], chunks=(0, 1))
    assert torch.equal(out[:N_VIEWS], base[:N_VIEWS])
    assert not torch.equal(out[N_VIEWS:], base[N_VIEWS:])
    alone = run(patched, x[:N_VIEWS], [0, 1, 2, 3], chunks=(0,))
    torch.testing.assert_close(alone, base[:N_VIEWS], rtol=1e-5, atol=1e-6)


def test_subsets_and_chunks_give_the_full_batch_result(unet, patch_model):
    # components {0,1} and {2,3}; reference view 0 for everyone, cached from the chunk that holds it
    patched = patch_model(unet, TableProjector(), reference_view=0, reference_end=1.0)
    x = latents(N_VIEWS)
    full = run(patched, x, [0, 1, 2, 3])
    first = run(patched, x[:2], [0, 1])
    second = run(patched, x[[3, 2]], [3, 2])           # a later chunk of the same step, in any order
    # equal up to float rounding of different batch sizes, far below the reference's own effect
    rounding = (torch.cat([first, second[[1, 0]]]) - full).abs().max()
    no_ref = patch_model(unet, TableProjector(), reference_view=-1)
    reference_effect = (run(no_ref, x[2:], [2, 3]) - full[2:]).abs().max()
    assert rounding < 1e-5 and rounding < 0.01 * reference_effect, (rounding, reference_effect)
    stale = run(patched, x[2:], [2, 3], sigma=SIGMA / 2)   # next step, reference absent: not reused
    torch.testing.assert_close(stale, run(no_ref, x[2:], [2, 3], sigma=SIGMA / 2), rtol=1e-5, atol=1e-6)
    # StochSync-style subset of non-overlapping views without a reference: each view as if alone
    subset = run(no_ref, x[[0, 2]], [0, 2])
    assert torch.equal(subset, run(unet, x[[0, 2]], [0, 2]))


def test_through_comfyui_sampling_chunks_equal_one_full_batch(comfy, unet, patch_model):
    """A KSAMPLER calls the CFG model on all views, then on two chunks; view ids via ``with_views``."""
    from sync_canvas.samplers.cross_view_patch import with_views

    patched = patch_model(unet, TableProjector(), reference_view=0, reference_end=1.0)
    seen = {}

    def sampler(model, x, sigmas, extra_args=None, callback=None, disable=None):
        s = sigmas[0] * x.new_ones(x.shape[0])
        seen["full"] = model(x, s, **with_views(extra_args, torch.arange(N_VIEWS), N_VIEWS))
        seen["chunked"] = torch.cat([
            model(x[:2], s[:2], **with_views(extra_args, torch.tensor([0, 1]), N_VIEWS)),
            model(x[2:], s[2:], **with_views(extra_args, torch.tensor([2, 3]), N_VIEWS)),
        ])
        seen["plain"] = model(x, s, **extra_args)                     # no view info, 4 rows = all views
        return seen["full"]

    positive = [[CONTEXT[:1], {}]]
    negative = [[CONTEXT[1:], {}]]
    sigmas = torch.tensor([SIGMA, 0.0])
    with torch.inference_mode():
        comfy.sample.sample_custom(patched, latents(N_VIEWS), 3.0, comfy.samplers.KSAMPLER(sampler), sigmas,
                                   positive, negative, torch.zeros(N_VIEWS, 4, 16, 16), disable_pbar=True)
        unpatched = {}
        seen_plain = seen.copy()
        seen.clear()
        comfy.sample.sample_custom(unet, latents(N_VIEWS), 3.0, comfy.samplers.KSAMPLER(sampler), sigmas,
                                   positive, negative, torch.zeros(N_VIEWS, 4, 16, 16), disable_pbar=True)
        unpatched = seen
    torch.testing.assert_close(seen_plain["chunked"], seen_plain["full"], rtol=1e-4, atol=1e-5)
    assert torch.equal(seen_plain["plain"], seen_plain["full"])
    assert not torch.allclose(seen_plain["full"], unpatched["full"])


def test_models_it_cannot_patch_raise_naming_the_model(projector, patch_model):
    class NotAUNet(torch.nn.Module):                 # neither UNet blocks nor Flux/SD3 joint blocks
        def __init__(self):
            super().__init__()
            self.double_blocks = torch.nn.ModuleList([torch.nn.Linear(4, 4)])

    class FakePatcher:
        model_options = {"transformer_options": {}}

        def clone(self):
            return FakePatcher()

        def get_model_object(self, name):
            return NotAUNet()

    with pytest.raises(ValueError, match="cannot patch .*NotAUNet"):
        patch_model(FakePatcher(), projector)
    assert patch_model(FakePatcher(), projector, weight=0.0).model_options == {"transformer_options": {}}


@pytest.mark.parametrize("kwargs, match", [(dict(start=0.6, end=0.4), "start"), (dict(reference_view=9), "ref_view 9"),
                                           (dict(neighbours="all"), "neighbours mode")])
def test_bad_node_inputs_raise(unet, projector, patch_model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        patch_model(unet, projector, **kwargs)


def test_sdxl_layout_linear_transformers_and_deeper_blocks(comfy, patch_model):
    """Tiny SDXL-layout UNet (linear in/out projections, two transformer blocks per level, ADM input)."""
    config = dict(
        image_size=32, in_channels=4, out_channels=4, model_channels=64, num_res_blocks=[1, 1], channel_mult=[1, 2],
        transformer_depth=[1, 2], transformer_depth_output=[1, 1, 2, 2], transformer_depth_middle=1,
        context_dim=768, use_linear_in_transformer=True, use_spatial_transformer=True, legacy=False,
        adm_in_channels=2816, num_classes="sequential", use_temporal_resblock=False, use_temporal_attention=False,
        use_checkpoint=False,
    )
    model_config = comfy.supported_models.SDXL(config)
    model_config.set_inference_dtype(torch.float32, None)
    base = model_config.get_model({})
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in base.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    cpu = torch.device("cpu")
    sdxl = comfy.model_patcher.ModelPatcher(base, load_device=cpu, offload_device=cpu)
    from sync_canvas.nodes.cross_view_attention import attn1_keys

    keys = attn1_keys(base.diffusion_model)
    assert len(keys) == sum(1 for m in base.modules() if type(m).__name__ == "BasicTransformerBlock") == 10
    assert ("input", 3, 1) in keys                                   # the second block of a depth-2 level

    y = torch.randn(N_VIEWS, 2816, generator=generator)
    x = latents(N_VIEWS)
    plain = run(sdxl, x, [0, 1, 2, 3], y=y)
    assert torch.equal(run(patch_model(sdxl, TableProjector(), weight=0.0), x, [0, 1, 2, 3], y=y), plain)
    patched = patch_model(sdxl, TableProjector(), reference_view=-1)
    base_out = run(patched, x, [0, 1, 2, 3], y=y)
    assert not torch.equal(base_out, plain)
    for j, changes_view_0 in [(1, True), (2, False)]:
        x2 = x.clone()
        x2[j] = latents(1, seed=20 + j)[0]
        assert (not torch.equal(run(patched, x2, [0, 1, 2, 3], y=y)[0], base_out[0])) == changes_view_0, j
