"""MeshTextureProjector: render/unproject round trips, adjointness, weights, fill, rescaling, renders."""

import numpy as np
import pytest
import torch

from sync_canvas.assets import procedural
from sync_canvas.assets.cameras import orbit_rig, paper_rig, stochsync_rig
from sync_canvas.projectors.mesh_texture import MeshTextureProjector


@pytest.fixture(scope="module")
def sphere():
    return procedural.uv_sphere(16, 32)


@pytest.fixture(scope="module")
def sphere_projector(sphere):
    return MeshTextureProjector(sphere, paper_rig(sphere.vertices), 64, 48, backend="torch", unprojection="scatter")


@pytest.fixture(scope="module")
def pull_pair(sphere):
    """Views much coarser than texels (the paper's latent setting: 96^2 views, 1536^2 texture)."""
    rig = paper_rig(sphere.vertices)
    scatter = MeshTextureProjector(sphere, rig, 16, 128, backend="torch", unprojection="scatter")
    pull = MeshTextureProjector(sphere, rig, 16, 128, backend="torch", raster=scatter.raster, unprojection="pull")
    return scatter, pull


def _surface_texture(mesh, t):
    """A texture that is a smooth function of the surface point (continuous across UV seams)."""
    from sync_canvas.projectors.mesh_pull import texel_surface

    texel, _, points, _ = texel_surface(mesh, t)
    tex = torch.zeros(3, t * t)
    tex[:, texel] = (torch.stack([points[:, 0] + points[:, 1], points[:, 1] - points[:, 2], points[:, 2]]) * 2).sin() * 0.5 + 0.5
    return tex.reshape(3, t, t)


def _smooth_texture(t, c=3):
    y, x = torch.meshgrid(torch.linspace(0, 1, t), torch.linspace(0, 1, t), indexing="ij")
    return torch.stack([torch.sin(3 * x + k) * torch.cos(2 * y - k) for k in range(c)]) * 0.5 + 0.5


def test_nearest_round_trip_is_exact_on_covered_texels(sphere):
    proj = MeshTextureProjector(sphere, paper_rig(sphere.vertices), 64, 48, sampling="nearest", backend="torch", unprojection="scatter")
    torch.manual_seed(0)
    tex = torch.rand(4, 48, 48)
    back = proj.aggregate(proj.project(tex))
    cov = proj.coverage()
    assert 0.3 < cov.float().mean() < 1.0
    torch.testing.assert_close(back[:, cov], tex[:, cov], atol=1e-5, rtol=0)
    assert (back[:, ~cov] == 0).all()  # uncovered texels keep previous (zeros)


def test_bilinear_round_trip_of_smooth_texture(sphere_projector):
    tex = _smooth_texture(48)
    back = sphere_projector.aggregate(sphere_projector.project(tex))
    cov = sphere_projector.coverage()
    err = (back - tex)[:, cov].abs()
    assert err.mean() < 0.01 and err.max() < 0.08


def test_adjointness(sphere_projector):
    torch.manual_seed(1)
    z = torch.randn(2, 48, 48, dtype=torch.float64)
    w = torch.randn(10, 2, 64, 64, dtype=torch.float64)
    lhs = (sphere_projector.project(z) * w).sum()
    rhs = (z * sphere_projector.adjoint(w)).sum()
    assert torch.isclose(lhs, rhs, rtol=1e-10)


def test_pixel_weights_are_cosine_power_and_zero_on_background(sphere):
    rig = paper_rig(sphere.vertices)
    p0 = MeshTextureProjector(sphere, rig, 32, 32, cos_exponent=0.0, backend="torch", unprojection="scatter")
    p3 = MeshTextureProjector(sphere, rig, 32, 32, cos_exponent=3.0, backend="torch", raster=p0.raster, unprojection="scatter")
    m = p0.raster.mask.reshape(10, -1)
    assert (p0.taps.pixel_weight[m] == 1).all() and (p0.taps.pixel_weight[~m] == 0).all()
    cos = p0.raster.view_cos.reshape(10, -1)[m]
    torch.testing.assert_close(p3.taps.pixel_weight[m], cos**3)
    # the unprojection trusts the view that sees a texel head-on: a texel seen by two views with
    # values 0 and 1 ends nearer the value of the view with the larger cosine
    w = torch.zeros(10, 1, 32, 32)
    w[0] = 1.0
    fused = p3.aggregate(w[:2], views=[0, 1])
    both = p3.coverage([0]) & p3.coverage([1])
    assert both.any() and ((fused[0][both] > 0) & (fused[0][both] < 1)).all()


