"""The bad-input corpus: malformed files and bad API prompts, each with the message it must produce.

Pure data (no ComfyUI import), shared by ``tests/test_bad_inputs.py`` (in-process: the guarded node
classes called directly) and ``tests/integration/test_bad_inputs_server.py`` (the same graphs POSTed to a
real ComfyUI server). A case is an API-format graph (node id -> ``{"class_type", "inputs"}``), the input
files it needs, and:

* ``expect``: regex the node error must match (in-process, and on the server when the graph gets past
  ComfyUI's own validation);
* ``server_expect``: regex for ComfyUI's own refusal (HTTP 400) when its validation stops the graph
  before our node runs (junk combo widget values, ``inf`` above a max, files not in the list);
* ``warning``: the run succeeds but the node's report (ui text) must match this regex.

Core nodes used: ``CheckpointLoaderSimple`` (the tiny SD1.5 checkpoint), ``CLIPTextEncode``, ``EmptyImage`` and
``LatentMultiply`` (multiplier NaN passes ComfyUI's min/max checks: the way to make a NaN latent in a prompt).
"""

from __future__ import annotations

import base64
import io
import json
import math
import struct
from dataclasses import dataclass, field

NAN, INF = math.nan, math.inf
CKPT = "sync_canvas_tiny_sd15.safetensors"
QUAD = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nf 1/1 2/2 3/3\nf 1/1 3/3 4/4\n"
PLY_HEADER = ("ply\nformat binary_little_endian 1.0\nelement vertex {n}\nproperty float x\nproperty float y\n"
              "property float z\nend_header\n")


@dataclass
class Case:
    id: str
    graph: dict
    expect: str | None = None
    server_expect: str | None = None
    warning: str | None = None
    files: dict = field(default_factory=dict)  # name in the input folder -> bytes


# ---- graph pieces ------------------------------------------------------------------------------------
def node(class_type: str, **inputs) -> dict:
    return {"class_type": class_type, "inputs": inputs}


def pano360(**overrides) -> dict:
    inputs = dict(rig="synctweedies", view_size=64, fov=72.0, pitch=0.0, pole_views=False, width=0, interpolation="nearest")
    inputs.update(overrides)
    return {"1": node("SyncCanvas360Panorama", **inputs)}


def wide(**overrides) -> dict:
    inputs = dict(width=128, height=64, window=64, stride=64, wrap=False)
    inputs.update(overrides)
    return {"1": node("SyncCanvasWidePanorama", **inputs)}


def anagram(views: str) -> dict:
    return {"1": node("SyncCanvasAnagram", size=64, views=views)}


def sampler(latent_nan: bool = False, **overrides) -> dict:
    """Tiny SD1.5 -> prompts -> SyncCanvas KSampler on a 128x64 wide panorama (2 views of 64)."""
    inputs = dict(model=["1", 0], positive=["2", 0], negative=["3", 0], projector=["4", 0], seed=0, steps=1,
                  cfg=2.0, mode="case_2", scheduler="normal", eta=0.0, denoise=1.0, max_views_per_batch=0,
                  inner_steps=2)
    inputs.update(overrides)
    graph = {
        "1": node("CheckpointLoaderSimple", ckpt_name=CKPT),
        "2": node("CLIPTextEncode", text="a lake", clip=["1", 1]),
        "3": node("CLIPTextEncode", text="", clip=["1", 1]),
        "4": node("SyncCanvasWidePanorama", width=128, height=64, window=64, stride=64, wrap=False),
        "9": node("SyncCanvasKSampler", **inputs),
    }
    if latent_nan:
        graph["5"] = node("SyncCanvasEmptyLatent", projector=["4", 0], channels=4)
        graph["6"] = node("LatentMultiply", samples=["5", 0], multiplier=NAN)
        graph["9"]["inputs"]["latent"] = ["6", 0]
    return graph


def load_mesh(name: str, unwrap: str = "never") -> dict:
    return {"1": node("SyncCanvasLoadMesh", mesh=name, unwrap=unwrap)}


def mesh_chain(name: str = "corpus_quad.obj", rig: str = "custom", views: str = "0:0, 90:0", **projector) -> dict:
    graph = load_mesh(name, "auto")
    graph["2"] = node("SyncCanvasCameraRig", sync_mesh=["1", 0], rig=rig, views=views, fov=60.0, distance=0.0, groups=2)
    settings = dict(view_size=64, texture_size=64, latent_texture_ratio=1.0, cos_exponent=3.0, sampling="nearest", backend="torch")
    settings.update(projector)
    graph["3"] = node("SyncCanvasMeshProjector", sync_mesh=["1", 0], cameras=["2", 0], **settings)
    return graph


