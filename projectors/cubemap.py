"""Cube-map skybox: six square faces <-> perspective views (the format game engines and renderers take).

Conventions (the OpenGL / DirectX cube-map table, in the same left-handed world as the 360 panorama:
X right, Y up, Z forward; ``panorama360.view_directions`` gives the view rays):

* canvas ``[C, 6, F, F]``, faces in the order +X, -X, +Y, -Y, +Z, -Z (right, left, top, bottom, front,
  back), each seen from inside the cube the right way up;
* a direction d with major axis a (|d_a| largest) lands on face a at
  ``s = (sc / |d_a| + 1) / 2``, ``t = (tc / |d_a| + 1) / 2`` (column s F, row t F) with (sc, tc) =
  +X (-z, -y), -X (z, -y), +Y (x, z), -Y (x, -z), +Z (x, -y), -Z (-x, -y).

Sampling is nearest (one view pixel reads one texel: a 1-to-n map, so the value/weight fuse is exact, as
for the papers' 360 panoramas). The faces' 2-D layout for DDE and SIREN is the horizontal strip
``[C, F, 6F]`` (faces side by side in the order above); the live preview shows that strip.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .base import Projector, divide_size
from .cancel import check_cancel
from .fill import fill_from_nearest_points
from .grid import bilinear_corners, index_taps
from .panorama360 import focal_pixels, view_directions

FACE_NAMES = ("px", "nx", "py", "ny", "pz", "nz")  # file suffixes of the six faces, in canvas order
# (sc, tc) per face as (axis, sign) pairs of the direction: the cube-map table above
_FACE_ST = (((2, -1), (1, -1)), ((2, 1), (1, -1)), ((0, 1), (2, 1)), ((0, 1), (2, -1)), ((0, 1), (1, -1)), ((0, -1), (1, -1)))
# ring of 8 views at the horizon, 4 looking up and 4 looking down: every texel seen, neighbours overlap
SKYBOX_YAWS = tuple(range(0, 360, 45)) + (0, 90, 180, 270) * 2
SKYBOX_PITCHES = (0.0,) * 8 + (60.0,) * 4 + (-60.0,) * 4


def direction_to_face(d: torch.Tensor, face_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit directions ``[..., 3]`` -> (face ``[...]`` long in 0..5, row t F, column s F) in texel units."""
    major = d.abs().argmax(-1)
    positive = torch.gather(d, -1, major.unsqueeze(-1)).squeeze(-1) >= 0
    face = 2 * major + (~positive).long()
    ma = torch.gather(d, -1, major.unsqueeze(-1)).squeeze(-1).abs().clamp_min(1e-12)
    s = torch.zeros_like(ma)
    t = torch.zeros_like(ma)
    for k, ((sa, ss), (ta, ts)) in enumerate(_FACE_ST):
        on = face == k
        s = torch.where(on, ss * d[..., sa] / ma, s)
        t = torch.where(on, ts * d[..., ta] / ma, t)
    return face, (t + 1) / 2 * face_size, (s + 1) / 2 * face_size


