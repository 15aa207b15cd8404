"""Gaussian splat rasterisation (Kerbl et al. 2023) as precomputed, colour-independent weights.

For fixed geometry a rendered pixel is linear in the colours (Zwicker et al. EWA splatting; 3DGS
Eq. 2-3):  C(p) = sum_k c_k alpha_k(p) T_k(p),  T_k = prod_{j<k} (1 - alpha_j),  over the gaussians
sorted front to back, alpha_k(p) = min(0.99, o_k exp(-1/2 d^T Sigma'^-1 d)). So the weights
w_k(p) = alpha_k T_k are computed once per view (``compositing_weights``) and every later render of any
colours (RGB, 4-channel latents, depth) is a sparse product (``composite``).

Rules copied from the 3DGS CUDA rasteriser so renders agree with trained scenes: 2-D covariance
J W Sigma W^T J^T + 0.3 I, the x/z and y/z of the Jacobian clamped to 1.3 x the half field of view,
a square 3-sigma footprint, alpha < 1/255 skipped, alpha clamped to 0.99, and a pixel stops before
the gaussian that would bring its transmittance below 1e-4. Background is 0 (linear map).

``render`` uses the pure-torch weights path; gsplat is an opt-in, UNVERIFIED back-end for renders of
CUDA tensors (``backend="gsplat"``; ``scripts/gpu_check.py`` compares the two on a GPU).
"""

from __future__ import annotations

import logging
import math

import torch

from ..assets.splat_cameras import SplatCameras
from .cancel import check_cancel
from .splat_weights import CompositingWeights, _build_chunk, spatial_order

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
T_MIN = 1e-4
EWA_BLUR = 0.3
log = logging.getLogger(__name__)