def load_splat(name: str) -> dict:
    return {"1": node("SyncCanvasLoadSplat", splat_file=name)}


def splat_chain(views: int = 2, view_size: int = 64, name: str = "corpus_splat.ply") -> dict:
    graph = load_splat(name)
    graph["2"] = node("SyncCanvasSplatOrbit", splat=["1", 0], views=views, view_size=view_size, fov=50.0, up="z",
                      elevation_min=-10.0, elevation_max=50.0, margin=1.1)
    graph["3"] = node("SyncCanvasSplatProjector", splat=["1", 0], cameras=["2", 0])
    return graph


def save_image(prefix: str = "corpus/img", projection: str = "flat") -> dict:
    graph = {"2": node("EmptyImage", width=64, height=32, batch_size=1, color=0)}
    graph["3"] = node("SyncCanvasSaveImage", images=["2", 0], filename_prefix=prefix, projection=projection)
    return graph


def save_mesh(fmt: str, prefix: str = "corpus/mesh") -> dict:
    graph = mesh_chain()
    graph["4"] = node("SyncCanvasMeshConditioning", projector=["3", 0])
    graph["5"] = node("SyncCanvasSaveTexturedMesh", projector=["3", 0], texture=["4", 0], filename_prefix=prefix, format=fmt)
    return graph


# ---- files -------------------------------------------------------------------------------------------
def _glb(valid_length: bool = True) -> bytes:
    tree = json.dumps({"asset": {"version": "2.0"}}).encode()
    tree += b" " * (-len(tree) % 4)
    total = 12 + 8 + len(tree)
    return b"glTF" + struct.pack("<II", 2, total if valid_length else total * 10) + struct.pack("<II", len(tree), 0x4E4F534A) + tree


def _gltf_escaping_buffer() -> bytes:
    tree = {"asset": {"version": "2.0"}, "buffers": [{"uri": "../../../../etc/hostname", "byteLength": 36}],
            "bufferViews": [{"buffer": 0, "byteLength": 36}],
            "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                           "min": [0, 0, 0], "max": [1, 1, 0]}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}], "nodes": [{"mesh": 0}], "scenes": [{"nodes": [0]}]}
    return json.dumps(tree).encode()


def _ascii_ply(body: str, n: int, faces: int | None = None) -> bytes:
    head = f"ply\nformat ascii 1.0\nelement vertex {n}\nproperty float x\nproperty float y\nproperty float z\n"
    if faces is not None:
        head += f"element face {faces}\nproperty list uchar int vertex_indices\n"
    return (head + "end_header\n" + body).encode()


def _splat_ply(n: int = 4, log_scale: float = -1.0) -> bytes:
    """A 3DGS PLY of ``n`` round gaussians on a line (x, y, z, f_dc, opacity, scales, rotation: float32)."""
    fields = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
              "rot_0", "rot_1", "rot_2", "rot_3")
    head = f"ply\nformat binary_little_endian 1.0\nelement vertex {n}\n"
    head += "".join(f"property float {f}\n" for f in fields) + "end_header\n"
    rows = [struct.pack("<14f", 0.3 * k, 0, 0, 0.5, 0.5, 0.5, 2.0, log_scale, log_scale, log_scale, 1, 0, 0, 0) for k in range(n)]
    return head.encode() + b"".join(rows)


def _png_bytes() -> bytes:
    # a 1x1 PNG, written without PIL so this module stays import-light
    return base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC")


TEXT = b"this is a text file, not a mesh\n"
BIG_HEADER = PLY_HEADER.format(n=10**12).encode() + b"\0" * 12

