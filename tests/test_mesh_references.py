"""Files a mesh refers to are confined by the pack (assets/file_refs.py), whatever trimesh would allow,
and every refused or missing reference is reported (MeshData.warnings + the log), never silent."""

import base64
import json
import logging

import numpy as np
import pytest

from sync_canvas.assets import procedural
from sync_canvas.assets.file_refs import ConfinedResolver
from sync_canvas.assets.mesh_data import MeshError
from sync_canvas.assets.mesh_io import export_glb, load_mesh

QUAD = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nf 1/1 2/2 3/3\nf 1/1 3/3 4/4\n"


def _png(path, colour):
    from PIL import Image

    Image.fromarray(np.full((4, 4, 3), colour, np.uint8)).save(path)


@pytest.fixture
def layout(tmp_path):
    """``tmp/input`` (the root) with a ``3d/`` sub-folder, and ``tmp/secret`` outside the root."""
    root, secret = tmp_path / "input", tmp_path / "secret"
    (root / "3d").mkdir(parents=True)
    secret.mkdir()
    _png(secret / "s.png", 200)
    (secret / "s.mtl").write_text("newmtl m\nKd 1 1 1\nmap_Kd s.png\n")
    return root, secret


@pytest.fixture
def permissive_trimesh(monkeypatch):
    """trimesh's file resolver as before version 5: follows any path. The pack must not depend on it."""
    import trimesh.resolvers as r

    original = r.FilePathResolver.__init__
    monkeypatch.setattr(r.FilePathResolver, "__init__", lambda self, source, allow_anywhere=True: original(self, source, True))


@pytest.mark.parametrize("mtllib", ["../../secret/s.mtl", "{secret}/s.mtl", "file://{secret}/s.mtl"])
def test_escaping_mtllib_is_refused_and_reported(layout, permissive_trimesh, mtllib, caplog):
    root, secret = layout
    mtllib = mtllib.format(secret=secret)
    (root / "3d" / "q.obj").write_text(f"mtllib {mtllib}\nusemtl m\n" + QUAD)
    with caplog.at_level(logging.WARNING, logger="sync_canvas"):
        mesh = load_mesh(root / "3d" / "q.obj", unwrap="never", root=root)
    assert mesh.texture is None or (mesh.texture != 200).all()  # the outside texture (value 200) was not read
    assert len(mesh.warnings) == 1 and "refused" in mesh.warnings[0] and "q.obj" in mesh.warnings[0]
    assert "s.mtl" in caplog.text


def test_escaping_map_kd_is_refused_and_reported(layout, permissive_trimesh):
    root, secret = layout
    (root / "3d" / "q.mtl").write_text(f"newmtl m\nKd 1 1 1\nmap_Kd ../../secret/s.png\n")
    (root / "3d" / "q.obj").write_text("mtllib q.mtl\nusemtl m\n" + QUAD)
    mesh = load_mesh(root / "3d" / "q.obj", unwrap="never", root=root)
    assert mesh.texture is None or (mesh.texture != 200).all()
    assert any("s.png" in w and "outside the input folder" in w for w in mesh.warnings)


def test_missing_mtl_and_texture_are_reported(layout):
    root, _ = layout
    (root / "a.obj").write_text("mtllib gone.mtl\nusemtl m\n" + QUAD)
    assert any("gone.mtl" in w and "does not exist" in w for w in load_mesh(root / "a.obj", root=root).warnings)
    (root / "b.mtl").write_text("newmtl m\nmap_Kd gone.png\n")
    (root / "b.obj").write_text("mtllib b.mtl\nusemtl m\n" + QUAD)
    assert any("gone.png" in w for w in load_mesh(root / "b.obj", root=root).warnings)


def test_references_inside_the_root_are_read(layout):
    root, _ = layout
    _png(root / "shared.png", 90)
    (root / "3d" / "q.mtl").write_text("newmtl m\nKd 1 1 1\nmap_Kd ../shared.png\n")
    (root / "3d" / "q.obj").write_text("mtllib q.mtl\nusemtl m\n" + QUAD)
    mesh = load_mesh(root / "3d" / "q.obj", unwrap="never", root=root)
    assert mesh.warnings == [] and mesh.texture is not None and int(mesh.texture[0, 0, 0]) == 90


def _gltf_with_buffer_uri(glb_path, uri):
    """A .gltf whose geometry buffer lives at ``uri`` (the GLB's binary chunk written there)."""
    import struct

    data = glb_path.read_bytes()
    n = struct.unpack("<I", data[12:16])[0]
    tree = json.loads(data[20 : 20 + n])
    binary = data[20 + n + 8 :]
    tree["buffers"] = [{"uri": uri, "byteLength": len(binary)}]
    for image in tree.get("images", []):  # keep the texture, embedded
        if "bufferView" not in image:  # the pack's GLBs already embed it as a data: URI
            continue
        view = tree["bufferViews"][image.pop("bufferView")]
        blob = binary[view.get("byteOffset", 0) : view.get("byteOffset", 0) + view["byteLength"]]
        image["uri"] = "data:image/png;base64," + base64.b64encode(blob).decode()
    return json.dumps(tree), binary


def test_gltf_buffer_outside_root_is_refused_with_a_clear_error(layout, permissive_trimesh, tmp_path):
    root, secret = layout
    glb = export_glb(procedural.torus(12, 6), procedural.checker_texture(8), tmp_path, "t")
    text, binary = _gltf_with_buffer_uri(glb, "../../secret/t.bin")
    (secret / "t.bin").write_bytes(binary)
    (root / "3d" / "t.gltf").write_text(text)
    with pytest.raises(MeshError, match=r"t.gltf.*t.bin.*refused"):
        load_mesh(root / "3d" / "t.gltf", root=root)
    (root / "3d" / "t.bin").write_bytes(binary)  # the same buffer next to the file is fine
    text, _ = _gltf_with_buffer_uri(glb, "t.bin")
    (root / "3d" / "t.gltf").write_text(text)
    assert load_mesh(root / "3d" / "t.gltf", root=root).n_faces == procedural.torus(12, 6).n_faces


@pytest.mark.parametrize("name", ["/etc/passwd", "C:\\\\Windows\\\\win.ini", "http://example.com/x.png", "~/x.png",
                                  "..%2F..%2Fsecret%2Fs.png", "a\x00b", ""])
def test_resolver_refuses_absolute_urls_encoded_escapes(layout, name):
    root, _ = layout
    resolver = ConfinedResolver(root / "3d", root, "m.obj")
    with pytest.raises(OSError):
        resolver.get(name)
    assert len(resolver.problems) == 1 and resolver.problems[0].startswith("m.obj: references")


def test_resolver_refuses_symlink_out_of_root(layout):
    root, secret = layout
    (root / "link.png").symlink_to(secret / "s.png")
    with pytest.raises(PermissionError, match="outside the input folder"):
        ConfinedResolver(root, root).get("link.png")
