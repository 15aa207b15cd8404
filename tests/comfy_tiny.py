"""File-less tiny ComfyUI models for node tests (notes/comfyui-integration.md section 3).

Loaded by the ``test_nodes_*`` files with ``load_comfy_tiny()``; needs ``COMFYUI_PATH``. Builds, in memory:
a tiny SD1.5-config UNet (model_channels 32) as a ModelPatcher, a matching tiny ControlNet, a random TAESD
VAE and fake CLIP conditionings. Weights are random; outputs are noise, but every tensor goes through
ComfyUI's real CFGGuider, ControlNet and VAE code.
"""

from __future__ import annotations

import os
import sys

import torch

TINY_UNET = dict(
    image_size=32, in_channels=4, out_channels=4, model_channels=32, num_res_blocks=[1], channel_mult=[1],
    transformer_depth=[1], transformer_depth_output=[0, 0], transformer_depth_middle=-1, context_dim=768,
    num_heads=2, num_head_channels=-1, use_linear_in_transformer=False, use_spatial_transformer=True,
    legacy=False, adm_in_channels=None, use_temporal_resblock=False, use_temporal_attention=False,
    use_checkpoint=False,
)


def import_comfy():
    """Puts COMFYUI_PATH on sys.path, forces the CPU and imports ComfyUI's ``nodes``; returns the path."""
    path = os.environ["COMFYUI_PATH"]
    if path not in sys.path:
        sys.path.insert(0, path)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401
    import nodes  # noqa: F401  (registers ComfyUI's own nodes and latent formats)

    return path


def _fill(module: torch.nn.Module, std: float = 0.02, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("bias"):
                param.zero_()
            elif param.ndim <= 1 and "norm" in name:
                param.fill_(1.0)
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * std)


def tiny_model():
    """A ModelPatcher around a tiny SD1.5-configured UNet (EPS, SD1.5 latent format), on the CPU."""
    import comfy.model_patcher
    import comfy.supported_models

    config = comfy.supported_models.SD15(dict(TINY_UNET))
    config.set_inference_dtype(torch.float32, None)
    base = config.get_model({})
    _fill(base.diffusion_model, std=0.05)
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def tiny_controlnet():
    """A ``comfy.controlnet.ControlNet`` around a tiny ldm ControlNet matching ``tiny_model``."""
    import comfy.cldm.cldm
    import comfy.controlnet
    import comfy.latent_formats
    import comfy.ops

    config = {k: v for k, v in TINY_UNET.items() if k not in ("out_channels", "transformer_depth_output")}
    net = comfy.cldm.cldm.ControlNet(hint_channels=3, operations=comfy.ops.disable_weight_init, device="cpu", dtype=torch.float32, **config)
    _fill(net, std=0.05, seed=1)
    return comfy.controlnet.ControlNet(net, load_device=torch.device("cpu"), manual_cast_dtype=None)


def tiny_vae():
    """``comfy.sd.VAE`` around a random TAESD (8x down/up, 4 channels)."""
    import comfy.sd
    import comfy.taesd.taesd

    taesd = comfy.taesd.taesd.TAESD(latent_channels=4)
    _fill(taesd, std=0.05, seed=2)
    state = {k: v for k, v in taesd.state_dict().items()}
    state["vae_scale"] = torch.tensor(1.0)
    state["vae_shift"] = torch.tensor(0.0)
    return comfy.sd.VAE(sd=state)


def conditioning(seed: int, batch: int = 1):
    """A CLIP-like CONDITIONING: ``[[randn(batch, 77, 768), {}]]``."""
    generator = torch.Generator().manual_seed(seed)
    return [[torch.randn(batch, 77, 768, generator=generator), {}]]
