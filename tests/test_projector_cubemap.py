"""The cube-map skybox: face conventions, views, equirect export, and the node through ComfyUI's stack."""

from __future__ import annotations

import math
import os

import pytest
import torch

from sync_canvas.projectors import CubeMapProjector, EquirectProjector
from sync_canvas.projectors.cubemap import FACE_NAMES, direction_to_face, face_directions

# the cube maps of the generic property suite (tests/test_projector_properties.py reads this dict)
PROPERTY_FACTORIES = {
    "cubemap": lambda: CubeMapProjector(8, 16),
    "cubemap_partial": lambda: CubeMapProjector(8, 8, [0.0, 50.0, 100.0], [0.0, 30.0, -20.0], fov=80),
}

# (yaw, pitch) of a 90-degree view that sees exactly one face, in canvas face order +X, -X, +Y, -Y, +Z, -Z
FACE_VIEWS = ((90, 0), (270, 0), (0, 90), (0, -90), (0, 0), (180, 0))


def test_a_90_degree_view_at_a_face_centre_reads_that_face_the_right_way_up():
    f = 8
    yaws, pitches = zip(*FACE_VIEWS)
    projector = CubeMapProjector(f, f, yaws, pitches, fov=90)
    z = torch.arange(6 * f * f, dtype=torch.float64).reshape(1, 6, f, f)
    views = projector.project(z)
    for k, name in enumerate(FACE_NAMES):
        assert torch.equal(views[k, 0], z[0, k]), name  # pixel (i, j) reads texel (i, j): no flip, no turn


def test_face_directions_invert_direction_to_face():
    f = 5
    face, row, col = direction_to_face(face_directions(f).reshape(-1, 3), f)
    index = face * f * f + row.floor().long() * f + col.floor().long()
    assert torch.equal(index, torch.arange(6 * f * f))


def test_default_skybox_rig_sees_every_texel_and_neighbour_views_overlap():
    projector = CubeMapProjector(16, 16)
    assert projector.n_views == 16 and bool(projector.coverage().all())
    overlap = projector.overlap_matrix()
    assert bool(overlap[0, 1]) and bool(overlap[0, 8])  # ring neighbours and ring/up views share texels
    groups = projector.view_groups()
    assert sorted(v for g in groups for v in g) == list(range(16)) and len(groups) < 16


def test_equirect_export_agrees_with_the_360_panorama_conventions():
    # a canvas painted with each texel's own direction: the equirect image must hold the direction of its
    # own texel centre (lon 0 = +Z at the centre column, +90 = +X, top row = +Y), to within a texel
    f = 32
    projector = CubeMapProjector(f, 16)
    z = face_directions(f).permute(3, 0, 1, 2)  # [3, 6, F, F]
    eq = projector.equirect(z, height=32)
    assert eq.shape == (3, 32, 64)
    h, w = 32, 64
    lat = (0.5 - (torch.arange(h, dtype=torch.float64) + 0.5) / h) * math.pi
    lon = ((torch.arange(w, dtype=torch.float64) + 0.5) / w - 0.5) * 2 * math.pi
    lat, lon = torch.meshgrid(lat, lon, indexing="ij")
    expected = torch.stack([lat.cos() * lon.sin(), lat.sin(), lat.cos() * lon.cos()])
    angle = torch.acos((eq / eq.norm(dim=0)).mul(expected).sum(0).clamp(-1, 1))
    assert float(angle.max()) < 2 * (math.pi / 2) / f  # two texels of a face
    # the same rays through an EquirectProjector view and a cube view read the same value
    pano = EquirectProjector(16, [30.0], pitches=[20.0], canvas_hw=(h, w))
    cube_view = CubeMapProjector(f, 16, [30.0], [20.0]).project(z)
    pano_view = pano.project(eq)
    cos = (cube_view * pano_view).sum(1) / (cube_view.norm(dim=1) * pano_view.norm(dim=1))
    assert float(cos.min()) > math.cos(4 * (math.pi / 2) / f)


def test_canvas_capabilities_faces_strip_and_grid():
    projector = CubeMapProjector(8, 8)
    z = torch.randn(4, 6, 8, 8)
    assert projector.canvas_images(z).shape == (6, 4, 8, 8)
    strip = projector.preview_latent(z)
    assert strip.shape == (4, 8, 48) and torch.equal(strip[:, :, 8:16], z[:, 1])
    assert torch.equal(projector.from_grid(strip), z)
    lat = projector.rescaled(2)
    assert lat.canonical_shape == (6, 4, 4) and lat.view_hw == (4, 4) and lat.n_views == projector.n_views


def test_fill_crosses_face_edges():
    projector = CubeMapProjector(8, 8, [0.0], [0.0], fov=60)  # one view: only the front face is seen
    covered = projector.coverage()
    assert bool(covered[4].any()) and not bool(covered[0].any())
    z = torch.zeros(1, 6, 8, 8)
    z[:, covered] = 1.0
    filled = projector.fill(z)
    assert bool((filled == 1).all())  # every texel, on every face, took a seen (front) value
    with pytest.raises(ValueError, match="face size"):
        CubeMapProjector(10, 8).rescaled(4)


@pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH not set: ComfyUI node tests skipped")
@pytest.mark.comfyui
def test_cube_map_nodes_sample_with_stochsync_and_export_faces_and_equirect(tiny):
    from sync_canvas.nodes.cubemap import SyncCanvasCubeMap, SyncCanvasCubeMapExport
    from sync_canvas.nodes.sampler_nodes import SyncCanvasKSampler

    projector = SyncCanvasCubeMap.execute(size=64, view_size=64, fov=72.0, tilt=60.0).args[0]
    model, vae = tiny.tiny_model(), tiny.tiny_vae()
    with torch.inference_mode():
        latent, image, views = SyncCanvasKSampler.execute(
            model, tiny.conditioning(0), tiny.conditioning(1), projector, seed=1, steps=2, cfg=2.0, mode="stochsync",
            scheduler="normal", eta=1.0, denoise=1.0, inner_steps=2, vae=vae).args
    assert latent["samples"].shape == (1, 4, 6, 8, 8)
    assert image.shape == (6, 64, 64, 3) and views.shape == (16, 64, 64, 3)
    faces, equirect = SyncCanvasCubeMapExport.execute(projector, image, equirect_height=64).args
    assert torch.equal(faces, image)
    assert equirect.shape == (1, 64, 128, 3)
    # faces of constant grey k/5: the equirect's front (centre column), right (lon +90), back (edge columns),
    # top and bottom rows show the faces the cube-map convention puts there
    constant = torch.arange(6, dtype=torch.float32).div(5).reshape(6, 1, 1, 1).expand(6, 64, 64, 3)
    equirect = SyncCanvasCubeMapExport.execute(projector, constant, equirect_height=32).args[1][0, ..., 0]
    assert equirect.shape == (32, 64)
    assert float(equirect[16, 32]) == pytest.approx(0.8)  # +Z front
    assert float(equirect[16, 48]) == pytest.approx(0.0)  # +X right
    assert float(equirect[16, 16]) == pytest.approx(0.2)  # -X left
    assert float(equirect[16, 0]) == pytest.approx(1.0)  # -Z back
    assert float(equirect[0, 5]) == pytest.approx(0.4) and float(equirect[-1, 40]) == pytest.approx(0.6)  # top, bottom
    with pytest.raises(ValueError, match="6 image"):
        SyncCanvasCubeMapExport.execute(projector, constant[:1], equirect_height=32)


def test_grid_capabilities_let_dde_positions_and_a_siren_work_on_a_cube_map():
    """Nothing in samplers/ knows cube maps: DDE's positions and DDR's SIREN ask the projector for its 2-D layout."""
    from sync_canvas.samplers.dde.fuse import view_positions
    from sync_canvas.samplers.ddr_representations import SirenRepresentation

    projector = CubeMapProjector(4, 8)
    pos = view_positions(projector)
    assert pos.shape == (16, 8, 8, 2) and float(pos[..., 1].max()) < 24  # columns on the 4 x 24 strip
    siren = SirenRepresentation(projector, 3, adam_steps=3, adam_lr=1e-3)
    target = torch.rand(16, 3, 8, 8)
    siren.fit(target)
    assert siren.canonical().shape == (3, 6, 4, 4)
    assert siren.render().shape == (16, 3, 8, 8) and siren.canonical().abs().sum() > 0


@pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH not set: ComfyUI node tests skipped")
@pytest.mark.comfyui
def test_view_nodes_take_and_give_the_six_faces_unchanged(tiny):
    """Render Views / Fuse Views / View Masks / Empty Latent work on a cube map through its capabilities alone."""
    from sync_canvas.nodes.cubemap import SyncCanvasCubeMap
    from sync_canvas.nodes.view_nodes import SyncCanvasEmptyLatent, SyncCanvasFuseViews, SyncCanvasRenderViews, SyncCanvasViewMasks

    projector = SyncCanvasCubeMap.execute(size=64, view_size=64, fov=72.0, tilt=60.0).args[0]
    faces = torch.rand(6, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    views = SyncCanvasRenderViews.execute(projector, faces, "nearest").args[0]
    assert views.shape == (16, 64, 64, 3)
    fused = SyncCanvasFuseViews.execute(projector, views, True).args[0]
    assert fused.shape == (6, 64, 64, 3)
    covered = projector.coverage()  # [6, F, F]
    torch.testing.assert_close(fused[covered], faces[covered])  # nearest views of the faces fuse back exactly
    masks, coverage = SyncCanvasViewMasks.execute(projector).args
    assert masks.shape == (16, 64, 64) and coverage.shape == (6, 64, 64) and bool(coverage.bool().eq(covered).all())
    assert SyncCanvasEmptyLatent.execute(projector, 4).args[0]["samples"].shape == (1, 4, 6, 8, 8)
    with pytest.raises(ValueError, match="6 image"):
        SyncCanvasRenderViews.execute(projector, faces[:1], "nearest")
