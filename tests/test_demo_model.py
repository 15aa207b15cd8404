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


@pytest.fixture(scope="module")
def shipped_checkpoint(comfy, tmp_path_factory):
    mt = _load("sync_canvas_make_tiny_t", "scripts/make_tiny_models.py")
    assert mt.DEMO_UNET_FILE.is_file(), f"the shipped demo weights are missing: {mt.DEMO_UNET_FILE}"
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("demo_models") / mt.DEMO_CHECKPOINT_NAME
    save_file(mt.build_demo_checkpoint(), str(path))
    # what CheckpointLoaderSimple calls with the file it found
    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=True, output_clip=True)
    return mt, model, clip, vae


def test_shipped_weights_are_what_the_checkpoint_loader_loads(shipped_checkpoint):
    from safetensors.torch import load_file

    mt, model, clip, vae = shipped_checkpoint
    assert mt.DEMO_UNET_FILE.stat().st_size < 20 * 2**20
    assert type(model.model.model_config).__name__ == "SD15"
    net = dm.NarrowUNet(dm.WIDTH)
    net.load_state_dict({k: v.float() for k, v in load_file(str(mt.DEMO_UNET_FILE)).items()})
    expected = net.padded_state_dict()
    loaded = model.model.diffusion_model.state_dict()
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        assert torch.equal(loaded[key].float(), value.half().float()), key


def test_written_down_vae_and_clip_through_the_loader(shipped_checkpoint):
    _, _, clip, vae = shipped_checkpoint
    img = landscapes.render(torch.arange(5), 64, 128, torch.Generator().manual_seed(1))
    latent = vae.encode(img.permute(0, 2, 3, 1))
    assert torch.allclose(latent.float(), dm.rgb_to_latent(img), atol=0.05)  # fp16 weights, latents up to ~20
    decoded = vae.decode(dm.rgb_to_latent(img)).float()  # (B, H, W, 3)
    blocks = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(img, 8), scale_factor=8.0).permute(0, 2, 3, 1)
    assert (decoded - blocks).abs().max() < 2e-3
    tokens = clip.tokenize("a desert at night, wide panorama")
    ids = torch.tensor([[t[0] for t in tokens["l"][0]]])
    assert torch.allclose(clip.encode_from_tokens(tokens).float(), dm.encode_token_ids(ids, dm.clip_token_embeddings()), atol=1e-4)
