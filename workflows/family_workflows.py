#!/usr/bin/env python
"""Workflows for model families beyond SD1.5, written by ``build_workflows.py`` like every other family:

- SDXL mesh texturing with an SDXL depth ControlNet (SyncTweedies case 2 + cross-view attention),
- SDXL 360 panorama without depth (StochSync),
- Flux wide panorama (SyncTweedies case 2 + cross-view attention on Flux's joint blocks),
- Flux 360 panorama without depth (StochSync, with ModelSamplingFlux's resolution shift).

Each uses its family's loaders: SDXL one checkpoint (CheckpointLoaderSimple); Flux the diffusion model,
its two text encoders and its VAE apart (UNETLoader + DualCLIPLoader + VAELoader), FluxGuidance on the
prompt and CFG 1 with a zeroed negative, as Flux dev is run. Views are the families' native 1024^2
(Flux: every view side divides by 16 = VAE 8 x patch 2). The integration tests run every one of them
through a real ComfyUI with tiny in-memory models of the family standing in for the loaders
(tests/integration/family_stand_ins/).
"""

from __future__ import annotations

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import build_workflows as bw  # noqa: E402
from build_workflows import Node, link  # noqa: E402

SDXL_CHECKPOINT = "sd_xl_base_1.0.safetensors"
SDXL_DEPTH_CONTROLNET = "controlnet-depth-sdxl-1.0.safetensors"
FLUX_UNET = "flux1-dev.safetensors"
FLUX_CLIP_L = "clip_l.safetensors"
FLUX_T5 = "t5xxl_fp16.safetensors"
FLUX_VAE = "ae.safetensors"
MESH_FILE = "mesh_demo_torus.glb"

FAMILY_OF = {}  # workflow id -> model family (the integration tests pick the stand-in models by it)


def _sdxl_loaders(prompt: str) -> list[Node]:
    return [
        Node(1, "CheckpointLoaderSimple", {"ckpt_name": SDXL_CHECKPOINT}, "SDXL checkpoint"),
        Node(2, "CLIPTextEncode", {"text": prompt, "clip": link(1, 1)}, "Positive prompt"),
        Node(3, "CLIPTextEncode", {"text": bw.NEGATIVE, "clip": link(1, 1)}, "Negative prompt"),
    ]


def _flux_loaders(prompt: str, guidance: float = 3.5) -> list[Node]:
    """Nodes 1 (MODEL), 21 (CLIP), 22 (VAE), 2 (positive with guidance), 3 (zeroed negative)."""
    return [
        Node(1, "UNETLoader", {"unet_name": FLUX_UNET, "weight_dtype": "default"}, "Flux diffusion model"),
        Node(21, "DualCLIPLoader", {"clip_name1": FLUX_CLIP_L, "clip_name2": FLUX_T5, "type": "flux", "device": "default"},
             "Flux text encoders (CLIP-L + T5-XXL)"),
        Node(22, "VAELoader", {"vae_name": FLUX_VAE}, "Flux VAE"),
        Node(23, "CLIPTextEncode", {"text": prompt, "clip": link(21)}, "Prompt"),
        Node(2, "FluxGuidance", {"conditioning": link(23), "guidance": guidance}, "Positive (Flux guidance)"),
        Node(3, "ConditioningZeroOut", {"conditioning": link(23)}, "Negative (zeroed; CFG 1)"),
    ]


