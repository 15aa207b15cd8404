"""The demo model: landscapes, the narrow UNet and its exact padding to SD1.5, the written-down VAE and CLIP,
and the shipped weights as ComfyUI's stock loader loads them."""

from __future__ import annotations

import importlib.util
import os
import pathlib

import pytest
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]


def _load(name, rel):
    spec = importlib.util.spec_from_file_location(name, REPO / rel)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dm = _load("sync_canvas_demo_model_t", "scripts/demo_model.py")
landscapes = _load("sync_canvas_landscapes_t", "assets/landscapes.py")


def test_scenes_are_seeded_in_range_and_classes_differ():
    classes = torch.arange(5).repeat(4)
    a = landscapes.render(classes, 64, 128, torch.Generator().manual_seed(3))
    b = landscapes.render(classes, 64, 128, torch.Generator().manual_seed(3))
    c = landscapes.render(classes, 64, 128, torch.Generator().manual_seed(4))
    assert a.shape == (20, 3, 64, 128) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    means = a.view(4, 5, 3, -1).mean((0, 3))  # (class, rgb)
    night, desert, ocean, forest = (landscapes.CLASSES.index(n) for n in ("night", "desert", "ocean", "forest"))
    assert means[night].sum() == means.sum(1).min()  # night is the darkest class
    assert means[desert, 0] > means[desert, 2] and means[ocean, 2] > means[ocean, 0] and means[forest, 1] > means[forest, 0]
    # a wide image is sea below its horizon all along: the scene has no preferred column
    ocean_img = landscapes.render(torch.tensor([ocean]), 64, 256, torch.Generator().manual_seed(0))[0]
    rows_blue_below = (ocean_img[2] > ocean_img[0]).float().mean(1)
    assert rows_blue_below[-5:].min() > 0.9  # sea in (nearly) every column; the sun's glitter is the rest


def test_class_of_prompt():
    assert landscapes.class_of_prompt("A wide panorama of snowy Alps, 8k") == landscapes.CLASSES.index("mountains")
    assert landscapes.class_of_prompt("sahara dunes") == landscapes.CLASSES.index("desert")
    assert landscapes.class_of_prompt("blurry, low quality") is None


def test_latent_map_round_trips_block_colours():
    blocks = torch.rand(2, 3, 4, 5)
    assert torch.allclose(dm.latent_to_block_colours(dm.block_colours_to_latent(blocks)), blocks, atol=1e-5)
    rgb = torch.rand(1, 3, 16, 24)
    assert torch.allclose(dm.rgb_to_latent(rgb), dm.block_colours_to_latent(torch.nn.functional.avg_pool2d(rgb, 8)))


def test_narrow_width_must_pad_exactly():
    with pytest.raises(ValueError, match="multiple of 40"):
        dm.NarrowUNet(60)
    padded = dm.NarrowUNet(40).padded_state_dict()
    assert padded["input_blocks.0.0.weight"].shape == (320, 4, 3, 3)
    assert padded["time_embed.0.weight"].shape == (1280, 320)
    assert padded["output_blocks.0.0.in_layers.2.weight"].shape == (320, 640, 3, 3)
    assert padded["input_blocks.3.1.transformer_blocks.0.ff.net.0.proj.weight"].shape == (2560, 320)
    assert padded["input_blocks.3.1.transformer_blocks.0.attn2.to_k.weight"].shape == (320, 768)


# --------------------------------------------------------------------------------------- through ComfyUI
@pytest.fixture(scope="module")
def comfy():
    if not os.environ.get("COMFYUI_PATH"):
        pytest.skip("COMFYUI_PATH not set: ComfyUI tests skipped")
    import sys

    sys.path.insert(0, os.environ["COMFYUI_PATH"])
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_detection
    import comfy.sd

    return comfy


def test_padded_unet_computes_what_the_narrow_one_does_in_comfyui(comfy):
    torch.manual_seed(0)
    net = dm.NarrowUNet(dm.WIDTH)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))  # norms away from 1/0 so a wrong pad would show
    state = net.padded_state_dict()
    config = comfy.model_detection.model_config_from_unet(state, "")
    assert type(config).__name__ == "SD15"
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model(state, "")
    missing, unexpected = model.diffusion_model.load_state_dict(state, strict=False)
    assert not missing and not unexpected
    x, t, ctx = torch.randn(2, 4, 32, 48), torch.tensor([10.0, 700.0]), torch.randn(2, 77, 768)
    with torch.no_grad():
        ours, theirs = net(x, t, ctx), model.diffusion_model(x, t, context=ctx)
    assert ours.abs().mean() > 0.1
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
