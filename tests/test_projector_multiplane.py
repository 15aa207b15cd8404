"""Multiplane image (n-to-1): the CG solve reaches the least-squares solution, warm-started."""

import torch

from sync_canvas.projectors import AnagramProjector, MultiplaneProjector, WidePanoramaProjector


def _proj(planes=3):
    return MultiplaneProjector(AnagramProjector(8, 8, ["identity", "flip_h", "rotate_cw", "inner_rotate:50"]), planes)


def test_views_are_transforms_of_the_plane_mean():
    torch.manual_seed(0)
    p = torch.randn(4, 3, 8, 8)
    proj = _proj()
    assert proj.n_to_one and proj.canonical_shape == (3, 8, 8)
    assert torch.allclose(proj.project(p), proj.inner.project(p.mean(1)), atol=1e-6)


def test_warm_started_solve_reaches_least_squares_and_moves_minimally():
    torch.manual_seed(1)
    proj = _proj(planes=4)
    truth = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    w = proj.project(truth)
    previous = torch.randn_like(truth)
    fused = proj.aggregate(w, previous=previous, iterations=100)
    assert torch.allclose(proj.project(fused), w, atol=1e-8)
    # CG from `previous` adds a correction in range(F^T): the same on every plane, so the planes keep
    # their individual detail (what Case 2 relies on) instead of collapsing to the mean
    correction = fused - previous
    assert torch.allclose(correction, correction[:, :1].expand_as(correction), atol=1e-8)
    assert not torch.allclose(fused[:, 0], fused[:, 1])


def test_inconsistent_views_satisfy_the_normal_equations():
    torch.manual_seed(2)
    proj = _proj()
    w = torch.randn(proj.n_views, 3, 8, 8, dtype=torch.float64)
    fused = proj.aggregate(w, previous=torch.zeros(3, *proj.canonical_shape, dtype=torch.float64), iterations=100)
    grad = proj.adjoint(proj.project(fused) - w)
    assert grad.abs().max() < 1e-8
    # the start was not already a solution: the solve did the work
    start = torch.zeros_like(fused)
    assert proj.adjoint(proj.project(start) - w).abs().max() > 1e-1


def test_rescaled_and_inner_kinds():
    proj = MultiplaneProjector(WidePanoramaProjector(16, 64, window=16, stride=8), planes=2).rescaled(8)
    assert proj.canonical_shape == (2, 2, 8) and proj.view_hw == (2, 2)
    assert "2 planes over wide panorama" in proj.describe()
