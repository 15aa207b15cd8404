"""The torch splat rasteriser against an independent brute-force per-pixel compositor."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from sync_canvas.assets.splat_cameras import SplatCameras, fit_orbit, intrinsics, orbit_cameras
from sync_canvas.assets.splat_procedural import procedural_splat_scene
from sync_canvas.projectors.splat_render import composite, compositing_weights, render


def _random_scene(n=40, seed=0):
    gen = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=gen) * torch.tensor([1.6, 1.6, 1.0]) - torch.tensor([0.8, 0.8, 0.5])
    quats = torch.randn(n, 4, generator=gen)
    log_scales = torch.log(0.03 + 0.12 * torch.rand(n, 3, generator=gen))
    opacities = 0.2 + 0.79 * torch.rand(n, generator=gen)
    colors = torch.rand(3, n, generator=gen)
    return means, quats, log_scales, opacities, colors


def _cameras(width=24, height=20):
    return orbit_cameras([(0.0, 0.0), (30.0, 20.0)], (0.0, 0.0, 0.0), 3.0, 50.0, width, height, up="y")


def _brute_force(means, quats, log_scales, opacities, colors, viewmat, k, width, height):
    """Per pixel, loop over all gaussians front to back; geometry via scipy rotations and autograd."""
    m, q, s = means.double().numpy(), quats.double().numpy(), np.exp(log_scales.double().numpy())
    vm = viewmat.double().numpy()
    fx, fy, cx, cy = (float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]))

    def to_pixels(p):
        return torch.stack([fx * p[0] / p[2] + cx, fy * p[1] / p[2] + cy])

    splats = []
    for g in range(len(m)):
        p_cam = vm[:3, :3] @ m[g] + vm[:3, 3]
        rot = Rotation.from_quat([q[g, 1], q[g, 2], q[g, 3], q[g, 0]]).as_matrix()  # scipy: x, y, z, w
        cov_world = rot @ np.diag(s[g] ** 2) @ rot.T
        jac = torch.autograd.functional.jacobian(to_pixels, torch.tensor(p_cam)).numpy()
        cov2 = jac @ vm[:3, :3] @ cov_world @ vm[:3, :3].T @ jac.T + 0.3 * np.eye(2)
        mid, det = 0.5 * np.trace(cov2), np.linalg.det(cov2)
        radius = math.ceil(3 * math.sqrt(mid + math.sqrt(max(0.1, mid * mid - det))))  # 3DGS footprint
        splats.append((p_cam[2], to_pixels(torch.tensor(p_cam)).numpy(), np.linalg.inv(cov2), radius, g))
    splats.sort(key=lambda t: t[0])
    image = np.zeros((colors.shape[0], height, width))
    for r in range(height):
        for c in range(width):
            centre, transmittance = np.array([c + 0.5, r + 0.5]), 1.0
            for _, mean2, inv_cov, radius, g in splats:
                d = centre - mean2
                if abs(d[0]) > radius or abs(d[1]) > radius:
                    continue
                alpha = min(0.99, float(opacities[g]) * math.exp(-0.5 * d @ inv_cov @ d))
                if alpha < 1 / 255:
                    continue
                if transmittance * (1 - alpha) < 1e-4:
                    break
                image[:, r, c] += colors[:, g].double().numpy() * alpha * transmittance
                transmittance *= 1 - alpha
    return image


@pytest.mark.parametrize("seed", [0, 1])
def test_torch_renderer_matches_brute_force(seed):
    means, quats, log_scales, opacities, colors = _random_scene(seed=seed)
    cams = _cameras()
    image, alpha, _ = render(means, quats, log_scales, opacities, colors, cams, backend="torch")
    for i in range(len(cams)):
        ref = _brute_force(means, quats, log_scales, opacities, colors, cams.viewmats[i], cams.Ks[i], 24, 20)
        assert np.abs(ref).max() > 0.1  # the scene is in view
        np.testing.assert_allclose(image[i].numpy(), ref, atol=2e-5)
    assert float(alpha.max()) <= 1.0 and float(alpha.max()) > 0.5


def test_early_stop_at_low_transmittance():
    """Fifty opaque splats on one ray: compositing stops once T would drop below 1e-4."""
    n = 50
    means = torch.zeros(n, 3)
    means[:, 2] = torch.linspace(0, 1, n)  # along the camera's view axis
    cams = orbit_cameras([(0.0, 0.0)], (0.0, 0.0, 0.0), 3.0, 40.0, 9, 9, up="y")  # centre pixel on the axis
    wts = compositing_weights(means, torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), torch.full((n, 3), -2.0),
                              torch.full((n,), 0.95), cams)
    centre = 4 * 9 + 4
    pix, gid, wt = wts.view(0)
    on_ray = pix.long() == centre
    # alpha 0.95 each: T = 0.05, 0.0025, 1.25e-4, then 6e-6 < 1e-4 -> only the 3 front-most contribute
    assert sorted(gid[on_ray].tolist()) == [n - 3, n - 2, n - 1]  # camera on +z: largest z is in front
    torch.testing.assert_close(wt[on_ray].sort(descending=True).values.double(),
                               torch.tensor([0.95, 0.95 * 0.05, 0.95 * 0.0025], dtype=torch.float64))
    assert abs(float(wts.alpha[0, centre]) - (1 - 1.25e-4)) < 1e-6


def test_weights_project_equals_full_render_and_depth_is_sensible():
    scene = procedural_splat_scene(300, seed=2)
    cams = fit_orbit(scene.means, scene.opacities, n_views=4, width=32, height=32)
    wts = compositing_weights(scene.means, scene.quats, scene.log_scales, scene.opacities, cams)
    latent = torch.randn(4, scene.n_gaussians, generator=torch.Generator().manual_seed(0))
    image, alpha, depth = render(scene.means, scene.quats, scene.log_scales, scene.opacities, latent, cams)
    torch.testing.assert_close(composite(wts, latent), image)
    # linear in colours: rendering constant 1 gives the accumulated alpha
    torch.testing.assert_close(composite(wts, torch.ones(1, scene.n_gaussians)), alpha)
    distance = float(cams.positions()[0].norm())
    fg = alpha[0, 0] > 0.5
    assert fg.float().mean() > 0.1
    assert (depth[0, 0][fg] > distance - 1.3).all() and (depth[0, 0][fg] < distance + 1.3).all()


def test_rescaled_cameras_and_bad_input():
    cams = SplatCameras(torch.eye(4)[None], intrinsics(60.0, 64, 48)[None], 64, 48)
    small = cams.rescaled(8)
    assert (small.width, small.height) == (8, 6)
    torch.testing.assert_close(small.Ks[0, :2], cams.Ks[0, :2] / 8)
    with pytest.raises(ValueError, match="5"):
        cams.rescaled(5)
    with pytest.raises(ValueError, match="backend"):
        render(torch.zeros(1, 3), torch.ones(1, 4), torch.zeros(1, 3), torch.ones(1), torch.ones(3, 1), cams, backend="x")
    with pytest.raises(RuntimeError, match="gsplat"):  # CPU tensors: the CUDA back-end refuses clearly
        render(torch.zeros(1, 3), torch.ones(1, 4), torch.zeros(1, 3), torch.ones(1), torch.ones(3, 1), cams, backend="gsplat")
    with pytest.raises(ValueError, match="inconsistent"):
        compositing_weights(torch.zeros(2, 3), torch.ones(1, 4), torch.zeros(2, 3), torch.ones(2), cams)


def test_orbit_looks_at_the_scene_centre():
    scene = procedural_splat_scene(200, seed=0)
    cams = fit_orbit(scene.means + torch.tensor([5.0, -2.0, 1.0]), n_views=6, width=16, height=16)
    centre = torch.tensor([5.0, -2.0, 1.0 - 0.0])
    for i in range(6):
        p = cams.viewmats[i, :3, :3] @ scene.means.median(0).values.add(centre) + cams.viewmats[i, :3, 3]
        assert p[2] > 0 and abs(float(p[0] / p[2])) < 0.1 and abs(float(p[1] / p[2])) < 0.1


def test_supersampled_weights_are_the_area_average_of_the_fine_render():
    scene = procedural_splat_scene(300, seed=3)
    cams = fit_orbit(scene.means, scene.opacities, n_views=2, width=32, height=32)
    args = (scene.means, scene.quats, scene.log_scales, scene.opacities)
    coarse = compositing_weights(*args, cams.rescaled(4), supersample=4)
    fine = compositing_weights(*args, cams)
    z = torch.rand(3, 300, generator=torch.Generator().manual_seed(0))
    pooled = torch.nn.functional.avg_pool2d(composite(fine, z), 4)
    torch.testing.assert_close(composite(coarse, z), pooled, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(coarse.alpha.reshape(2, 1, 8, 8), torch.nn.functional.avg_pool2d(fine.alpha.reshape(2, 1, 32, 32), 4))


def test_weights_number_gaussians_along_a_space_filling_curve():
    """The CSR columns follow a Morton order of the centres (neighbours in memory are neighbours in space:
    the products of a shuffled 100k-splat scene at 512^2 ran 1.45x faster); renders and spreads keep the caller's numbering."""
    from sync_canvas.projectors.splat_weights import spatial_order

    scene = procedural_splat_scene(2000, seed=0)
    shuffle = torch.randperm(2000, generator=torch.Generator().manual_seed(0))
    means = scene.means[shuffle]
    order = spatial_order(means)
    assert sorted(order.tolist()) == list(range(2000))
    step = (means[order[1:]] - means[order[:-1]]).norm(dim=1).median()
    assert step < 0.1 * (means[1:] - means[:-1]).norm(dim=1).median()
    cams = fit_orbit(scene.means, scene.opacities, n_views=2, width=24, height=24)
    geometry = (means, scene.quats[shuffle], scene.log_scales[shuffle], scene.opacities[shuffle])
    wts = compositing_weights(*geometry, cams)
    assert torch.equal(wts.order, order)
    colors = torch.rand(3, 2000, generator=torch.Generator().manual_seed(1))
    plain = compositing_weights(scene.means, scene.quats, scene.log_scales, scene.opacities, cams)
    torch.testing.assert_close(composite(wts, colors[:, shuffle]), composite(plain, colors), atol=1e-5, rtol=1e-5)
    views = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(wts.spread(views), plain.spread(views)[:, shuffle], atol=1e-4, rtol=1e-5)
