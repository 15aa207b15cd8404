"""The one least-squares solver of the pack: preconditioned conjugate gradients on normal equations, per
channel, with a relative-residual stop (the n-to-1 fuse of ``Projector.aggregate``, Jacobi-preconditioned,
and the splat colour fit, preconditioned by ``BlockJacobi``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .cancel import check_cancel

# the fuse of n-to-1 projectors (conjugate_gradient) stops at this relative residual
DEFAULT_CG_TOLERANCE = 3e-4
"""Relative residual at which the per-step fuse stops: ||F^T W (w - F z)|| <= tol ||F^T W w|| per channel.
Measured on splat fits (tests/test_splat_projector.py, benchmarks/bench_scale.py): the renders of a fit
stopped at 3e-4 match the old fixed 30 Jacobi iterations to < 1e-3 RMS; with the block-Jacobi preconditioner
a cold start needs ~15 iterations, a step warm-started from the previous step's fit 6-7 (Jacobi: 29,
12-13). Renders, not colours: with more splats than pixels the colours are ill-determined and the same
solver with another summation order moves them by 1e-2."""


@dataclass
class SolveReport:
    """What a conjugate-gradient solve did: ``iterations`` (normal-operator products after the first
    residual), ``relative_residual`` (largest over channels of ||r|| / ||rhs||) and ``converged``."""

    iterations: int
    relative_residual: float
    converged: bool


def conjugate_gradient(normal_operator, rhs, start, precondition, mask, tolerance: float = DEFAULT_CG_TOLERANCE,
                       max_iterations: int = 100):
    """Preconditioned CG for ``A z = rhs``, each channel (dim 0) solved independently.

    normal_operator: z ``[C, ...]`` -> A z (symmetric positive semi-definite, e.g. F^T W F); rhs, start
    ``[C, ...]``; precondition: M^-1 as a tensor (Jacobi: 1 / diag A, 0 outside ``mask``, broadcast) or a
    callable r -> M^-1 r (``BlockJacobi``), 0 outside the mask; mask (1 on the solved elements) broadcasts
    against rhs. Elements outside the mask keep ``start``. Stops when every channel's residual
    ||r|| <= tolerance ||rhs|| (the relative residual), or after ``max_iterations``.
    Returns (z, SolveReport).
    """
    dims = tuple(range(1, rhs.dim()))

    def norm(t):  # per channel, shaped to broadcast
        return t.flatten(1).norm(dim=1).reshape(-1, *[1] * len(dims))

    z = start.clone()
    r = (rhs - normal_operator(z)) * mask
    scale = norm(rhs * mask).clamp_min(1e-30)
    apply = precondition if callable(precondition) else (lambda res: res * precondition)
    y = apply(r)
    p = y
    ry = (r * y).sum(dims, keepdim=True)
    done = 0
    while done < max_iterations and not bool((norm(r) <= tolerance * scale).all()):
        check_cancel()
        ap = normal_operator(p) * mask
        step = ry / (p * ap).sum(dims, keepdim=True).clamp_min(1e-30)
        z = z + step * p
        r = r - step * ap
        y = apply(r)
        ry_new = (r * y).sum(dims, keepdim=True)
        p = y + (ry_new / ry.clamp_min(1e-30)) * p
        ry = ry_new
        done += 1
    relative = float((norm(r) / scale).max())
    return z, SolveReport(done, relative, relative <= tolerance)


class BlockJacobi:
    """M^-1 r for M the block diagonal of A (``[K, b, b]`` blocks over a permutation of the unknowns): the
    fit's preconditioner where neighbouring unknowns are coupled (splats sharing pixels), which plain
    Jacobi ignores. Measured on the splat fit (100k splats, 16 views of 256^2, one warm step to a relative
    residual of 3e-4): Jacobi 45 CG iterations, blocks of 8 / 16 / 32 Morton-adjacent splats 23 / 19 / 17.

    blocks: float32 ``[K, b, b]``, overwritten by their inverses (inverted in float64 a batch at a time), block k over unknowns ``order[k*b : k*b+b]`` (K*b >= G, the tail
    padding); mask: bool ``[G]``, the solved unknowns (the others get 0); order: long ``[G]`` or None.
    A block is regularised by ``ridge`` x its largest diagonal entry (near-duplicate splats make blocks
    singular; any SPD M keeps CG exact, only its speed depends on M), and falls back to its diagonal
    if its Cholesky still fails. Applies to ``[C, G]`` in the caller's numbering."""

    def __init__(self, blocks: torch.Tensor, mask: torch.Tensor, order: torch.Tensor | None = None,
                 ridge: float = 1e-4, batch: int = 1 << 14) -> None:
        k, b, _ = blocks.shape
        g = len(mask)
        solved = mask if order is None else mask.index_select(0, order)
        m = torch.zeros(k * b, device=blocks.device)
        m[:g] = solved.float()
        m = m.reshape(k, b)
        self.inverse = blocks  # inverted in place, batch by batch: the blocks are the caller's temporaries
        for s in range(0, k, batch):  # float64 Cholesky a batch at a time: its temporaries stay small
            check_cancel()
            mb = m[s : s + batch].double()
            outer = mb.unsqueeze(2) * mb.unsqueeze(1)
            a = blocks[s : s + batch].double() * outer
            diag = a.diagonal(dim1=1, dim2=2)
            shift = ridge * diag.amax(1, keepdim=True).clamp_min(1e-30) + (1 - mb)
            chol, info = torch.linalg.cholesky_ex(a + torch.diag_embed(shift))
            failed = info != 0
            if bool(failed.any()):  # a failed factor is partly garbage: invert the identity there instead
                chol[failed] = torch.eye(b, dtype=chol.dtype, device=chol.device)
            inv = torch.cholesky_inverse(chol)
            if bool(failed.any()):
                d = diag[failed] + shift[failed]
                inv[failed] = torch.diag_embed(torch.where(d > 0, 1 / d.clamp_min(1e-300), torch.zeros_like(d)))
            self.inverse[s : s + batch] = inv * outer  # float32: plenty for a preconditioner, half the memory
        self.order, self.size = order, g

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        inv = self.inverse.to(r.dtype)  # never written: copies of a projector share it
        k, b, _ = inv.shape
        inner = r if self.order is None else r.index_select(1, self.order)
        padded = torch.zeros(r.shape[0], k * b, dtype=r.dtype, device=r.device)
        padded[:, : self.size] = inner
        y = torch.bmm(inv, padded.reshape(-1, k, b).permute(1, 2, 0))  # [K, b, C]
        y = y.permute(2, 0, 1).reshape(r.shape[0], k * b)[:, : self.size]
        if self.order is None:
            return y
        return torch.empty_like(y).index_copy_(1, self.order, y)
