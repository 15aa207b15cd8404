"""Gaussian-splat texturing nodes (SyncTweedies Sec. 5.3): load a 3DGS PLY, fit a camera orbit, build
the splat projector, render depth hints, preview and save the recoloured scene.

Types: SYNC_SPLAT (``assets.splat_ply.SplatScene``) and SYNC_SPLAT_CAMERAS (``assets.splat_cameras.
SplatCameras``). The projector is the pack's SYNC_PROJECTOR (pixel resolution), so the SyncCanvas
KSampler takes it like any other canvas (Case 2, with ``rgb_every_step`` for the paper's RGB fuse).
All math lives in ``assets/`` and ``projectors/``; these classes only adapt types and paths.
"""

from __future__ import annotations

import os
from pathlib import Path

from comfy_api.latest import io, ui

from ..assets.splat_cameras import fit_orbit
from ..assets.splat_ply import read_splat_ply, write_splat_ply
from ..projectors import memory
from ..projectors.splat import SplatProjector
from ..projectors.splat_memory import build_estimate
from .common import CATEGORY, SyncProjector, images_to_views, projector_input, require_capability, tensor_to_image
from .files import input_files, output_file_name, resolve_input_file, save_target
from .guards import guard_nodes
from .memory_check import require_batch, require_memory

SPLAT_CATEGORY = f"{CATEGORY}/splat"
SyncSplat = io.Custom("SYNC_SPLAT")
SyncSplatCameras = io.Custom("SYNC_SPLAT_CAMERAS")


class SyncCanvasLoadSplat(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasLoadSplat",
            display_name="SyncCanvas Load Gaussian Splat",
            category=SPLAT_CATEGORY,
            description="Loads a 3D Gaussian splat scene (standard 3DGS .ply: positions, SH colours, opacity, scales, rotations) from the input folder.",
            inputs=[io.Combo.Input("splat_file", options=input_files((".ply",)), tooltip="3DGS .ply in ComfyUI's input folder.")],
            outputs=[SyncSplat.Output("splat")],
        )

    @classmethod
    def execute(cls, splat_file) -> io.NodeOutput:
        return io.NodeOutput(read_splat_ply(resolve_input_file(splat_file, "splat")))


class SyncCanvasSplatOrbit(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasSplatOrbit",
            display_name="SyncCanvas Splat Camera Orbit",
            category=SPLAT_CATEGORY,
            description="Cameras on an orbit fitted to the scene (robust centre and radius): golden-angle azimuths, elevations spread over a range. Paper: 50 views.",
            inputs=[
                SyncSplat.Input("splat", tooltip="The Gaussian-splat scene (from SyncCanvas Load Splat)."),
                io.Int.Input("views", default=50, min=1, max=512, tooltip="Number of views (paper: 50)."),
                io.Int.Input("view_size", default=512, min=64, max=4096, step=8, tooltip="View size in pixels (512 = 64x64 SD latents)."),
                io.Float.Input("fov", default=50.0, min=5.0, max=150.0, step=1.0, tooltip="Vertical field of view in degrees."),
                io.Combo.Input("up", options=["z", "y", "-y", "-z"], default="z", tooltip="The scene's up axis (Blender/NeRF-synthetic: z; COLMAP scenes often -y)."),
                io.Float.Input("elevation_min", default=-10.0, min=-85.0, max=85.0, step=1.0, tooltip="Lowest camera elevation of the orbit in degrees."),
                io.Float.Input("elevation_max", default=50.0, min=-85.0, max=85.0, step=1.0, tooltip="Highest camera elevation of the orbit in degrees."),
                io.Float.Input("margin", default=1.1, min=0.3, max=4.0, step=0.05, tooltip="Camera distance factor; 1 = the scene's bounding sphere just fits."),
            ],
            outputs=[SyncSplatCameras.Output("cameras")],
        )

    @classmethod
    def execute(cls, splat, views, view_size, fov, up, elevation_min, elevation_max, margin) -> io.NodeOutput:
        return io.NodeOutput(fit_orbit(splat.means, splat.opacities, views, fov, view_size, view_size, up,
                                       (elevation_min, elevation_max), margin))


class SyncCanvasSplatProjector(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasSplatProjector",
            display_name="SyncCanvas Gaussian Splat",
            category=SPLAT_CATEGORY,
            description="The splat colours seen by the cameras (SyncTweedies Sec. 5.3, n-to-1): views are alpha-composited renders; fusing fits the colours by least squares. Use Case 2 with rgb_every_step (paper A1.4).",
            inputs=[
                SyncSplat.Input("splat", tooltip="The Gaussian-splat scene whose colours are generated."),
                SyncSplatCameras.Input("cameras", tooltip="The views to denoise (from SyncCanvas Splat Orbit)."),
            ],
            outputs=[SyncProjector.Output("projector")],
        )

    @classmethod
    def execute(cls, splat, cameras) -> io.NodeOutput:
        require_memory("SyncCanvas Gaussian Splat", build_estimate(splat.means, splat.quats, splat.log_scales, splat.opacities, cameras))
        return io.NodeOutput(SplatProjector.from_scene(splat, cameras))


