"""Mesh texturing nodes: load a mesh, pick cameras, build the mesh projector, render ControlNet hints,
start a texture edit, preview a turntable and save the textured mesh (GLB / OBJ+MTL+PNG).

Types: SYNC_MESH (``assets.MeshData``: normalised, with UVs), SYNC_CAMERAS (``assets.CameraRig``), and
ComfyUI's own MESH (``vertices [B, V, 3]``, ``faces [B, F, 3]``, geometry only in 0.3.64) in and out.
All geometry lives in ``assets/`` and ``projectors/``; these classes only adapt types and paths.
"""

from __future__ import annotations

import inspect
import os

import torch

from comfy_api.latest import io, ui

from ..assets import cameras as rigs
from ..assets.file_refs import describe
from ..assets.mesh_data import MeshData, normalise_to_unit_box, validate_arrays
from ..assets.mesh_io import MESH_EXTENSIONS, export_glb, export_obj, load_mesh
from ..assets.mesh_uv import unwrap_uvs
from ..projectors import memory
from ..projectors.mesh_texture import MeshTextureProjector, render_turntable
from ..projectors.raster import BACKENDS
from .common import CATEGORY, SyncProjector, latent_projector, projector_input, require_capability, tensor_to_image
from .files import input_files, input_root, output_file_name, resolve_input_file, save_target
from .guards import guard_nodes
from .memory_check import require_batch, require_memory

MESH_CATEGORY = f"{CATEGORY}/mesh"
SyncMesh = io.Custom("SYNC_MESH")
SyncCameras = io.Custom("SYNC_CAMERAS")


def core_mesh_type():
    """ComfyUI's own textured MESH class (``comfy_api.latest.Types.MESH`` with ``uvs`` and ``texture``,
    ComfyUI >= 0.3.7x, e.g. 0.33.0), or None on versions whose MESH is geometry only (0.3.64)."""
    try:
        from comfy_api.latest import Types
    except ImportError:
        return None
    mesh_type = getattr(Types, "MESH", None)
    if mesh_type is None:
        return None
    parameters = inspect.signature(mesh_type).parameters
    return mesh_type if "uvs" in parameters and "texture" in parameters else None


def to_comfy_mesh(mesh: MeshData, texture: torch.Tensor | None = None):
    """ComfyUI's MESH (batch of one) in the file's own units.

    Where the running ComfyUI's MESH carries UVs and a texture (core SaveGLB / Preview3D show them), it gets
    the mesh's UVs in glTF's convention (v down: ``(u, 1 - v)``) and ``texture`` (IMAGE ``[1, H, W, 3]``);
    on older versions geometry only (their MESH has nothing else)."""
    vertices = torch.from_numpy(mesh.original_vertices()).unsqueeze(0)
    faces = torch.from_numpy(mesh.faces).unsqueeze(0)
    core = core_mesh_type()
    if core is None:
        from comfy_extras.nodes_hunyuan3d import MESH

        return MESH(vertices, faces)
    uvs = None
    if mesh.uvs is not None:
        uvs = torch.from_numpy(mesh.uvs.astype("float32")).clone()
        uvs[:, 1] = 1.0 - uvs[:, 1]
        uvs = uvs.unsqueeze(0)
    image = None
    if texture is not None and uvs is not None:
        image = texture[:1, ..., :3].float().clamp(0, 1).cpu() if texture.dim() == 4 else texture[None, ..., :3].float().cpu()
    return core(vertices, faces, uvs=uvs, texture=image)


