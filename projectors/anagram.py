"""Ambiguous images (Visual Anagrams; SyncTweedies Sec. 3.4 and A1.1): one canvas, N transformed views.

Every view is a pixel re-indexing of the canvas, optionally with a sign flip:

* 1-to-1: identity, flips, 90/180 degree rotations, patch ("jigsaw") and pixel permutations;
* 1-to-n: inner-circle rotation at any angle with nearest sampling (SyncTweedies A1.1: several view
  pixels read the same canvas texel, some texels are read by none);
* colour negation ``w = -z``: the index map is the identity and the view carries the value sign
  ``s_i = -1`` (``Projector.view_sign``), applied in ``project`` and, as its own transpose, in
  ``adjoint``/``unproject``; tap and fusion weights stay >= 0. This negates values in the model's
  space: it is colour inversion for pixel-space models in [-1, 1] (DeepFloyd, the papers' setting), and
  only a latent sign flip for latent models (not an RGB inversion after decoding).

View specs are strings (``"identity"``, ``"flip_h"``, ``"flip_v"``, ``"rotate_cw"``, ``"rotate_ccw"``,
``"rotate_180"``, ``"negate"``, ``"inner_rotate:<degrees>"``, ``"jigsaw"``, ``"jigsaw:<grid>:<seed>"``)
or ``PatchPermute`` / ``PixelPermute`` objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from .base import Projector, divide_size
from .grid import index_taps


def _check_permutation(perm: Sequence[int], n: int, what: str) -> torch.Tensor:
    p = torch.as_tensor(list(perm), dtype=torch.long)
    if p.numel() != n or not torch.equal(torch.sort(p).values, torch.arange(n)):
        shown = p.tolist() if p.numel() <= 32 else f"{p[:32].tolist()}..."
        raise ValueError(f"{what} {shown} is not a permutation of 0..{n - 1}")
    return p


@dataclass(frozen=True)
class PatchPermute:
    """View patch k shows canvas patch ``permutation[k]`` on a ``grid`` (rows, cols) of equal patches,
    each turned by ``quarter_turns[k]`` x 90 degrees counter-clockwise (square patches only)."""

    grid: tuple[int, int]
    permutation: tuple[int, ...]
    quarter_turns: tuple[int, ...] | None = None

    def index(self, height: int, width: int) -> torch.Tensor:
        gy, gx = self.grid
        if gy < 1 or gx < 1 or height % gy or width % gx:
            raise ValueError(f"patch grid {self.grid} does not divide the canvas {height}x{width}")
        ph, pw = height // gy, width // gx
        perm = _check_permutation(self.permutation, gy * gx, "patch permutation")
        turns = self.quarter_turns or (0,) * (gy * gx)
        if len(turns) != gy * gx:
            raise ValueError(f"quarter_turns {turns} must have {gy * gx} entries")
        if any(t % 4 for t in turns) and ph != pw:
            raise ValueError(f"rotated patches must be square, got {ph}x{pw}")
        canvas = torch.arange(height * width).reshape(gy, ph, gx, pw).permute(0, 2, 1, 3).reshape(gy * gx, ph, pw)
        patches = torch.stack([torch.rot90(canvas[int(perm[k])], int(turns[k]), (0, 1)) for k in range(gy * gx)])
        return patches.reshape(gy, gx, ph, pw).permute(0, 2, 1, 3).reshape(-1)

    def rescaled(self, factor: int) -> "PatchPermute":
        return self  # the patch grid is relative; divisibility is checked by index()


@dataclass(frozen=True)
class PixelPermute:
    """View pixel p shows canvas pixel ``permutation[p]`` (row-major over the canvas)."""

    permutation: tuple[int, ...]

    def index(self, height: int, width: int) -> torch.Tensor:
        return _check_permutation(self.permutation, height * width, "pixel permutation")

    def rescaled(self, factor: int) -> "PixelPermute":
        raise ValueError("a pixel permutation has no counterpart at another resolution; build it per size")


def jigsaw(grid: int = 4, seed: int = 0) -> PatchPermute:
    """A seeded square-piece jigsaw: shuffled ``grid x grid`` pieces, each turned by a random quarter turn."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(grid * grid, generator=g).tolist()
    turns = torch.randint(0, 4, (grid * grid,), generator=g).tolist()
    return PatchPermute((grid, grid), tuple(perm), tuple(turns))


