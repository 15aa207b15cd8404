"""Cube-map skybox nodes: the projector (six square faces seen by perspective views from the centre) and
its export as six face images and one equirectangular image. All math is in ``projectors/cubemap.py``."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..projectors.cubemap import FACE_NAMES, SKYBOX_YAWS, CubeMapProjector
from .common import CATEGORY, SyncProjector, canonical_image_to_tensor, projector_input, require_capability, tensor_to_image
from ..projectors import memory
from .guards import guard_nodes
from .memory_check import require_memory

FACE_ORDER = ", ".join(f"{k + 1}: {name}" for k, name in enumerate(("+X right", "-X left", "+Y top", "-Y bottom", "+Z front", "-Z back")))


class SyncCanvasCubeMap(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasCubeMap",
            display_name="SyncCanvas Cube Map (skybox)",
            category=f"{CATEGORY}/projectors",
            description=(
                "A skybox: six square faces (the cube-map format game engines and renderers take) seen by "
                f"{len(SKYBOX_YAWS)} perspective views from the centre: 8 around the horizon, 4 tilted up, 4 down. "
                f"Face order (OpenGL/DirectX cube maps): {FACE_ORDER}."
            ),
            inputs=[
                io.Int.Input("size", display_name="face size", default=512, min=64, max=8192, step=8, tooltip="Pixels per face edge (a multiple of 8); at most 2 x the views' focal length in pixels, else a view's nearest samples skip texels."),
                io.Int.Input("view_size", default=512, min=64, max=4096, step=8, tooltip="View size in pixels: the model's native resolution."),
                io.Float.Input("fov", default=72.0, min=30.0, max=120.0, step=1.0, tooltip="Horizontal field of view of each view in degrees (the 360 papers: 72)."),
                io.Float.Input("tilt", default=60.0, min=30.0, max=90.0, step=1.0, tooltip="Pitch of the 4 upward and 4 downward views in degrees (60 sees the poles at fov 72)."),
            ],
            outputs=[SyncProjector.Output("projector", tooltip="Canvas geometry for the SyncCanvas sampler and view nodes.")],
        )

    @classmethod
    def execute(cls, size, view_size, fov, tilt) -> io.NodeOutput:
        pitches = (0.0,) * 8 + (float(tilt),) * 4 + (-float(tilt),) * 4
        require_memory("SyncCanvas Cube Map", memory.cube_map(size, view_size, len(SKYBOX_YAWS)))
        return io.NodeOutput(CubeMapProjector(size, view_size, SKYBOX_YAWS, pitches, fov))


class SyncCanvasCubeMapExport(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasCubeMapExport",
            display_name="SyncCanvas Cube Map Export",
            category=f"{CATEGORY}/projectors",
            description=(
                f"The cube map's six faces (batch order {FACE_ORDER}; file suffixes {', '.join(FACE_NAMES)}) and the "
                "same sky as one equirectangular 2:1 image (longitude 0 = front at the centre)."
            ),
            inputs=[
                projector_input("The cube-map projector the faces belong to."),
                io.Image.Input("canvas", tooltip="The six faces, e.g. the SyncCanvas KSampler's canonical IMAGE."),
                io.Int.Input("equirect_height", default=0, min=0, max=8192, step=8, tooltip="Height of the equirectangular image (width = 2 x height); 0 = 2 x face size."),
            ],
            outputs=[
                io.Image.Output("face_images", display_name="faces", tooltip="The six faces [6, F, F, 3] in cube-map order."),  # ids must differ from the input "faces"
                io.Image.Output("equirect", tooltip="The equirectangular image [1, H, 2H, 3] (save with projection 'equirectangular')."),
            ],
        )

    @classmethod
    def execute(cls, projector, canvas, equirect_height=0) -> io.NodeOutput:
        equirect = require_capability(projector, "equirect", "SyncCanvas Cube Map Export", "a cube-map projector")
        faces = canonical_image_to_tensor(canvas, projector, "canvas").float()  # [C, 6, F, F]
        require_memory("SyncCanvas Cube Map Export", memory.equirect_image(equirect_height or 2 * projector.face_size, faces.shape[0]))
        image = equirect(faces, equirect_height or None).clamp(0, 1)
        return io.NodeOutput(canvas, tensor_to_image(image))


NODES = [SyncCanvasCubeMap, SyncCanvasCubeMapExport]
guard_nodes(NODES)  # each node's inputs checked against its schema before execute (nodes/guards.py)