def texture_tensor(image: torch.Tensor, size: int) -> torch.Tensor:
    """IMAGE ``[1, H, W, 3]`` -> ``[3, size, size]`` (bilinear resize when needed)."""
    if image.dim() != 4 or image.shape[0] != 1 or image.shape[-1] < 3:
        raise ValueError(f"texture must be a single RGB image [1, H, W, 3], got shape {tuple(image.shape)}")
    tex = image[0, ..., :3].movedim(-1, 0).float()
    if tuple(tex.shape[1:]) != (size, size):
        tex = torch.nn.functional.interpolate(tex[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    return tex


class SyncCanvasLoadMesh(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasLoadMesh",
            display_name="SyncCanvas Load Mesh",
            category=MESH_CATEGORY,
            description="Loads an OBJ(+MTL), GLB/GLTF, PLY or STL from the input folder: parts merged, normalised to the unit box, UVs kept or made with xatlas.",
            inputs=[
                io.Combo.Input("mesh", options=input_files(MESH_EXTENSIONS), tooltip="Mesh file in ComfyUI's input folder (or its 3d/ sub-folder)."),
                io.Combo.Input("unwrap", options=["auto", "always", "never"], default="auto", tooltip="auto: make UVs with xatlas when the file has none or its UV islands overlap (mirrored halves); always: replace the file's UVs; never: keep them."),
            ],
            outputs=[
                SyncMesh.Output("sync_mesh", tooltip="The mesh for SyncCanvas camera rigs and projectors."),
                io.Mesh.Output("comfy_mesh", tooltip="ComfyUI's MESH for core 3D nodes such as SaveGLB: with UVs and the file's texture where ComfyUI's MESH carries them, geometry only on older versions."),
            ],
        )

    @classmethod
    def execute(cls, mesh, unwrap) -> io.NodeOutput:
        data = load_mesh(resolve_input_file(mesh, "mesh"), unwrap=unwrap, root=input_root())
        # refused / missing references (MTL, textures, glTF buffers) were logged; show them on the node too
        report = describe(data.warnings) if data.warnings else f"loaded {data!r}"
        original = None if data.texture is None else torch.from_numpy(data.texture[..., :3].copy()).float().div(255.0)[None]
        return io.NodeOutput(data, to_comfy_mesh(data, original), ui=ui.PreviewText(report))


class SyncCanvasMeshFromComfy(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasMeshFromComfy",
            display_name="SyncCanvas Mesh From MESH",
            category=MESH_CATEGORY,
            description="Turns ComfyUI's MESH (e.g. from Hunyuan3D) into a SyncCanvas mesh: normalised and unwrapped with xatlas.",
            inputs=[
                io.Mesh.Input("mesh", tooltip="ComfyUI MESH; the first mesh of the batch is used."),
                io.Int.Input("index", default=0, min=0, max=4096, tooltip="Which mesh of the batch."),
            ],
            outputs=[SyncMesh.Output("sync_mesh")],
        )

    @classmethod
    def execute(cls, mesh, index) -> io.NodeOutput:
        vertices, faces = mesh.vertices, mesh.faces
        if index >= vertices.shape[0]:
            raise ValueError(f"index {index} out of range for a MESH batch of {vertices.shape[0]}")
        v = vertices[index].detach().cpu().double().numpy()
        f = faces[index].detach().cpu().long().numpy()
        f = validate_arrays(v, f[(f >= 0).all(1)], None, "MESH input")
        normalised, to_original = normalise_to_unit_box(v)
        return io.NodeOutput(unwrap_uvs(MeshData(normalised, f, None, None, to_original, "MESH input")))


class SyncCanvasCameraRig(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasCameraRig",
            display_name="SyncCanvas Camera Rig",
            category=MESH_CATEGORY,
            description="Cameras around the mesh. paper: SyncTweedies/SyncMVD (8 views every 45 deg + 2 from 30 deg above). stochsync: groups of 4 views 90 deg apart. custom: your azimuth:elevation list.",
            inputs=[
                SyncMesh.Input("sync_mesh", tooltip="The mesh (from Load Mesh) whose size the camera distance is fitted to."),
                io.Combo.Input("rig", options=["paper", "stochsync", "custom"], default="paper", tooltip="paper: SyncTweedies/SyncMVD's 10 views; stochsync: alternating non-overlapping 4-view groups; custom: the views list below."),
                io.String.Input("views", default="0:0, 90:0, 180:0, 270:0", tooltip="custom only: comma-separated azimuth:elevation pairs in degrees."),
                io.Float.Input("fov", default=60.0, min=5.0, max=150.0, step=1.0, tooltip="Vertical field of view in degrees."),
                io.Float.Input("distance", default=0.0, min=0.0, max=100.0, step=0.05, tooltip="Camera distance in unit-box units; 0 fits the mesh into the view."),
                io.Int.Input("groups", default=2, min=1, max=16, tooltip="stochsync only: number of alternating 4-view groups."),
            ],
            outputs=[SyncCameras.Output("cameras")],
        )

    @classmethod
    def execute(cls, sync_mesh, rig, views, fov, distance, groups) -> io.NodeOutput:
        dist = distance or rigs.fit_distance(sync_mesh.vertices, fov)
        if rig == "paper":
            return io.NodeOutput(rigs.paper_rig(fov=fov, distance=dist))
        if rig == "stochsync":
            return io.NodeOutput(rigs.stochsync_rig(n_groups=groups, fov=fov, distance=dist))
        return io.NodeOutput(rigs.orbit_rig(rigs.parse_views(views), dist, fov))


class SyncCanvasMeshProjector(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasMeshProjector",
            display_name="SyncCanvas Mesh Texture",
            category=MESH_CATEGORY,
            description="The mesh's UV texture seen by the cameras (SyncTweedies A1.3): views are renders, texels are fused weighted by cos(view, normal)^k.",
            inputs=[
                SyncMesh.Input("sync_mesh", tooltip="The mesh (from Load Mesh) to texture; its UVs define the texture."),
                SyncCameras.Input("cameras", tooltip="The views to render (from SyncCanvas Camera Rig)."),
                io.Int.Input("view_size", default=768, min=64, max=4096, step=8, tooltip="View size in pixels (paper: 768 = 96 latent)."),
                io.Int.Input("texture_size", default=1024, min=64, max=8192, step=8, tooltip="RGB texture size (paper: 1024)."),
                io.Float.Input("latent_texture_ratio", default=1.5, min=0.125, max=4.0, step=0.125, tooltip="Latent texture side / RGB texture side (paper: 1536 / 1024 = 1.5)."),
                io.Float.Input("cos_exponent", default=3.0, min=0.0, max=16.0, step=0.5, tooltip="Weight of a view pixel = cos(view ray, normal)^k (SyncMVD: k up to 6); 0 = plain average."),
                io.Combo.Input("sampling", options=["nearest", "bilinear"], default="nearest", tooltip="Texture lookup when rendering (paper: nearest)."),
                io.Combo.Input("backend", options=list(BACKENDS), default="auto", tooltip="Rasteriser: auto picks the verified ones: embree ray casting when installed, else pure torch. nvdiffrast (CUDA) is opt-in and UNVERIFIED until scripts/gpu_check.py has passed on it."),
            ],
            outputs=[SyncProjector.Output("projector")],
        )

    @classmethod
    def execute(cls, sync_mesh, cameras, view_size, texture_size, latent_texture_ratio, cos_exponent, sampling, backend) -> io.NodeOutput:
        latent_size = max(8, int(round(latent_texture_ratio * texture_size)))
        estimate = memory.mesh_texture(len(cameras), view_size, texture_size, latent_size)
        require_memory("SyncCanvas Mesh Texture", estimate)
        return io.NodeOutput(
            MeshTextureProjector(sync_mesh, cameras, view_size, texture_size, latent_size, cos_exponent, sampling, backend)
        )


class SyncCanvasMeshConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasMeshConditioning",
            display_name="SyncCanvas Mesh Depth/Normal Views",
            category=MESH_CATEGORY,
            description="Per-view depth (near = white) and normal renders of the mesh, one image per view, for depth/normal ControlNets.",
            inputs=[projector_input()],
            outputs=[
                io.Image.Output("depth", tooltip="Depth hints [N, h, w, 3], background black."),
                io.Image.Output("normal", tooltip="Camera-space normals as colours (x red, y green, towards-camera blue)."),
                io.Mask.Output("mask", tooltip="Where each view sees the mesh [N, h, w]."),
            ],
        )

    @classmethod
    def execute(cls, projector) -> io.NodeOutput:
        require_capability(projector, "mesh", "SyncCanvas Mesh Depth/Normal Views", "a mesh projector")
        require_batch("SyncCanvas Mesh Depth/Normal Views", projector.n_views, 3, projector.view_hw, copies=7, device=projector.device)
        depth = projector.depth_maps().expand(-1, 3, -1, -1)
        return io.NodeOutput(tensor_to_image(depth), tensor_to_image(projector.normal_maps()), projector.masks()[:, 0].cpu())


class SyncCanvasMeshEditStart(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasMeshEditStart",
            display_name="SyncCanvas Texture Edit Start",
            category=MESH_CATEGORY,
            description="Texture editing (SyncTweedies A3, SDEdit): renders the existing texture, VAE-encodes the views and fuses them into the latent texture. Feed it to the SyncCanvas KSampler with denoise 0.8 (t' = 0.8).",
            inputs=[
                projector_input(),
                io.Image.Input("texture", tooltip="The existing texture (resized to the projector's texture size)."),
                io.Vae.Input("vae", tooltip="The VAE of your checkpoint; encodes the existing texture as the SDEdit start."),
            ],
            outputs=[io.Latent.Output("latent", tooltip="Canonical latent texture for the sampler's latent input.")],
        )

    @classmethod
    def execute(cls, projector, texture, vae) -> io.NodeOutput:
        require_capability(projector, "mesh", "SyncCanvas Texture Edit Start", "a mesh projector")
        require_batch("SyncCanvas Texture Edit Start", projector.n_views, 3, projector.view_hw, copies=4, device=projector.device)
        views = projector.render(texture_tensor(texture, projector.texture_size).to(projector.device), background=0.5)
        latents = vae.encode(tensor_to_image(views.clamp(0, 1)))
        lat_projector = latent_projector(projector, vae)
        canonical = lat_projector.bake(latents.float().to(lat_projector.device))
        return io.NodeOutput({"samples": canonical.unsqueeze(0).cpu()})


class SyncCanvasMeshTurntable(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasMeshTurntable",
            display_name="SyncCanvas Mesh Turntable",
            category=MESH_CATEGORY,
            description="Renders the textured mesh turning once around, one image per frame (save as images or a video).",
            inputs=[
                projector_input("The mesh projector (its mesh is rendered)."),
                io.Image.Input("texture", tooltip="The texture (e.g. the SyncCanvas KSampler's canonical IMAGE)."),
                io.Int.Input("frames", default=24, min=1, max=720, tooltip="Number of turntable frames (one full turn)."),
                io.Int.Input("size", default=512, min=16, max=4096, step=8, tooltip="Frame size in pixels."),
                io.Float.Input("elevation", default=15.0, min=-80.0, max=80.0, step=1.0, tooltip="Camera elevation of the turntable in degrees."),
                io.Float.Input("background", default=1.0, min=0.0, max=1.0, step=0.01, tooltip="Grey level behind the mesh."),
            ],
            outputs=[io.Image.Output("images", tooltip="One image per frame.")],
        )

    @classmethod
    def execute(cls, projector, texture, frames, size, elevation, background) -> io.NodeOutput:
        require_capability(projector, "mesh", "SyncCanvas Mesh Turntable", "a mesh projector")
        tex = texture[0, ..., :3].movedim(-1, 0).float() if texture.dim() == 4 else texture
        frames_estimate = memory.image_batch(frames, 3, (size, size), 2, "frames", "lower frames or size")
        require_memory("SyncCanvas Mesh Turntable", frames_estimate + memory.mesh_texture(frames, size, tex.shape[-1], 0))
        out = render_turntable(projector.mesh, tex, frames, size, elevation, background=background, backend=projector.backend)
        return io.NodeOutput(tensor_to_image(out))


class SyncCanvasSaveTexturedMesh(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasSaveTexturedMesh",
            display_name="SyncCanvas Save Textured Mesh",
            category=MESH_CATEGORY,
            description="Writes the mesh with its texture to the output folder as GLB (texture embedded) and/or OBJ+MTL+PNG, in the file's original units.",
            inputs=[
                projector_input("The mesh projector (its mesh and UVs are saved)."),
                io.Image.Input("texture", tooltip="The texture (e.g. the SyncCanvas KSampler's canonical IMAGE)."),
                io.String.Input("filename_prefix", default="SyncCanvas/mesh", tooltip="Inside the output folder; no '..' or absolute paths."),
                io.Combo.Input("format", options=["glb", "obj", "glb+obj"], default="glb", tooltip="glb: one file, texture embedded; obj: OBJ + MTL + PNG; or both."),
            ],
            outputs=[io.Mesh.Output("mesh", tooltip="ComfyUI's MESH of the saved mesh: with its UVs and texture where ComfyUI's MESH carries them (core SaveGLB / Preview3D show it textured), geometry only on older versions."),
                     io.String.Output("model_file", tooltip="The saved file (GLB, else OBJ) inside the output folder, for core Preview 3D's model_file: the textured mesh turns in the node.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, projector, texture, filename_prefix, format) -> io.NodeOutput:
        require_capability(projector, "mesh", "SyncCanvas Save Textured Mesh", "a mesh projector")
        folder, name, counter, subfolder = save_target(filename_prefix)
        tex = texture[0, ..., :3].clamp(0, 1).cpu().numpy() if texture.dim() == 4 else texture
        stem = f"{name}_{counter:05}_"
        saved = []
        if "glb" in format:
            saved.append(export_glb(projector.mesh, tex, folder, stem))
        if "obj" in format:
            saved += export_obj(projector.mesh, tex, folder, stem)
        text = "saved " + ", ".join(os.path.join(subfolder, p.name) for p in saved)
        core_mesh = to_comfy_mesh(projector.mesh, texture if torch.is_tensor(texture) else None)
        return io.NodeOutput(core_mesh, output_file_name(saved[0]), ui=ui.PreviewText(text))


NODES = [
    SyncCanvasLoadMesh,
    SyncCanvasMeshFromComfy,
    SyncCanvasCameraRig,
    SyncCanvasMeshProjector,
    SyncCanvasMeshConditioning,
    SyncCanvasMeshEditStart,
    SyncCanvasMeshTurntable,
    SyncCanvasSaveTexturedMesh,
]
guard_nodes(NODES)  # each node's inputs checked against its schema before execute (nodes/guards.py)
