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
    vp_init(base.diffusion_model)  # variance-preserving: a run moves the sample ~50%, not ~2% (issue 11)
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


def tiny_vae(latent_channels: int = 4):
    """``comfy.sd.VAE`` around a random TAESD (8x down/up, 4 channels; 16 for SD3/Flux)."""
    import comfy.sd
    import comfy.taesd.taesd

    taesd = comfy.taesd.taesd.TAESD(latent_channels=latent_channels)
    _fill(taesd, std=0.05, seed=2)
    state = {k: v for k, v in taesd.state_dict().items()}
    state["vae_scale"] = torch.tensor(1.0)
    state["vae_shift"] = torch.tensor(0.0)
    return comfy.sd.VAE(sd=state)


def conditioning(seed: int, batch: int = 1):
    """A CLIP-like CONDITIONING: ``[[randn(batch, 77, 768), {}]]``."""
    generator = torch.Generator().manual_seed(seed)
    return [[torch.randn(batch, 77, 768, generator=generator), {}]]


# --- one tiny model per family, initialised variance-preserving -------------------------------------------
# ComfyUI's own family classes (supported_models.*) pick the latent format, model sampling, prediction
# type and extra conds (SDXL's ADM vector, SD3's pooled vector, Flux's guidance), so every family runs
# its real code path; only the widths are tiny. Detection from a *file* pins sizes (SDXL's transformer
# depths, Flux's hidden size 3072) that are far too big for CPU tests, so these are built in memory.
FAMILIES = ("sd15", "sdxl", "sd2_v", "sd3", "flux")

_UNET_FAMILY = {
    "sd15": dict(TINY_UNET),
    "sdxl": dict(TINY_UNET, context_dim=2048, adm_in_channels=2816, num_classes="sequential", use_linear_in_transformer=True),
    "sd2_v": dict(TINY_UNET, context_dim=1024, use_linear_in_transformer=True),
}
_SD3 = dict(in_channels=16, out_channels=16, patch_size=2, depth=1, input_size=None, adm_in_channels=2048,
            context_embedder_config={"target": "torch.nn.Linear", "params": {"in_features": 4096, "out_features": 64}},
            num_patches=256, pos_embed_max_size=16, pos_embed_scaling_factor=None, x_block_self_attn_layers=[])
_FLUX = dict(image_model="flux", in_channels=16, out_channels=16, patch_size=2, vec_in_dim=768, context_in_dim=4096,
             hidden_size=64, mlp_ratio=4.0, num_heads=2, depth=1, depth_single_blocks=1, axes_dim=[8, 12, 12],
             theta=10000, qkv_bias=True, guidance_embed=True)


def _flux_config() -> dict:
    """_FLUX, plus what newer ComfyUI versions' FluxParams require (0.33.0: ``txt_ids_dims``, [] for Flux.1 as
    its model detection sets it); 0.3.64's FluxParams has no such field."""
    import dataclasses

    from comfy.ldm.flux.model import FluxParams

    config = dict(_FLUX)
    if "txt_ids_dims" in {f.name for f in dataclasses.fields(FluxParams)}:
        config["txt_ids_dims"] = []
    return config


# text tokens per family: (tokens, width of a token, width of the pooled vector or None)
FAMILY_TEXT = {"sd15": (77, 768, None), "sdxl": (77, 2048, 1280), "sd2_v": (77, 1024, None),
               "sd3": (16, 4096, 2048), "flux": (16, 4096, 768)}
FAMILY_LATENT_CHANNELS = {"sd15": 4, "sdxl": 4, "sd2_v": 4, "sd3": 16, "flux": 16}