def test_fill_completes_the_texture_from_nearest_covered_texels(sphere_projector):
    tex = _smooth_texture(48)
    baked = sphere_projector.bake(sphere_projector.project(tex))
    cov = sphere_projector.coverage()
    assert not cov.all()
    torch.testing.assert_close(baked[:, cov], sphere_projector.aggregate(sphere_projector.project(tex))[:, cov])
    assert (baked[:, ~cov] > 0).all()  # every uncovered texel got some covered texel's value
    values = set(map(tuple, baked[:, cov].T.tolist()))
    assert all(tuple(v) in values for v in baked[:, ~cov].T.tolist()[:50])
    again = sphere_projector.fill(sphere_projector.aggregate(sphere_projector.project(tex)))
    torch.testing.assert_close(again, baked)  # cached index map gives the same answer


def test_rescaled_keeps_geometry_at_lower_resolution(sphere_projector):
    latent = sphere_projector.rescaled(8, texture_size=24)
    assert latent.view_hw == (8, 8) and latent.canonical_shape == (24, 24)
    small = sphere_projector.rescaled(4)
    assert small.view_hw == (16, 16) and small.canonical_shape == (12, 12)
    # silhouettes agree: the downsampled pixel mask matches the rescaled projector's mask
    big = sphere_projector.masks()
    pooled = torch.nn.functional.avg_pool2d(big, 4)
    assert ((pooled > 0.5).float() == small.masks()).float().mean() > 0.95
    paper = MeshTextureProjector(sphere_projector.mesh, sphere_projector.rig, 64, 48, 72, raster=sphere_projector.raster, unprojection="scatter")
    assert paper.rescaled(8).canonical_shape == (72, 72)  # latent texture larger than RGB, as in A1.3
    with pytest.raises(ValueError, match="must divide"):
        sphere_projector.rescaled(5)


def test_view_groups_follow_the_rig(sphere):
    proj = MeshTextureProjector(sphere, stochsync_rig(sphere.vertices, n_groups=2), 16, 16, backend="torch", unprojection="scatter")
    assert proj.view_groups() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    plain = MeshTextureProjector(sphere, orbit_rig([(0, 0), (180, 0), (90, 0)], 2.5, 50), 16, 16, backend="torch", unprojection="scatter")
    groups = plain.view_groups()  # greedy: opposite views share no texel
    assert sorted(i for g in groups for i in g) == [0, 1, 2] and [0, 1] in groups


def test_depth_and_normal_renders(sphere_projector):
    depth = sphere_projector.depth_maps()
    normal = sphere_projector.normal_maps()
    mask = sphere_projector.masks()
    assert depth.shape == (10, 1, 64, 64) and normal.shape == (10, 3, 64, 64)
    assert (depth[mask == 0] == 0).all() and depth[mask == 1].min() >= 0.2 - 1e-6 and depth.max() <= 1
    # the sphere's centre pixel is its nearest point: the brightest depth and a normal facing the camera
    assert depth[0, 0, 31:33, 31:33].min() > 0.97
    assert normal[0, 2, 31:33, 31:33].min() > 0.99  # z (blue) = towards the camera
    # left half of the sphere has normals pointing left (red < 0.5), right half right
    m = mask[0, 0].bool()
    assert normal[0, 0, :, :28][m[:, :28]].max() < 0.5 < normal[0, 0, :, 36:][m[:, 36:]].min()


def test_render_uses_background_and_rejects_bad_input(sphere, sphere_projector):
    img = sphere_projector.render(torch.zeros(3, 48, 48), background=1.0)
    assert torch.equal(img == 1, (sphere_projector.masks() == 0).expand_as(img))
    with pytest.raises(ValueError, match="canonical tensor has shape"):
        sphere_projector.project(torch.zeros(3, 32, 32))
    no_uv = procedural.cube()
    no_uv.uvs = None
    with pytest.raises(ValueError, match="no UVs"):
        MeshTextureProjector(no_uv, paper_rig(), 16, 16)
    with pytest.raises(ValueError, match="sampling"):
        MeshTextureProjector(sphere, paper_rig(), 16, 16, sampling="cubic")


