"""Nodes that move images and latents between the canvas and its views.

* Render Views: canonical IMAGE -> one image per view (e.g. per-view depth hints from a 360 depth map);
* View Masks: where each view sees the canvas (MASK batch);
* Fuse Views: views IMAGE -> canonical IMAGE (least-squares aggregate, then Voronoi fill of holes);
* Empty Canonical Latent / Project Latent: canvas-sized latents and their views.
"""

from __future__ import annotations

import torch

import comfy.model_management
import comfy.utils
from comfy_api.latest import io

from .common import (
    CATEGORY,
    canonical_image_to_tensor,
    canvas_to_image,
    images_to_views,
    latent_projector,
    projector_input,
    require_capability,
    tensor_to_image,
)
from .guards import guard_nodes
from .memory_check import require_batch

VIEWS_CATEGORY = f"{CATEGORY}/views"


class SyncCanvasRenderViews(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasRenderViews",
            display_name="SyncCanvas Render Views",
            category=VIEWS_CATEGORY,
            description="Cuts a canvas-sized image into the projector's views, one image per view (e.g. depth hints for ControlNet).",
            inputs=[
                projector_input(),
                io.Image.Input("image", tooltip="A canvas-sized image (e.g. an equirectangular 360 depth map); its size must equal the projector's canvas."),
                io.Combo.Input("interpolation", options=["bilinear", "nearest"], default="bilinear", tooltip="bilinear for smooth maps (depth, colour); nearest keeps values exact (labels, masks)."),
            ],
            outputs=[io.Image.Output("views", tooltip="One image per view, in the projector's view order.")],
        )

    @classmethod
    def execute(cls, projector, image, interpolation) -> io.NodeOutput:
        require_batch("SyncCanvas Render Views", projector.n_views, image.shape[-1], projector.view_hw, device=projector.device)
        canvas = canonical_image_to_tensor(image, projector)
        views = projector.project(canvas.to(projector.device), nearest=interpolation == "nearest")
        return io.NodeOutput(tensor_to_image(views))


def resize_to_canvas(image: torch.Tensor, projector, what: str) -> torch.Tensor:
    """IMAGE ``[1, h, w, C]`` resized (bilinear) to the canvas when it has the canvas's aspect ratio."""
    height, width = projector.canonical_shape[-2:]
    if image.dim() != 4 or tuple(image.shape[1:3]) == (height, width):
        return image
    if abs(image.shape[2] / image.shape[1] - width / height) > 0.01 * width / height:
        raise ValueError(
            f"{what} is {image.shape[2]}x{image.shape[1]} (WxH) but the canvas is {width}x{height}; "
            f"give a map with the canvas's aspect ratio {width / height:g}:1"
        )
    resized = comfy.utils.common_upscale(image.movedim(-1, 1), width, height, "bilinear", "disabled")
    return resized.movedim(1, -1)


class SyncCanvasRenderDepth(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasRenderDepth",
            display_name="SyncCanvas Render Depth Views",
            category=VIEWS_CATEGORY,
            description="Per-view depth hints for a depth ControlNet from a 360 depth map (equirectangular, canvas-sized).",
            inputs=[
                projector_input("A 360 panorama projector (SyncCanvas 360 Panorama)."),
                io.Image.Input("depth", tooltip="Equirectangular depth map (e.g. from Load Image), 2:1; resized to the canvas if needed. The first channel is used."),
                io.Combo.Input("encoding", options=["near_bright", "distance"], default="near_bright", tooltip="near_bright: a ControlNet-style depth image (near = white), cut into views as is. distance: far = bright distance along the ray; converted to per-view z-depth and inverted to near = white."),
            ],
            outputs=[io.Image.Output("depth_views", tooltip="One depth hint per view, in the projector's view order (feed to ControlNetApplyAdvanced).")],
        )

    @classmethod
    def execute(cls, projector, depth, encoding) -> io.NodeOutput:
        depth_views = require_capability(projector, "depth_views", "SyncCanvas Render Depth Views",
                                         "a canvas that turns a depth map into per-view depth (e.g. a 360 panorama)")
        require_batch("SyncCanvas Render Depth Views", projector.n_views, 3, projector.view_hw, copies=4, device=projector.device)
        canvas = canonical_image_to_tensor(resize_to_canvas(depth, projector, "depth"), projector, "depth")[:1]
        if encoding == "near_bright":
            views = projector.project(canvas.to(projector.device), nearest=True)
        else:
            z = depth_views(canvas.to(projector.device), radial=True)
            views = 1.0 - z / z.flatten(1).amax(1).clamp_min(1e-8)[:, None, None, None]
        return io.NodeOutput(tensor_to_image(views.clamp(0, 1).expand(-1, 3, -1, -1)))


