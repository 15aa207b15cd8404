"""Texel-driven ("pull") unprojection for mesh textures: every texel a view sees reads that view.

Why: scattering view pixels into their texels (F^T) leaves a 1536^2 latent texture seen from 96^2
views almost empty (each pixel lands on ~1 of the ~16x16 texels under it), so two views rarely
write the same texel and the views barely synchronize. SyncMVD fixes this by Voronoi-filling each
view's unprojection over the texels it sees (SyncTweedies A1.3 "Voronoi-diagram-based filling after
each unprojection"); StochSync instead projects each texel's surface point into every view and tests
visibility. We do the latter, precomputed once as sparse taps:

1. rasterise the UV atlas: texel centre -> face and barycentrics -> surface point P_t and face normal;
2. per view i: project P_t to continuous pixel coordinates; the texel is seen when the pixel there
   sees the same face or a surface within ``depth_tolerance`` pixel footprints of P_t's depth;
3. tap the view bilinearly at that position (background taps dropped, the rest renormalised), with
   weight ``|cos(view ray, normal)|^k``, the same trust the scatter path gives pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..assets.mesh_data import MeshData
from ..assets.screen_raster import rasterize_screen
from .base import working_dtype
from .cancel import check_cancel
from .grid import bilinear_corners
from .raster import RasterResult
from .sparse import csr_from_entries


@dataclass
class PullTaps:
    """Concatenated per-view entries (view-major): entry k makes texel ``texel[k]`` read view pixels.

    texel [K] int64 flat texel index; pixel [K, 4] int64 flat index into ``[N * h * w]``;
    weight [K, 4] float32 bilinear weights (sum 1); trust [K] float32 cos^k; starts [N + 1] int64 offsets.
    """

    texel: torch.Tensor
    pixel: torch.Tensor
    weight: torch.Tensor
    trust: torch.Tensor
    starts: torch.Tensor

    def to(self, device) -> "PullTaps":
        return PullTaps(*(t.to(device) for t in (self.texel, self.pixel, self.weight, self.trust)), self.starts)

    def select(self, views: torch.Tensor, pixels_per_view: int) -> "PullTaps":
        """Entries of the given views only, with pixel indices into the batch ``[len(views), C, h, w]``."""
        ids = [int(v) for v in views]
        if ids == list(range(len(self.starts) - 1)):
            return self
        parts, shift = [], []
        for pos, i in enumerate(ids):
            a, b = int(self.starts[i]), int(self.starts[i + 1])
            parts.append(torch.arange(a, b, device="cpu"))
            shift.append(torch.full((b - a,), (pos - i) * pixels_per_view, dtype=torch.long, device="cpu"))
        idx = torch.cat(parts).to(self.texel.device)
        pixel = self.pixel[idx] + torch.cat(shift).to(self.texel.device)[:, None]
        sizes = torch.tensor([0] + [len(p) for p in parts], device="cpu")
        return PullTaps(self.texel[idx], pixel, self.weight[idx], self.trust[idx], torch.cumsum(sizes, 0))


def texel_surface(mesh: MeshData, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rasterise the UV atlas at ``size x size`` texel centres.

    Returns ``(texel ids [M] int64, faces [M] int64, points [M, 3] float32, normals [M, 3] float32)``
    for the M texels whose centre lies inside a UV triangle.
    """
    uv = torch.as_tensor(mesh.uvs, dtype=torch.float64)
    faces = torch.as_tensor(mesh.faces, dtype=torch.long)
    fx, fy = uv[faces][..., 0] * size, (1 - uv[faces][..., 1]) * size
    face_id, bary = rasterize_screen(fx, fy, torch.ones_like(fx), size, size, check=check_cancel)
    texel = torch.nonzero(face_id >= 0).squeeze(1)
    f = faces[face_id[texel]]
    verts = torch.as_tensor(mesh.vertices, dtype=torch.float64)
    corners = verts[f]  # [M, 3, 3]
    points = (bary[texel].unsqueeze(-1) * corners).sum(1)
    normals = torch.nn.functional.normalize(torch.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=-1), dim=-1)
    return texel, face_id[texel], points.float(), normals.float()