def test_paper_rig_layout():
    rig = paper_rig(procedural.torus().vertices)
    assert [(c.azimuth, c.elevation) for c in rig] == [(45.0 * k, 0.0) for k in range(8)] + [(0.0, 30.0), (180.0, 30.0)]
    # fitted distance: the bounding sphere (radius <= sqrt(3)/2) fits inside the view cone
    cam = rig.cameras[0]
    assert np.sin(np.radians(cam.fov / 2)) * cam.distance >= np.linalg.norm(procedural.torus().vertices, axis=1).max()
    with pytest.raises(ValueError, match="partition"):
        orbit_rig([(0, 0), (90, 0)], 2.0, 50.0, groups=[[0]])


def test_turntable_frames_turn_the_mesh():
    from sync_canvas.projectors.mesh_texture import render_turntable

    mesh = procedural.cube()
    tex = torch.zeros(3, 30, 30)
    tex[0] = 1.0  # red everywhere...
    tex[:, 15:, :10] = torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1)  # ...except the +z side's chart (blue)
    frames = render_turntable(mesh, tex, n_frames=4, size=32, elevation=0.0, backend="torch")
    assert frames.shape == (4, 3, 32, 32)
    centre = frames[:, :, 14:18, 14:18].mean((-1, -2))
    assert centre[0, 2] > 0.9 and centre[0, 0] < 0.1  # frame 0 looks at the front (+z, blue)
    assert (centre[1:, 0] > 0.9).all()  # the other sides are red
    assert (frames[:, :, 0, 0] == 1.0).all()  # white background


# ---- texel pull: views meet on the same texels whatever the texel/pixel size ratio ------------------
def test_pull_covers_what_the_views_see_and_round_trips(pull_pair, sphere):
    scatter, pull = pull_pair
    assert scatter.coverage_fraction() < 0.4 and pull.coverage_fraction() > 2 * scatter.coverage_fraction()
    assert (pull.coverage() | ~scatter.coverage()).all()  # pull only adds texels
    tex = _surface_texture(sphere, 128)
    back = pull.aggregate(pull.project(tex))
    cov = pull.coverage()
    err = (back - tex)[:, cov].abs()
    assert err.mean() < 0.02 and torch.quantile(err.flatten(), 0.99) < 0.15


def test_pull_synchronizes_overlapping_views_that_scatter_keeps_apart(pull_pair):
    scatter, pull = pull_pair
    w = torch.zeros(10, 1, 16, 16)
    w[0] = 1.0  # only the front view says "1"
    neighbour = pull.masks()[1].bool()  # view 1 (azimuth 45) overlaps view 0
    after_scatter = scatter.project(scatter.aggregate(w))[1][neighbour].mean()
    after_pull = pull.project(pull.aggregate(w))[1][neighbour].mean()
    assert after_pull > 2 * after_scatter and after_pull > 0.05
    # views that see nothing of view 0 (the back) stay untouched
    assert pull.project(pull.aggregate(w))[4].abs().max() < 1e-6


def test_pull_view_subsets_match_the_full_fuse(pull_pair):
    _, pull = pull_pair
    torch.manual_seed(2)
    w = torch.randn(10, 2, 16, 16)
    ids = [7, 0, 3]
    sub = pull.aggregate(w[ids], views=ids)
    masked = torch.zeros_like(w)
    masked[ids] = w[ids]
    num, den = pull.unproject(w[ids], views=ids)
    num_full, _ = pull.unproject(masked)
    torch.testing.assert_close(num, num_full, atol=1e-5, rtol=1e-5)
    assert torch.equal(sub[:, ~pull.coverage(ids)], torch.zeros_like(sub[:, ~pull.coverage(ids)]))
    assert (den[0] > 0).equal(pull.coverage(ids))


def test_pull_fuse_as_one_sparse_product_equals_the_gather_scatter_reference(pull_pair):
    """The prebuilt CSR unprojection (scatter + pull over touched texels) gives the old per-step
    index_add_ / gather fuse, for all views and for a subset in any order, with and without previous."""
    from sync_canvas.benchmarks.reference_paths import reference_mesh_aggregate

    _, pull = pull_pair
    gen = torch.Generator().manual_seed(0)
    previous = torch.randn(4, 128, 128, generator=gen)
    for views in (None, [7, 2, 5]):
        n = pull.n_views if views is None else len(views)
        w = torch.randn(n, 4, 16, 16, generator=gen)
        for prev in (None, previous):
            torch.testing.assert_close(pull.aggregate(w, prev, views), reference_mesh_aggregate(pull, w, prev, views),
                                       atol=1e-5, rtol=1e-5)
    num, den = pull.unproject(w, [7, 2, 5])
    assert (den > 0).sum() == len(pull._unprojection([7, 2, 5]).touched)
