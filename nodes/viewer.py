"""A 360 viewer in the graph editor: the node saves the equirectangular image to ComfyUI's temp folder and
hands it to the pack's frontend extension (``web/sync_canvas_360.js``), which draws a look-around view
in the node (drag to turn, wheel to zoom). No network access: the picture comes from this server's /view.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

import folder_paths
from comfy_api.latest import io

from .common import CATEGORY
from .guards import guard_nodes

UI_KEY = "sync_canvas_360"
"""The key of the node's UI output the extension reads (not "images": the editor would draw a flat preview)."""


class SyncCanvasView360(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasView360",
            display_name="SyncCanvas 360 Viewer",
            category=CATEGORY,
            description="Look around in an equirectangular 360 panorama inside the editor: drag to turn, wheel to zoom.",
            inputs=[
                io.Image.Input("images", tooltip="Equirectangular panorama(s), width = 2 x height (the first one is shown)."),
                io.Float.Input("fov", default=90.0, min=20.0, max=150.0, step=1.0, tooltip="Horizontal field of view of the viewer, degrees."),
                io.Float.Input("yaw", default=0.0, min=-180.0, max=180.0, step=1.0, tooltip="Where the viewer looks first: degrees from the panorama's centre, positive to the right."),
            ],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images, fov, yaw) -> io.NodeOutput:
        height, width = images.shape[1], images.shape[2]
        if width != 2 * height:
            raise ValueError(f"SyncCanvas 360 Viewer: the image is {width}x{height}; an equirectangular panorama "
                             "is twice as wide as it is tall (connect the canonical IMAGE of a 360 canvas)")
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
            "SyncCanvas360_", folder_paths.get_temp_directory(), width, height)
        os.makedirs(folder, exist_ok=True)
        file = f"{name}_{counter:05}_.png"
        pixels = np.clip(255.0 * images[0].cpu().numpy(), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, file), compress_level=1)
        shown = {"filename": file, "subfolder": subfolder, "type": "temp", "fov": float(fov), "yaw": float(yaw)}
        return io.NodeOutput(ui={UI_KEY: [shown]})


NODES = [SyncCanvasView360]
guard_nodes(NODES)  # each node's inputs checked against its schema before execute (nodes/guards.py)
