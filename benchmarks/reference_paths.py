"""The per-step sync paths as they were before issue 17, kept to compare against (benchmarks and tests).

Splat: per-view gather / ``index_add_`` over int32 COO weights copied to int64 on every call, and a
fixed 30 preconditioned-CG iterations per fuse (the shipped default). These are the reference numbers
and the reference results the CSR products and the tolerance-stopped CG are checked against.
"""

from __future__ import annotations

import torch


class ReferenceSplat:
    """The old SplatProjector products and fit over a projector's weights (same maths, old storage)."""

    def __init__(self, projector) -> None:
        self.p = projector
        w = projector.weights
        views = [w.view(i) for i in range(w.n_views)]
        self.ptr = [0]
        for pix, _, _ in views:
            self.ptr.append(self.ptr[-1] + len(pix))
        # stored as int32 and widened per call, as the old CompositingWeights.view did
        self.pixel = torch.cat([v[0] for v in views]).int()
        self.gaussian = torch.cat([v[1] for v in views]).int()
        self.weight = torch.cat([v[2] for v in views])
        self.alpha = w.alpha
        self.hw = (w.height, w.width)
        self.g = w.n_gaussians

    def view(self, i):
        s, e = self.ptr[i], self.ptr[i + 1]
        return self.pixel[s:e].long(), self.gaussian[s:e].long(), self.weight[s:e]

    def project(self, z: torch.Tensor, ids) -> torch.Tensor:
        rows = z.T.contiguous()
        out = torch.zeros(len(ids), self.hw[0] * self.hw[1], z.shape[0], dtype=z.dtype)
        for k, i in enumerate(ids):
            pix, gid, wt = self.view(i)
            out[k].index_add_(0, pix, rows[gid] * wt.to(z.dtype).unsqueeze(1))
        return out.permute(0, 2, 1).reshape(len(ids), z.shape[0], *self.hw)

    def adjoint(self, w: torch.Tensor, ids) -> torch.Tensor:
        rows = w.reshape(w.shape[0], w.shape[1], -1).transpose(1, 2).contiguous()
        out = torch.zeros(self.g, w.shape[1], dtype=w.dtype)
        for k, i in enumerate(ids):
            pix, gid, wt = self.view(i)
            out.index_add_(0, gid, rows[k][pix] * wt.to(w.dtype).unsqueeze(1))
        return out.T

    def _pw(self, ids, dtype):
        return self.alpha[list(ids)].reshape(len(ids), 1, *self.hw).to(dtype)

    def normal(self, z, ids):
        return self.adjoint(self.project(z, ids) * self._pw(ids, z.dtype), ids)

    def aggregate(self, w, previous=None, ids=None, iterations: int = 30, tolerance: float = 1e-5):
        """The old SplatProjector.aggregate: Jacobi PCG, 30 iterations unless every channel's residual
        drops below ``tolerance`` x its right-hand side (it never did in sampling)."""
        ids = list(range(len(self.ptr) - 1)) if ids is None else list(ids)
        work = torch.float64 if w.dtype == torch.float64 else torch.float32
        wv = w.to(work)
        rhs = self.adjoint(wv * self._pw(ids, work), ids)
        vis = torch.zeros(self.g)
        diag = torch.zeros(self.g)
        for i in ids:
            pix, gid, wt = self.view(i)
            vis.index_add_(0, gid, wt)
            diag.index_add_(0, gid, self.alpha[i][pix] * wt * wt)
        mask = (vis >= self.p.min_visibility).to(work).unsqueeze(0)
        diag = diag.to(work).clamp_min(1e-12).unsqueeze(0)
        if previous is None:
            row_sum = self.normal(torch.ones(1, self.g, dtype=work), ids)
            z = rhs / row_sum.clamp_min(1e-12) * mask
        else:
            z = previous.to(work).reshape(rhs.shape).clone()
        r = (rhs - self.normal(z, ids)) * mask
        stop = tolerance * rhs.norm(dim=1, keepdim=True).clamp_min(1e-12)
        zr = r / diag
        p, rz = zr, (r * zr).sum(1, keepdim=True)
        for _ in range(iterations):
            if bool((r.norm(dim=1, keepdim=True) <= stop).all()):
                break
            ap = self.normal(p, ids) * mask
            step = rz / (p * ap).sum(1, keepdim=True).clamp_min(1e-30)
            z = z + step * p
            r = r - step * ap
            zr = r / diag
            rz_new = (r * zr).sum(1, keepdim=True)
            p = zr + (rz_new / rz.clamp_min(1e-30)) * p
            rz = rz_new
        return z.to(w.dtype)
