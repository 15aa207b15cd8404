"""Mesh nodes through ComfyUI's real types and sampler (tiny random models). Skipped without COMFYUI_PATH."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.slow,  # imports ComfyUI and runs a tiny UNet
    pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH not set: ComfyUI node tests skipped"),
]


@pytest.fixture
def folders(tmp_path, tiny, monkeypatch):
    import folder_paths

    (tmp_path / "input").mkdir()
    (tmp_path / "output").mkdir()
    monkeypatch.setattr(folder_paths, "get_input_directory", lambda: str(tmp_path / "input"))
    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(tmp_path / "output"))
    return tmp_path


def _torus_file(folder: pathlib.Path) -> str:
    from sync_canvas.assets import procedural
    from sync_canvas.assets.mesh_io import export_glb

    export_glb(procedural.torus(24, 12), procedural.checker_texture(32), folder / "input", "torus")
    return "torus.glb"


def _projector(folders, view_size=64, texture_size=64, rig="paper"):
    from sync_canvas.nodes.mesh import SyncCanvasCameraRig, SyncCanvasLoadMesh, SyncCanvasMeshProjector

    sync_mesh, comfy_mesh = SyncCanvasLoadMesh.execute(_torus_file(folders), "auto").args
    cams = SyncCanvasCameraRig.execute(sync_mesh, rig, "", 60.0, 0.0, 2).args[0]
    return SyncCanvasMeshProjector.execute(sync_mesh, cams, view_size, texture_size, 1.5, 3.0, "nearest", "torch").args[0], comfy_mesh


def test_every_mesh_node_schema_validates(tiny):
    from sync_canvas.nodes import collect_nodes
    from sync_canvas.nodes.mesh import NODES

    for node in NODES:
        info = node.GET_NODE_INFO_V1()  # runs ComfyUI's schema validation
        assert info["name"] == node.__name__ and info["category"].startswith("Sync Canvas")
    assert set(NODES) <= set(collect_nodes())


def test_load_mesh_lists_input_files_and_refuses_paths_outside(folders):
    from sync_canvas.nodes.mesh import SyncCanvasLoadMesh

    name = _torus_file(folders)
    schema = SyncCanvasLoadMesh.define_schema()
    assert schema.inputs[0].options == [name]
    sync_mesh, comfy_mesh = SyncCanvasLoadMesh.execute(name, "auto").args
    assert sync_mesh.n_faces == 24 * 12 * 2 and comfy_mesh.vertices.shape == (1, sync_mesh.n_vertices, 3)
    with pytest.raises(ValueError, match="not inside ComfyUI's input folder"):
        SyncCanvasLoadMesh.execute("../output/x.glb", "auto")
    with pytest.raises(ValueError, match="not found"):
        SyncCanvasLoadMesh.execute("missing.obj", "auto")


def test_load_mesh_reports_refused_and_missing_references_on_the_node(folders):
    from sync_canvas.nodes.mesh import SyncCanvasLoadMesh

    quad = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nf 1/1 2/2 3/3\nf 1/1 3/3 4/4\n"
    (folders / "output" / "x.mtl").write_text("newmtl m\nKd 1 1 1\n")
    (folders / "input" / "q.obj").write_text("mtllib ../output/x.mtl\nusemtl m\n" + quad)
    out = SyncCanvasLoadMesh.execute("q.obj", "never")
    text = " ".join(map(str, out.ui.as_dict()["text"]))
    assert "WARNING" in text and "x.mtl" in text and "outside the input folder" in text
    assert out.args[0].warnings and "refused" in out.args[0].warnings[0]


def test_comfy_mesh_round_trips_into_a_textured_sync_mesh(folders):
    from sync_canvas.nodes.mesh import SyncCanvasMeshFromComfy

    _, comfy_mesh = _projector(folders, 16, 16)
    sync_mesh = SyncCanvasMeshFromComfy.execute(comfy_mesh, 0).args[0]
    assert sync_mesh.has_uvs and sync_mesh.n_faces == comfy_mesh.faces.shape[1]
    with pytest.raises(ValueError, match="index 3 out of range"):
        SyncCanvasMeshFromComfy.execute(comfy_mesh, 3)


def test_conditioning_turntable_and_save(folders):
    from sync_canvas.assets.mesh_io import glb_summary, load_mesh
    from sync_canvas.nodes.mesh import SyncCanvasMeshConditioning, SyncCanvasMeshTurntable, SyncCanvasSaveTexturedMesh

    projector, _ = _projector(folders)
    depth, normal, mask = SyncCanvasMeshConditioning.execute(projector).args
    assert depth.shape == (10, 64, 64, 3) and normal.shape == (10, 64, 64, 3) and mask.shape == (10, 64, 64)
    assert torch.equal(depth[..., 0] > 0, mask > 0)
    texture = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    frames = SyncCanvasMeshTurntable.execute(projector, texture, 3, 32, 10.0, 1.0).args[0]
    assert frames.shape == (3, 32, 32, 3) and (frames[:, 0, 0] == 1).all() and frames.std() > 0.05
    out = SyncCanvasSaveTexturedMesh.execute(projector, texture, "meshes/torus", "glb+obj")
    saved = sorted(p.name for p in (folders / "output" / "meshes").iterdir())
    assert saved == ["torus_00001_.glb", "torus_00001_.mtl", "torus_00001_.obj", "torus_00001_.png"]
    glb = folders / "output" / "meshes" / "torus_00001_.glb"
    assert glb_summary(glb)["images"] == 1
    back = load_mesh(glb, unwrap="never")
    assert back.n_vertices == projector.mesh.n_vertices and back.texture.shape == (64, 64, 3)
    assert np.abs(back.texture / 255.0 - texture[0].numpy()).max() < 1 / 255 + 1e-6
    assert out.args[0].vertices.shape[1] == projector.mesh.n_vertices
    assert out.args[1] == "meshes/torus_00001_.glb"  # core Preview3D's model_file: relative to the output folder
    assert SyncCanvasSaveTexturedMesh.execute(projector, texture, "meshes/torus", "obj").args[1] == "meshes/torus_00002_.obj"
    with pytest.raises(ValueError, match="'..'"):
        SyncCanvasSaveTexturedMesh.execute(projector, texture, "../escape", "glb")


def test_sampler_textures_the_mesh_and_edit_start_feeds_it(folders, tiny):
    from sync_canvas.nodes.mesh import SyncCanvasMeshEditStart
    from sync_canvas.nodes.sampler_nodes import SyncCanvasKSampler

    projector, _ = _projector(folders, view_size=64, texture_size=32)
    model, vae = tiny.tiny_model(), tiny.tiny_vae()
    pos, neg = tiny.conditioning(0), tiny.conditioning(1)
    settings = dict(seed=1, steps=2, cfg=2.0, mode="case_2", scheduler="normal", eta=0.0)
    with torch.inference_mode():
        latent, image, views = SyncCanvasKSampler.execute(model, pos, neg, projector, denoise=1.0, vae=vae, **settings).args
        assert latent["samples"].shape == (1, 4, 48, 48)  # latent texture = 1.5 x RGB texture
        assert image.shape == (1, 32, 32, 3) and views.shape == (10, 64, 64, 3)
        assert torch.isfinite(latent["samples"]).all() and torch.isfinite(image).all()
        # the views are renders of the one texture image (final RGB synchronization), where the mesh is seen
        rendered = projector.project(image[0].movedim(-1, 0).to(projector.device)).movedim(1, -1).cpu()
        seen = projector.view_masks().cpu().unsqueeze(-1).expand_as(views)
        assert float((rendered - views)[seen].abs().mean()) < 0.02
        start = SyncCanvasMeshEditStart.execute(projector, image, vae).args[0]
        assert start["samples"].shape == (1, 4, 48, 48) and torch.isfinite(start["samples"]).all()
        edited = SyncCanvasKSampler.execute(model, pos, neg, projector, denoise=0.8, vae=vae, latent=start, **settings).args[0]
    assert torch.isfinite(edited["samples"]).all()
