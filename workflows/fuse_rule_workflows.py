#!/usr/bin/env python
"""Writes the fuse-rule workflows (DDR, DDE, SyncDiffusion; UI + API twins) with ``build_workflows.py``'s
graph description and writer.

    COMFYUI_PATH=/path/to/ComfyUI python workflows/build_workflows.py [--check]   (writes every family)

Settings are the papers': DDR 4.2 (360 wrap-around panorama, 45 deg windows = aspect 8, its panorama
prompt, CFG 10, eta 0.75, RePaint with one forward step per reverse step); SyncDiffusion 5 / supp. S.2
(512x3072, w 20, decay 0.95, DDIM 50 steps, CFG 7.5); DDE with no coordinator loaded falls back to
averaging and its report (shown on the node) says so -- train one with scripts/train_dde.py and add
SyncCanvas Load DDE Coordinator.
"""

from __future__ import annotations

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import build_workflows as bw  # noqa: E402
from build_workflows import Node, link  # noqa: E402

COMMON = {"model": link(1), "positive": link(2), "negative": link(3), "projector": link(4), "seed": 0,
          "scheduler": "ddim_uniform", "vae": link(1, 2)}


def _outputs(sampler: int, prefix: str) -> list[Node]:
    return [
        Node(sampler + 1, "SaveImage", {"images": link(sampler, 1), "filename_prefix": f"SyncCanvas/{prefix}"}),
        # The report says which rule fused the views (e.g. DDE falling back to averaging): shown, not lost.
        Node(sampler + 2, "PreviewAny", {"source": link(sampler, 2)}, "Fuse-rule report"),
    ]


def fuse_ddr_panorama() -> list[Node]:
    prompt = "Landscape picture of a mountain range in the background with an empty plain in the foreground 50mm f/1.8"
    return bw._loaders(prompt) + [
        Node(4, "SyncCanvasWidePanorama", {"width": 4096, "height": 512, "window": 512, "stride": 128, "wrap": True}),
        Node(5, "SyncCanvasDDRKSampler", {**COMMON, "steps": 50, "cfg": 10.0, "eta": 0.75, "representation": "canvas",
                                          "jump_length": 1, "jump_interval": 1, "jump_repeat": 1, "adam_steps": 200,
                                          "adam_lr": 1e-4, "consistent_noise": True}),
    ] + _outputs(5, "fuse_ddr_panorama")


def fuse_dde_panorama() -> list[Node]:
    return bw._loaders("a photo of a mountain range at sunrise, lake in the foreground, highly detailed") + [
        Node(4, "SyncCanvasWidePanorama", {"width": 2048, "height": 512, "window": 512, "stride": 256, "wrap": False}),
        Node(5, "SyncCanvasDDEKSampler", {**COMMON, "steps": 50, "cfg": 7.5, "eta": 0.0}),
    ] + _outputs(5, "fuse_dde_panorama")


def fuse_syncdiffusion_panorama() -> list[Node]:
    return bw._loaders("a photo of a city skyline at night") + [
        Node(4, "SyncCanvasWidePanorama", {"width": 3072, "height": 512, "window": 512, "stride": 128, "wrap": False}),
        Node(5, "SyncCanvasSyncDiffusionKSampler", {**COMMON, "steps": 50, "cfg": 7.5, "weight": 20.0, "decay": 0.95,
                                                    "first_steps": 0, "every": 1, "anchor_view": 0, "eta": 0.0}),
    ] + _outputs(5, "fuse_syncdiffusion_panorama")


WORKFLOWS = {"fuse_ddr_panorama": fuse_ddr_panorama, "fuse_dde_panorama": fuse_dde_panorama,
             "fuse_syncdiffusion_panorama": fuse_syncdiffusion_panorama}


INPUT_FILES: dict = {}

TITLES = {"fuse_ddr_panorama": "360 wrap-around panorama (DDR fuse rule)",
          "fuse_dde_panorama": "Wide panorama (DDE fuse rule)",
          "fuse_syncdiffusion_panorama": "Wide panorama (SyncDiffusion)"}
THUMBNAILS = {name: "wide_panorama" for name in TITLES}
