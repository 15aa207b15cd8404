"""Core ComfyUI 3D types: the pack's meshes leave as ComfyUI's MESH with UVs and texture where the running
ComfyUI's MESH carries them (0.33.0), geometry only where it does not (0.3.64). Needs COMFYUI_PATH; CI runs
it on both versions."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH not set: ComfyUI node tests skipped")


def _quad():
    from sync_canvas.assets.mesh_data import MeshData

    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int64)
    uvs = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float32)  # v up, as the pack keeps them
    return MeshData(vertices, faces, uvs)


def test_mesh_leaves_with_uvs_in_gltf_convention_and_the_texture_where_supported(tiny):
    from sync_canvas.nodes.mesh import core_mesh_type, to_comfy_mesh

    texture = torch.rand(1, 8, 8, 3)
    out = to_comfy_mesh(_quad(), texture)
    assert out.vertices.shape == (1, 4, 3) and out.faces.shape == (1, 2, 3)
    if core_mesh_type() is None:  # 0.3.64: the MESH class has geometry only
        assert not hasattr(out, "uvs") or getattr(out, "uvs", None) is None
        pytest.skip("this ComfyUI's MESH carries no UVs or texture (geometry only, as expected before the core 3D types)")
    assert torch.equal(out.uvs[0, :, 0], torch.tensor([0.0, 1.0, 1.0, 0.0]))
    assert torch.equal(out.uvs[0, :, 1], torch.tensor([1.0, 1.0, 0.0, 0.0])), "glTF's v runs down: 1 - v"
    assert torch.equal(out.texture, texture)


def test_core_savable_glb_carries_the_texture_on_versions_with_core_3d_types(tiny, tmp_path):
    from sync_canvas.nodes.mesh import core_mesh_type, to_comfy_mesh

    if core_mesh_type() is None:
        pytest.skip("no core textured MESH in this ComfyUI (0.3.64): nothing to hand to its SaveGLB")
    from comfy_extras.nodes_save_3d import mesh_item_to_glb_bytes  # what core SaveGLB writes per item

    mesh = to_comfy_mesh(_quad(), torch.rand(1, 8, 8, 3))
    path = tmp_path / "quad.glb"
    path.write_bytes(mesh_item_to_glb_bytes(mesh, 0))
    import trimesh

    loaded = trimesh.load(path, force="mesh")
    assert loaded.visual.kind == "texture" and loaded.visual.material.baseColorTexture is not None
    np.testing.assert_allclose(np.sort(loaded.visual.uv[:, 1]), [0, 0, 1, 1])


def _scene(g: int = 50, k: int = 3):
    from sync_canvas.assets.splat_ply import SplatScene

    gen = torch.Generator().manual_seed(0)
    return SplatScene(torch.randn(g, 3, generator=gen), torch.randn(g, 4, generator=gen), torch.randn(g, 3, generator=gen) - 3,
                      torch.randn(g, generator=gen), torch.randn(g, 3, generator=gen), torch.randn(g, 3, k, generator=gen))


def test_splat_scene_and_core_splat_tensors_convert_both_ways_exactly(tiny):
    from sync_canvas.nodes.splat_interop import core_tensors_to_scene, scene_to_core_tensors

    scene = _scene()
    core = scene_to_core_tensors(scene)
    assert core["sh"].shape == (1, 50, 4, 3) and core["opacities"].shape == (1, 50, 1)
    torch.testing.assert_close(core["sh"][0, :, 0, :], scene.sh_dc)  # DC term first, as core SPLAT keeps it
    torch.testing.assert_close(core["rotations"][0].norm(dim=-1), torch.ones(50))
    back = core_tensors_to_scene(*(core[k][0] for k in ("positions", "scales", "rotations", "opacities", "sh")))
    for name in ("means", "log_scales", "opacity_logits", "sh_dc", "sh_rest"):
        torch.testing.assert_close(getattr(back, name), getattr(scene, name), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(back.colors(), scene.colors())


def test_core_splat_nodes_exist_exactly_where_comfyui_has_the_splat_type(tiny):
    from comfy_api.latest import io

    from sync_canvas.nodes import collect_nodes
    from sync_canvas.nodes.splat_interop import SyncCanvasSplatFromComfy, SyncCanvasSplatToComfy

    ids = {n.GET_SCHEMA().node_id for n in collect_nodes()}
    if getattr(io, "Splat", None) is None:
        assert "SyncCanvasSplatToComfy" not in ids
        pytest.skip("this ComfyUI has no core SPLAT type (0.3.64): the interop nodes are not registered")
    assert {"SyncCanvasSplatToComfy", "SyncCanvasSplatFromComfy"} <= ids
    scene = _scene()
    core = SyncCanvasSplatToComfy.execute(scene).args[0]
    from comfy_api.latest import Types

    assert isinstance(core, Types.SPLAT) and core.positions.shape == (1, 50, 3)
    back = SyncCanvasSplatFromComfy.execute(core).args[0]
    torch.testing.assert_close(back.sh_rest, scene.sh_rest, atol=1e-5, rtol=1e-5)
