"""Load meshes (OBJ+MTL, GLB/GLTF, PLY, STL) into :class:`MeshData`; export textured GLB and OBJ+MTL+PNG.

Loading merges every part of a scene into one mesh (scene-graph transforms applied), normalises it to
the unit box (keeping the transform to undo it on export), keeps its UVs or unwraps with xatlas when
there are none (or ``unwrap="always"``). Malformed input raises :class:`MeshError` naming the file and
the problem. Export builds every file in memory first and writes nothing when anything fails.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import struct
import tempfile
from pathlib import Path

import numpy as np

from .file_refs import ConfinedResolver
from .ply_header import PlyHeaderError, check_ply_header
from .mesh_data import MeshData, MeshError, normalise_to_unit_box, validate_arrays
from .mesh_uv import unwrap_uvs, uv_overlap_fraction

MESH_EXTENSIONS = (".obj", ".glb", ".gltf", ".ply", ".stl")
UNWRAP_MODES = ("auto", "always", "never")
MAX_UV_OVERLAP = 0.02  # "auto" re-unwraps meshes whose UV islands overlap more than this


# --------------------------------------------------------------------------------------------------
# loading
def load_mesh(
    path: str | os.PathLike, unwrap: str = "auto", unwrap_resolution: int = 1024, root: str | os.PathLike | None = None
) -> MeshData:
    """Read a mesh file into a normalised, validated :class:`MeshData`.

    Files the mesh refers to (MTL, textures, glTF buffers and images) are read only from inside ``root``
    (default: the mesh's own folder), by the pack's :class:`ConfinedResolver`, never by trimesh's own
    resolver; what is refused or missing is listed in ``MeshData.warnings`` and logged.

    ``unwrap``: "auto" unwraps when the file has no usable UVs (none, outside [0, 1], or islands
    overlapping by more than ``MAX_UV_OVERLAP`` of their area), "always" replaces its UVs, "never"
    keeps the file's UVs as they are (a mesh without UVs cannot then be textured).
    """
    if unwrap not in UNWRAP_MODES:
        raise ValueError(f"unwrap must be one of {UNWRAP_MODES}, got {unwrap!r}")
    path = Path(path)
    name = path.name
    if path.suffix.lower() not in MESH_EXTENSIONS:
        raise MeshError(f"{name}: unsupported mesh format {path.suffix!r}; expected one of {MESH_EXTENSIONS}")
    if not path.is_file():
        raise MeshError(f"{path}: no such mesh file")
    if path.stat().st_size == 0:
        raise MeshError(f"{name}: file is empty")
    _precheck(path)
    resolver = ConfinedResolver(path.parent, root if root is not None else path.parent, name)
    vertices, faces, uvs, texture = _read_with_trimesh(path, resolver)
    faces = validate_arrays(vertices, faces, uvs, name)
    if uvs is not None and (uvs.min() < -1e-3 or uvs.max() > 1 + 1e-3):
        uvs = None  # tiled/wrapping UVs cannot index one texture atlas: unwrap instead
    if uvs is None:
        texture = None
    normalised, to_original = normalise_to_unit_box(vertices.astype(np.float64))
    mesh = MeshData(normalised, faces.astype(np.int64), uvs, texture, to_original, name, list(resolver.problems))
    if unwrap == "auto" and mesh.has_uvs and uv_overlap_fraction(mesh) > MAX_UV_OVERLAP:
        mesh.uvs, mesh.texture = None, None
    if unwrap == "always" or (unwrap == "auto" and not mesh.has_uvs):
        mesh = unwrap_uvs(mesh, resolution=unwrap_resolution)
    return mesh


def _precheck(path: Path) -> None:
    """Format checks trimesh is lenient about: truncated GLB containers, OBJ indices out of range."""
    suffix = path.suffix.lower()
    if suffix == ".glb":
        with open(path, "rb") as f:
            header = f.read(12)
        if len(header) < 12 or header[:4] != b"glTF":
            raise MeshError(f"{path.name}: not a GLB file (missing 'glTF' header)")
        declared = struct.unpack("<I", header[8:12])[0]
        actual = path.stat().st_size
        if declared > actual:
            raise MeshError(f"{path.name}: GLB is truncated: header declares {declared} bytes, file has {actual}")
    elif suffix == ".obj":
        _check_obj_indices(path)
    elif suffix == ".ply":
        try:
            check_ply_header(path)
        except PlyHeaderError as e:
            raise MeshError(str(e)) from None


def _check_obj_indices(path: Path) -> None:
    n_v = n_vt = 0
    with open(path, "r", errors="replace") as f:
        for line_no, line in enumerate(f, 1):
            if line.startswith("v "):
                n_v += 1
            elif line.startswith("vt "):
                n_vt += 1
            elif line.startswith("f "):
                for corner in line.split()[1:]:
                    parts = corner.split("/")
                    for value, count, what in ((parts[0], n_v, "vertex"), (parts[1] if len(parts) > 1 else "", n_vt, "uv")):
                        if not value:
                            continue
                        try:
                            k = int(value)
                        except ValueError:
                            raise MeshError(f"{path.name}:{line_no}: bad face index {value!r}") from None
                        # OBJ indices are 1-based; negative ones count back from the latest element
                        if k == 0 or k > count or k < -count:
                            raise MeshError(
                                f"{path.name}:{line_no}: face {what} index {k} out of range (only {count} {what}s defined so far)"
                            )


def _read_with_trimesh(path: Path, resolver: ConfinedResolver):
    import trimesh

    try:
        # bytes, not a path: trimesh then has nothing to resolve references against but our resolver
        loaded = trimesh.load(io.BytesIO(path.read_bytes()), file_type=path.suffix.lower()[1:], resolver=resolver, process=False)
    except Exception as e:  # trimesh raises many types for malformed files
        if resolver.problems:  # e.g. a glTF whose geometry buffer was refused: say that, not trimesh's symptom
            raise MeshError(f"{path.name}: could not be read: " + "; ".join(resolver.problems)) from e
        raise MeshError(f"{path.name}: could not be read ({type(e).__name__}: {str(e)[:200]})") from e
    if isinstance(loaded, trimesh.Scene):
        parts = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh) and len(g.faces)]
        if not parts:
            raise MeshError(f"{path.name}: contains no triangle meshes")
        mesh = parts[0] if len(parts) == 1 else _concatenate(parts, path.name)
    elif isinstance(loaded, trimesh.Trimesh):
        mesh = loaded
    else:
        raise MeshError(f"{path.name}: contains no faces (read as {type(loaded).__name__}, e.g. a point cloud)")
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64).reshape(len(mesh.faces), -1) if len(mesh.faces) else np.zeros((0, 3), np.int64)
    uvs, texture = _uvs_and_texture(mesh)
    return vertices, faces, uvs, texture


def _concatenate(parts, name: str):
    import trimesh

    try:
        return trimesh.util.concatenate(parts)  # packs the parts' textures into one atlas when it can
    except Exception:
        # parts whose materials cannot be merged: keep the geometry, the UVs get re-unwrapped
        plain = [trimesh.Trimesh(p.vertices, p.faces, process=False) for p in parts]
        return trimesh.util.concatenate(plain)


def _uvs_and_texture(mesh) -> tuple[np.ndarray | None, np.ndarray | None]:
    visual = getattr(mesh, "visual", None)
    uv = getattr(visual, "uv", None) if visual is not None and visual.kind == "texture" else None
    if uv is None or len(uv) != len(mesh.vertices):
        return None, None
    texture = None
    material = getattr(visual, "material", None)
    image = getattr(material, "image", None) or getattr(material, "baseColorTexture", None)
    if image is not None:
        texture = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return np.asarray(uv, dtype=np.float32), texture


# --------------------------------------------------------------------------------------------------
# export
def safe_output_path(folder: str | os.PathLike, name: str, suffix: str) -> Path:
    """``folder/name+suffix``, refusing names that would leave ``folder`` (``..``, absolute, links)."""
    root = Path(folder).resolve()
    if not name or re.search(r"[\x00]", name):
        raise ValueError(f"invalid output name {name!r}")
    target = (root / f"{name}{suffix}").resolve()
    if root != target.parent and root not in target.parents:
        raise ValueError(f"output name {name!r} leaves the output folder {root}")
    return target


def texture_to_uint8(texture) -> np.ndarray:
    """``[H, W, 3]`` or ``[3, H, W]`` float in [0, 1] (numpy or torch) or uint8 -> ``[H, W, 3]`` uint8."""
    arr = texture.detach().cpu().numpy() if hasattr(texture, "detach") else np.asarray(texture)
    if arr.ndim != 3:
        raise ValueError(f"texture must be [H, W, 3] or [3, H, W], got shape {arr.shape}")
    if arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.shape[-1] not in (3, 4):
        raise ValueError(f"texture must have 3 channels, got shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(arr)


def _textured_trimesh(mesh: MeshData, texture: np.ndarray):
    import trimesh
    from PIL import Image

    if not mesh.has_uvs:
        raise MeshError(f"{mesh.source}: cannot export a texture for a mesh without UVs")
    material = trimesh.visual.material.SimpleMaterial(image=Image.fromarray(texture))
    visual = trimesh.visual.TextureVisuals(uv=mesh.uvs.astype(np.float64), material=material)
    return trimesh.Trimesh(mesh.original_vertices(), mesh.faces, visual=visual, process=False)


def _write_all(files: dict[Path, bytes]) -> None:
    """Write every file via a temporary name + rename, so a failure leaves no partial file behind."""
    written = []
    try:
        for target, data in files.items():
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp_", suffix=target.suffix)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            written.append((tmp, target))
        for tmp, target in written:
            os.replace(tmp, target)
    except BaseException:
        for tmp, _ in written:
            if os.path.exists(tmp):
                os.remove(tmp)
        raise


def export_glb(mesh: MeshData, texture, folder: str | os.PathLike, name: str) -> Path:
    """Write ``folder/name.glb`` with the texture embedded (as a data: URI, see
    :func:`images_as_data_uris`), vertices back in the file's units."""
    target = safe_output_path(folder, name, ".glb")
    data = images_as_data_uris(_textured_trimesh(mesh, texture_to_uint8(texture)).export(file_type="glb"))
    _write_all({target: data})
    return target


def _glb_chunks(glb: bytes) -> tuple[dict, bytes]:
    """(glTF JSON, BIN chunk bytes) of a GLB."""
    json_length = struct.unpack("<I", glb[12:16])[0]
    gltf = json.loads(glb[20 : 20 + json_length])
    rest = glb[20 + json_length :]
    binary = rest[8 : 8 + struct.unpack("<I", rest[:4])[0]] if len(rest) >= 8 else b""
    return gltf, binary


def _pack_glb(gltf: dict, binary: bytes) -> bytes:
    text = json.dumps(gltf, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text
    if binary:
        body += struct.pack("<II", len(binary), 0x004E4942) + binary
    return struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body


def images_as_data_uris(glb: bytes) -> bytes:
    """The GLB with every embedded image moved from a buffer view into a ``data:`` URI (same pixels).

    Why: three.js' GLTFLoader (ComfyUI's 3D viewers) reads a buffer-view image through a ``blob:`` URL
    with ``fetch``, which ComfyUI's Content-Security-Policy (sent with ``--disable-api-nodes``:
    ``connect-src 'self' data:``) blocks; the mesh is then drawn untextured (white). A ``data:`` URI is
    allowed under that policy and without it, and every glTF 2.0 reader takes it."""
    gltf, binary = _glb_chunks(glb)
    views = gltf.get("bufferViews", [])
    used_by_accessors = {a["bufferView"] for a in gltf.get("accessors", []) if "bufferView" in a}
    moved = set()
    for image in gltf.get("images", []):
        if "bufferView" in image and image["bufferView"] not in used_by_accessors:
            view = views[image.pop("bufferView")]
            start = view.get("byteOffset", 0)
            payload = base64.b64encode(binary[start : start + view["byteLength"]]).decode()
            image["uri"] = f"data:{image.get('mimeType', 'image/png')};base64,{payload}"
            moved.add(views.index(view))
    if not moved:
        return glb
    new_index, kept, packed = {}, [], b""
    for index, view in enumerate(views):
        if index in moved:
            continue
        start = view.get("byteOffset", 0)
        packed += b"\0" * (-len(packed) % 4)  # accessor data stays 4-byte aligned
        new_index[index] = len(kept)
        kept.append({**view, "byteOffset": len(packed)})
        packed += binary[start : start + view["byteLength"]]
    gltf["bufferViews"] = kept
    for accessor in gltf.get("accessors", []):
        if "bufferView" in accessor:
            accessor["bufferView"] = new_index[accessor["bufferView"]]
    gltf["buffers"] = [{"byteLength": len(packed)}] if packed else []
    return _pack_glb(gltf, packed)


def export_obj(mesh: MeshData, texture, folder: str | os.PathLike, name: str) -> list[Path]:
    """Write ``folder/name.obj``, ``name.mtl`` and ``name.png``; returns the three paths."""
    from PIL import Image
    from trimesh.exchange.obj import export_obj as trimesh_export_obj

    obj_path = safe_output_path(folder, name, ".obj")
    mtl_path, png_path = obj_path.with_suffix(".mtl"), obj_path.with_suffix(".png")
    tex = texture_to_uint8(texture)
    tm = _textured_trimesh(mesh, tex)
    obj_text = trimesh_export_obj(tm, include_normals=False, include_texture=True, write_texture=False, mtl_name=mtl_path.name)
    png = io.BytesIO()
    Image.fromarray(tex).save(png, format="PNG")
    mtl = f"newmtl material0\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\nmap_Kd {png_path.name}\n"
    obj_text = re.sub(r"(?m)^usemtl .*$", "usemtl material0", obj_text)
    if "usemtl" not in obj_text:
        obj_text = obj_text.replace("\nf ", "\nusemtl material0\nf ", 1)
    _write_all({obj_path: obj_text.encode(), mtl_path: mtl.encode(), png_path: png.getvalue()})
    return [obj_path, mtl_path, png_path]


def glb_summary(path: str | os.PathLike) -> dict:
    """Counts read straight from a GLB's JSON chunk (for tests and logs): meshes, images, accessors."""
    data = Path(path).read_bytes()
    length = struct.unpack("<I", data[12:16])[0]
    gltf = json.loads(data[20 : 20 + length])
    return {k: len(gltf.get(k, [])) for k in ("meshes", "images", "textures", "materials", "accessors")}