def face_directions(face_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Unit directions of every texel centre ``[6, F, F, 3]`` float64 (inverse of ``direction_to_face``)."""
    c = (torch.arange(face_size, dtype=torch.float64, device=device) + 0.5) / face_size * 2 - 1
    t, s = torch.meshgrid(c, c, indexing="ij")
    out = torch.zeros(6, face_size, face_size, 3, dtype=torch.float64, device=device)
    for k, ((sa, ss), (ta, ts)) in enumerate(_FACE_ST):
        major = k // 2
        out[k, ..., major] = 1.0 if k % 2 == 0 else -1.0
        out[k, ..., sa] = ss * s
        out[k, ..., ta] = ts * t
    return out / out.norm(dim=-1, keepdim=True)


class CubeMapProjector(Projector):
    """Cube map ``[C, 6, F, F]`` -> perspective views ``[N, C, h, w]`` from the cube's centre.

    Args:
        face_size: F, texels per face edge.
        view_size: view size in pixels, int or (h, w).
        yaws, pitches: view directions in degrees (default: ``SKYBOX_YAWS`` / ``SKYBOX_PITCHES``, 16 views).
        fov: horizontal field of view in degrees, in (0, 180).
    """

    kind = "cube map"

    def __init__(
        self,
        face_size: int = 512,
        view_size: int | tuple[int, int] = 512,
        yaws: Sequence[float] | None = None,
        pitches: Sequence[float] | float | None = None,
        fov: float = 72.0,
        device: torch.device | str = "cpu",
    ) -> None:
        vh, vw = (view_size, view_size) if isinstance(view_size, int) else (int(view_size[0]), int(view_size[1]))
        if not 0 < fov < 180:
            raise ValueError(f"fov={fov} must lie in (0, 180) degrees")
        if face_size < 1 or vh < 1 or vw < 1:
            raise ValueError(f"face size {face_size} and view size {vh}x{vw} must be positive")
        yaws = [float(y) for y in (SKYBOX_YAWS if yaws is None else yaws)]
        if pitches is None:
            pitches = SKYBOX_PITCHES if len(yaws) == len(SKYBOX_PITCHES) else 0.0
        pitches = [float(pitches)] * len(yaws) if isinstance(pitches, (int, float)) else [float(p) for p in pitches]
        if not yaws or len(pitches) != len(yaws):
            raise ValueError(f"a cube map needs at least one view and one pitch per yaw, got {len(yaws)} yaws, {len(pitches)} pitches")
        if any(not -90 <= p <= 90 for p in pitches):
            raise ValueError(f"pitches {pitches} must lie in [-90, 90] degrees")
        self.face_size, self.fov, self.yaws, self.pitches = int(face_size), float(fov), yaws, pitches
        f = self.face_size
        index = torch.empty(len(yaws), vh * vw, dtype=torch.long)
        for k, (yaw, pitch) in enumerate(zip(yaws, pitches)):  # a view at a time, a cancellation check between
            check_cancel()
            face, row, col = direction_to_face(view_directions((vh, vw), fov, yaw, pitch), f)
            index[k] = face * f * f + row.floor().long().clamp(0, f - 1) * f + col.floor().long().clamp(0, f - 1)
        check_cancel()
        super().__init__(index_taps(index).to(device), (vh, vw), (6, f, f))

    # ----------------------------------------------------------------------------------------------
    # capabilities (projectors/CONTRACT.md)
    def canvas_images(self, z: torch.Tensor) -> torch.Tensor:
        """The six faces as images ``[6, C, F, F]`` (order +X, -X, +Y, -Y, +Z, -Z)."""
        return z.movedim(1, 0)

    def preview_latent(self, z: torch.Tensor) -> torch.Tensor:
        """The faces side by side ``[C, F, 6F]`` (the strip layout)."""
        return self._strip(z)

    def grid_shape(self) -> tuple[int, int]:
        return self.face_size, 6 * self.face_size

    def grid_positions(self) -> torch.Tensor:
        index = self.nearest_taps.index[..., 0]
        f = self.face_size
        face, rest = torch.div(index, f * f, rounding_mode="floor"), index % (f * f)
        return torch.stack([torch.div(rest, f, rounding_mode="floor"), face * f + rest % f], -1).float()

    def from_grid(self, grid: torch.Tensor) -> torch.Tensor:
        c, f = grid.shape[0], self.face_size
        return grid.reshape(c, f, 6, f).movedim(2, 1).contiguous()

    def _strip(self, z: torch.Tensor) -> torch.Tensor:
        return z.movedim(1, 2).reshape(z.shape[0], self.face_size, 6 * self.face_size)

    def fill(self, z: torch.Tensor, covered: torch.Tensor | None = None) -> torch.Tensor:
        """Uncovered texels take the value of the covered texel nearest in direction (across face edges)."""
        covered = self.coverage() if covered is None else covered
        return fill_from_nearest_points(z, covered, self.fill_points())

    def fill_points(self) -> torch.Tensor:
        """Where "nearest" is measured by ``fill``: texel directions ``[6 F F, 3]``."""
        return self.texel_directions()

    def texel_directions(self) -> torch.Tensor:
        """Unit direction of every texel centre, ``[6 F F, 3]`` float64 in canvas order (what "nearest" means here)."""
        return face_directions(self.face_size).reshape(-1, 3)

    # ----------------------------------------------------------------------------------------------
    # export
    def equirect(self, z: torch.Tensor, height: int | None = None) -> torch.Tensor:
        """The cube map as an equirectangular image ``[C, H, 2H]`` (bilinear within each face; the 360
        panorama's conventions: longitude 0 = +Z at the centre column, +90 = +X, top row = +Y).
        ``height`` defaults to 2F (the face's texel density at the equator)."""
        h = 2 * self.face_size if height is None else int(height)
        if h < 1:
            raise ValueError(f"equirect height must be positive, got {height}")
        w = 2 * h
        lat = (0.5 - (torch.arange(h, dtype=torch.float64) + 0.5) / h) * math.pi
        lon = ((torch.arange(w, dtype=torch.float64) + 0.5) / w - 0.5) * 2 * math.pi
        lat, lon = torch.meshgrid(lat, lon, indexing="ij")
        d = torch.stack([lat.cos() * lon.sin(), lat.sin(), lat.cos() * lon.cos()], -1)
        face, row, col = direction_to_face(d, self.face_size)
        return self._sample_faces(z, face, row, col)

    def _sample_faces(self, z: torch.Tensor, face, row, col) -> torch.Tensor:
        """Bilinear reads of face texels at continuous (row, col), clamped at the face's edge: ``[C, *row.shape]``."""
        f = self.face_size
        index, weight = bilinear_corners(row, col, f, f)  # [..., 4] within the face
        index = (index + (face * f * f).unsqueeze(-1)).reshape(-1).to(z.device)
        taps = z.reshape(z.shape[0], -1)[:, index].reshape(z.shape[0], *row.shape, 4)
        return (taps * weight.to(z.device, z.dtype)).sum(-1)

    def rescaled(self, factor: int) -> "CubeMapProjector":
        vh, vw = self.view_hw
        return CubeMapProjector(divide_size(self.face_size, factor, "face size"),
                                (divide_size(vh, factor, "view height"), divide_size(vw, factor, "view width")),
                                self.yaws, self.pitches, self.fov, self.device)

    def describe(self) -> str:
        return f"{super().describe()}, fov {self.fov:g}, face {self.face_size}"


def texel_density_ok(face_size: int, view_width: int, fov: float) -> bool:
    """True when nearest sampling leaves no hole inside a view: the face's finest texel spacing (at its
    centre, 2 / F per unit of tan) is no finer than the views' pixel spacing (1 / f)."""
    return face_size / 2 <= focal_pixels(view_width, fov)
