"""Projector, view, per-view prompt and save nodes called directly (no model). Skipped without COMFYUI_PATH."""

from __future__ import annotations

import os

import pytest
import torch

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.slow,  # imports ComfyUI (~10 s on a loaded 2-core machine)
    pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH not set: ComfyUI node tests skipped"),
]


@pytest.fixture(scope="module", autouse=True)
def comfy(tiny):
    return tiny


def wide(width=128, height=64, window=64, stride=32, wrap=False):
    from sync_canvas.nodes.projector_nodes import SyncCanvasWidePanorama

    return SyncCanvasWidePanorama.execute(width=width, height=height, window=window, stride=stride, wrap=wrap).args[0]


def test_render_then_fuse_views_gives_back_the_canvas():
    from sync_canvas.nodes.view_nodes import SyncCanvasFuseViews, SyncCanvasRenderViews

    torch.manual_seed(0)
    image = torch.rand(1, 64, 128, 3)
    projector = wide()
    views = SyncCanvasRenderViews.execute(projector, image, "nearest").args[0]
    assert views.shape == (3, 64, 64, 3)
    torch.testing.assert_close(views[1], image[0, :, 32:96])
    canvas = SyncCanvasFuseViews.execute(projector, views, True).args[0]
    torch.testing.assert_close(canvas, image)
    with pytest.raises(ValueError, match="2 view images but the projector has 3 views"):
        SyncCanvasFuseViews.execute(projector, views[:2], True)
    with pytest.raises(ValueError, match="128x32"):
        SyncCanvasRenderViews.execute(projector, image[:, :32], "nearest")


def test_empty_and_projected_latents_have_the_latent_projector_shapes():
    from sync_canvas.nodes.view_nodes import SyncCanvasEmptyLatent, SyncCanvasProjectLatent

    projector = wide()
    latent = SyncCanvasEmptyLatent.execute(projector, 4).args[0]
    assert latent["samples"].shape == (1, 4, 8, 16)
    latent["samples"] = torch.arange(8 * 16.0).reshape(1, 1, 8, 16).expand(1, 4, 8, 16)
    views = SyncCanvasProjectLatent.execute(projector, latent).args[0]["samples"]
    assert views.shape == (3, 4, 8, 8)
    torch.testing.assert_close(views[2], latent["samples"][0, :, :, 8:])


def test_view_masks_cover_each_view_and_the_canvas():
    from sync_canvas.nodes.view_nodes import SyncCanvasViewMasks

    masks, coverage = SyncCanvasViewMasks.execute(wide()).args
    assert masks.shape == (3, 64, 64) and bool((masks == 1).all())
    assert coverage.shape == (1, 64, 128) and bool((coverage == 1).all())


def test_depth_views_need_a_360_projector_and_a_2_to_1_map():
    from sync_canvas.nodes.projector_nodes import SyncCanvas360Panorama
    from sync_canvas.nodes.view_nodes import SyncCanvasRenderDepth

    with pytest.raises(ValueError, match="360 panorama.*'wide panorama'"):
        SyncCanvasRenderDepth.execute(wide(), torch.zeros(1, 64, 128, 3), "near_bright")
    projector = SyncCanvas360Panorama.execute("synctweedies", 64, 72.0, 0.0, False, 256, "nearest").args[0]
    assert projector.canonical_shape == (128, 256) and projector.n_views == 8
    # a constant near-bright map stays constant; a half-size map is resized to the canvas
    hints = SyncCanvasRenderDepth.execute(projector, torch.full((1, 64, 128, 3), 0.25), "near_bright").args[0]
    assert hints.shape == (8, 64, 64, 3) and torch.allclose(hints, torch.tensor(0.25))
    # constant distance along the rays (a sphere): z-depth r*cos is largest on the optical axis, so after
    # inversion (near = bright) the view centre is black and the corners are brighter
    hints = SyncCanvasRenderDepth.execute(projector, torch.ones(1, 128, 256, 3), "distance").args[0]
    assert float(hints[0, 31:33, 31:33, 0].max()) < 0.01 < float(hints[0, 0, 0, 0])
    with pytest.raises(ValueError, match="aspect ratio"):
        SyncCanvasRenderDepth.execute(projector, torch.zeros(1, 64, 64, 3), "near_bright")


def test_360_width_must_split_into_latent_texels():
    from sync_canvas.nodes.projector_nodes import SyncCanvas360Panorama

    with pytest.raises(ValueError, match="width=200 must be a multiple of 16"):
        SyncCanvas360Panorama.execute("synctweedies", 64, 72.0, 0.0, False, 200, "nearest")


def test_per_view_conditioning_stacks_prompts_in_view_order():
    from sync_canvas.nodes.conditioning_nodes import SyncCanvasPerViewConditioning
    from sync_canvas.nodes.projector_nodes import SyncCanvasAnagram
    from sync_canvas.nodes.sync_sampling import PER_VIEW_KEY

    projector = SyncCanvasAnagram.execute(64, "identity, rotate_cw, flip_h").args[0]
    a = [[torch.full((1, 77, 8), 1.0), {"pooled_output": torch.full((1, 4), 1.0)}]]
    b = [[torch.full((1, 154, 8), 2.0), {"pooled_output": torch.full((1, 4), 2.0)}]]
    cond = SyncCanvasPerViewConditioning.execute(projector, "", a, prompt_3=b).args[0]
    assert len(cond) == 1 and cond[0][1][PER_VIEW_KEY] == 3
    assert cond[0][0].shape == (3, 154, 8)  # lengths matched by repetition
    assert cond[0][0][:, 0, 0].tolist() == [1.0, 2.0, 1.0]  # empty assignment cycles prompts 0, 3
    assert cond[0][1]["pooled_output"][:, 0].tolist() == [1.0, 2.0, 1.0]
    cond = SyncCanvasPerViewConditioning.execute(projector, "3, 3, 0", a, prompt_3=b).args[0]
    assert cond[0][0][:, 0, 0].tolist() == [2.0, 2.0, 1.0]
    with pytest.raises(ValueError, match="names 2 views but the projector has 3"):
        SyncCanvasPerViewConditioning.execute(projector, "0,3", a, prompt_3=b)
    with pytest.raises(ValueError, match=r"prompt numbers \[1\]"):
        SyncCanvasPerViewConditioning.execute(projector, "0,1,0", a, prompt_3=b)


def test_save_refuses_prefixes_leaving_the_output_folder_and_tags_360_panoramas(tmp_path):
    import folder_paths
    from PIL import Image

    from sync_canvas.nodes.save_nodes import SyncCanvasSaveImage

    previous = folder_paths.get_output_directory()
    folder_paths.set_output_directory(str(tmp_path))
    try:
        for prefix in ("../escape", "a/../../escape", "/tmp/escape", "C:\\escape", ""):
            with pytest.raises(ValueError, match="filename_prefix"):
                SyncCanvasSaveImage.execute(torch.zeros(1, 8, 16, 3), prefix, "flat")
        out = SyncCanvasSaveImage.execute(torch.full((1, 8, 16, 3), 0.5), "pano/room", "equirectangular")
        saved = out.ui.as_dict()["images"][0]
    finally:
        folder_paths.set_output_directory(previous)
    assert saved["subfolder"] == "pano" and list(tmp_path.iterdir()) == [tmp_path / "pano"]
    image = Image.open(tmp_path / "pano" / saved["filename"])
    assert image.size == (16, 8)
    assert "equirectangular" in image.info["XML:com.adobe.xmp"]