CASES: list[Case] = [
    # ---- malformed files --------------------------------------------------------------------------------
    Case("mesh_text_named_ply", load_mesh("corpus_text.ply"), r"corpus_text\.ply: does not start with 'ply'.*expected a PLY file",
         files={"corpus_text.ply": TEXT}),
    Case("mesh_ply_claims_1e12_vertices", load_mesh("corpus_big.ply"),
         r"corpus_big\.ply: header declares 1000000000000 vertex rows .* holds 12 bytes; expected a complete file",
         files={"corpus_big.ply": BIG_HEADER}),
    Case("mesh_ply_without_end_header", load_mesh("corpus_noend.ply"), r"corpus_noend\.ply: no 'end_header'",
         files={"corpus_noend.ply": b"ply\nformat ascii 1.0\nelement vertex 3\n"}),
    Case("mesh_ply_unknown_format", load_mesh("corpus_fmt.ply"), r"corpus_fmt\.ply: header line 2: unknown format",
         files={"corpus_fmt.ply": b"ply\nformat cobol 1.0\nend_header\n"}),
    Case("mesh_point_cloud_ply", load_mesh("corpus_points.ply"), r"corpus_points\.ply: contains no faces",
         files={"corpus_points.ply": _ascii_ply("0 0 0\n1 0 0\n0 1 0\n", 3)}),
    Case("splat_text_named_ply", load_splat("corpus_splat_text.ply"), r"corpus_splat_text\.ply: does not start with 'ply'",
         files={"corpus_splat_text.ply": TEXT}),
    Case("splat_ply_claims_1e12_vertices", load_splat("corpus_splat_big.ply"), r"corpus_splat_big\.ply: header declares 1000000000000",
         files={"corpus_splat_big.ply": BIG_HEADER}),
    Case("splat_ply_missing_fields", load_splat("corpus_splat_xyz.ply"), r"corpus_splat_xyz\.ply: .*(missing|f_dc_0|opacity)",
         files={"corpus_splat_xyz.ply": PLY_HEADER.format(n=1).encode() + struct.pack("<3f", 0, 0, 0)}),
    Case("glb_truncated", load_mesh("corpus_cut.glb"), r"corpus_cut\.glb: GLB is truncated: header declares \d+ bytes",
         files={"corpus_cut.glb": _glb(valid_length=False)}),
    Case("glb_bad_magic", load_mesh("corpus_magic.glb"), r"corpus_magic\.glb: not a GLB file", files={"corpus_magic.glb": b"PK\x03\x04" + b"\0" * 20}),
    Case("obj_index_out_of_range", load_mesh("corpus_index.obj"), r"corpus_index\.obj:5: face vertex index 7 out of range",
         files={"corpus_index.obj": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\nf 1 2 7\n"}),
    Case("obj_bad_index_text", load_mesh("corpus_word.obj"), r"corpus_word\.obj:4: bad face index 'x'",
         files={"corpus_word.obj": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 x\n"}),
    Case("obj_empty_file", load_mesh("corpus_empty.obj"), r"corpus_empty\.obj: file is empty", files={"corpus_empty.obj": b""}),
    Case("obj_all_faces_degenerate", load_mesh("corpus_flat.obj"), r"degenerate",
         files={"corpus_flat.obj": b"v 0 0 0\nv 1 1 1\nv 2 2 2\nf 1 2 3\n"}),
    Case("obj_nan_vertex", load_mesh("corpus_nan.obj"), r"corpus_nan\.obj: vertex coordinates contain NaN or infinity",
         files={"corpus_nan.obj": b"v 0 0 0\nv nan 0 0\nv 0 1 0\nv 1 1 0\nf 1 2 3\nf 1 3 4\n"}),
    Case("gltf_buffer_outside_input", load_mesh("corpus_escape.gltf"), r"corpus_escape\.gltf: .*hostname.*refused",
         files={"corpus_escape.gltf": _gltf_escaping_buffer()}),
    Case("obj_mtllib_outside_input", load_mesh("corpus_mtl_escape.obj"),
         warning=r"WARNING: corpus_mtl_escape\.obj: references '\.\./\.\./x\.mtl': refused",
         files={"corpus_mtl_escape.obj": ("mtllib ../../x.mtl\nusemtl m\n" + QUAD).encode()}),
    Case("obj_mtllib_absolute", load_mesh("corpus_mtl_abs.obj"),
         warning=r"references '/etc/passwd': refused, an absolute path",
         files={"corpus_mtl_abs.obj": ("mtllib /etc/passwd\nusemtl m\n" + QUAD).encode()}),
    Case("obj_missing_mtl", load_mesh("corpus_mtl_missing.obj"), warning=r"references 'gone\.mtl', which does not exist",
         files={"corpus_mtl_missing.obj": ("mtllib gone.mtl\nusemtl m\n" + QUAD).encode()}),
    Case("mtl_map_kd_outside_input", load_mesh("corpus_tex_escape.obj"), warning=r"references '\.\./\.\./t\.png': refused",
         files={"corpus_tex_escape.obj": ("mtllib corpus_tex_escape.mtl\nusemtl m\n" + QUAD).encode(),
                "corpus_tex_escape.mtl": b"newmtl m\nKd 1 1 1\nmap_Kd ../../t.png\n"}),
    Case("mtl_map_kd_missing", load_mesh("corpus_tex_missing.obj"), warning=r"references 'missing\.png', which does not exist",
         files={"corpus_tex_missing.obj": ("mtllib corpus_tex_missing.mtl\nusemtl m\n" + QUAD).encode(),
                "corpus_tex_missing.mtl": b"newmtl m\nKd 1 1 1\nmap_Kd missing.png\n", "corpus_ok.png": _png_bytes()}),
    Case("mesh_path_traversal", load_mesh("../../etc/passwd.obj"), r"not inside ComfyUI's input folder",
         server_expect=r"Value not in list"),
    Case("mesh_missing_file", load_mesh("nowhere.obj"), r"'nowhere\.obj' not found in ComfyUI's input folder",
         server_expect=r"Value not in list"),
    # ---- bad values in prompts ---------------------------------------------------------------------------
    Case("splat_turntable_too_large", {**splat_chain(), "4": node("SyncCanvasSplatTurntable", projector=["3", 0], splat=["1", 0],
                                                             frames=720, size=4096, elevation=15.0, background=1.0)},
         r"Splat Turntable: needs about .* \(720 frames of 3x4096x4096 .*\) but only .* available; lower frames or size",
         files={"corpus_splat.ply": _splat_ply()}),
    Case("mesh_turntable_too_large", {**mesh_chain(), "4": node("EmptyImage", width=64, height=64, batch_size=1, color=0),
                                      "5": node("SyncCanvasMeshTurntable", projector=["3", 0], texture=["4", 0], frames=720,
                                                size=4096, elevation=15.0, background=1.0)},
         r"Mesh Turntable: needs about .* \(720 frames of 3x4096x4096 .*\) but only .* available; lower frames or size",
         files={"corpus_quad.obj": QUAD.encode()}),
    Case("splat_projector_too_large", splat_chain(views=512, view_size=4096),
         r"Gaussian Splat: needs about .* \(512 views of 4096x4096: .* pairs .*\) but only .* available; lower view_size or views",
         files={"corpus_splat.ply": _splat_ply()}),
    Case("wide_4m_windows", wide(width=16384, height=16384, window=512, stride=8),
         r"needs about .* \(3940225 windows .*\) but only .* of RAM is available; raise stride"),
    Case("pano360_too_large", pano360(view_size=16384, width=16384, pole_views=True, interpolation="bilinear"),
         r"360 Panorama: needs about .* of RAM is available; lower view_size or width"),
    Case("wide_nan_width", wide(width=NAN), r"width=nan is not an integer", server_expect=r"INT value.*width|width.*nan"),
    # ints: ComfyUI refuses out-of-range and unconvertible values itself (HTTP 400 naming the input); a float
    # like 128.5 it would truncate, so the pack's on_prompt handler marks it first (guards.fractional_int_marker)
    Case("wide_stride_below_min", wide(stride=0), r"stride 0 leaves gaps between windows of 64",
         server_expect=r"Value 0 smaller than min of 8: stride"),
    Case("wide_width_above_max", wide(width=20000), r"width=20000 is out of range; give an integer <= 16384",
         server_expect=r"Value 20000 bigger than max of 16384: width"),
    Case("wide_width_not_integer", wide(width=128.5), r"width=128.5 is not an integer",
         server_expect=r"Failed to convert an input value to a INT value: width, 128.5 \(not an integer\)"),
    Case("wide_width_text", wide(width="wide"), r"width='wide' is not an integer",
         server_expect=r"Failed to convert an input value to a INT value: width, wide"),
    Case("sampler_fractional_steps", sampler(steps=2.5), r"SyncCanvas KSampler: steps=2.5 is not an integer",
         server_expect=r"INT value: steps, 2.5 \(not an integer\)"),
    Case("wide_window_larger_than_canvas", wide(window=256), r"window 256 does not fit the canvas (height 64|width 128)"),
    Case("wide_stride_larger_than_window", wide(stride=128), r"stride 128 leaves gaps between windows of 64"),
    Case("pano360_junk_rig", pano360(rig="junk"), r"rig='junk' is not one of its options: 'synctweedies', 'stochsync'",
         server_expect=r"Value not in list.*rig: 'junk'"),
    Case("pano360_junk_interpolation", pano360(interpolation="cubic"), r"interpolation='cubic' is not one of its options",
         server_expect=r"Value not in list"),
    Case("pano360_nan_pitch", pano360(pitch=NAN), r"pitch=nan is not a finite number; give a number in \[-90.0, 90.0\]"),
    Case("pano360_nan_fov", pano360(fov=NAN), r"fov=nan is not a finite number"),
    Case("pano360_inf_fov", pano360(fov=INF), r"fov=inf is not a finite number", server_expect=r"bigger than max"),
    Case("pano360_width_not_multiple_of_16", pano360(width=1000), r"width=1000 must be a multiple of 16",
         server_expect=r"width=1000 must be a multiple of 16|step"),
    Case("anagram_no_views", anagram(" , "), r"names no view transform"),
    Case("anagram_unknown_view", anagram("identity, spin"), r"spin"),
    Case("camera_rig_nan_azimuth", mesh_chain(views="nan:0, 90:0"), r"bad view 'nan:0': azimuth and elevation must be finite",
         files={"corpus_quad.obj": QUAD.encode()}),
    Case("camera_rig_word_azimuth", mesh_chain(views="left:0"), r"bad view 'left:0': expected 'azimuth:elevation'",
         files={"corpus_quad.obj": QUAD.encode()}),
    Case("camera_rig_junk_rig", mesh_chain(rig="orbit"), r"rig='orbit' is not one of its options: 'paper', 'stochsync', 'custom'",
         server_expect=r"Value not in list", files={"corpus_quad.obj": QUAD.encode()}),
    Case("mesh_projector_nan_ratio", mesh_chain(latent_texture_ratio=NAN), r"latent_texture_ratio=nan is not a finite number",
         files={"corpus_quad.obj": QUAD.encode()}),
    Case("mesh_projector_too_large", mesh_chain(view_size=4096, texture_size=8192, latent_texture_ratio=4.0, rig="paper"),
         r"Mesh Texture: needs about .* available; lower view_size, texture_size or latent_texture_ratio",
         files={"corpus_quad.obj": QUAD.encode()}),
    Case("mesh_junk_backend", mesh_chain(backend="opengl"), r"backend='opengl' is not one of its options",
         server_expect=r"Value not in list", files={"corpus_quad.obj": QUAD.encode()}),
    Case("sampler_nan_cfg", sampler(cfg=NAN), r"SyncCanvas KSampler: cfg=nan is not a finite number"),
    Case("sampler_nan_denoise", sampler(denoise=NAN), r"denoise=nan is not a finite number; give a number in \[0.0, 1.0\]"),
    Case("sampler_nan_eta", sampler(eta=NAN), r"eta=nan is not a finite number"),
    Case("sampler_junk_mode", sampler(mode="case_9"), r"mode='case_9' is not one of its options: 'No sync: views alone",
         server_expect=r"unknown sampler mode 'case_9'|Value not in list"),
    Case("sampler_junk_scheduler", sampler(scheduler="weird"), r"scheduler='weird' is not one of its options",
         server_expect=r"Value not in list"),
    Case("sampler_nan_latent", sampler(latent_nan=True), r"latent \(latent samples\) contains \d+ non-finite values"),
    Case("sampler_denoise_without_latent", sampler(denoise=0.5), r"denoise=0.5 needs a latent to start from"),
    Case("save_prefix_parent", save_image("../evil"), r"filename_prefix '\.\./evil' contains '\.\.'"),
    Case("save_prefix_absolute", save_image("/tmp/evil"), r"filename_prefix '/tmp/evil' is an absolute path"),
    Case("save_prefix_empty", save_image("  "), r"filename_prefix is empty"),
    Case("save_junk_projection", save_image(projection="cylinder"), r"projection='cylinder' is not one of its options: 'flat', 'equirectangular'",
         server_expect=r"Value not in list"),
    Case("save_mesh_empty_format", save_mesh(""), r"format='' is not one of its options: 'glb', 'obj', 'glb\+obj'",
         server_expect=r"Value not in list", files={"corpus_quad.obj": QUAD.encode()}),
]

assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"
