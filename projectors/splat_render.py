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

``render`` picks gsplat on CUDA when it is installed (not tested here: no GPU in CI) and the
pure-torch weights path otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..assets.splat_cameras import SplatCameras

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
T_MIN = 1e-4
EWA_BLUR = 0.3


@dataclass
class CompositingWeights:
    """Sparse per-view compositing weights; E entries over all views, grouped by view.

    view_ptr ``[N+1]`` (entries of view i are ``view_ptr[i]:view_ptr[i+1]``), pixel ``[E]`` int32 (flat
    row-major pixel in its view), gaussian ``[E]`` int32, weight ``[E]`` (alpha_k T_k in (0, 1)), and per
    pixel: alpha ``[N, H*W]`` (accumulated opacity) and depth ``[N, H*W]`` (expected camera z of the
    surface, sum w z / alpha; 0 where alpha is 0).
    """

    view_ptr: torch.Tensor
    pixel: torch.Tensor
    gaussian: torch.Tensor
    weight: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor
    height: int
    width: int
    n_gaussians: int

    @property
    def n_views(self) -> int:
        return int(self.alpha.shape[0])

    def view(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pixel, gaussian, weight) of view i; indices as int64 (index_add_ with int32 is ~10x slower)."""
        s, e = int(self.view_ptr[i]), int(self.view_ptr[i + 1])
        return self.pixel[s:e].long(), self.gaussian[s:e].long(), self.weight[s:e]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.pixel, self.gaussian, self.weight, self.alpha, self.depth))

    def to(self, device) -> "CompositingWeights":
        move = lambda t: t.to(device)  # noqa: E731
        return CompositingWeights(self.view_ptr, move(self.pixel), move(self.gaussian), move(self.weight),
                                  move(self.alpha), move(self.depth), self.height, self.width, self.n_gaussians)


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
    jac = torch.zeros(len(p), 2, 3, dtype=p.dtype)
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


def _view_weights(means, quats, log_scales, opacities, viewmat, K, width, height, max_pairs):
    """(pixel, gaussian, weight, depth-of-entry) for one view, sorted by pixel then depth."""
    mean2d, conic, radius, depth, valid = project_gaussians(means, quats, log_scales, viewmat, K, width, height)
    x0 = torch.clamp(torch.ceil(mean2d[:, 0] - radius - 0.5), min=0)  # first pixel whose centre is inside
    x1 = torch.clamp(torch.floor(mean2d[:, 0] + radius - 0.5), max=width - 1)
    y0 = torch.clamp(torch.ceil(mean2d[:, 1] - radius - 0.5), min=0)
    y1 = torch.clamp(torch.floor(mean2d[:, 1] + radius - 0.5), max=height - 1)
    keep = valid & (x1 >= x0) & (y1 >= y0) & (opacities >= ALPHA_MIN)
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
        csum = torch.cumsum(count[start:], 0)
        stop = start + max(1, int(torch.searchsorted(csum, torch.tensor(max_pairs), right=True)))
        rank = torch.repeat_interleave(torch.arange(start, stop), count[start:stop])
        first = torch.cumsum(count[start:stop], 0) - count[start:stop]
        local = (torch.arange(len(rank)) - torch.repeat_interleave(first, count[start:stop])).float()
        mx, my, ca, cb, cc, op, bx, by, bwr = table[rank].unbind(1)
        row = torch.floor(local / bwr)  # exact: integers below 2^24
        px, py = bx + (local - row * bwr), by + row
        dx, dy = px + 0.5 - mx, py + 0.5 - my
        power = -0.5 * (ca * dx * dx + cc * dy * dy) - cb * dx * dy
        alpha = torch.clamp(op * torch.exp(power), max=ALPHA_MAX)
        ok = (power <= 0) & (alpha >= ALPHA_MIN)
        pixels.append((py[ok] * width + px[ok]).long())
        gaussians.append(rank[ok])
        alphas.append(alpha[ok])
        start = stop
    if not pixels:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, torch.zeros(0), torch.zeros(0)
    pixel, rank, alpha = torch.cat(pixels), torch.cat(gaussians), torch.cat(alphas)
    order = torch.argsort(pixel * max(len(ids), 1) + rank)  # by pixel, then front to back
    pixel, rank, alpha = pixel[order], rank[order], alpha[order].double()
    # transmittance before each entry: exclusive cumulative sum of log(1 - alpha) within its pixel
    log_keep = torch.log1p(-alpha)
    csum = torch.cumsum(log_keep, 0)
    new_pixel = torch.ones_like(pixel, dtype=torch.bool)
    new_pixel[1:] = pixel[1:] != pixel[:-1]
    seg_start = torch.cummax(torch.where(new_pixel, torch.arange(len(pixel)), torch.zeros_like(pixel)), 0).values
    log_t = csum - log_keep - (csum[seg_start] - log_keep[seg_start])
    included = (log_t + log_keep) >= torch.log(torch.tensor(T_MIN, dtype=torch.float64))  # 3DGS early stop
    weight = (alpha * torch.exp(log_t))[included].float()
    gaussian = ids[rank[included]]
    return pixel[included], gaussian, weight, depth[gaussian]


@torch.no_grad()
def compositing_weights(
    means: torch.Tensor,
    quats: torch.Tensor,
    log_scales: torch.Tensor,
    opacities: torch.Tensor,
    cameras: SplatCameras,
    max_pairs: int = 1 << 22,
) -> CompositingWeights:
    """Per-view compositing weights of a splat scene (pure torch, computed on the CPU; ``.to()`` moves them).

    means ``[G, 3]``, quats ``[G, 4]`` (w, x, y, z), log_scales ``[G, 3]``, opacities ``[G]`` in (0, 1).
    ``max_pairs`` bounds the (gaussian, pixel) candidates evaluated at once (memory ~ 100 B each).
    """
    g = means.shape[0]
    if means.shape != (g, 3) or quats.shape != (g, 4) or log_scales.shape != (g, 3) or opacities.shape != (g,):
        raise ValueError(f"inconsistent gaussian arrays: means {tuple(means.shape)}, quats {tuple(quats.shape)}, "
                         f"log_scales {tuple(log_scales.shape)}, opacities {tuple(opacities.shape)}")
    means, quats, log_scales, opacities = (t.detach().float().cpu() for t in (means, quats, log_scales, opacities))
    h, w = cameras.height, cameras.width
    ptr, pixels, gaussians, weights = [0], [], [], []
    alpha = torch.zeros(len(cameras), h * w)
    depth = torch.zeros(len(cameras), h * w)
    for i in range(len(cameras)):
        pix, gid, wt, z = _view_weights(means, quats, log_scales, opacities, cameras.viewmats[i].float().cpu(),
                                        cameras.Ks[i].float().cpu(), w, h, max_pairs)
        alpha[i].index_add_(0, pix, wt)
        depth[i].index_add_(0, pix, wt * z)
        pixels.append(pix.int())  # stored as int32 (E reaches 10^8 at 512^2 x 50 views)
        gaussians.append(gid.int())
        weights.append(wt)
        ptr.append(ptr[-1] + len(pix))
    depth = torch.where(alpha > 0, depth / alpha.clamp_min(1e-12), torch.zeros_like(depth))
    return CompositingWeights(torch.tensor(ptr), torch.cat(pixels), torch.cat(gaussians), torch.cat(weights),
                              alpha, depth, h, w, g)


def composite(weights: CompositingWeights, colors: torch.Tensor, views=None) -> torch.Tensor:
    """Render colours ``[C, G]`` with precomputed weights -> ``[n, C, H, W]`` (background 0)."""
    if colors.dim() != 2 or colors.shape[1] != weights.n_gaussians:
        raise ValueError(f"colours have shape {tuple(colors.shape)}, expected [C, {weights.n_gaussians}]")
    ids = range(weights.n_views) if views is None else [int(v) for v in views]
    rows = colors.T.contiguous()  # [G, C]: index_add along the leading axis is the fast path
    out = torch.zeros(len(ids), weights.height * weights.width, colors.shape[0], dtype=colors.dtype, device=colors.device)
    for k, i in enumerate(ids):
        pix, gid, wt = weights.view(i)
        out[k].index_add_(0, pix, rows[gid] * wt.to(colors.dtype).unsqueeze(1))
    return out.permute(0, 2, 1).reshape(len(ids), colors.shape[0], weights.height, weights.width)


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

    ``backend``: "torch" (reference, any device), "gsplat" (CUDA; raises if unavailable) or "auto"
    (gsplat when the data is on CUDA and gsplat imports, else torch). Background is 0.
    """
    if backend not in ("auto", "torch", "gsplat"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'gsplat', got {backend!r}")
    use_gsplat = backend == "gsplat" or (backend == "auto" and _gsplat_available(means.device))
    if use_gsplat:
        if not _gsplat_available(means.device):
            raise RuntimeError("backend='gsplat' needs the gsplat package and CUDA tensors")
        return _render_gsplat(means, quats, log_scales, opacities, colors, cameras)
    wts = compositing_weights(means, quats, log_scales, opacities, cameras)
    image = composite(wts, colors.detach().float().cpu()).to(colors.device)
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