def quaternion_to_rotation(quats: torch.Tensor) -> torch.Tensor:
    """``[G, 4]`` (w, x, y, z), any norm -> ``[G, 3, 3]`` rotation matrices."""
    w, x, y, z = (quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(-1, 3, 3)


def project_gaussians(means, quats, log_scales, viewmat, K, width, height, near: float = 0.01):
    """EWA projection of G gaussians into one view.

    Returns ``mean2d [G, 2]`` (pixels, x right / y down), ``conic [G, 3]`` (a, b, c of the inverse 2-D
    covariance [[a, b], [b, c]]), ``radius [G]`` (3 sigma of the major axis, pixels), ``depth [G]``
    (camera z) and ``valid [G]`` (in front of ``near``).
    """
    rot, trans = viewmat[:3, :3], viewmat[:3, 3]
    p = means @ rot.T + trans
    z = p[:, 2]
    valid = z > near
    zs = torch.where(valid, z, torch.ones_like(z))
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    lim_x, lim_y = 1.3 * 0.5 * width / fx, 1.3 * 0.5 * height / fy
    tx = (p[:, 0] / zs).clamp(-lim_x, lim_x) * zs
    ty = (p[:, 1] / zs).clamp(-lim_y, lim_y) * zs
    jac = torch.zeros(len(p), 2, 3, dtype=p.dtype, device=p.device)
    jac[:, 0, 0], jac[:, 0, 2] = fx / zs, -fx * tx / zs**2
    jac[:, 1, 1], jac[:, 1, 2] = fy / zs, -fy * ty / zs**2
    m = quaternion_to_rotation(quats) * torch.exp(log_scales).unsqueeze(1)  # R diag(s)
    cov_cam = rot @ (m @ m.transpose(1, 2)) @ rot.T
    cov2d = jac @ cov_cam @ jac.transpose(1, 2)
    a, b, c = cov2d[:, 0, 0] + EWA_BLUR, cov2d[:, 0, 1], cov2d[:, 1, 1] + EWA_BLUR
    det = (a * c - b * b).clamp_min(1e-12)
    conic = torch.stack([c / det, -b / det, a / det], -1)
    mid = 0.5 * (a + c)
    lambda_max = mid + torch.sqrt((mid * mid - det).clamp_min(0.1))
    radius = torch.ceil(3 * torch.sqrt(lambda_max))
    mean2d = torch.stack([fx * p[:, 0] / zs + cx, fy * p[:, 1] / zs + cy], -1)
    return mean2d, conic, radius, z, valid


def footprints(means, quats, log_scales, opacities, viewmat, K, width, height):
    """Each gaussian's square 3-sigma footprint in one view: (mean2d, conic, depth, x0, y0, x1, y1, keep),
    pixel bounds inclusive, ``keep [G]`` for gaussians in front of the camera with a non-empty footprint."""
    mean2d, conic, radius, depth, valid = project_gaussians(means, quats, log_scales, viewmat, K, width, height)
    x0 = torch.clamp(torch.ceil(mean2d[:, 0] - radius - 0.5), min=0)  # first pixel whose centre is inside
    x1 = torch.clamp(torch.floor(mean2d[:, 0] + radius - 0.5), max=width - 1)
    y0 = torch.clamp(torch.ceil(mean2d[:, 1] - radius - 0.5), min=0)
    y1 = torch.clamp(torch.floor(mean2d[:, 1] + radius - 0.5), max=height - 1)
    keep = valid & (x1 >= x0) & (y1 >= y0) & (opacities >= ALPHA_MIN)
    return mean2d, conic, depth, x0, y0, x1, y1, keep


def _view_weights(means, quats, log_scales, opacities, viewmat, K, width, height, max_pairs):
    """(pixel, gaussian, weight, depth-of-entry) for one view, sorted by pixel then depth."""
    dev = means.device
    mean2d, conic, depth, x0, y0, x1, y1, keep = footprints(means, quats, log_scales, opacities, viewmat, K, width, height)
    ids = torch.nonzero(keep).squeeze(1)
    ids = ids[torch.argsort(depth[ids], stable=True)]  # front to back; rank = position in ids
    bw = x1[ids] - x0[ids] + 1
    count = (bw * (y1[ids] - y0[ids] + 1)).long()
    # one row of attributes per gaussian in depth order: a single gather per chunk instead of nine
    table = torch.stack([mean2d[ids, 0], mean2d[ids, 1], conic[ids, 0], conic[ids, 1], conic[ids, 2],
                         opacities[ids], x0[ids], y0[ids], bw], 1)
    pixels, gaussians, alphas = [], [], []
    start = 0
    while start < len(ids):  # chunks of gaussians with at most ~max_pairs footprint pixels
        check_cancel()
        csum = torch.cumsum(count[start:], 0)
        stop = start + max(1, int(torch.searchsorted(csum, torch.tensor(max_pairs, device=csum.device), right=True)))
        rank = torch.repeat_interleave(torch.arange(start, stop, device=dev), count[start:stop])
        first = torch.cumsum(count[start:stop], 0) - count[start:stop]
        local = (torch.arange(len(rank), device=dev) - torch.repeat_interleave(first, count[start:stop])).float()
        # index_select, not advanced indexing: several times faster on the CPU (the build's hot spot)
        mx, my, ca, cb, cc, op, bx, by, bwr = table.index_select(0, rank).unbind(1)
        row = torch.floor(local / bwr)  # exact: integers below 2^24
        px, py = bx + (local - row * bwr), by + row
        dx, dy = px + 0.5 - mx, py + 0.5 - my
        power = -0.5 * (ca * dx * dx + cc * dy * dy) - cb * dx * dy
        alpha = torch.clamp(op * torch.exp(power), max=ALPHA_MAX)
        ok = torch.nonzero((power <= 0) & (alpha >= ALPHA_MIN)).squeeze(1)
        pixels.append((py * width + px).index_select(0, ok).long())
        gaussians.append(rank.index_select(0, ok))
        alphas.append(alpha.index_select(0, ok))
        start = stop
    if not pixels:
        empty = torch.zeros(0, dtype=torch.long, device=dev)
        return empty, empty, torch.zeros(0, device=dev), torch.zeros(0, device=dev)
    check_cancel()
    pixel, rank, alpha = torch.cat(pixels), torch.cat(gaussians), torch.cat(alphas)
    order = torch.argsort(pixel * max(len(ids), 1) + rank)  # by pixel, then front to back
    check_cancel()
    pixel, rank, alpha = pixel.index_select(0, order), rank.index_select(0, order), alpha.index_select(0, order).double()
    # transmittance before each entry: exclusive cumulative sum of log(1 - alpha) within its pixel
    log_keep = torch.log1p(-alpha)
    csum = torch.cumsum(log_keep, 0)
    new_pixel = torch.ones_like(pixel, dtype=torch.bool)
    new_pixel[1:] = pixel[1:] != pixel[:-1]
    seg_start = torch.cummax(torch.where(new_pixel, torch.arange(len(pixel), device=dev), torch.zeros_like(pixel)), 0).values
    log_t = csum - log_keep - (csum - log_keep).index_select(0, seg_start)
    check_cancel()
    included = torch.nonzero((log_t + log_keep) >= math.log(T_MIN)).squeeze(1)  # 3DGS early stop
    weight = (alpha * torch.exp(log_t)).index_select(0, included).float()
    gaussian = ids.index_select(0, rank.index_select(0, included))
    return pixel.index_select(0, included), gaussian, weight, depth.index_select(0, gaussian)


@torch.no_grad()
def default_chunk_entries(n_gaussians: int) -> int:
    """Entries per chunk of views when ``compositing_weights`` is not told: 8 per gaussian, between 2^20 and 2^24."""
    return min(max(8 * n_gaussians, 1 << 20), 1 << 24)


def compositing_weights(
    means: torch.Tensor,
    quats: torch.Tensor,
    log_scales: torch.Tensor,
    opacities: torch.Tensor,
    cameras: SplatCameras,
    max_pairs: int = 1 << 20,
    chunk_entries: int | None = None,
    supersample: int = 1,
) -> CompositingWeights:
    """Per-view compositing weights of a splat scene, built on the device of ``means`` (pure torch).

    means ``[G, 3]``, quats ``[G, 4]`` (w, x, y, z), log_scales ``[G, 3]``, opacities ``[G]`` in (0, 1).
    ``max_pairs`` bounds the (gaussian, pixel) candidates evaluated at once (memory ~ 100 B each).
    ``chunk_entries``: entries per chunk of views (default 8 per gaussian, between 2^20 and 2^24): large
    enough that a product's [G, C] output is amortised over many entries, small enough that building
    a chunk's transpose needs ~40 B x chunk_entries of temporaries.
    ``supersample`` s: weights rasterised at s x s sub-pixels and averaged over each pixel (the area
    integral of the render instead of a point sample at the pixel centre). At latent resolution this is
    what keeps small splats visible: the 0.3 px^2 EWA blur widens every splat to a few pixels, so at 64^2
    the front-most few splats saturate a pixel and hide the rest, which a finer grid resolves.
    """
    g = means.shape[0]
    if means.shape != (g, 3) or quats.shape != (g, 4) or log_scales.shape != (g, 3) or opacities.shape != (g,):
        raise ValueError(f"inconsistent gaussian arrays: means {tuple(means.shape)}, quats {tuple(quats.shape)}, "
                         f"log_scales {tuple(log_scales.shape)}, opacities {tuple(opacities.shape)}")
    device = means.device
    means, quats, log_scales, opacities = (t.detach().float().to(device) for t in (means, quats, log_scales, opacities))
    if chunk_entries is None:
        chunk_entries = default_chunk_entries(g)
    if supersample < 1 or int(supersample) != supersample:
        raise ValueError(f"supersample must be a positive integer, got {supersample!r}")
    h, w, s = cameras.height, cameras.width, int(supersample)
    alpha = torch.zeros(len(cameras), h * w, device=device)
    depth = torch.zeros(len(cameras), h * w, device=device)
    order = spatial_order(means)  # the matrices' column j is gaussian order[j]
    column = torch.empty_like(order).index_copy_(0, order, torch.arange(g, device=device))
    chunks, parts, start, pending = [], [], 0, 0
    for i in range(len(cameras)):
        k = cameras.Ks[i].float().to(device).clone()
        k[:2] *= s  # fx, fy, cx, cy in sub-pixels; pixel centres stay consistent
        pix, gid, wt, z = _view_weights(means, quats, log_scales, opacities, cameras.viewmats[i].float().to(device),
                                        k, w * s, h * s, max_pairs)
        if s > 1:
            check_cancel()
            pix, gid, wt, z = _pool_subpixels(pix, gid, wt, z, w, s, g)
        alpha[i].index_add_(0, pix, wt)
        depth[i].index_add_(0, pix, wt * z)
        if parts and pending + len(pix) > chunk_entries:
            check_cancel()
            chunks.append(_build_chunk(start, parts, h * w, g))
            parts, start, pending = [], i, 0
        parts.append((pix, column[gid], wt))
        pending += len(pix)
    if parts or not chunks:
        chunks.append(_build_chunk(start, parts or [_empty_view(device)], h * w, g))
    depth = torch.where(alpha > 0, depth / alpha.clamp_min(1e-12), torch.zeros_like(depth))
    return CompositingWeights(chunks, alpha, depth, h, w, g, order)


def _pool_subpixels(pix, gid, wt, z, width, s, g):
    """Sub-pixel entries (row-major on a (h s) x (w s) grid) -> pixel entries: weights averaged over the
    s x s sub-pixels, one entry per (pixel, gaussian), sorted by pixel."""
    coarse = (pix // (width * s)) // s * width + (pix % (width * s)) // s
    key, inverse = torch.unique(coarse * g + gid, return_inverse=True)  # sorted: by pixel, then gaussian
    weight = torch.zeros(len(key), device=wt.device).index_add_(0, inverse, wt) / (s * s)
    depth = torch.zeros(len(key), device=wt.device).index_put_((inverse,), z)
    return key // g, key % g, weight, depth


def _empty_view(device):
    return (torch.zeros(0, dtype=torch.long, device=device),) * 2 + (torch.zeros(0, device=device),)


def composite(weights: CompositingWeights, colors: torch.Tensor, views=None) -> torch.Tensor:
    """Render colours ``[C, G]`` with precomputed weights -> ``[n, C, H, W]`` (background 0)."""
    if colors.dim() != 2 or colors.shape[1] != weights.n_gaussians:
        raise ValueError(f"colours have shape {tuple(colors.shape)}, expected [C, {weights.n_gaussians}]")
    return weights.render(colors, views)


def _gsplat_available(device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


def render(
    means: torch.Tensor,
    quats: torch.Tensor,
    log_scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    cameras: SplatCameras,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render colours ``[C, G]`` -> (image ``[N, C, H, W]``, alpha ``[N, 1, H, W]``, depth ``[N, 1, H, W]``).

    ``backend``: "torch" (the compositing weights; reference, any device; what "auto" picks) or "gsplat"
    (opt-in, CUDA tensors, needs the gsplat package; UNVERIFIED until ``scripts/gpu_check.py`` has
    compared its renders with the weights path on a GPU; logged as such). Background is 0.
    """
    if backend not in ("auto", "torch", "gsplat"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'gsplat', got {backend!r}")
    if backend == "gsplat":
        if not _gsplat_available(means.device):
            raise RuntimeError(f"backend='gsplat' needs the gsplat package and CUDA tensors (got {means.device})")
        log.warning("SyncCanvas splat render: gsplat is UNVERIFIED (scripts/gpu_check.py compares it with the weights path)")
        return _render_gsplat(means, quats, log_scales, opacities, colors, cameras)
    wts = compositing_weights(means, quats, log_scales, opacities, cameras)
    image = composite(wts, colors.detach().float().to(wts.device)).to(colors.device)
    shape = (len(cameras), 1, cameras.height, cameras.width)
    return image, wts.alpha.reshape(shape).to(colors.device), wts.depth.reshape(shape).to(colors.device)


def _render_gsplat(means, quats, log_scales, opacities, colors, cameras):  # pragma: no cover - needs CUDA
    """gsplat.rasterization with the same 0.3 blur and 3-sigma rules; expected depth as an extra channel."""
    from gsplat import rasterization

    dev = means.device
    image, alpha, _ = rasterization(
        means, quats, torch.exp(log_scales), opacities, colors.T.contiguous(),
        cameras.viewmats.to(dev), cameras.Ks.to(dev), cameras.width, cameras.height,
        render_mode="RGB+ED", packed=False, eps2d=EWA_BLUR, radius_clip=0.0,
    )
    image = image.permute(0, 3, 1, 2)
    return image[:, :-1], alpha.permute(0, 3, 1, 2), image[:, -1:]
