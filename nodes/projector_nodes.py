"""Projector nodes: each builds one pixel-resolution projector and outputs it as SYNC_PROJECTOR.

Sizes are in pixels and must be multiples of 8 (the SD VAE factor) so that the sampler can derive the
latent projector with ``rescaled(8)``. Defaults are the papers' (notes/prior-art.md).
"""

from __future__ import annotations

from comfy_api.latest import io

from .. import projectors
from ..projectors import memory
from ..projectors.panorama360 import default_canvas, rig_view_count
from .common import CATEGORY, SyncProjector
from .guards import guard_nodes
from .memory_check import require_memory

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
        require_memory("SyncCanvas Wide Panorama", memory.wide_panorama(height, width, window, stride, wrap))
        return io.NodeOutput(projectors.WidePanoramaProjector(height, width, window, stride, wrap))


class SyncCanvas360Panorama(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvas360Panorama",
            display_name="SyncCanvas 360 Panorama",
            category=PROJECTOR_CATEGORY,
            description="An equirectangular 360 canvas seen by perspective views around the horizon (SyncTweedies or StochSync camera rig).",
            inputs=[
                io.Combo.Input("rig", options=["synctweedies", "stochsync"], default="synctweedies", tooltip="synctweedies: 8 views, yaw every 45 deg. stochsync: 10 views, yaw every 36 deg, in two groups of 5 that share no texel (use with the stochsync mode)."),
                _size("view_size", 512, "View size in pixels (square): the model's native resolution."),
                io.Float.Input("fov", default=72.0, min=10.0, max=170.0, step=1.0, tooltip="Horizontal field of view of each view in degrees (both papers: 72)."),
                io.Float.Input("pitch", default=0.0, min=-90.0, max=90.0, step=1.0, tooltip="Pitch of the ring of views in degrees (0 = horizon)."),
                io.Boolean.Input("pole_views", default=False, tooltip="Add two views looking straight up and down so the poles get content too."),
                io.Int.Input("width", default=0, min=0, max=16384, step=16, tooltip="Canvas width in pixels (height = width / 2); 0 picks the width whose texel density matches the views."),
                io.Combo.Input("interpolation", options=["nearest", "bilinear"], default="nearest", tooltip="nearest: one texel per view pixel, exact fuse (papers). bilinear: smoother, fused by least squares."),
            ],
            outputs=[_output()],
        )

    @classmethod
    def execute(cls, rig, view_size, fov, pitch, pole_views, width, interpolation) -> io.NodeOutput:
        canvas_hw = None
        if width:
            if width % 16:
                raise ValueError(f"width={width} must be a multiple of 16 (height = width / 2 must be a multiple of 8)")
            canvas_hw = (width // 2, width)
        estimate_hw = canvas_hw or default_canvas(view_size, fov)
        require_memory("SyncCanvas 360 Panorama", memory.equirect(view_size, rig_view_count(rig, pole_views), estimate_hw, interpolation))
        return io.NodeOutput(projectors.EquirectProjector(view_size, None, pitch, fov, canvas_hw, rig, pole_views, interpolation))


class SyncCanvasAnagram(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasAnagram",
            display_name="SyncCanvas Anagram Views",
            category=PROJECTOR_CATEGORY,
            description="Ambiguous images (Visual Anagrams): one canvas, each view a transform of it, each with its own prompt.",
            inputs=[
                _size("size", 512, "Canvas (and view) size in pixels, square."),
                io.String.Input("views", default="identity, rotate_cw", tooltip="Comma-separated view transforms: identity, flip_h, flip_v, rotate_cw, rotate_ccw, rotate_180, negate, inner_rotate:<degrees>, jigsaw, jigsaw:<grid>:<seed>."),
            ],
            outputs=[_output()],
        )

    @classmethod
    def execute(cls, size, views) -> io.NodeOutput:
        specs = [v.strip() for v in views.split(",") if v.strip()]
        if not specs:
            raise ValueError(f"views={views!r} names no view transform")
        return io.NodeOutput(projectors.AnagramProjector(size, size, specs))


class SyncCanvasMultiplane(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasMultiplane",
            display_name="SyncCanvas Multiplane",
            category=PROJECTOR_CATEGORY,
            description="Multiplane canvas (SyncTweedies' n-to-1 test space): each view sees the mean of M planes through another projector.",
            inputs=[
                SyncProjector.Input("inner", tooltip="The image-space projector applied to the plane mean (e.g. anagram views)."),
                io.Int.Input("planes", default=3, min=1, max=64, tooltip="Number of planes M (SyncTweedies: 3)."),
            ],
            outputs=[_output()],
        )

    @classmethod
    def execute(cls, inner, planes) -> io.NodeOutput:
        return io.NodeOutput(projectors.MultiplaneProjector(inner, planes))


NODES = [SyncCanvasWidePanorama, SyncCanvas360Panorama, SyncCanvasAnagram, SyncCanvasMultiplane]
guard_nodes(NODES)  # each node's inputs checked against its schema before execute (nodes/guards.py)
