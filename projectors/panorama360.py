"""360 degree panorama: equirectangular canvas <-> perspective views (SyncTweedies A1.2, StochSync B).

Conventions (all angles in degrees at the API, radians inside):

* canvas ``[C, H, W]``, H = W / 2; texel (r, c) has its centre at longitude
  ``lon = ((c + 0.5) / W - 0.5) * 360`` (0 at the canvas centre, the seam at +-180) and latitude
  ``lat = (0.5 - (r + 0.5) / H) * 180`` (+90 at the top row);
* world: X right (lon +90), Y up, Z forward (lon 0); direction(lon, lat) = (cos lat sin lon, sin lat,
  cos lat cos lon);
* a view at (yaw, pitch, fov): pinhole camera, focal ``f = (w / 2) / tan(fov / 2)`` pixels, pitched up
  by ``pitch`` about its x axis, then turned right by ``yaw`` about Y. Pixel (i, j) looks along
  ``R_yaw R_pitch ((j + 0.5 - w/2) / f, -(i + 0.5 - h/2) / f, 1)``.

Sampling is nearest by default (the papers: one view pixel reads one texel, a 1-to-n map, so the
value/weight fuse is exact); ``interpolation="bilinear"`` reads four texels per pixel, which makes the
map n-to-1, and ``aggregate`` then solves the least-squares fuse by conjugate gradients.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .base import Projector, divide_size, greedy_disjoint_groups
from .cancel import check_cancel
from .fill import fill_from_sources, voronoi_sources
from .grid import grid_taps, nearest_grid_taps

SYNCTWEEDIES_YAWS = tuple(range(0, 360, 45))  # A1.2: 8 views, 45 degree steps, pitch 0, fov 72
STOCHSYNC_GROUPS = ((0, 72, 144, 216, 288), (36, 108, 180, 252, 324))  # StochSync B: two groups of five
PAPER_LATENT_CANVAS = (2048, 4096)  # SyncTweedies A1.2 / StochSync B latent panorama (super-sampled)
PAPER_RGB_CANVAS = (1024, 2048)  # SyncTweedies A1.2 RGB panorama


def rig_yaws(rig: str) -> tuple[float, ...]:
    """The yaws (degrees) of a named 360 rig's ring of views: "synctweedies" 8, "stochsync" 10 (its two groups)."""
    if rig not in ("synctweedies", "stochsync"):
        raise ValueError(f"rig={rig!r} must be 'synctweedies' or 'stochsync'")
    return tuple(SYNCTWEEDIES_YAWS) if rig == "synctweedies" else STOCHSYNC_GROUPS[0] + STOCHSYNC_GROUPS[1]


def rig_view_count(rig: str, pole_views: bool) -> int:
    """How many views a named rig has (its ring, plus two looking straight up and down with ``pole_views``)."""
    return len(rig_yaws(rig)) + (2 if pole_views else 0)


def focal_pixels(view_width: int, fov: float) -> float:
    """Pinhole focal length in pixels for a horizontal field of view ``fov`` (degrees)."""
    return (view_width / 2) / math.tan(math.radians(fov) / 2)


