"""Projector nodes: each builds one pixel-resolution projector and outputs it as SYNC_PROJECTOR.

Sizes are in pixels and must be multiples of 8 (the SD VAE factor) so that the sampler can derive the
latent projector with ``rescaled(8)``. Defaults are the papers' (notes/prior-art.md).
"""

from __future__ import annotations

from comfy_api.latest import io

from .. import projectors
from .common import CATEGORY, SyncProjector

PROJECTOR_CATEGORY = f"{CATEGORY}/projectors"


def _size(name: str, default: int, tooltip: str, minimum: int = 64, maximum: int = 16384) -> io.Int.Input:
    return io.Int.Input(name, default=default, min=minimum, max=maximum, step=8, tooltip=tooltip)


def _output() -> io.Output:
    return SyncProjector.Output("projector", tooltip="Canvas geometry for the SyncCanvas sampler and view nodes.")


class SyncCanvasWidePanorama(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasWidePanorama",
            display_name="SyncCanvas Wide Panorama",
            category=PROJECTOR_CATEGORY,
            description="A wide canvas covered by overlapping model-sized windows (MultiDiffusion / SyncTweedies wide image).",
            inputs=[
                _size("width", 3072, "Canvas width in pixels (SyncTweedies: 3072)."),
                _size("height", 512, "Canvas height in pixels (SyncTweedies: 512)."),
                _size("window", 512, "Window (view) size in pixels: the model's native resolution."),
                io.Int.Input("stride", default=64, min=8, max=4096, step=8, tooltip="Pixels between window starts (SyncTweedies: 64 = 8 latent texels); at most the window size."),
                io.Boolean.Input("wrap", default=False, tooltip="Let windows wrap around the right edge so the panorama loops (360 cylinder)."),
            ],
            outputs=[_output()],
        )

    @classmethod
    def execute(cls, width, height, window, stride, wrap) -> io.NodeOutput:
        return io.NodeOutput(projectors.WidePanoramaProjector(height, width, window, stride, wrap))


NODES = [SyncCanvasWidePanorama]
