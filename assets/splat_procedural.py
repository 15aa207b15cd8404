"""Small procedural Gaussian splat scenes for tests, benchmarks and example workflows.

A "snowman": flat gaussians tiling the surfaces of two spheres (z up), so views from an orbit see
occlusion (the head hides part of the body) and every pixel mixes several overlapping splats, the
n-to-1 situation of SyncTweedies Sec. 5.3. Deterministic for a given seed.
"""

from __future__ import annotations

import math

import torch

from .splat_ply import SH_C0, SplatScene


def _fibonacci_sphere(n: int, generator: torch.Generator) -> torch.Tensor:
    """``[n, 3]`` nearly uniform unit vectors, slightly jittered."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (3 - math.sqrt(5)) * i
    r = torch.sqrt((1 - z * z).clamp_min(0))
    pts = torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1)
    pts = pts + 0.2 / math.sqrt(n) * torch.randn(n, 3, generator=generator, dtype=torch.float64)
    return (pts / pts.norm(dim=-1, keepdim=True)).float()


def quaternion_z_to(normals: torch.Tensor) -> torch.Tensor:
    """``[G, 4]`` (w, x, y, z) unit quaternions rotating +z onto each unit vector of ``normals`` ``[G, 3]``."""
    z = torch.tensor([0.0, 0.0, 1.0]).expand_as(normals)
    q = torch.cat([1 + (normals * z).sum(-1, keepdim=True), torch.cross(z, normals, dim=-1)], -1)
    opposite = q[:, 0] < 1e-6  # normal = -z: any half turn about a horizontal axis
    q[opposite] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    return q / q.norm(dim=-1, keepdim=True)


def procedural_splat_scene(n_gaussians: int = 2000, seed: int = 0, sh_degree: int = 0) -> SplatScene:
    """A two-sphere scene of ``n_gaussians`` flat splats, radius ~1, centred near the origin, z up.

    Colours vary smoothly with position; ``sh_degree`` > 0 adds small random higher-order SH
    (K = (degree+1)^2 - 1 coefficients per channel) so writers can be tested on them.
    """
    if n_gaussians < 2:
        raise ValueError(f"n_gaussians must be >= 2, got {n_gaussians}")
    if not 0 <= sh_degree <= 3:
        raise ValueError(f"sh_degree must be in 0..3, got {sh_degree}")
    gen = torch.Generator().manual_seed(seed)
    n_head = n_gaussians // 4
    spheres = ((torch.tensor([0.0, 0.0, -0.25]), 0.75, n_gaussians - n_head),
               (torch.tensor([0.0, 0.0, 0.8]), 0.4, n_head))
    means, normals, sizes = [], [], []
    for centre, radius, count in spheres:
        n = _fibonacci_sphere(count, gen)
        means.append(centre + radius * n)
        normals.append(n)
        # splat std so neighbouring discs overlap: spacing ~ sqrt(area / count)
        sizes.append(torch.full((count,), 0.7 * radius * math.sqrt(4 * math.pi / count)))
    means, normals, size = torch.cat(means), torch.cat(normals), torch.cat(sizes)
    size = size * torch.exp(0.15 * torch.randn(n_gaussians, generator=gen))
    log_scales = torch.log(torch.stack([size, size, 0.1 * size], -1))
    opacity = 0.6 + 0.35 * torch.rand(n_gaussians, generator=gen)
    rgb = 0.5 + 0.4 * torch.stack([torch.sin(3 * means[:, 0]), torch.cos(2 * means[:, 1]), torch.sin(4 * means[:, 2])], -1)
    k = (sh_degree + 1) ** 2 - 1
    return SplatScene(
        means=means.float(),
        quats=quaternion_z_to(normals),
        log_scales=log_scales.float(),
        opacity_logits=torch.logit(opacity).float(),
        sh_dc=((rgb - 0.5) / SH_C0).float(),
        sh_rest=0.05 * torch.randn(n_gaussians, 3, k, generator=gen),
    )