class SyncCanvasSplatDepth(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasSplatDepth",
            display_name="SyncCanvas Splat Depth Views",
            category=SPLAT_CATEGORY,
            description="Per-view depth renders (near = white, background black) for a depth ControlNet, and the accumulated opacity as a mask.",
            inputs=[projector_input("The splat projector.")],
            outputs=[io.Image.Output("depth"), io.Mask.Output("mask")],
        )

    @classmethod
    def execute(cls, projector) -> io.NodeOutput:
        require_capability(projector, "alpha_maps", "SyncCanvas Splat Depth Views", "a splat projector")
        require_batch("SyncCanvas Splat Depth Views", projector.n_views, 3, projector.view_hw, copies=5, device=projector.device)
        depth = projector.depth_maps().expand(-1, 3, -1, -1)
        return io.NodeOutput(tensor_to_image(depth), projector.alpha_maps()[:, 0].float().cpu())


def _fitted_colors(projector, views):
    """RGB colours ``[3, G]`` fitted to the IMAGE batch of the projector's views."""
    require_capability(projector, "fit_colors", "this splat node", "a splat projector")
    require_batch("SyncCanvas splat colour fit", views.shape[0], 3, views.shape[1:3], copies=8, device=projector.device)
    images = images_to_views(views)[:, :3].float()
    if images.shape[0] != projector.n_views or tuple(images.shape[2:]) != projector.view_hw:
        raise ValueError(f"views are {images.shape[0]} images of {images.shape[3]}x{images.shape[2]} but the projector has "
                         f"{projector.n_views} views of {projector.view_hw[1]}x{projector.view_hw[0]}")
    return projector.fit_colors(images.to(projector.device)).clamp(0, 1)


class SyncCanvasSplatTurntable(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasSplatTurntable",
            display_name="SyncCanvas Splat Turntable",
            category=SPLAT_CATEGORY,
            description="Renders the scene turning once around, with colours fitted to the given views (e.g. the SyncCanvas KSampler's views IMAGE), or its own colours when no views are given.",
            inputs=[
                projector_input("The splat projector."),
                SyncSplat.Input("splat", tooltip="The Gaussian-splat scene (from SyncCanvas Load Splat)."),
                io.Image.Input("views", optional=True, tooltip="One image per projector view; omitted: the file's own (DC) colours."),
                io.Int.Input("frames", default=24, min=1, max=720, tooltip="Number of turntable frames (one full turn)."),
                io.Int.Input("size", default=512, min=16, max=4096, step=8, tooltip="Width and height of each frame in pixels."),
                io.Float.Input("elevation", default=15.0, min=-80.0, max=80.0, step=1.0, tooltip="Camera elevation of the turntable in degrees."),
                io.Float.Input("background", default=1.0, min=0.0, max=1.0, step=0.01, tooltip="Grey level behind the scene."),
            ],
            outputs=[io.Image.Output("turntable", tooltip="One image per frame.")],
        )

    @classmethod
    def execute(cls, projector, splat, frames, size, elevation, background, views=None) -> io.NodeOutput:
        require_capability(projector, "turntable", "SyncCanvas Splat Turntable", "a splat projector")
        cameras = projector.turntable_cameras(frames, size, elevation)
        renders = memory.image_batch(frames, 3, (size, size), 3, "frames", "lower frames or size")
        weights = build_estimate(*projector.geometry, cameras, latent_factor=None)
        require_memory("SyncCanvas Splat Turntable", renders + weights)
        colors = splat.colors().clamp(0, 1) if views is None else _fitted_colors(projector, views)
        return io.NodeOutput(tensor_to_image(projector.turntable(colors.cpu(), frames, size, elevation, background=background).clamp(0, 1)))


class SyncCanvasSaveSplat(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasSaveSplat",
            display_name="SyncCanvas Save Gaussian Splat",
            category=SPLAT_CATEGORY,
            description="Fits the splat colours to the views (e.g. the SyncCanvas KSampler's views IMAGE) and writes a new 3DGS .ply to the output folder; geometry is copied unchanged and the input file is never touched.",
            inputs=[
                projector_input("The splat projector the views came from."),
                SyncSplat.Input("splat", tooltip="The Gaussian-splat scene (from SyncCanvas Load Splat)."),
                io.Image.Input("views", tooltip="One RGB image per projector view."),
                io.String.Input("filename_prefix", default="SyncCanvas/splat", tooltip="Inside the output folder; no '..' or absolute paths."),
                io.Boolean.Input("keep_higher_sh", default=False, tooltip="Keep the file's view-dependent SH terms (off: zeroed, so the new colours show from every side)."),
            ],
            outputs=[io.Image.Output("renders", tooltip="The views re-rendered with the saved colours."),
                     io.String.Output("model_file", tooltip="The saved .ply inside the output folder, for core Preview 3D's model_file (ComfyUI versions whose viewer draws Gaussian splats, e.g. 0.33.0; older ones show its points).")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, projector, splat, views, filename_prefix, keep_higher_sh) -> io.NodeOutput:
        folder, name, counter, subfolder = save_target(filename_prefix)
        colors = _fitted_colors(projector, views)
        path = write_splat_ply(splat, Path(folder) / f"{name}_{counter:05}_.ply", colors=colors.cpu(), keep_higher_sh=keep_higher_sh)
        renders = projector.project(colors).clamp(0, 1)
        return io.NodeOutput(tensor_to_image(renders), output_file_name(path), ui=ui.PreviewText(f"saved {os.path.join(subfolder, path.name)}"))


NODES = [
    SyncCanvasLoadSplat,
    SyncCanvasSplatOrbit,
    SyncCanvasSplatProjector,
    SyncCanvasSplatDepth,
    SyncCanvasSplatTurntable,
    SyncCanvasSaveSplat,
]
guard_nodes(NODES)  # each node's inputs checked against its schema before execute (nodes/guards.py)
