"""Z-buffer rasterisation of triangles already in screen space (pixel units): the one 2-D triangle
rasteriser of the pack. Camera views (``projectors/raster_torch.py`` projects vertices first), UV atlases
(``projectors/mesh_pull.py``) and the UV-overlap check of mesh loading (``assets/mesh_uv.py``) use it.

Every pixel centre inside a face's bounding box is tested with 2-D edge functions, barycentrics are made
perspective-correct (``b_i = (l_i / d_i) / sum_j l_j / d_j`` with screen-space ``l`` and view depths ``d``)
and the nearest face per pixel wins (scatter-min z-buffer). Work is chunked by candidate count, so memory
stays bounded whatever the face sizes.
"""

from __future__ import annotations

import math

import torch

CANDIDATE_BUDGET = 1 << 20  # (face, pixel) pairs tested at once (also the most work between two cancellation checks)


def _edge(ax, ay, bx, by, px, py):
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax)


def _barycentric(sx, sy, d, px, py):
    """Screen-space and perspective-correct barycentrics of points (px, py) in triangles ``[K, 3]``."""
    area = _edge(sx[:, 0], sy[:, 0], sx[:, 1], sy[:, 1], sx[:, 2], sy[:, 2])
    l0 = _edge(sx[:, 1], sy[:, 1], sx[:, 2], sy[:, 2], px, py) / area
    l1 = _edge(sx[:, 2], sy[:, 2], sx[:, 0], sy[:, 0], px, py) / area
    l2 = 1 - l0 - l1
    screen = torch.stack([l0, l1, l2], -1)
    q = screen / d
    inv_depth = q.sum(-1)
    return screen, q / inv_depth.unsqueeze(-1), 1 / inv_depth


def rasterize_screen(fx, fy, fd, h: int, w: int, near: float = 0.0, check=None):
    """Z-buffer rasterisation of triangles given in screen space: corner x, y (pixel units, pixel
    centres at c + 0.5) and view depths ``fd`` (all ``[F, 3]``; constant depths rasterise a flat layout
    such as a UV atlas). Faces with a corner at depth <= ``near`` are skipped.
    Returns ``(face_id [h*w] int64 (-1 empty), bary [h*w, 3] float64 perspective-correct)``.
    ``check`` (optional) is called before each chunk of faces; it raises to cancel (projectors/cancel.py).
    """
    area = _edge(fx[:, 0], fy[:, 0], fx[:, 1], fy[:, 1], fx[:, 2], fy[:, 2])
    # candidate pixel centres (c + 0.5) inside each face's screen bounding box
    x0 = torch.ceil(fx.min(1).values - 0.5).clamp(0, w).long()
    x1 = torch.floor(fx.max(1).values - 0.5).clamp(-1, w - 1).long()
    y0 = torch.ceil(fy.min(1).values - 0.5).clamp(0, h).long()
    y1 = torch.floor(fy.max(1).values - 0.5).clamp(-1, h - 1).long()
    bw, bh = (x1 - x0 + 1).clamp_min(0), (y1 - y0 + 1).clamp_min(0)
    keep = (fd.min(1).values > near) & (area.abs() > 1e-12) & (bw * bh > 0)
    face_ids = torch.nonzero(keep).squeeze(1)
    counts = (bw * bh)[face_ids]
    zbuf = torch.full((h * w,), math.inf, dtype=torch.float64)
    fbuf = torch.full((h * w,), -1, dtype=torch.long)
    # per-chunk scratch: the chunk's nearest depth / face per pixel; only the pixels a chunk touches are
    # read, written and reset, so a chunk costs its candidates, not the image (a 4096^2 view has 16M pixels)
    chunk_z = torch.full((h * w,), math.inf, dtype=torch.float64)
    chunk_f = torch.full((h * w,), -1, dtype=torch.long)
    start = 0
    ends = torch.cumsum(counts, 0)
    while start < len(face_ids):
        if check is not None:
            check()
        base = int(ends[start - 1]) if start else 0
        stop = int(torch.searchsorted(ends, base + CANDIDATE_BUDGET, right=True))
        stop = max(stop, start + 1)
        chunk = face_ids[start:stop]
        c = counts[start:stop]
        owner = torch.repeat_interleave(torch.arange(len(chunk)), c)
        offset = torch.arange(int(c.sum())) - torch.repeat_interleave(torch.cumsum(c, 0) - c, c)
        f = chunk[owner]
        px = x0[f] + offset % bw[f]
        py = y0[f] + offset // bw[f]
        screen, _, depth = _barycentric(fx[f], fy[f], fd[f], px + 0.5, py + 0.5)
        inside = (screen >= -1e-9).all(-1)
        pix = (py * w + px)[inside]
        depth, f = depth[inside], f[inside]
        chunk_z.scatter_reduce_(0, pix, depth, "amin")
        best = chunk_z[pix]
        winner = depth <= best
        chunk_f.scatter_reduce_(0, pix[winner], f[winner], "amax")
        better = best < zbuf[pix]
        closer = pix[better]  # repeated pixels write the same values
        zbuf[closer] = best[better]
        fbuf[closer] = chunk_f[closer]
        chunk_z[pix] = math.inf
        chunk_f[pix] = -1
        start = stop
    if check is not None:
        check()
    bary = torch.zeros(h * w, 3, dtype=torch.float64)
    hits = torch.nonzero(fbuf >= 0).squeeze(1)
    for a in range(0, len(hits), CANDIDATE_BUDGET):  # slices: bounded temporaries, a check between
        if check is not None and a:
            check()
        hit = hits[a : a + CANDIDATE_BUDGET]
        f = fbuf[hit]
        px, py = (hit % w).double() + 0.5, (hit // w).double() + 0.5
        _, persp, _ = _barycentric(fx[f], fy[f], fd[f], px, py)
        bary[hit] = persp.clamp(0, 1) / persp.clamp(0, 1).sum(-1, keepdim=True)
    return fbuf, bary
