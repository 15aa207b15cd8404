"""Multiplane image: the n-to-1 test space of SyncTweedies A1.1 (Eq. 12).

The canonical tensor holds M planes ``p_j``; a view first averages them, ``z = (1/M) sum_j p_j``, then
applies an image-space projector (anagram transforms, crops, ...). One view pixel therefore mixes M
canonical elements, the closed-form value/weight fuse is no longer the least-squares solution, and
``aggregate`` runs conjugate gradients on ``min_p sum_i ||f_i(mean_j p_j) - w_i||^2`` (the paper uses
an l1 objective with Adam; the l2 solve is the least-squares fuse of DESIGN.md). This is the space in
which Case 5 loses variance and Case 2 does not.
"""

from __future__ import annotations

import torch

from .base import Projector, SparseViewMap


def _stack_planes(taps: SparseViewMap, planes: int, plane_size: int) -> SparseViewMap:
    """Every tap (index k, weight a) becomes M taps (j * K + k, a / M), one per plane j."""
    offsets = torch.arange(planes, device=taps.index.device) * plane_size
    index = (taps.index.unsqueeze(-1) + offsets).flatten(-2)  # [N, P, T * M]
    weight = (taps.weight.unsqueeze(-1) / planes).expand(*taps.weight.shape, planes).flatten(-2)
    return SparseViewMap(index, weight.contiguous(), taps.pixel_weight)


class MultiplaneProjector(Projector):
    """Canonical ``[C, M, *S]`` -> views of ``inner`` applied to the plane mean ``[N, C, h, w]``.

    Args:
        inner: the image-space projector applied after averaging (its canonical shape is ``S``).
        planes: M (paper: 3 in Table 1, 10 in Table A9).
    """

    n_to_one = True
    kind = "multiplane"

    def __init__(self, inner: Projector, planes: int = 3) -> None:
        if planes < 1:
            raise ValueError(f"planes must be >= 1, got {planes}")
        if inner.n_to_one:
            raise ValueError(f"inner projector must be 1-to-1 or 1-to-n, got an n-to-1 {inner.kind}")
        self.inner, self.planes = inner, planes
        k = inner.canonical_size
        same = inner.nearest_taps is inner.taps
        taps = _stack_planes(inner.taps, planes, k)
        nearest = taps if same else _stack_planes(inner.nearest_taps, planes, k)
        super().__init__(taps, inner.view_hw, (planes, *inner.canonical_shape), nearest, inner.view_sign)

    def canvas_images(self, z: torch.Tensor) -> torch.Tensor:
        """Each plane is one image: ``[C, M, H, W]`` -> ``[M, C, H, W]`` (the preview shows their mean, the views' input)."""
        return z.movedim(1, 0)

    def rescaled(self, factor: int) -> "MultiplaneProjector":
        return MultiplaneProjector(self.inner.rescaled(factor), self.planes)

    def describe(self) -> str:
        return f"{super().describe()}, {self.planes} planes over {self.inner.kind}"
