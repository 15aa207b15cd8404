"""Cross-view attention on DiTs (Flux double/single-stream blocks, SD3 joint blocks) inside real ComfyUI.

Same contract as the UNet patch (tests/test_cross_view_comfy.py): weight 0 and one view are the unpatched
model bit for bit, a view changes when a neighbour's input changes and not for a non-neighbour, cond and
uncond never mix, subsets and chunks equal the full batch. Tiny variance-preserving models from
tests/comfy_tiny.py ``family_model``; views of 64x64 pixels = 8x8 latents = 16 image tokens.
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

N_VIEWS = 4
SIGMA = 0.7
FAMILIES = ("flux", "sd3")


@pytest.fixture(scope="module")
def models(tiny):
    cache = {name: tiny.family_model(name) for name in FAMILIES}
    yield cache
    cache.clear()


def chain_projector():
    from sync_canvas.projectors import WidePanoramaProjector

    return WidePanoramaProjector(height=64, width=160, window=64, stride=32)   # 4 views, chain 0-1-2-3


def latents(n, seed=1):
    return torch.randn(n, 16, 8, 8, generator=torch.Generator().manual_seed(seed))


def run(tiny, name, model, x, view_ids=None, chunks=(0,), sigma=SIGMA):
    """One model call as ``calc_cond_batch`` makes it: chunks of views, merged transformer_options."""
    options = dict(model.model_options.get("transformer_options", {}))
    options["cond_or_uncond"] = list(chunks)
    options["sigmas"] = torch.full((x.shape[0],), sigma)
    if view_ids is not None:
        options["sync_canvas_views"] = {"view_ids": torch.tensor(view_ids), "n_views": N_VIEWS}
    per_chunk = x.shape[0] // len(chunks)
    conds = [tiny.family_conditioning(name, seed) for seed in (0, 1)]
    context = torch.cat([conds[c][0][0].expand(per_chunk, -1, -1) for c in chunks])
    pooled = torch.cat([conds[c][0][1]["pooled_output"].expand(per_chunk, -1) for c in chunks])
    extra = {"y": pooled}
    if name == "flux":
        extra["guidance"] = torch.full((x.shape[0],), 3.5)
    with torch.inference_mode():
        return model.model.apply_model(x, torch.full((x.shape[0],), sigma), c_crossattn=context,
                                       transformer_options=options, **extra)


def patch(model, projector, **kwargs):
    from sync_canvas.nodes.cross_view_attention import patch_model

    return patch_model(model, projector, **kwargs)


@pytest.mark.parametrize("name", FAMILIES)
def test_patch_reaches_every_joint_block(tiny, models, name):
    model = models[name]
    patched = patch(model, chain_projector())
    keys = set(patched.model_options["transformer_options"]["patches_replace"]["dit"])
    expected = {("double_block", 0), ("single_block", 0)} if name == "flux" else {("double_block", 0)}
    assert keys == expected
    assert "patches_replace" not in model.model_options.get("transformer_options", {})   # input untouched


@pytest.mark.parametrize("name", FAMILIES)
def test_weight_zero_and_one_view_equal_the_unpatched_model_bit_for_bit(tiny, models, name):
    model = models[name]
    x = latents(N_VIEWS)
    plain = run(tiny, name, model, x, list(range(N_VIEWS)))
    off = patch(model, chain_projector(), weight=0.0)
    assert torch.equal(run(tiny, name, off, x, list(range(N_VIEWS))), plain)
    on = patch(model, chain_projector())
    assert not torch.allclose(run(tiny, name, on, x, list(range(N_VIEWS))), plain, atol=1e-4)
    for view in range(N_VIEWS):
        alone = run(tiny, name, on, x[view:view + 1], [view])
        assert torch.equal(alone, run(tiny, name, model, x[view:view + 1], [view])), view


@pytest.mark.parametrize("name", FAMILIES)
def test_view_output_changes_with_neighbours_only(tiny, models, name):
    model = models[name]
    patched = patch(model, tiny.PairedViewsProjector())
    x = latents(N_VIEWS)
    base = run(tiny, name, patched, x, [0, 1, 2, 3])
    for j, changes_view_0 in [(1, True), (2, False), (3, False)]:
        x2 = x.clone()
        x2[j] = latents(1, seed=10 + j)[0]
        out = run(tiny, name, patched, x2, [0, 1, 2, 3])
        assert (not torch.equal(out[0], base[0])) == changes_view_0, j
    x2 = x.clone()
    x2[1] = latents(1, seed=11)[0]
    assert torch.equal(run(tiny, name, model, x2, [0, 1, 2, 3])[0], run(tiny, name, model, x, [0, 1, 2, 3])[0])


@pytest.mark.parametrize("name", FAMILIES)
def test_cond_and_uncond_chunks_never_mix(tiny, models, name):
    patched = patch(models[name], chain_projector())
    x = torch.cat([latents(N_VIEWS), latents(N_VIEWS, seed=3)])
    base = run(tiny, name, patched, x, [0, 1, 2, 3], chunks=(0, 1))
    x2 = x.clone()
    x2[N_VIEWS:] = latents(N_VIEWS, seed=4)
    out = run(tiny, name, patched, x2, [0, 1, 2, 3], chunks=(0, 1))
    assert torch.equal(out[:N_VIEWS], base[:N_VIEWS])
    assert not torch.equal(out[N_VIEWS:], base[N_VIEWS:])
    alone = run(tiny, name, patched, x[:N_VIEWS], [0, 1, 2, 3], chunks=(0,))
    torch.testing.assert_close(alone, base[:N_VIEWS], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_subsets_and_chunks_give_the_full_batch_result(tiny, models, name):
    model = models[name]
    patched = patch(model, tiny.PairedViewsProjector())
    x = latents(N_VIEWS)
    full = run(tiny, name, patched, x, [0, 1, 2, 3])
    first = run(tiny, name, patched, x[:2], [0, 1])
    second = run(tiny, name, patched, x[[3, 2]], [3, 2])
    torch.testing.assert_close(torch.cat([first, second[[1, 0]]]), full, rtol=1e-5, atol=1e-5)
    subset = run(tiny, name, patched, x[[0, 2]], [0, 2])    # StochSync-style group without neighbours
    assert torch.equal(subset, run(tiny, name, model, x[[0, 2]], [0, 2]))


def test_views_that_do_not_divide_by_the_token_size_name_the_family_and_the_fix(tiny, models):
    from sync_canvas.projectors import WidePanoramaProjector

    bad = WidePanoramaProjector(height=72, width=168, window=72, stride=32)
    with pytest.raises(ValueError, match=r"Flux needs views whose width and height divide by 16 .*72x72.*64 or 80"):
        patch(models["flux"], bad)
    from sync_canvas.nodes.sampler_nodes import SyncCanvasKSampler

    with pytest.raises(ValueError, match=r"SD3 needs views .* 16"):
        SyncCanvasKSampler.execute(models["sd3"], tiny.family_conditioning("sd3", 0), tiny.family_conditioning("sd3", 1),
                                   bad, seed=0, steps=1, cfg=1.0, mode="case_2", scheduler="normal", eta=0.0, denoise=1.0)


def test_a_model_it_cannot_patch_raises_naming_the_model(tiny):
    class Mystery(torch.nn.Module):
        pass

    class FakePatcher:
        model_options = {"transformer_options": {}}
        model = None

        def clone(self):
            return FakePatcher()

        def get_model_object(self, name):
            return Mystery()

    with pytest.raises(ValueError, match=r"cannot patch a .*Mystery.*SD1.5/SD2/SDXL UNets and Flux/SD3 DiTs"):
        patch(FakePatcher(), chain_projector())
    assert patch(FakePatcher(), chain_projector(), weight=0.0).model_options == {"transformer_options": {}}


@pytest.mark.parametrize("name", FAMILIES)
def test_through_the_sync_ksampler_cross_view_changes_a_panorama_and_one_view_stays_exact(tiny, models, name):
    from sync_canvas.nodes.sampler_nodes import SyncCanvasKSampler
    from sync_canvas.projectors import IdentityProjector

    model = models[name]
    pos, neg = tiny.family_conditioning(name, 0), tiny.family_conditioning(name, 1)
    settings = dict(seed=3, steps=2, cfg=2.0, mode="case_2", scheduler="normal", eta=0.0, denoise=1.0)

    def sample(m, projector):
        with torch.inference_mode():
            return SyncCanvasKSampler.execute(m, pos, neg, projector, **settings).args[0]["samples"]

    projector = chain_projector()
    assert not torch.allclose(sample(patch(model, projector), projector), sample(model, projector), atol=1e-4)
    one = IdentityProjector(64, 64)
    assert torch.equal(sample(patch(model, one), one), sample(model, one))


def test_another_nodes_block_replacement_keeps_running_inside_the_patch(tiny, models):
    model = models["flux"].clone()
    calls = []

    def other(args, extra):  # e.g. a caching or identity-adapter node that replaced the same block before us
        calls.append(1)
        return extra["original_block"](args)

    model.set_model_patch_replace(other, "dit", "double_block", 0)
    x = latents(N_VIEWS)
    patched = patch(model, tiny.PairedViewsProjector())
    base = run(tiny, "flux", patched, x, [0, 1, 2, 3])
    assert calls, "the earlier replacement was dropped"
    x2 = x.clone()
    x2[1] = latents(1, seed=11)[0]
    assert not torch.equal(run(tiny, "flux", patched, x2, [0, 1, 2, 3])[0], base[0])   # cross-view still on
