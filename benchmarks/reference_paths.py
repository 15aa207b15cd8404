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
        self.ptr, pixel, gaussian, weight = [0], [], [], []
        for i in range(w.n_views):  # stored as int32 and widened per call, as the old CompositingWeights.view did
            pix, gid, wt = w.view(i)
            pixel.append(pix.int())
            gaussian.append(gid.int())
            weight.append(wt.clone())
            self.ptr.append(self.ptr[-1] + len(pix))
        self.pixel, self.gaussian, self.weight = torch.cat(pixel), torch.cat(gaussian), torch.cat(weight)
        del pixel, gaussian, weight
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


# ---- mesh: scatter (index_add_ over the whole texture) + texel pull (gather) per step --------------
def pull_unproject(taps: PullTaps, w: torch.Tensor, canonical_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum_k trust_k * w[pixels_k], sum_k trust_k)`` per texel: ``([C, T*T], [1, T*T])``.

    ``w`` is ``[n, C, h, w]``: the views the taps were selected for, in the same order.
    """
    c = w.shape[1]
    flat = w.permute(1, 0, 2, 3).reshape(c, -1)
    values = (flat[:, taps.pixel] * taps.weight.to(w.dtype)).sum(-1) * taps.trust.to(w.dtype)  # [C, K]
    num = torch.zeros(c, canonical_size, dtype=w.dtype, device=w.device).index_add_(1, taps.texel, values)
    den = torch.zeros(1, canonical_size, dtype=w.dtype, device=w.device).index_add_(1, taps.texel, taps.trust.to(w.dtype)[None])
    return num, den


def reference_mesh_aggregate(projector, w: torch.Tensor, previous=None, views=None) -> torch.Tensor:
    """The old MeshTextureProjector.aggregate (pull mode): base scatter over the whole texture, plus the
    pull's gather and index_add_, then a whole-texture ``where``."""
    from sync_canvas.projectors.base import Projector

    num, den = Projector.unproject(projector, w, views)
    pn, pd = pull_unproject(projector._pull(views), w, projector.canonical_size)
    num, den = num + pn.reshape(num.shape), den + pd.reshape(den.shape)
    out = torch.zeros_like(num) if previous is None else previous.to(num.dtype).reshape(num.shape)
    return torch.where(den > 0, num / den.clamp_min(1e-12), out).to(w.dtype)
