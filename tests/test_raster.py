"""Rasteriser back-ends agree with each other and with closed-form geometry (projectors/raster*.py)."""

import math

import numpy as np
import pytest
import torch

from sync_canvas.assets import procedural
from sync_canvas.assets.cameras import Camera, orbit_rig, paper_rig
from sync_canvas.projectors.raster import available_backends, rasterize

needs_embree = pytest.mark.skipif("embree" not in available_backends(), reason="embreex not installed")


@needs_embree
@pytest.mark.parametrize("make", [lambda: procedural.cube(2), procedural.uv_sphere, procedural.torus], ids=["cube", "sphere", "torus"])
def test_embree_and_torch_rasterisers_agree(make):
    mesh = make()
    rig = paper_rig(mesh.vertices)
    ray = rasterize(mesh, rig, (48, 48), backend="embree")
    zbuf = rasterize(mesh, rig, (48, 48), backend="torch")
    assert ray.backend == "embree" and zbuf.backend == "torch"
    assert 0.1 < ray.mask.float().mean() < 0.9  # the mesh is in view but does not fill it
    assert (ray.face_id == zbuf.face_id).float().mean() >= 0.99
    both = ray.mask & zbuf.mask
    assert (ray.mask != zbuf.mask).float().mean() < 0.005
    assert (ray.depth - zbuf.depth)[both].abs().max() < 1e-3
    same = ray.face_id == zbuf.face_id
    assert (ray.uv - zbuf.uv)[same].abs().max() < 1e-3
    assert (ray.bary - zbuf.bary)[same].abs().max() < 1e-3


@pytest.mark.parametrize("backend", ["torch", pytest.param("embree", marks=needs_embree)])
def test_sphere_depth_normal_and_cosine_match_closed_form(backend):
    mesh = procedural.uv_sphere(48, 96)  # radius 0.5 after normalisation
    cam = Camera(azimuth=30.0, elevation=20.0, distance=2.0, fov=40.0)
    r = rasterize(mesh, [cam], (40, 40), backend=backend)
    origins, dirs = cam.rays(40, 40)
    # exact ray-sphere hit distance: |o + t d| = 0.5
    b = (origins * dirs).sum(1)
    disc = b**2 - ((origins**2).sum(1) - 0.25)
    hit = disc > 0
    t = -b - np.sqrt(np.maximum(disc, 0))
    forward = -cam.rotation[:, 2]
    z_exact = (t[:, None] * dirs @ forward).reshape(40, 40)
    mask = r.mask[0].numpy()
    inner = hit.reshape(40, 40) & (disc.reshape(40, 40) > 0.02)  # away from the silhouette
    assert mask[inner].all() and not mask[~hit.reshape(40, 40)].any()
    assert np.abs(r.depth[0].numpy() - z_exact)[inner].max() < 5e-3  # faceted sphere: chord error only
    points = origins + t[:, None] * dirs
    n_exact = (points / np.linalg.norm(points, axis=1, keepdims=True)).reshape(40, 40, 3)
    assert (r.normal[0].numpy() * n_exact).sum(-1)[inner].min() > 0.99
    cos_exact = (-(dirs.reshape(40, 40, 3)) * n_exact).sum(-1)
    assert np.abs(r.view_cos[0].numpy() - cos_exact)[inner].max() < 0.05


def test_cube_front_view_reads_expected_uv_chart():
    mesh = procedural.cube()
    r = rasterize(mesh, [Camera(0.0, 0.0, 3.0, 30.0)], (32, 32), backend="torch")
    # straight on: only the +z side (chart 0 of the 3x2 atlas) is visible, u in [0, 1/3], v in [0, 1/2]
    uv = r.uv[0][r.mask[0]]
    assert uv[:, 0].max() <= 1 / 3 and uv[:, 1].max() <= 0.5
    # and the image is not mirrored: u grows left to right, v grows bottom to top
    row = r.uv[0, 16][r.mask[0, 16]]
    col = r.uv[0, :, 16][r.mask[0, :, 16]]
    assert (row[1:, 0] > row[:-1, 0]).all() and (col[1:, 1] < col[:-1, 1]).all()
    assert r.view_cos[0, 15:17, 15:17].min() > 0.999 and r.view_cos[0][r.mask[0]].min() > 0.95
    np.testing.assert_allclose(r.normal[0][r.mask[0]].numpy(), [[0, 0, 1]] * int(r.mask[0].sum()), atol=1e-6)


def test_occlusion_picks_the_nearest_surface():
    # two parallel squares; the camera on +z must see the front one (z = +0.5) only
    verts = np.array([[-1, -1, 0.5], [1, -1, 0.5], [1, 1, 0.5], [-1, 1, 0.5],
                      [-1, -1, -0.5], [1, -1, -0.5], [1, 1, -0.5], [-1, 1, -0.5]], dtype=np.float32) * 0.5
    from sync_canvas.assets.mesh_data import MeshData

    faces = np.array([[4, 5, 6], [4, 6, 7], [0, 1, 2], [0, 2, 3]])  # back square listed first
    mesh = MeshData(verts, faces, None)
    for backend in ["torch"] + (["embree"] if "embree" in available_backends() else []):
        r = rasterize(mesh, [Camera(0.0, 0.0, 3.0, 20.0)], (16, 16), backend=backend)
        assert set(r.face_id[r.mask].tolist()) <= {2, 3}, backend
        assert r.depth[r.mask].sub(2.75).abs().max() < 1e-5


def test_bad_arguments():
    mesh = procedural.cube()
    rig = orbit_rig([(0, 0)], 3.0, 40.0)
    with pytest.raises(ValueError, match="raster backend must be one of"):
        rasterize(mesh, rig, (8, 8), backend="opengl")
    with pytest.raises(ValueError, match="view size must be positive"):
        rasterize(mesh, rig, (0, 8))
    if "nvdiffrast" not in available_backends():
        with pytest.raises(ValueError, match="not available"):
            rasterize(mesh, rig, (8, 8), backend="nvdiffrast")
        from sync_canvas.projectors.raster import preferred_device

        assert preferred_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="fov"):
        Camera(0, 0, 1.0, 180.0)
    assert math.isclose(np.linalg.norm(Camera(33, 12, 2.5, 50).position), 2.5)
