"""Wide panorama: model-sized windows over a wide canvas (MultiDiffusion / SyncDiffusion setting).

Every view is an exact crop, so the map is 1-to-1 per view and the overlap average of
``aggregate`` is the least-squares fuse (SyncTweedies A2, "orthographic panorama"). Defaults from the
papers' code (notes/prior-art.md): 512x3072 RGB canvas, 512 window, stride 64 (latent 64 / 8).
"""

from __future__ import annotations

import torch

from .base import Projector, SparseViewMap, divide_size
from .cancel import check_cancel


def window_starts(length: int, window: int, stride: int, wrap: bool, axis: str) -> list[int]:
    """Start offsets of windows along one axis.

    Without ``wrap`` the last window is moved flush with the far edge when the stride does not land
    there (MultiDiffusion would leave those texels uncovered). With ``wrap`` windows start every
    ``stride`` texels around the circle, the last one reaching across the seam.
    """
    if window < 1 or window > length:
        raise ValueError(f"{axis} window {window} does not fit the canvas {axis} {length}")
    if stride < 1 or stride > window:
        raise ValueError(f"{axis} stride {stride} leaves gaps between windows of {window} (need 1 <= stride <= window)")
    if wrap:
        return list(range(0, length, stride))
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if len(value) != 2:
        raise ValueError(f"{name} must be an int or (height, width), got {value!r}")
    return int(value[0]), int(value[1])


class WidePanoramaProjector(Projector):
    """Canvas ``[C, H, W]`` -> windows ``[N, C, wh, ww]``, row-major (top to bottom, left to right).

    Args:
        height, width: canvas size in pixels (or latent texels for a latent projector).
        window: view size, int or (h, w); default 512 (SD's native size).
        stride: window step, int or (sy, sx); must be <= window (else gaps). Default 64. An int is
            used on both axes, except that it is ignored vertically when the window spans the height.
        wrap: horizontal wrap-around: windows continue across the right edge into the left one so the
            two ends of the panorama meet (360 cylinder, SyncDiffusion's loop closure).
        device: where the taps live.
    """

    kind = "wide panorama"

    def __init__(
        self,
        height: int = 512,
        width: int = 3072,
        window: int | tuple[int, int] = 512,
        stride: int | tuple[int, int] = 64,
        wrap: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        wh, ww = _pair(window, "window")
        sy, sx = _pair(stride, "stride")
        if wh == height and isinstance(stride, int):
            sy = wh  # one row of windows: an int stride is the horizontal one
        ys = window_starts(height, wh, sy, False, "height")
        xs = window_starts(width, ww, sx, wrap, "width")
        self.canvas_hw, self.window_hw, self.stride_hw, self.wrap = (height, width), (wh, ww), (sy, sx), wrap
        self.origins = [(y, x) for y in ys for x in xs]
        rows = torch.arange(wh, device=device)
        cols = torch.arange(ww, device=device)
        # written window by window into preallocated taps, a cancellation check per window: no final
        # stack or whole-map pass, whose copy of every tap could not be interrupted
        n = len(self.origins)
        index = torch.empty(n, wh * ww, 1, dtype=torch.long, device=device)
        weight = torch.empty(n, wh * ww, 1, device=device)  # every window pixel is an exact crop: one tap, weight 1
        pixel_weight = torch.empty(n, wh * ww, device=device)
        for k, (y0, x0) in enumerate(self.origins):
            check_cancel()
            c = (x0 + cols) % width  # only wraps when wrap=True (else x0 + ww <= width)
            index[k, :, 0] = ((y0 + rows)[:, None] * width + c[None, :]).reshape(-1)
            weight[k] = 1.0
            pixel_weight[k] = 1.0
        check_cancel()
        super().__init__(SparseViewMap(index, weight, pixel_weight), (wh, ww), (height, width))

    def rescaled(self, factor: int) -> "WidePanoramaProjector":
        (h, w), (wh, ww), (sy, sx) = self.canvas_hw, self.window_hw, self.stride_hw
        return WidePanoramaProjector(
            divide_size(h, factor, "height"),
            divide_size(w, factor, "width"),
            (divide_size(wh, factor, "window height"), divide_size(ww, factor, "window width")),
            (divide_size(sy, factor, "stride y"), divide_size(sx, factor, "stride x")),
            self.wrap,
            self.device,
        )

    def describe(self) -> str:
        return f"{super().describe()}, stride {self.stride_hw[1]}, wrap {'on' if self.wrap else 'off'}"