def default_canvas(view_width: int, fov: float) -> tuple[int, int]:
    """Equirect canvas (H, W) whose texel density matches the views' pixel density.

    A pitch-0 view samples azimuth and elevation at most 1/f radians apart (finest at the image
    centre), an equirect canvas at 2 pi / W. W <= 2 pi f means every texel inside a view's frustum
    is hit by a pixel's nearest sample, so fusing leaves no holes. W is rounded down to a multiple of
    80 (when that fits) so that the 8x smaller latent canvas has an integer H = W / 2 and W / 8 is a
    multiple of 5, which puts the StochSync rig's view borders (36 + 72 k degrees) on texel edges.
    """
    limit = 2 * math.pi * focal_pixels(view_width, fov)
    step = 80 if limit >= 80 else 2
    width = max(step, int(limit // step) * step)
    return width // 2, width


def view_directions(view_hw: tuple[int, int], fov: float, yaw: float, pitch: float) -> torch.Tensor:
    """World ray directions (unit) of every pixel centre: ``[h*w, 3]`` float64 (X right, Y up, Z forward)."""
    h, w = view_hw
    f = focal_pixels(w, fov)
    i, j = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    d = torch.stack([(j + 0.5 - w / 2) / f, -(i + 0.5 - h / 2) / f, torch.ones_like(i)], -1).reshape(-1, 3)
    p, y = math.radians(pitch), math.radians(yaw)
    r_pitch = torch.tensor([[1, 0, 0], [0, math.cos(p), math.sin(p)], [0, -math.sin(p), math.cos(p)]], dtype=torch.float64)
    r_yaw = torch.tensor([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]], dtype=torch.float64)
    d = d @ (r_yaw @ r_pitch).T
    return d / d.norm(dim=-1, keepdim=True)


def directions_to_canvas(d: torch.Tensor, canvas_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Continuous canvas positions (row y, column x) in texel units of unit directions ``[..., 3]``."""
    h, w = canvas_hw
    lon = torch.atan2(d[..., 0], d[..., 2])
    lat = torch.asin(d[..., 1].clamp(-1, 1))
    x = (lon / (2 * math.pi) + 0.5) * w
    y = (0.5 - lat / math.pi) * h
    return y, x % w


class EquirectProjector(Projector):
    """Equirect canvas ``[C, H, W]`` -> perspective views ``[N, C, h, w]``.

    Args:
        view_size: view size in pixels, int or (h, w) (512 for SD; the latent projector is
            ``rescaled(8)``).
        yaws: view yaws in degrees; default from ``rig``.
        pitches: one pitch for all views or one per view (degrees, in [-90, 90]).
        fov: horizontal field of view in degrees, in (0, 180); default 72 (both papers).
        canvas_hw: (H, W) of the canvas; default ``default_canvas`` (pixel-density matched); the papers'
            latent canvas is ``PAPER_LATENT_CANVAS`` with 64-pixel views.
        rig: "synctweedies" (8 yaws at 45 degree steps) or "stochsync" (10 yaws in two non-overlapping
            groups of five, used by ``view_groups``).
        pole_views: append two views looking straight up and down (pitch +-90), to cover the poles.
        interpolation: "nearest" (1-to-n, papers) or "bilinear" (n-to-1, least-squares fuse).
        device: where the taps live.
    """

    kind = "360 panorama"

    def __init__(
        self,
        view_size: int | tuple[int, int] = 512,
        yaws: Sequence[float] | None = None,
        pitches: float | Sequence[float] = 0.0,
        fov: float = 72.0,
        canvas_hw: tuple[int, int] | None = None,
        rig: str = "synctweedies",
        pole_views: bool = False,
        interpolation: str = "nearest",
        device: torch.device | str = "cpu",
    ) -> None:
        vh, vw = (view_size, view_size) if isinstance(view_size, int) else (int(view_size[0]), int(view_size[1]))
        if not 0 < fov < 180:
            raise ValueError(f"fov={fov} must lie in (0, 180) degrees")
        if vh < 1 or vw < 1:
            raise ValueError(f"view size must be positive, got {vh}x{vw}")
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"interpolation={interpolation!r} must be 'nearest' or 'bilinear'")
        rig_groups = None
        rig_ring = rig_yaws(rig)  # also checks the name
        if yaws is None:
            yaws = rig_ring
            if rig == "stochsync":
                rig_groups = [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
        yaws = [float(a) for a in yaws]
        pitches = [float(pitches)] * len(yaws) if isinstance(pitches, (int, float)) else [float(p) for p in pitches]
        if len(pitches) != len(yaws):
            raise ValueError(f"got {len(pitches)} pitches for {len(yaws)} yaws")
        if pole_views:
            yaws, pitches = yaws + [0.0, 0.0], pitches + [90.0, -90.0]
        if not yaws:
            raise ValueError("a 360 panorama needs at least one view")
        for p in pitches:
            if not -90 <= p <= 90:
                raise ValueError(f"pitch={p} must lie in [-90, 90] degrees")
        canvas_hw = default_canvas(vw, fov) if canvas_hw is None else (int(canvas_hw[0]), int(canvas_hw[1]))
        if canvas_hw[0] < 1 or canvas_hw[1] < 1:
            raise ValueError(f"canvas_hw={canvas_hw} must be positive")
        if vh > canvas_hw[0] or vw > canvas_hw[1]:
            raise ValueError(f"view size {vh}x{vw} is larger than the canvas {canvas_hw[0]}x{canvas_hw[1]}")
        self.yaws, self.pitches, self.fov = yaws, pitches, float(fov)
        self.canvas_hw, self.rig, self.pole_views, self.interpolation = canvas_hw, rig, pole_views, interpolation
        self._rig_groups = rig_groups
        self.group_note = ""
        self.n_to_one = interpolation == "bilinear"

        y = torch.empty(len(yaws), vh * vw, dtype=torch.float64)
        x = torch.empty_like(y)
        for k, (yaw, pitch) in enumerate(zip(yaws, pitches)):  # a view at a time, a cancellation check between
            check_cancel()
            y[k], x[k] = directions_to_canvas(view_directions((vh, vw), fov, yaw, pitch), canvas_hw)
        valid = torch.ones_like(y, dtype=torch.bool)
        if interpolation == "bilinear":
            bilinear, nearest = grid_taps(y, x, valid, canvas_hw, wrap_x=True)
            bilinear, nearest = bilinear.to(device), nearest.to(device)
        else:
            bilinear = nearest = nearest_grid_taps(y, x, valid, canvas_hw, wrap_x=True).to(device)
        # cos(angle to the optical axis) per pixel: radial distance -> z-depth for depth renders
        f = focal_pixels(vw, fov)
        i, j = torch.meshgrid(torch.arange(vh, dtype=torch.float64), torch.arange(vw, dtype=torch.float64), indexing="ij")
        self.ray_cos = (1 / torch.sqrt(1 + ((j + 0.5 - vw / 2) / f) ** 2 + ((i + 0.5 - vh / 2) / f) ** 2)).float().to(device)
        super().__init__(bilinear, (vh, vw), canvas_hw, nearest)

    def view_groups(self) -> list[list[int]]:
        """The rig's groups (StochSync: yaws 0..288 and 36..324) when they really share no texel on this
        canvas; otherwise (e.g. bilinear taps, or a canvas width that puts a view border inside a texel)
        the greedy colouring of the overlap graph, with the reason in ``group_note``."""
        if self._groups is None:
            overlap = self.overlap_matrix()
            rig = self._rig_groups
            if rig is not None and all(not overlap[i, j] for g in rig for i in g for j in g if i != j):
                groups = [list(g) for g in rig]
                for v in range(sum(map(len, rig)), self.n_views):  # pole views join the first group they fit
                    fit = next((g for g in groups if not any(bool(overlap[v, u]) for u in g)), None)
                    if fit is None:
                        groups.append([v])
                    else:
                        fit.append(v)
                self._groups = groups
            else:
                if rig is not None:
                    self.group_note = "rig groups share border texels on this canvas; using greedy groups"
                self._groups = greedy_disjoint_groups(overlap)
        return self._groups

    def fill(self, z: torch.Tensor, covered: torch.Tensor | None = None) -> torch.Tensor:
        """Voronoi fill that wraps around the seam: an uncovered texel near lon +180 may take its value
        from a covered texel just past it at lon -180. The coverage mask is padded by W/2 wrapped
        columns on each side (enough: no wrapped horizontal distance exceeds W/2), filled with scipy's
        exact EDT, and the source columns are taken modulo W."""
        covered = self.coverage() if covered is None else covered
        mask = covered.detach().cpu().numpy().astype(bool).reshape(self.canonical_shape)
        if mask.all() or not mask.any():
            return z
        return fill_from_sources(z, *voronoi_sources(mask, wrap_columns=True))

    def depth_views(self, depth: torch.Tensor, radial: bool = True) -> torch.Tensor:
        """Per-view depth renders ``[N, 1, h, w]`` from a 360 depth map ``[H, W]`` or ``[1, H, W]``.

        Nearest sampling (no blending across depth edges). With ``radial`` the map holds distance along
        the ray (360MonoDepth ``.dpt``) and is converted to the perspective z-depth a depth ControlNet
        expects: ``z = r cos(angle between ray and optical axis)``.
        """
        d = depth.reshape(1, *depth.shape[-2:]) if depth.dim() in (2, 3) else None
        if d is None or tuple(d.shape[-2:]) != self.canvas_hw:
            raise ValueError(f"depth map has shape {tuple(depth.shape)}, expected [{self.canvas_hw[0]}, {self.canvas_hw[1]}]")
        views = self.project(d.to(self.device), nearest=True)
        return views * self.ray_cos.to(views.dtype) if radial else views

    def rescaled(self, factor: int) -> "EquirectProjector":
        (vh, vw), (ch, cw) = self.view_hw, self.canvas_hw
        yaws, pitches = self.yaws, self.pitches
        if self.pole_views:
            yaws, pitches = yaws[:-2], pitches[:-2]
        out = EquirectProjector(
            (divide_size(vh, factor, "view height"), divide_size(vw, factor, "view width")),
            yaws,
            pitches,
            self.fov,
            (divide_size(ch, factor, "canvas height"), divide_size(cw, factor, "canvas width")),
            self.rig,
            self.pole_views,
            self.interpolation,
            self.device,
        )
        out._rig_groups = self._rig_groups
        return out

    def describe(self) -> str:
        note = f" ({self.group_note})" if self.group_note else ""
        return f"{super().describe()}, fov {self.fov:g}, {self.interpolation}{note}"