def pull_taps(
    mesh: MeshData,
    cams,
    raster: RasterResult,
    texture_size: int,
    cos_exponent: float,
    depth_tolerance: float = 2.0,
) -> PullTaps:
    """Precompute the texel -> view taps (see module docstring). ``depth_tolerance`` is in pixel
    footprints at the texel's depth (how far P_t may sit from the surface the pixel sees)."""
    check_cancel()
    texel, face_of_texel, points, normals = texel_surface(mesh, texture_size)
    check_cancel()
    n, h, w = raster.face_id.shape
    entries = {k: [] for k in ("texel", "pixel", "weight", "trust")}
    starts = [0]
    for i, cam in enumerate(cams):
        check_cancel()
        pos = torch.as_tensor(cam.position, dtype=points.dtype, device=points.device)
        x, y, depth = cam.project(points, h, w, min_depth=1e-6)
        tan = math.tan(math.radians(cam.fov) / 2)
        safe = depth.clamp_min(1e-6)
        inside = (depth > 0) & (x >= 0) & (x < w) & (y >= 0) & (y < h)
        px, py = x.clamp(0, w - 1).long(), y.clamp(0, h - 1).long()
        seen_face = raster.face_id[i].reshape(-1)[py * w + px]
        seen_depth = raster.depth[i].reshape(-1)[py * w + px]
        footprint = 2 * safe * tan / h
        visible = inside & (seen_face >= 0) & (
            (seen_face == face_of_texel) | ((seen_depth - depth).abs() <= depth_tolerance * footprint)
        )
        ray = torch.nn.functional.normalize(points - pos, dim=-1)
        cos = (normals * ray).sum(-1).abs()
        visible &= cos > 1e-3
        k = torch.nonzero(visible).squeeze(1)
        pix, wts = _bilinear(y[k], x[k], raster.mask[i].reshape(-1), h, w)
        ok = wts.sum(-1) > 0
        k, pix, wts = k[ok], pix[ok], wts[ok]
        entries["texel"].append(texel[k])
        entries["pixel"].append(pix + i * h * w)
        entries["weight"].append(wts / wts.sum(-1, keepdim=True))
        entries["trust"].append(cos[k] ** cos_exponent)
        starts.append(starts[-1] + len(k))
    cat = {key: torch.cat(val) for key, val in entries.items()}
    return PullTaps(cat["texel"], cat["pixel"], cat["weight"].float(), cat["trust"].float(), torch.tensor(starts))


def _bilinear(y: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, h: int, w: int):
    """Four pixel taps around continuous (y, x) with bilinear weights, zeroed on background pixels."""
    pix, wts = bilinear_corners(y, x, h, w)
    return pix, wts * mask[pix].float()


@dataclass
class UnprojectionMatrix:
    """``g`` of a view selection as one CSR matrix over the texels it touches.

    touched ``[U]`` int64 flat texels with some weight; matrix CSR ``[U, n * h * w]`` (scatter taps
    ``W_i * bilinear weight`` plus pull taps ``trust * bilinear weight``; columns index the batch
    ``[n, h, w]`` in selection order); den ``[U]`` = matrix @ 1 (geometry only, so precomputed).
    The per-step fuse is then one sparse product and a division over the touched texels.
    """

    touched: torch.Tensor
    matrix: torch.Tensor
    den: torch.Tensor

    def to(self, device) -> "UnprojectionMatrix":
        return UnprojectionMatrix(self.touched.to(device), self.matrix.to(device), self.den.to(device))

    def numerator(self, w: torch.Tensor) -> torch.Tensor:
        """``[C, U]`` = g(W w) on the touched texels for views ``w`` ``[n, C, h, w]``."""
        rows = w.permute(0, 2, 3, 1).reshape(-1, w.shape[1])  # [n h w, C]
        work = working_dtype(w.dtype)
        mat = self.matrix if work == torch.float32 else self.matrix.to(work)
        return (mat @ rows.to(work)).T.to(w.dtype)


def unprojection_matrix(index: torch.Tensor, weight: torch.Tensor, pixel_weight: torch.Tensor,
                        pull: PullTaps | None, canonical_size: int) -> UnprojectionMatrix:
    """Build ``UnprojectionMatrix`` from the selected views' scatter taps (``index``/``weight``
    ``[n, P, T]``, ``pixel_weight`` ``[n, P]``, the base projector's) and their pull taps (pixel indices
    already into the batch, ``PullTaps.select``)."""
    n, p, t = index.shape
    rows = [index.reshape(-1)]
    cols = [torch.arange(n * p, device=index.device).repeat_interleave(t)]
    vals = [(weight * pixel_weight.unsqueeze(-1)).reshape(-1).float()]
    if pull is not None and len(pull.texel):
        rows.append(pull.texel.repeat_interleave(pull.pixel.shape[1]))
        cols.append(pull.pixel.reshape(-1))
        vals.append((pull.weight * pull.trust.unsqueeze(-1)).reshape(-1).float())
    rows, cols, vals = torch.cat(rows), torch.cat(cols), torch.cat(vals)
    keep = vals > 0
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    touched, local = torch.unique(rows, return_inverse=True)
    u = len(touched)
    matrix = csr_from_entries(local, cols, vals, (u, n * p))  # duplicates summed by the product
    den = torch.zeros(u, device=index.device).index_add_(0, local, vals)
    return UnprojectionMatrix(touched, matrix, den)
