#!/usr/bin/env python
"""Writes the cube-map skybox workflow (UI + API twins) with ``build_workflows.py``'s graph description.

    COMFYUI_PATH=/path/to/ComfyUI python workflows/build_workflows.py [--check]   (writes every family)

StochSync, depth-free (StochSync B's 360 settings on a cube map: fov 72, 25 outer steps with 50 inner
steps at the first (Appendix B), t 900 -> 270, CFG 7.5, eta 1): 16 views from the cube's centre, 8 on the
horizon and 4 tilted up and down 60 degrees. Out: the six faces (cube-map order +X, -X, +Y, -Y, +Z, -Z) and
the same sky as an equirectangular image tagged for 360 viewers, and looked around in in the editor.
"""

from __future__ import annotations

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import build_workflows as bw  # noqa: E402
from build_workflows import Node, link  # noqa: E402


def cubemap_skybox() -> list[Node]:
    prompt = "a sky above a calm sea at golden hour, scattered clouds, distant islands, 360 view"
    return bw._loaders(prompt) + [
        Node(4, "SyncCanvasCubeMap", {"size": 512, "view_size": 512, "fov": 72.0, "tilt": 60.0}),
        bw._sampler(5, link(2), link(3), link(4), steps=25, cfg=7.5, mode="stochsync", eta=1.0),
        Node(6, "SyncCanvasCubeMapExport", {"projector": link(4), "canvas": link(5, 1), "equirect_height": 0}),
        Node(7, "SaveImage", {"images": link(6, 0), "filename_prefix": "SyncCanvas/skybox_face"}, "Six faces (+X, -X, +Y, -Y, +Z, -Z)"),
        Node(8, "SyncCanvasSaveImage", {"images": link(6, 1), "filename_prefix": "SyncCanvas/skybox_equirect",
                                        "projection": "equirectangular"}),
        bw.viewer_360(9, link(6, 1)),
    ]


WORKFLOWS = {"cubemap_skybox": cubemap_skybox}
INPUT_FILES: dict = {}
TITLES = {"cubemap_skybox": "Cube-map skybox without depth (StochSync)"}
THUMBNAILS = {"cubemap_skybox": "cubemap"}
