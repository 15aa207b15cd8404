"""What a splat projector build will allocate, estimated before building it (projectors/memory.py's
arithmetic fed with counts from a sample of the splats' footprints; benchmarks/bench_memory_estimates.py
compares the estimates with measured peaks)."""

from __future__ import annotations

import torch

from ..assets.splat_cameras import SplatCameras
from .memory import MemoryEstimate, splat as splat_memory
from .splat import DEFAULT_LATENT_SUPERSAMPLE
from .splat_render import default_chunk_entries, footprints


@torch.no_grad()
def footprint_pairs(means, quats, log_scales, opacities, cameras: SplatCameras, supersample: int = 1,
                    budget: int = 1 << 16) -> tuple[int, int]:
    """(kept, built): upper bounds on the weights ``compositing_weights`` keeps over all views (the
    (gaussian, pixel) pairs the footprints cover, pooled to pixels with ``supersample``) and on the
    (gaussian, sub-pixel) candidates it evaluates for its largest view. Counted on an evenly spread
    sample of at most ``budget`` gaussian-views (a fixed random subset of the gaussians, every view up to
    16 of them) and scaled up: a 1M-splat scene is estimated in a fraction of a second."""
    g, n, s = means.shape[0], len(cameras), int(supersample)
    views = torch.linspace(0, n - 1, min(n, 16)).round().long().unique()
    sample = min(g, max(1, budget // len(views)))
    ids = torch.randperm(g, generator=torch.Generator().manual_seed(0))[:sample] if sample < g else None
    scene = [t.detach().float() if ids is None else t.detach().float()[ids.to(t.device)]
             for t in (means, quats, log_scales, opacities)]
    kept, built = [], []
    for i in views.tolist():
        k = cameras.Ks[i].float().clone()
        k[:2] *= s
        _, _, _, x0, y0, x1, y1, keep = footprints(*scene, cameras.viewmats[i].float().to(scene[0].device),
                                                    k.to(scene[0].device), cameras.width * s, cameras.height * s)
        built.append(float(((x1 - x0 + 1) * (y1 - y0 + 1))[keep].sum()) * g / sample)
        pooled = ((x1 // s - x0 // s + 1) * (y1 // s - y0 // s + 1))[keep]  # pixels the sub-pixel box touches
        kept.append(float(pooled.sum()) * g / sample)
    return int(sum(kept) * n / len(kept)), int(max(built))


def build_estimate(means, quats, log_scales, opacities, cameras: SplatCameras, latent_factor: int | None = 8,
                   latent_supersample: int = DEFAULT_LATENT_SUPERSAMPLE) -> MemoryEstimate:
    """Memory of a ``SplatProjector`` build over ``cameras`` and, with ``latent_factor``, of the latent twin the
    sampler builds from it later (``rescaled(latent_factor)``, SplatProjector's default ``latent_supersample``),
    from a sample of the footprints: a fraction of a second however large the scene."""
    geometry = (means, quats, log_scales, opacities)
    size = (cameras.height, cameras.width)
    chunk = default_chunk_entries(means.shape[0])
    pairs = footprint_pairs(*geometry, cameras)
    if not latent_factor or cameras.width % latent_factor or cameras.height % latent_factor:
        return splat_memory(len(cameras), size, chunk, pairs, n_gaussians=means.shape[0])
    small = cameras.rescaled(latent_factor)
    twin = footprint_pairs(*geometry, small, supersample=min(latent_supersample, latent_factor))
    return splat_memory(len(cameras), size, chunk, pairs, twin, (small.height, small.width), n_gaussians=means.shape[0])
