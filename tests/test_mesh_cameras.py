"""Camera rigs (assets/cameras.py): the papers' layouts, fitting, custom views, ray geometry."""

import math

import numpy as np
import pytest

from sync_canvas.assets import procedural
from sync_canvas.assets.cameras import Camera, fit_distance, parse_views, paper_rig, stochsync_rig, turntable_rig


def test_camera_looks_at_the_origin_with_y_up():
    cam = Camera(azimuth=90.0, elevation=30.0, distance=2.0, fov=40.0)
    np.testing.assert_allclose(cam.position, [2 * math.cos(math.radians(30)), 1.0, 0.0], atol=1e-12)
    rot = cam.rotation
    np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-12)
    origins, dirs = cam.rays(5, 5)
    np.testing.assert_allclose(dirs[12], -cam.position / 2.0, atol=1e-12)  # centre pixel looks at the origin
    assert dirs[2][1] > dirs[22][1]  # row 0 is the top of the image
    assert rot[:, 1] @ [0, 1, 0] > 0  # camera up has a positive world-y component
    view = cam.world_to_camera()
    np.testing.assert_allclose(view @ np.append(cam.position, 1.0), [0, 0, 0, 1], atol=1e-12)


def test_fitted_distance_keeps_the_whole_mesh_in_view():
    mesh = procedural.torus()
    for fov in (30.0, 60.0, 90.0):
        d = fit_distance(mesh.vertices, fov)
        radius = np.linalg.norm(mesh.vertices, axis=1).max()
        assert d * math.sin(math.radians(fov / 2)) == pytest.approx(1.1 * radius)
    rig = turntable_rig(6, vertices=mesh.vertices)
    assert [c.azimuth for c in rig] == [0.0, 60.0, 120.0, 180.0, 240.0, 300.0]


def test_stochsync_groups_are_four_views_ninety_degrees_apart():
    rig = stochsync_rig(n_groups=3)
    assert rig.groups == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    for g in rig.groups:
        az = sorted(rig.cameras[i].azimuth % 360 for i in g)
        assert np.allclose(np.diff(az), 90.0)
    assert len({c.azimuth for c in rig}) == 12  # groups are rotated against each other
    assert paper_rig().groups == [[0, 2, 4, 6], [1, 3, 5, 7], [8, 9]]


def test_parse_views_and_its_errors():
    assert parse_views("0:0, 90 ; 180:30,") == [(0.0, 0.0), (90.0, 0.0), (180.0, 30.0)]
    for bad in ("", "a:b", "1:2:3"):
        with pytest.raises(ValueError):
            parse_views(bad)
    with pytest.raises(ValueError, match="elevation"):
        Camera(0.0, 90.0, 2.0, 50.0)
    with pytest.raises(ValueError, match="distance"):
        Camera(0.0, 0.0, 0.0, 50.0)


def test_camera_project_is_the_inverse_of_rays():
    """The one pinhole model (Camera.project) sends each pixel's ray back to that pixel's centre."""
    import torch

    from sync_canvas.assets.cameras import Camera

    cam = Camera(azimuth=30.0, elevation=20.0, distance=2.5, fov=50.0)
    h, w = 6, 10
    origins, dirs = cam.rays(h, w)
    points = torch.as_tensor(origins + 1.7 * dirs)
    x, y, depth = cam.project(points, h, w)
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    torch.testing.assert_close(x, cols.reshape(-1) + 0.5)
    torch.testing.assert_close(y, rows.reshape(-1) + 0.5)
    assert bool((depth > 0).all())
