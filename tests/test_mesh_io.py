"""Mesh loading, validation, unwrapping and textured export (assets/mesh_io.py, mesh_uv.py)."""

import struct

import numpy as np
import pytest

from sync_canvas.assets import procedural
from sync_canvas.assets.mesh_data import MeshError
from sync_canvas.assets.mesh_io import export_glb, export_obj, glb_summary, images_as_data_uris, load_mesh, safe_output_path
from sync_canvas.assets.mesh_uv import unwrap_uvs


@pytest.fixture
def torus():
    return procedural.torus(24, 12)


def _texture(size=32):
    return procedural.checker_texture(size)


def test_glb_roundtrip_keeps_vertices_uvs_and_texture(tmp_path, torus):
    path = export_glb(torus, _texture(32), tmp_path, "torus")
    assert glb_summary(path)["images"] == 1  # texture embedded, not referenced
    back = load_mesh(path, unwrap="never")
    assert back.n_vertices == torus.n_vertices and back.n_faces == torus.n_faces
    assert back.texture is not None and back.texture.shape == (32, 32, 3)
    np.testing.assert_allclose(back.vertices, torus.vertices, atol=1e-5)
    np.testing.assert_allclose(back.uvs, torus.uvs, atol=1e-5)
    assert np.abs(back.texture.astype(int) - np.round(_texture(32) * 255)).max() <= 1


def test_glb_texture_is_a_data_uri_that_comfyuis_strict_csp_lets_the_viewer_read(tmp_path, torus):
    """ComfyUI's CSP (--disable-api-nodes) blocks fetch(blob:), which is how three.js reads a buffer-view
    image: the texture must be a data: URI, and the buffer hold only the geometry (no dead copy)."""
    import json

    data = export_glb(torus, _texture(32), tmp_path, "torus").read_bytes()
    gltf = json.loads(data[20 : 20 + struct.unpack("<I", data[12:16])[0]])
    assert [image["uri"][:22] for image in gltf["images"]] == ["data:image/png;base64,"]
    assert all("bufferView" not in image for image in gltf["images"])
    geometry = sum(view["byteLength"] for view in gltf["bufferViews"])
    assert gltf["buffers"][0]["byteLength"] <= geometry + 4 * len(gltf["bufferViews"])
    assert images_as_data_uris(data) == data  # nothing left to move


def test_glb_export_undoes_normalisation(tmp_path):
    mesh = procedural.cube()
    mesh.to_original = np.diag([10.0, 10.0, 10.0, 1.0])
    mesh.to_original[:3, 3] = [5, 0, -3]
    import trimesh

    raw = trimesh.load(export_glb(mesh, _texture(), tmp_path, "c"), force="mesh", process=False)
    np.testing.assert_allclose(raw.bounds, [[0, -5, -8], [10, 5, 2]], atol=1e-4)
    assert np.ptp(load_mesh(tmp_path / "c.glb").vertices, axis=0).max() == pytest.approx(1.0, abs=1e-6)


def test_obj_export_writes_obj_mtl_png_and_reimports(tmp_path, torus):
    paths = export_obj(torus, _texture(16), tmp_path, "t")
    assert sorted(p.name for p in paths) == ["t.mtl", "t.obj", "t.png"]
    assert "map_Kd t.png" in (tmp_path / "t.mtl").read_text()
    back = load_mesh(tmp_path / "t.obj", unwrap="never")
    assert back.n_vertices == torus.n_vertices and back.texture.shape == (16, 16, 3)


def test_multi_part_scene_is_merged(tmp_path):
    import trimesh

    a = trimesh.creation.box()
    b = trimesh.creation.icosphere(subdivisions=1)
    b.apply_translation([3, 0, 0])
    trimesh.Scene([a, b]).export(tmp_path / "scene.glb")
    mesh = load_mesh(tmp_path / "scene.glb")
    assert mesh.n_faces == len(a.faces) + len(b.faces)
    assert mesh.has_uvs  # no UVs in the file -> unwrapped
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    assert (hi - lo).max() == pytest.approx(1.0, abs=1e-6) and np.allclose((hi + lo) / 2, 0, atol=1e-6)


@pytest.mark.parametrize("suffix", [".ply", ".stl", ".obj"])
def test_meshes_without_uvs_get_unwrapped(tmp_path, suffix):
    import trimesh

    trimesh.creation.icosphere(subdivisions=2).export(tmp_path / f"s{suffix}")
    mesh = load_mesh(tmp_path / f"s{suffix}")
    assert mesh.has_uvs and mesh.uvs.min() >= 0 and mesh.uvs.max() <= 1
    assert mesh.n_faces == 320 and mesh.n_vertices >= 162  # seams split vertices
    assert load_mesh(tmp_path / f"s{suffix}", unwrap="never").uvs is None