def inner_rotation_index(height: int, width: int, degrees: float) -> torch.Tensor:
    """Nearest-sampled rotation of the inscribed circle by ``degrees`` counter-clockwise (as displayed).

    View pixel centre p inside the circle of radius min(H, W)/2 around the canvas centre reads the
    canvas texel containing R(-degrees) p; pixels outside the circle read themselves. ``[H*W]`` int64.
    """
    theta = math.radians(degrees)
    cy, cx, radius = height / 2, width / 2, min(height, width) / 2
    y = torch.arange(height, dtype=torch.float64)[:, None] + 0.5 - cy
    x = torch.arange(width, dtype=torch.float64)[None, :] + 0.5 - cx
    # displayed counter-clockwise turn with the y axis pointing down: q = R(-theta) p
    sx = x * math.cos(theta) - y * math.sin(theta)
    sy = x * math.sin(theta) + y * math.cos(theta)
    row = torch.floor(sy + cy).long().clamp(0, height - 1)
    col = torch.floor(sx + cx).long().clamp(0, width - 1)
    inside = (x * x + y * y) < radius * radius
    own = torch.arange(height * width).reshape(height, width)
    return torch.where(inside, row * width + col, own).reshape(-1)


def view_index(spec: str | PatchPermute | PixelPermute, height: int, width: int) -> tuple[torch.Tensor, float]:
    """(flat canvas index read by each view pixel ``[H*W]``, value sign) for one view spec."""
    if isinstance(spec, (PatchPermute, PixelPermute)):
        return spec.index(height, width), 1.0
    grid = torch.arange(height * width).reshape(height, width)
    name, _, arg = str(spec).partition(":")
    if name in ("rotate_cw", "rotate_ccw") and height != width:
        raise ValueError(f"view '{spec}' needs a square canvas, got {height}x{width}")
    simple = {
        "identity": lambda: grid,
        "negate": lambda: grid,
        "flip_h": lambda: torch.flip(grid, (1,)),
        "flip_v": lambda: torch.flip(grid, (0,)),
        "rotate_ccw": lambda: torch.rot90(grid, 1, (0, 1)),
        "rotate_cw": lambda: torch.rot90(grid, -1, (0, 1)),
        "rotate_180": lambda: torch.rot90(grid, 2, (0, 1)),
    }
    if name in simple and not arg:
        return simple[name]().reshape(-1), (-1.0 if name == "negate" else 1.0)
    if name == "inner_rotate":
        try:
            degrees = float(arg) if arg else 45.0
        except ValueError:
            raise ValueError(f"inner_rotate angle {arg!r} in view '{spec}' is not a number") from None
        return inner_rotation_index(height, width, degrees), 1.0
    if name == "jigsaw":
        parts = [int(a) for a in arg.split(":")] if arg else []
        return jigsaw(*parts).index(height, width), 1.0
    raise ValueError(f"unknown anagram view {spec!r}; expected one of {sorted(simple)}, inner_rotate:<deg>, jigsaw")


class AnagramProjector(Projector):
    """Canvas ``[C, H, W]`` -> one transformed view per spec ``[N, C, H, W]`` (one prompt per view).

    Args:
        height, width: canvas size in pixels (DeepFloyd stage I: 64; SD latents: 512 / 8).
        views: view specs (module docstring); default ("identity", "rotate_cw").
        device: where the taps live.
    """

    kind = "anagram"

    def __init__(
        self,
        height: int,
        width: int,
        views: Sequence[str | PatchPermute | PixelPermute] = ("identity", "rotate_cw"),
        device: torch.device | str = "cpu",
    ) -> None:
        if height < 1 or width < 1:
            raise ValueError(f"canvas size must be positive, got {height}x{width}")
        if len(views) == 0:
            raise ValueError("an anagram needs at least one view")
        self.specs = tuple(views)
        built = [view_index(v, height, width) for v in self.specs]
        index = torch.stack([b[0] for b in built]).to(device)
        sign = torch.tensor([b[1] for b in built], device=device)
        super().__init__(index_taps(index), (height, width), (height, width), view_sign=sign)

    def rescaled(self, factor: int) -> "AnagramProjector":
        specs = [v.rescaled(factor) if isinstance(v, (PatchPermute, PixelPermute)) else v for v in self.specs]
        h, w = self.view_hw
        return AnagramProjector(divide_size(h, factor, "height"), divide_size(w, factor, "width"), specs, self.device)

    def describe(self) -> str:
        names = [v if isinstance(v, str) else type(v).__name__ for v in self.specs]
        return f"{super().describe()}, views {', '.join(names)}"
