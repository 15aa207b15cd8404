"""File formats and geometry (meshes, cameras, procedural test meshes). Pure: no ComfyUI imports."""

from .cameras import Camera, CameraRig, fit_distance, orbit_rig, paper_rig, parse_views, stochsync_rig, turntable_rig
from .mesh_data import MeshData, MeshError, normalise_to_unit_box
from .mesh_io import MESH_EXTENSIONS, export_glb, export_obj, load_mesh, safe_output_path
from .mesh_uv import unwrap_uvs
from .splat_ply import SplatFormatError, SplatScene, read_splat_ply, write_splat_ply  # noqa: F401  (splat I/O)

__all__ = [
    "Camera",
    "CameraRig",
    "MESH_EXTENSIONS",
    "MeshData",
    "MeshError",
    "export_glb",
    "export_obj",
    "fit_distance",
    "load_mesh",
    "normalise_to_unit_box",
    "orbit_rig",
    "paper_rig",
    "parse_views",
    "safe_output_path",
    "stochsync_rig",
    "turntable_rig",
    "unwrap_uvs",
]