def vp_init(module: torch.nn.Module, seed: int = 0) -> None:
    """Variance-preserving random weights: N(0, 1/fan_in) for matrices and kernels, zero biases, unit norms.

    Small constant-std weights (``_fill``) make a model that predicts almost nothing, so samples barely
    move and a sampler bug that shows only through the prediction passes; this keeps activations O(1).
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.numel() == 0:
                continue
            if param.ndim >= 2:
                fan_in = max(1, param[0].numel())
                param.copy_(torch.randn(param.shape, generator=generator) / fan_in**0.5)
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.fill_(1.0)


def family_model(family: str, seed: int = 0):
    """A ModelPatcher around a tiny model of ``family`` (one of FAMILIES), on the CPU, in float32."""
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models as sm

    if family in ("sd15", "sdxl", "sd2_v"):
        config_class = {"sd15": sm.SD15, "sdxl": sm.SDXL, "sd2_v": sm.SD20}[family]
        config = config_class(dict(_UNET_FAMILY[family]))
        if family != "sd15":  # the family's 64-channel heads would leave 0 heads at 32 channels
            config.unet_config.update(num_heads=-1, num_head_channels=16)
    elif family == "sd3":
        config = sm.SD3(dict(_SD3))
    elif family == "flux":
        config = sm.Flux(_flux_config())
    else:
        raise ValueError(f"unknown family {family!r}; one of {FAMILIES}")
    config.set_inference_dtype(torch.float32, None)
    if family == "sd2_v":  # SD2.x 768-v: the file detection reads v from the weights; say it directly
        base = comfy.model_base.BaseModel(config, model_type=comfy.model_base.ModelType.V_PREDICTION)
    else:
        base = config.get_model({})
    vp_init(base.diffusion_model, seed)
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def family_conditioning(family: str, seed: int, batch: int = 1):
    """A CONDITIONING of the family's text-encoder shapes (random tensors; the encoders are too big to build)."""
    tokens, width, pooled = FAMILY_TEXT[family]
    generator = torch.Generator().manual_seed(seed)
    extra = {} if pooled is None else {"pooled_output": torch.randn(batch, pooled, generator=generator)}
    if family == "flux":
        extra["guidance"] = 3.5
    return [[torch.randn(batch, tokens, width, generator=generator), extra]]


def family_controlnet(family: str):
    """A ``comfy.controlnet.ControlNet`` matching ``family_model(family)`` (UNet families only)."""
    import comfy.cldm.cldm
    import comfy.controlnet
    import comfy.ops

    if family not in _UNET_FAMILY:
        raise ValueError(f"no tiny ControlNet for {family!r}; UNet families: {sorted(_UNET_FAMILY)}")
    config = {k: v for k, v in _UNET_FAMILY[family].items() if k not in ("out_channels", "transformer_depth_output")}
    if family != "sd15":
        config.update(num_heads=-1, num_head_channels=16)
    net = comfy.cldm.cldm.ControlNet(hint_channels=3, operations=comfy.ops.disable_weight_init, device="cpu",
                                     dtype=torch.float32, **config)
    vp_init(net, seed=1)
    return comfy.controlnet.ControlNet(net, load_device=torch.device("cpu"), manual_cast_dtype=None)


class FamilyTextEncoder:
    """Stands in for a family's CLIP/T5 in CLIPTextEncode: a prompt becomes random conditioning of the
    family's shapes, seeded by the prompt (the same text gives the same tensors)."""

    def __init__(self, family: str):
        self.family = family

    def tokenize(self, text: str, **kwargs):
        return text

    def encode_from_tokens_scheduled(self, tokens, **kwargs):
        import zlib

        return family_conditioning(self.family, zlib.crc32(str(tokens).encode()) % (2**31))


class PairedViewsProjector:
    """A stand-in projector of 4 views overlapping in two pairs, {0,1} and {2,3}: view i reads canonical
    texels ``reads[i]`` of 6. Cross-view attention reads only ``coverage`` and ``view_hw`` of a projector."""

    n_views = 4
    view_hw = (64, 64)
    reads = [[0, 1], [1, 2], [3, 4], [4, 5]]

    def coverage(self, views):
        mask = torch.zeros(6, dtype=torch.bool)
        mask[self.reads[views[0]]] = True
        return mask
