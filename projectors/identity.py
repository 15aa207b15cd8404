"""Identity projector: every view is the canonical image itself (the sampler's sanity check).

With one view, every synchronized case must reduce to plain DDIM (DESIGN.md, "Properties").
"""

from __future__ import annotations

import torch

from .base import Projector, divide_size
from .grid import index_taps


class IdentityProjector(Projector):
    """Canonical ``[C, H, W]`` -> ``n_views`` copies ``[n_views, C, H, W]`` (1-to-1 per view).

    Args:
        height, width: canvas size in pixels.
        n_views: how many identical views (default 1).
        device: where the taps live.
    """

    kind = "identity"

    def __init__(self, height: int, width: int, n_views: int = 1, device: torch.device | str = "cpu") -> None:
        if height < 1 or width < 1:
            raise ValueError(f"canvas size must be positive, got height={height}, width={width}")
        if n_views < 1:
            raise ValueError(f"n_views must be >= 1, got {n_views}")
        index = torch.arange(height * width, device=device).expand(n_views, -1)
        super().__init__(index_taps(index), (height, width), (height, width))

    def rescaled(self, factor: int) -> "IdentityProjector":
        h, w = self.view_hw
        return IdentityProjector(
            divide_size(h, factor, "height"), divide_size(w, factor, "width"), self.n_views, self.device
        )