def test_unwrap_always_replaces_uvs_and_keeps_geometry(torus):
    fresh = unwrap_uvs(torus)
    assert fresh.n_faces == torus.n_faces and fresh.n_vertices >= torus.n_vertices
    tri_before = torus.vertices[torus.faces]
    tri_after = fresh.vertices[fresh.faces]
    np.testing.assert_allclose(tri_after, tri_before, atol=1e-6)  # same triangles, new parametrisation
    # UV triangles do not overlap: summed UV area does not exceed the atlas
    uv = fresh.uvs[fresh.faces]
    e1, e2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    area = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum()
    assert 0.2 < area <= 1.0


def test_overlapping_uvs_are_detected_and_reunwrapped(tmp_path, torus):
    from sync_canvas.assets.mesh_uv import uv_overlap_fraction

    assert uv_overlap_fraction(torus) < 0.01 and uv_overlap_fraction(procedural.cube(2)) < 0.01
    mirrored = procedural.torus(24, 12)
    mirrored.uvs = mirrored.uvs.copy()
    mirrored.uvs[:, 0] = 0.5 - np.abs(mirrored.uvs[:, 0] - 0.5)  # right half mirrors the left half
    assert uv_overlap_fraction(mirrored) > 0.4
    export_glb(mirrored, _texture(), tmp_path, "mirrored")
    assert uv_overlap_fraction(load_mesh(tmp_path / "mirrored.glb")) < 0.01  # auto re-unwrapped
    kept = load_mesh(tmp_path / "mirrored.glb", unwrap="never")
    np.testing.assert_allclose(kept.uvs, mirrored.uvs, atol=1e-5)


# ---- malformed input: clear errors, nothing written ------------------------------------------------
def test_truncated_glb(tmp_path, torus):
    path = export_glb(torus, _texture(), tmp_path, "full")
    data = path.read_bytes()
    (tmp_path / "cut.glb").write_bytes(data[: len(data) // 2])
    with pytest.raises(MeshError, match="truncated"):
        load_mesh(tmp_path / "cut.glb")


def test_obj_with_out_of_range_index(tmp_path):
    (tmp_path / "bad.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\nf 1 2 7\n")
    with pytest.raises(MeshError, match=r"bad.obj:5: face vertex index 7 out of range"):
        load_mesh(tmp_path / "bad.obj")


def test_empty_ply(tmp_path):
    header = "ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\nproperty float z\n"
    (tmp_path / "empty.ply").write_text(header + "element face 0\nproperty list uchar int vertex_indices\nend_header\n")
    with pytest.raises(MeshError, match="empty.ply"):
        load_mesh(tmp_path / "empty.ply")


def test_point_cloud_ply_has_no_faces(tmp_path):
    import trimesh

    trimesh.PointCloud(np.random.default_rng(0).random((20, 3))).export(tmp_path / "pts.ply")
    with pytest.raises(MeshError, match="no faces"):
        load_mesh(tmp_path / "pts.ply")


def test_degenerate_and_empty_files(tmp_path):
    (tmp_path / "flat.obj").write_text("v 0 0 0\nv 1 1 1\nv 2 2 2\nf 1 2 3\n")
    with pytest.raises(MeshError, match="degenerate"):
        load_mesh(tmp_path / "flat.obj")
    (tmp_path / "zero.stl").write_bytes(b"")
    with pytest.raises(MeshError, match="empty"):
        load_mesh(tmp_path / "zero.stl")
    (tmp_path / "x.fbx").write_text("nope")
    with pytest.raises(MeshError, match="unsupported mesh format"):
        load_mesh(tmp_path / "x.fbx")
    with pytest.raises(MeshError, match="no such mesh file"):
        load_mesh(tmp_path / "missing.obj")
    with pytest.raises(ValueError, match="unwrap must be one of"):
        load_mesh(tmp_path / "flat.obj", unwrap="sometimes")


def test_glb_with_bad_header(tmp_path):
    (tmp_path / "bad.glb").write_bytes(b"glTF" + struct.pack("<II", 2, 12))
    with pytest.raises(MeshError, match="bad.glb"):
        load_mesh(tmp_path / "bad.glb")
    (tmp_path / "nope.glb").write_bytes(b"PK\x03\x04" + b"\0" * 20)
    with pytest.raises(MeshError, match="not a GLB"):
        load_mesh(tmp_path / "nope.glb")


def test_export_refuses_to_leave_folder_and_writes_nothing_on_error(tmp_path, torus):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("../escape", "/abs/path", "a/../../b"):
        with pytest.raises(ValueError, match="leaves the output folder"):
            export_glb(torus, _texture(), out, name)
    with pytest.raises(ValueError, match="3 channels"):
        export_obj(torus, np.zeros((8, 8, 2)), out, "t")
    no_uv = procedural.cube()
    no_uv.uvs = None
    with pytest.raises(MeshError, match="without UVs"):
        export_glb(no_uv, _texture(), out, "n")
    assert list(out.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert safe_output_path(out, "sub/ok", ".glb") == (out / "sub" / "ok.glb").resolve()
