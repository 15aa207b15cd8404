"""The one least-squares solver of the pack: Jacobi-preconditioned conjugate gradients on normal
equations, per channel, with a relative-residual stop (the n-to-1 fuse of ``Projector.aggregate`` and the
splat colour fit)."""

from __future__ import annotations

from dataclasses import dataclass

from .cancel import check_cancel

# the fuse of n-to-1 projectors (conjugate_gradient) stops at this relative residual
DEFAULT_CG_TOLERANCE = 3e-4
"""Relative residual at which the per-step fuse stops: ||F^T W (w - F z)|| <= tol ||F^T W w|| per channel.
Measured on splat fits (tests/test_splat_projector.py, notes/issue17.md): the renders of a fit stopped at
3e-4 match the old fixed 30 iterations to < 1e-3 RMS; a cold start needs ~30 iterations, a step warm-started
from the previous step's fit 12-13. Renders, not colours: with more splats than pixels the colours are
ill-determined and the same solver with another summation order moves them by 1e-2."""


@dataclass
class SolveReport:
    """What a conjugate-gradient solve did: ``iterations`` (normal-operator products after the first
    residual), ``relative_residual`` (largest over channels of ||r|| / ||rhs||) and ``converged``."""

    iterations: int
    relative_residual: float
    converged: bool


def conjugate_gradient(normal_operator, rhs, start, inv_diag, mask, tolerance: float = DEFAULT_CG_TOLERANCE,
                       max_iterations: int = 100):
    """Jacobi-preconditioned CG for ``A z = rhs``, each channel (dim 0) solved independently.

    normal_operator: z ``[C, ...]`` -> A z (symmetric positive semi-definite, e.g. F^T W F); rhs, start
    ``[C, ...]``; inv_diag (1 / diag A, 0 outside ``mask``) and mask (1 on the solved elements) broadcast
    against them. Elements outside the mask keep ``start``. Stops when every channel's residual
    ||r|| <= tolerance ||rhs|| (the relative residual), or after ``max_iterations``.
    Returns (z, SolveReport).
    """
    dims = tuple(range(1, rhs.dim()))

    def norm(t):  # per channel, shaped to broadcast
        return t.flatten(1).norm(dim=1).reshape(-1, *[1] * len(dims))

    z = start.clone()
    r = (rhs - normal_operator(z)) * mask
    scale = norm(rhs * mask).clamp_min(1e-30)
    y = r * inv_diag
    p = y
    ry = (r * y).sum(dims, keepdim=True)
    done = 0
    while done < max_iterations and not bool((norm(r) <= tolerance * scale).all()):
        check_cancel()
        ap = normal_operator(p) * mask
        step = ry / (p * ap).sum(dims, keepdim=True).clamp_min(1e-30)
        z = z + step * p
        r = r - step * ap
        y = r * inv_diag
        ry_new = (r * y).sum(dims, keepdim=True)
        p = y + (ry_new / ry.clamp_min(1e-30)) * p
        ry = ry_new
        done += 1
    relative = float((norm(r) / scale).max())
    return z, SolveReport(done, relative, relative <= tolerance)