class SyncCanvasViewMasks(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasViewMasks",
            display_name="SyncCanvas View Masks",
            category=VIEWS_CATEGORY,
            description="Per-view masks: 1 where a view pixel sees the canvas (0 on background), and the canvas coverage.",
            inputs=[projector_input()],
            outputs=[
                io.Mask.Output("view_masks", tooltip="One mask per view, [N, h, w]."),
                io.Mask.Output("coverage", tooltip="Canvas elements seen by at least one view, [1, H, W]."),
            ],
        )

    @classmethod
    def execute(cls, projector) -> io.NodeOutput:
        require_batch("SyncCanvas View Masks", projector.n_views, 1, projector.view_hw, copies=2, what="view masks",
                      device=projector.device)
        masks = projector.view_masks().float()
        coverage = projector.canvas_images(projector.coverage().float().unsqueeze(0))[:, 0]  # [B, H, W]
        return io.NodeOutput(masks.cpu(), coverage.cpu())


class SyncCanvasFuseViews(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasFuseViews",
            display_name="SyncCanvas Fuse Views",
            category=VIEWS_CATEGORY,
            description="Fuses one image per view back into the canvas (least-squares average where views overlap), filling uncovered texels from the nearest covered one.",
            inputs=[
                projector_input(),
                io.Image.Input("views", tooltip="One image per view, in the projector's view order and view size."),
                io.Boolean.Input("fill_holes", default=True, tooltip="Fill canvas texels no view sees with the nearest seen value (else black)."),
            ],
            outputs=[io.Image.Output("image", tooltip="The canvas image.")],
        )

    @classmethod
    def execute(cls, projector, views, fill_holes) -> io.NodeOutput:
        require_batch("SyncCanvas Fuse Views", views.shape[0], views.shape[-1], views.shape[1:3], device=projector.device)
        w = images_to_views(views).to(projector.device)
        if w.shape[0] != projector.n_views:
            raise ValueError(f"got {w.shape[0]} view images but the projector has {projector.n_views} views")
        canvas = projector.aggregate(w)
        if fill_holes:
            canvas = projector.fill(canvas)
        return io.NodeOutput(canvas_to_image(projector, canvas.clamp(0, 1)))


class SyncCanvasEmptyLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasEmptyLatent",
            display_name="SyncCanvas Empty Canonical Latent",
            category=VIEWS_CATEGORY,
            description="An empty latent the size of the projector's canvas (canvas pixels / 8).",
            inputs=[
                projector_input(),
                io.Int.Input("channels", default=4, min=1, max=128, tooltip="Latent channels (4 for SD1.5/SDXL; the sampler adapts an empty latent to the model)."),
            ],
            outputs=[io.Latent.Output("latent", tooltip="Zeros of shape [1, channels, H/8, W/8].")],
        )

    @classmethod
    def execute(cls, projector, channels) -> io.NodeOutput:
        shape = latent_projector(projector).canonical_shape
        require_batch("SyncCanvas Empty Canonical Latent", 1, channels, shape, copies=1, what="canvas latents",
                      setting="lower channels or the canvas size", device=comfy.model_management.intermediate_device())
        samples = torch.zeros(1, channels, *shape, device=comfy.model_management.intermediate_device())
        return io.NodeOutput({"samples": samples})


class SyncCanvasProjectLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasProjectLatent",
            display_name="SyncCanvas Project Latent",
            category=VIEWS_CATEGORY,
            description="Cuts a canvas latent into the projector's views (latent resolution) as a latent batch.",
            inputs=[
                projector_input(),
                io.Latent.Input("latent", tooltip="The canvas latent, [1, C, H/8, W/8]."),
            ],
            outputs=[io.Latent.Output("views", tooltip="One latent per view, [N, C, h/8, w/8].")],
        )

    @classmethod
    def execute(cls, projector, latent) -> io.NodeOutput:
        lat = latent_projector(projector)
        samples = latent["samples"]
        if samples.shape[0] != 1 or tuple(samples.shape[2:]) != tuple(lat.canonical_shape):
            raise ValueError(
                f"the latent has shape {tuple(samples.shape)} but the projector's canonical latent is "
                f"[1, C, {', '.join(map(str, lat.canonical_shape))}]"
            )
        require_batch("SyncCanvas Project Latent", lat.n_views, samples.shape[1], lat.view_hw, copies=2, device=lat.device)
        return io.NodeOutput({"samples": lat.project(samples[0].to(lat.device)).cpu()})


NODES = [SyncCanvasRenderViews, SyncCanvasRenderDepth, SyncCanvasViewMasks, SyncCanvasFuseViews, SyncCanvasEmptyLatent, SyncCanvasProjectLatent]
guard_nodes(NODES)  # each node's inputs checked against its schema before execute (nodes/guards.py)
