#!/usr/bin/env python
"""Writes the Gaussian-splat example workflow (UI X.json + API X_api.json, via build_workflows.py's
machinery) and the small procedural scene it loads (``inputs/splat_snowman.ply``; copy it into ComfyUI's
``input`` folder).

    COMFYUI_PATH=/path/to/ComfyUI python workflows/build_workflows.py [--check]   (writes every family)

splat_recolour: SyncTweedies Sec. 5.3 - keep a 3DGS scene's geometry and generate new colours from a
prompt: 50 views on an orbit (paper), 512 px views (64x64 latents), depth ControlNet on the splat's
depth renders, Case 2, 30 DDIM steps, CFG 7.5. The synchronized canvas latent is rendered into latent
views, decoded, and the splat colours are fitted to the decoded views in RGB (paper A1.4: the fit is
done in RGB, every step, through the VAE: rgb_every_step) and saved as a new .ply next to a turntable.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import build_workflows as bw  # noqa: E402
from build_workflows import Node, link  # noqa: E402

SCENE = "splat_snowman.ply"
SCENE_SPLATS = 6000


def splat_recolour() -> list[Node]:
    return bw._loaders("a snowman carved from white marble with a red scarf, studio lighting, highly detailed") + [
        Node(4, "SyncCanvasLoadSplat", {"splat_file": SCENE}),
        Node(5, "SyncCanvasSplatOrbit", {"splat": link(4), "views": 50, "view_size": 512, "fov": 50.0, "up": "z",
                                         "elevation_min": -10.0, "elevation_max": 50.0, "margin": 1.1}),
        Node(6, "SyncCanvasSplatProjector", {"splat": link(4), "cameras": link(5)}),
        Node(7, "SyncCanvasSplatDepth", {"projector": link(6)}),
        Node(8, "ControlNetLoader", {"control_net_name": bw.DEPTH_CONTROLNET}),
        Node(9, "ControlNetApplyAdvanced", {"positive": link(2), "negative": link(3), "control_net": link(8),
                                            "image": link(7), "strength": 0.8, "start_percent": 0.0, "end_percent": 1.0}),
        bw._sampler(10, link(9, 0), link(9, 1), link(6), steps=30, cfg=7.5, mode="case_2", max_views_per_batch=10,
                    rgb_every_step=True),
        Node(18, "SyncCanvasSaveSplat", {"projector": link(6), "splat": link(4), "views": link(10, 2),
                                         "filename_prefix": "SyncCanvas/splat_recolour", "keep_higher_sh": False}),
        Node(19, "SaveImage", {"images": link(18), "filename_prefix": "SyncCanvas/splat_recolour_views"}),
        Node(20, "SyncCanvasSplatTurntable", {"projector": link(6), "splat": link(4), "views": link(10, 2), "frames": 24,
                                              "size": 512, "elevation": 15.0, "background": 1.0}),
        Node(21, "SaveImage", {"images": link(20), "filename_prefix": "SyncCanvas/splat_recolour_turntable"}),
        # ComfyUI's own 3D viewer on the .ply just saved: drawn as Gaussian splats where the editor can (0.33.0),
        # as its points on older editors (0.3.64).
        Node(22, "Preview3D", {"model_file": link(18, 1)}, "3D preview (core Preview 3D)"),
    ]


WORKFLOWS = {"splat_recolour": splat_recolour}


def scene_ply() -> bytes:
    """The procedural two-sphere scene, z up, as 3DGS PLY bytes (deterministic)."""
    import torch

    from pack_import import import_pack  # scripts/, on the path via build_workflows

    import_pack()
    from sync_canvas.assets.splat_ply import write_splat_ply
    from sync_canvas.assets.splat_procedural import procedural_splat_scene

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        return write_splat_ply(procedural_splat_scene(SCENE_SPLATS, seed=0), pathlib.Path(tmp) / SCENE).read_bytes()


INPUT_FILES = {SCENE: scene_ply}

TITLES = {"splat_recolour": "Gaussian splat recolouring (SyncTweedies, depth ControlNet)"}
THUMBNAILS = {"splat_recolour": "splat_recolour"}