def sdxl_mesh_texturing_depth() -> list[Node]:
    prompt = "a glazed ceramic donut with colourful sprinkles, studio photo"
    return _sdxl_loaders(prompt) + [
        Node(4, "SyncCanvasLoadMesh", {"mesh": MESH_FILE, "unwrap": "auto"}),
        Node(5, "SyncCanvasCameraRig", {"sync_mesh": link(4), "rig": "paper", "views": "0:0, 90:0, 180:0, 270:0",
                                        "fov": 60.0, "distance": 0.0, "groups": 2}),
        Node(6, "SyncCanvasMeshProjector", {"sync_mesh": link(4), "cameras": link(5), "view_size": 1024, "texture_size": 1024,
                                            "latent_texture_ratio": 1.5, "cos_exponent": 3.0, "sampling": "nearest", "backend": "auto"}),
        Node(7, "SyncCanvasMeshConditioning", {"projector": link(6)}),
        Node(8, "ControlNetLoader", {"control_net_name": SDXL_DEPTH_CONTROLNET}, "SDXL depth ControlNet"),
        Node(9, "ControlNetApplyAdvanced", {"positive": link(2), "negative": link(3), "control_net": link(8),
                                            "image": link(7, 0), "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}),
        Node(16, "SyncCanvasCrossViewAttention", {"model": link(1), "projector": link(6), "neighbours": "overlap",
                                                  "max_neighbours": 2, "weight": 1.0, "reference_view": 0, "reference_end": 0.2},
             "Cross-view attention (SyncMVD)"),
        bw._sampler(10, link(9, 0), link(9, 1), link(6), steps=30, cfg=7.5, mode="case_2", model=link(16)),
        Node(11, "SyncCanvasSaveTexturedMesh", {"projector": link(6), "texture": link(10, 1),
                                                "filename_prefix": "SyncCanvas/sdxl_mesh_texturing_depth", "format": "glb+obj"}),
        Node(12, "SaveImage", {"images": link(10, 1), "filename_prefix": "SyncCanvas/sdxl_mesh_texturing_depth_texture"}),
        Node(15, "SaveImage", {"images": link(10, 2), "filename_prefix": "SyncCanvas/sdxl_mesh_texturing_depth_views"}),
        Node(17, "Preview3D", {"model_file": link(11, 1)}, "3D preview (core Preview 3D)"),
    ]


def _panorama360_stochsync(loaders: list[Node], model, vae, prefix: str, cfg: float, view_size: int, extra=(),
                           scheduler: str = "ddim_uniform") -> list[Node]:
    return loaders + list(extra) + [
        Node(4, "SyncCanvas360Panorama", {"rig": "stochsync", "view_size": view_size, "fov": 72.0, "pitch": 0.0,
                                          "pole_views": False, "width": 2 * view_size, "interpolation": "nearest"}),
        bw._sampler(5, link(2), link(3), link(4), steps=25, cfg=cfg, mode="stochsync", eta=1.0, model=model, vae=vae,
                    scheduler=scheduler),
        Node(6, "SyncCanvasSaveImage", {"images": link(5, 1), "filename_prefix": f"SyncCanvas/{prefix}", "projection": "equirectangular"}),
        Node(7, "SaveImage", {"images": link(5, 2), "filename_prefix": f"SyncCanvas/{prefix}_views"}),
        bw.viewer_360(9, link(5, 1)),
    ]


def sdxl_panorama360_stochsync() -> list[Node]:
    loaders = _sdxl_loaders("a cozy living room with a fireplace, bookshelves and large windows, 360 view")
    return _panorama360_stochsync(loaders, link(1), link(1, 2), "sdxl_panorama360_stochsync", 7.5, 1024)


def flux_wide_panorama() -> list[Node]:
    loaders = _flux_loaders("a photo of a mountain range at sunrise, lake in the foreground, highly detailed")
    return loaders + [
        Node(4, "SyncCanvasWidePanorama", {"width": 4096, "height": 1024, "window": 1024, "stride": 128, "wrap": False}),
        Node(8, "SyncCanvasCrossViewAttention", {"model": link(1), "projector": link(4), "neighbours": "overlap",
                                                 "max_neighbours": 2, "weight": 1.0, "reference_view": -1},
             "Cross-view attention (Flux joint blocks)"),
        bw._sampler(5, link(2), link(3), link(4), steps=28, cfg=1.0, mode="case_2", model=link(8), vae=link(22),
                    scheduler="simple"),
        Node(6, "SyncCanvasSaveImage", {"images": link(5, 1), "filename_prefix": "SyncCanvas/flux_wide_panorama", "projection": "flat"}),
        Node(7, "SaveImage", {"images": link(5, 2), "filename_prefix": "SyncCanvas/flux_wide_panorama_views"}),
    ]


def flux_panorama360_stochsync() -> list[Node]:
    loaders = _flux_loaders("a cozy living room with a fireplace, bookshelves and large windows, 360 view")
    # ModelSamplingFlux shifts the schedule for the view resolution; StochSync's schedule follows it.
    shift = Node(24, "ModelSamplingFlux", {"model": link(1), "max_shift": 1.15, "base_shift": 0.5, "width": 1024, "height": 1024},
                 "Flux resolution shift")
    return _panorama360_stochsync(loaders, link(24), link(22), "flux_panorama360_stochsync", 1.0, 1024, extra=[shift],
                                  scheduler="simple")


WORKFLOWS = {
    "sdxl_mesh_texturing_depth": sdxl_mesh_texturing_depth,
    "sdxl_panorama360_stochsync": sdxl_panorama360_stochsync,
    "flux_wide_panorama": flux_wide_panorama,
    "flux_panorama360_stochsync": flux_panorama360_stochsync,
}
FAMILY_OF.update({name: name.split("_")[0] for name in WORKFLOWS})
INPUT_FILES: dict = {}
TITLES = {
    "sdxl_mesh_texturing_depth": "SDXL mesh texturing (SyncTweedies, depth ControlNet)",
    "sdxl_panorama360_stochsync": "SDXL 360 panorama without depth (StochSync)",
    "flux_wide_panorama": "Flux wide panorama (SyncTweedies)",
    "flux_panorama360_stochsync": "Flux 360 panorama without depth (StochSync)",
}
THUMBNAILS = {"sdxl_mesh_texturing_depth": "mesh_texturing", "sdxl_panorama360_stochsync": "panorama360",
              "flux_wide_panorama": "wide_panorama", "flux_panorama360_stochsync": "panorama360"}
