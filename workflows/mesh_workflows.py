#!/usr/bin/env python
"""Writes the mesh texturing workflows (UI + API twins) with the same graph description and writer as
``build_workflows.py``, plus the demo mesh they load (``inputs/mesh_demo_torus.glb``).

    COMFYUI_PATH=/path/to/ComfyUI python workflows/build_workflows.py [--check]   (writes every family)

Settings are the papers': SyncTweedies 5.2 / A1.3 (SyncMVD rig: 8 views every 45 deg + 2 from 30 deg
above, 768^2 views = 96^2 latent, 1024^2 RGB / 1536^2 latent texture, depth ControlNet, Case 2,
CFG 15.5, 30 steps) and StochSync 7.2 / appendix B (groups of 4 non-overlapping views, 25 steps,
t 1000 -> 270 here 900 -> 270 as the sampler's stochsync mode, depth ControlNet, CFG 15.5).
"""

from __future__ import annotations

import io
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
MESH_FILE = "mesh_demo_torus.glb"

sys.path.insert(0, str(HERE))

import build_workflows as bw  # noqa: E402
from build_workflows import Node, link  # noqa: E402


def _mesh_graph(prompt: str, rig: str, mode: str, steps: int, prefix: str) -> list[Node]:
    return bw._loaders(prompt) + [
        Node(4, "SyncCanvasLoadMesh", {"mesh": MESH_FILE, "unwrap": "auto"}),
        Node(5, "SyncCanvasCameraRig", {"sync_mesh": link(4), "rig": rig, "views": "0:0, 90:0, 180:0, 270:0",
                                        "fov": 60.0, "distance": 0.0, "groups": 2}),
        Node(6, "SyncCanvasMeshProjector", {"sync_mesh": link(4), "cameras": link(5), "view_size": 768, "texture_size": 1024,
                                            "latent_texture_ratio": 1.5, "cos_exponent": 3.0, "sampling": "nearest", "backend": "auto"}),
        Node(7, "SyncCanvasMeshConditioning", {"projector": link(6)}),
        Node(8, "ControlNetLoader", {"control_net_name": bw.DEPTH_CONTROLNET}),
        Node(9, "ControlNetApplyAdvanced", {"positive": link(2), "negative": link(3), "control_net": link(8),
                                            "image": link(7, 0), "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}),
        # SyncTweedies A1.3 / SyncMVD: each view also attends to its 2 most-overlapping views and, for the first
        # 20% of the schedule, to the front view 0. Off for StochSync: its groups share no neighbours.
        Node(16, "SyncCanvasCrossViewAttention", {"model": link(1), "projector": link(6), "neighbours": "overlap",
                                                  "max_neighbours": 2, "weight": 0.0 if mode == "stochsync" else 1.0,
                                                  "reference_view": 0, "reference_end": 0.2},
             "Cross-view attention (off)" if mode == "stochsync" else "Cross-view attention (SyncMVD)"),
        bw._sampler(10, link(9, 0), link(9, 1), link(6), steps=steps, cfg=15.5, mode=mode, model=link(16)),
        Node(11, "SyncCanvasSaveTexturedMesh", {"projector": link(6), "texture": link(10, 1),
                                                "filename_prefix": f"SyncCanvas/{prefix}", "format": "glb+obj"}),
        Node(12, "SaveImage", {"images": link(10, 1), "filename_prefix": f"SyncCanvas/{prefix}_texture"}),
        Node(13, "SyncCanvasMeshTurntable", {"projector": link(6), "texture": link(10, 1), "frames": 24, "size": 512,
                                             "elevation": 15.0, "background": 1.0}),
        Node(14, "SaveImage", {"images": link(13), "filename_prefix": f"SyncCanvas/{prefix}_turntable"}),
        Node(15, "SaveImage", {"images": link(10, 2), "filename_prefix": f"SyncCanvas/{prefix}_views"}),
        # ComfyUI's own 3D viewer on the GLB just saved (texture as a data: URI, so it shows under ComfyUI's
        # strict CSP too): the textured mesh turns in the node after a run, on 0.3.64 and 0.33.0.
        Node(17, "Preview3D", {"model_file": link(11, 1)}, "3D preview (core Preview 3D)"),
    ]


def mesh_texturing_depth() -> list[Node]:
    return _mesh_graph("a glazed ceramic donut with colourful sprinkles, studio photo", "paper", "case_2", 30, "mesh_texturing_depth")


def mesh_texturing_stochsync() -> list[Node]:
    return _mesh_graph("a glazed ceramic donut with colourful sprinkles, studio photo", "stochsync", "stochsync", 25, "mesh_texturing_stochsync")


WORKFLOWS = {"mesh_texturing_depth": mesh_texturing_depth, "mesh_texturing_stochsync": mesh_texturing_stochsync}


def demo_mesh_glb() -> bytes:
    """The procedural torus (UVs, plain grey texture) the workflows load, as GLB bytes."""
    import numpy as np
    import trimesh
    from PIL import Image

    sys.path.insert(0, str(bw.PACK_ROOT / "tests"))
    import conftest  # noqa: F401  (the pack as `sync_canvas`)
    from sync_canvas.assets import procedural

    mesh = procedural.torus(48, 24)
    material = trimesh.visual.material.SimpleMaterial(image=Image.fromarray(np.full((16, 16, 3), 200, np.uint8)))
    visual = trimesh.visual.TextureVisuals(uv=mesh.uvs.astype(np.float64), material=material)
    data = trimesh.Trimesh(mesh.vertices, mesh.faces, visual=visual, process=False).export(file_type="glb")
    return bytes(data) if not isinstance(data, io.BytesIO) else data.getvalue()


INPUT_FILES = {MESH_FILE: demo_mesh_glb}

TITLES = {"mesh_texturing_depth": "Mesh texturing (SyncTweedies, depth ControlNet)",
          "mesh_texturing_stochsync": "Mesh texturing (StochSync, depth ControlNet)"}
THUMBNAILS = {name: "mesh_texturing" for name in TITLES}
