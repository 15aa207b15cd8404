"""Pinhole camera batches for splat rendering, and orbits fitted to a splat scene.

Convention (gsplat's): ``viewmats [N, 4, 4]`` map world to OpenCV camera coordinates (x right, y down,
z forward); ``Ks [N, 3, 3]`` are pixel intrinsics with pixel centres at half-integers (pixel (r, c)
has its centre at (c + 0.5, r + 0.5)). Orbits reuse assets/cameras.py's azimuth/elevation convention
(y up, azimuth 0 on +z) after moving the scene's centre to the origin and its up axis to +y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .cameras import Camera, fit_distance

_OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
# rotations taking the scene's up axis to +y (the orbit's up)
_UP_TO_Y = {
    "y": np.eye(3),
    "-y": np.diag([1.0, -1.0, -1.0]),
    "z": np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]]),
    "-z": np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]]),
}


@dataclass
class SplatCameras:
    """N pinhole cameras of one image size: viewmats ``[N, 4, 4]``, Ks ``[N, 3, 3]`` (float32)."""

    viewmats: torch.Tensor
    Ks: torch.Tensor
    width: int
    height: int
    up: str = "z"  # the scene's up axis the orbit was built around (turntables reuse it)

    def __post_init__(self) -> None:
        n = self.viewmats.shape[0]
        if self.viewmats.shape != (n, 4, 4) or self.Ks.shape != (n, 3, 3) or n == 0:
            raise ValueError(f"need viewmats [N,4,4] and Ks [N,3,3] with N >= 1, got {tuple(self.viewmats.shape)} "
                             f"and {tuple(self.Ks.shape)}")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")

    def __len__(self) -> int:
        return int(self.viewmats.shape[0])

    def rescaled(self, factor: int) -> "SplatCameras":
        """Same cameras with ``width/factor x height/factor`` pixels (SD latents: factor 8)."""
        if factor < 1 or int(factor) != factor or self.width % factor or self.height % factor:
            raise ValueError(f"rescale factor {factor!r} must be a positive integer dividing {self.width}x{self.height}")
        ks = self.Ks.clone()
        ks[:, :2] /= factor  # fx, fy, cx, cy scale; half-integer pixel centres stay consistent
        return SplatCameras(self.viewmats.clone(), ks, self.width // factor, self.height // factor, self.up)

    def select(self, ids) -> "SplatCameras":
        ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
        return SplatCameras(self.viewmats[ids], self.Ks[ids], self.width, self.height, self.up)

    def positions(self) -> torch.Tensor:
        """``[N, 3]`` camera centres in world coordinates."""
        r, t = self.viewmats[:, :3, :3], self.viewmats[:, :3, 3:]
        return -(r.transpose(1, 2) @ t)[..., 0]


def intrinsics(fov_deg: float, width: int, height: int) -> torch.Tensor:
    """``[3, 3]`` K for a vertical field of view ``fov_deg`` and square pixels."""
    if not 0 < fov_deg < 180:
        raise ValueError(f"fov must be in (0, 180) degrees, got {fov_deg}")
    f = 0.5 * height / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def scene_frame(means: torch.Tensor, opacities: torch.Tensor | None = None, quantile: float = 0.95):
    """Robust centre ``[3]`` and radius of a splat scene (ignores faint and far-out floaters).

    Centre: per-axis median of gaussians with opacity > 0.5 (all when too few); radius: the
    ``quantile`` of their distances to it.
    """
    pts = means.detach().double().cpu()
    if opacities is not None and int((opacities > 0.5).sum()) >= 8:
        pts = pts[opacities.detach().cpu() > 0.5]
    centre = pts.median(dim=0).values
    radius = float(torch.quantile((pts - centre).norm(dim=1), quantile)) if len(pts) > 1 else 1.0
    return centre.numpy(), max(radius, 1e-6)


def orbit_cameras(
    views: list[tuple[float, float]],
    centre,
    distance: float,
    fov_deg: float,
    width: int,
    height: int,
    up: str = "z",
) -> SplatCameras:
    """Cameras at ``(azimuth, elevation)`` degrees, ``distance`` from ``centre``, looking at it."""
    if up not in _UP_TO_Y:
        raise ValueError(f"up must be one of {sorted(_UP_TO_Y)}, got {up!r}")
    to_orbit = np.eye(4)
    to_orbit[:3, :3] = _UP_TO_Y[up]
    to_orbit[:3, 3] = -_UP_TO_Y[up] @ np.asarray(centre, dtype=np.float64)
    mats = [_OPENGL_TO_OPENCV @ Camera(az, el, distance, fov_deg).world_to_camera() @ to_orbit for az, el in views]
    k = intrinsics(fov_deg, width, height)
    return SplatCameras(torch.tensor(np.stack(mats), dtype=torch.float32), k.expand(len(mats), 3, 3).clone(), width,
                        height, up)


def spiral_views(n_views: int, elevation_range: tuple[float, float] = (-10.0, 50.0)) -> list[tuple[float, float]]:
    """``n_views`` (azimuth, elevation) pairs: golden-angle azimuths, elevations evenly in the range.

    Consecutive views are ~137.5 deg apart, and every azimuth sector sees several elevations, which
    is what the paper's 50 generation views around a Synthetic-NeRF object provide.
    """
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    lo, hi = elevation_range
    if not -90 < lo <= hi < 90:
        raise ValueError(f"elevation range must lie in (-90, 90) with lo <= hi, got {elevation_range}")
    golden = 180.0 * (3 - math.sqrt(5))
    return [((golden * k) % 360.0, lo + (hi - lo) * (k + 0.5) / n_views if n_views > 1 else (lo + hi) / 2)
            for k in range(n_views)]


def fit_orbit(
    means: torch.Tensor,
    opacities: torch.Tensor | None = None,
    n_views: int = 50,
    fov_deg: float = 50.0,
    width: int = 512,
    height: int = 512,
    up: str = "z",
    elevation_range: tuple[float, float] = (-10.0, 50.0),
    margin: float = 1.1,
) -> SplatCameras:
    """An orbit of ``n_views`` cameras around the scene, far enough that its bounding sphere fits."""
    centre, radius = scene_frame(means, opacities)
    distance = fit_distance(np.array([[radius, 0.0, 0.0]]), fov_deg, margin)
    return orbit_cameras(spiral_views(n_views, elevation_range), centre, distance, fov_deg, width, height, up)
