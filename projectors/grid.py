"""Taps for sampling a 2-D canonical grid ``[C, H, W]`` at continuous positions.

Convention (as ``torch.nn.functional.grid_sample(align_corners=False)``): texel (row r, col c) has its
centre at continuous coordinates (y, x) = (r + 0.5, c + 0.5); a position (y, x) is in texel units.
"""

from __future__ import annotations

import torch

from .base import SparseViewMap
from .cancel import check_cancel, write_piece


TAPS_CHUNK = 1 << 18  # positions per slice: bounds temporaries and the time between cancellation checks


TAP_FIELDS = ("index", "weight", "pixel_weight")


def sliced_taps(build, n: int, p: int, inputs, *args):
    """``build(y, x, valid, *args, pixel_weight=...)`` over column slices of ``N x P`` positions (at most
    ``TAPS_CHUNK`` positions per slice), checking for cancellation before each slice and copying each into
    preallocated taps (no final concatenation, whose copy cannot be interrupted). ``inputs(a, b)`` returns
    ``(y, x, valid, pixel_weight or None)`` for columns ``a:b``, so callers can compute them per slice too."""
    step = max(1, TAPS_CHUNK // max(n, 1))
    out, single = None, False
    for a in range(0, p, step):
        check_cancel()
        b = min(p, a + step)
        y, x, valid, pw = inputs(a, b)
        part = build(y, x, valid, *args, pixel_weight=pw)
        single = not isinstance(part, tuple)
        parts = (part,) if single else part
        wholes = out or [None] * len(parts)
        out = [write_piece(whole, piece, TAP_FIELDS, 1, a, p, SparseViewMap) for whole, piece in zip(wholes, parts)]
    return out[0] if single else tuple(out)


def _sliced(build, y, x, valid, pixel_weight, *args):
    """``sliced_taps`` over given ``[N, P]`` positions."""

    def inputs(a, b):
        return y[:, a:b], x[:, a:b], valid[:, a:b], None if pixel_weight is None else pixel_weight[:, a:b]

    return sliced_taps(build, y.shape[0], y.shape[1], inputs, *args)


def bilinear_corners(y: torch.Tensor, x: torch.Tensor, h: int, w: int, wrap_x: bool = False):
    """The four texel centres around continuous positions (y, x) (texel units, centres at c + 0.5) on an
    H x W grid and their bilinear weights: ``(flat index [..., 4] int64, weight [..., 4] float32)``.
    Rows are clamped to the border; columns too, or periodic with ``wrap_x``. The one bilinear tap rule
    of the pack (grid canvases, the mesh pull's pixel reads, the cube map's equirect export)."""
    yc, xc = y - 0.5, x - 0.5
    y0, x0 = torch.floor(yc), torch.floor(xc)
    fy, fx = (yc - y0).float(), (xc - x0).float()
    y0, x0 = y0.long(), x0.long()
    ys = torch.stack([y0, y0, y0 + 1, y0 + 1], -1).clamp(0, h - 1)
    xs = torch.stack([x0, x0 + 1, x0, x0 + 1], -1)
    xs = xs % w if wrap_x else xs.clamp(0, w - 1)
    wts = torch.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], -1)
    return ys * w + xs, wts


def grid_taps(
    y: torch.Tensor,
    x: torch.Tensor,
    valid: torch.Tensor,
    canvas_hw: tuple[int, int],
    wrap_x: bool = False,
    pixel_weight: torch.Tensor | None = None,
) -> tuple[SparseViewMap, SparseViewMap]:
    """Bilinear and nearest taps for positions ``y, x`` (``[N, P]``, texel units) on an H x W grid.

    ``valid`` ``[N, P]`` marks pixels that see the canvas; invalid pixels get zero weights. With
    ``wrap_x`` the columns are periodic (360 panoramas, wrap-around wide panoramas); otherwise
    positions are clamped to the border. Returns ``(bilinear [N,P,4], nearest [N,P,1])`` taps sharing
    ``pixel_weight`` (default: ``valid`` as float).
    """
    if y.dim() == 2 and y.shape[0] * y.shape[1] > TAPS_CHUNK:
        return _sliced(grid_taps, y, x, valid, pixel_weight, canvas_hw, wrap_x)
    h, w = canvas_hw
    valid = valid.bool()
    pw = valid.to(torch.float32) if pixel_weight is None else pixel_weight.to(torch.float32) * valid
    index, wts = bilinear_corners(y, x, h, w, wrap_x)
    bilinear = SparseViewMap(index, wts * valid.unsqueeze(-1), pw)
    return bilinear, nearest_grid_taps(y, x, valid, canvas_hw, wrap_x, pw)


def nearest_grid_taps(
    y: torch.Tensor,
    x: torch.Tensor,
    valid: torch.Tensor,
    canvas_hw: tuple[int, int],
    wrap_x: bool = False,
    pixel_weight: torch.Tensor | None = None,
) -> SparseViewMap:
    """Nearest taps ``[N, P, 1]``: each pixel reads the texel containing (y, x) (same conventions as
    ``grid_taps``, without the cost of the bilinear taps)."""
    if y.dim() == 2 and y.shape[0] * y.shape[1] > TAPS_CHUNK:
        return _sliced(nearest_grid_taps, y, x, valid, pixel_weight, canvas_hw, wrap_x)
    h, w = canvas_hw
    valid = valid.bool()
    pw = valid.to(torch.float32) if pixel_weight is None else pixel_weight.to(torch.float32) * valid
    yn = torch.floor(y).long().clamp(0, h - 1)
    xn = torch.floor(x).long()
    xn = xn % w if wrap_x else xn.clamp(0, w - 1)
    return SparseViewMap((yn * w + xn).unsqueeze(-1), valid.to(torch.float32).unsqueeze(-1), pw)


def index_taps(index: torch.Tensor, valid: torch.Tensor | None = None) -> SparseViewMap:
    """One-tap map for exact pixel copies: view pixel p of view i reads canonical ``index[i, p]``.

    ``index`` ``[N, P]`` int64 flat canonical indices; ``valid`` ``[N, P]`` (default all) marks pixels
    that see the canvas. Used by crops, flips, rotations and permutations (1-to-1 / 1-to-n maps), where
    bilinear and nearest taps coincide.
    """
    index = index.long()
    ok = torch.ones_like(index, dtype=torch.bool) if valid is None else valid.bool()
    weight = ok.to(torch.float32)
    return SparseViewMap(torch.where(ok, index, torch.zeros_like(index)).unsqueeze(-1), weight.unsqueeze(-1), weight)
