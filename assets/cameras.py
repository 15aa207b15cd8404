"""Orbit cameras looking at the origin, and the camera rigs of the papers.

Coordinates: right-handed, y up; azimuth 0 looks at the mesh's front from +z, azimuth grows towards
+x; elevation > 0 looks down from above. Cameras follow OpenGL: the camera looks along its -z axis,
x right, y up; views are ``h x w`` pixels with row 0 at the top and pixel centres at half-integers.
``fov`` is the vertical field of view in degrees (views are usually square).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Camera:
    azimuth: float  # degrees
    elevation: float  # degrees, in (-90, 90)
    distance: float  # from the origin, in normalised mesh units
    fov: float  # vertical field of view, degrees, in (0, 180)

    def __post_init__(self):
        if not 0 < self.fov < 180:
            raise ValueError(f"camera fov must be in (0, 180) degrees, got {self.fov}")
        if not -90 < self.elevation < 90:
            raise ValueError(f"camera elevation must be in (-90, 90) degrees, got {self.elevation}")
        if not self.distance > 0:
            raise ValueError(f"camera distance must be > 0, got {self.distance}")

    @property
    def position(self) -> np.ndarray:
        """``[3]`` world position."""
        az, el = math.radians(self.azimuth), math.radians(self.elevation)
        return self.distance * np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])

    @property
    def rotation(self) -> np.ndarray:
        """``[3, 3]`` camera-to-world rotation; columns are the camera's right, up and back (+z) axes."""
        back = self.position / np.linalg.norm(self.position)
        right = np.cross([0.0, 1.0, 0.0], back)
        right /= np.linalg.norm(right)
        up = np.cross(back, right)
        return np.stack([right, up, back], 1)

    def world_to_camera(self) -> np.ndarray:
        """``[4, 4]`` view matrix (world -> OpenGL camera coordinates)."""
        m = np.eye(4)
        m[:3, :3] = self.rotation.T
        m[:3, 3] = -self.rotation.T @ self.position
        return m

    def project(self, points: torch.Tensor, h: int, w: int, min_depth: float = 1e-12):
        """The pinhole model, once for the pack: world points ``[K, 3]`` -> ``(x, y, depth)`` ``[K]`` with x, y
        in pixel units of an ``h x w`` view (pixel centres at c + 0.5, y down) and depth along the view axis.
        The inverse of ``rays`` (vertical ``fov``, square pixels); depths below ``min_depth`` are clamped in
        the division only (points behind the camera keep their negative depth)."""
        rot = torch.as_tensor(self.rotation, dtype=points.dtype, device=points.device)
        pos = torch.as_tensor(self.position, dtype=points.dtype, device=points.device)
        vc = (points - pos) @ rot  # camera coordinates (x right, y up, z back)
        depth = -vc[:, 2]
        tan = math.tan(math.radians(self.fov) / 2)
        safe = depth.clamp_min(min_depth)
        x = (vc[:, 0] / (safe * tan * (w / h)) * 0.5 + 0.5) * w
        y = (0.5 - vc[:, 1] / (safe * tan) * 0.5) * h
        return x, y, depth

    def rays(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """Rays through pixel centres: ``(origins [h*w, 3], unit directions [h*w, 3])``, row-major."""
        tan = math.tan(math.radians(self.fov) / 2)
        ys = (1 - (np.arange(h) + 0.5) / h * 2) * tan
        xs = ((np.arange(w) + 0.5) / w * 2 - 1) * tan * (w / h)
        d_cam = np.empty((h, w, 3))
        d_cam[..., 0], d_cam[..., 1], d_cam[..., 2] = xs[None, :], ys[:, None], -1.0
        d_world = d_cam.reshape(-1, 3) @ self.rotation.T
        d_world /= np.sqrt(np.einsum("ij,ij->i", d_world, d_world))[:, None]
        return np.broadcast_to(self.position, d_world.shape), d_world


@dataclass
class CameraRig:
    """Cameras plus, optionally, StochSync's groups of (nearly) non-overlapping views."""

    cameras: list[Camera]
    groups: list[list[int]] | None = None
    name: str = "custom"

    def __post_init__(self):
        if not self.cameras:
            raise ValueError("a camera rig needs at least one camera")
        if self.groups is not None:
            flat = sorted(i for g in self.groups for i in g)
            if flat != list(range(len(self.cameras))):
                raise ValueError(f"rig groups {self.groups} must partition the view ids 0..{len(self.cameras) - 1}")

    def __len__(self) -> int:
        return len(self.cameras)

    def __iter__(self):
        return iter(self.cameras)


def fit_distance(vertices: np.ndarray, fov: float, margin: float = 1.1) -> float:
    """Distance at which the mesh's bounding sphere (about the origin) fills ``fov`` with ``margin``."""
    radius = float(np.linalg.norm(np.asarray(vertices, dtype=np.float64), axis=1).max())
    if radius <= 0:
        raise ValueError("cannot fit a camera to a mesh whose vertices all sit at the origin")
    return margin * radius / math.sin(math.radians(fov) / 2)


def orbit_rig(views: list[tuple[float, float]], distance: float, fov: float, groups=None, name: str = "custom") -> CameraRig:
    """Cameras at ``(azimuth, elevation)`` pairs (degrees), all at one distance and fov."""
    return CameraRig([Camera(float(a), float(e), distance, fov) for a, e in views], groups, name)


def paper_rig(vertices: np.ndarray | None = None, fov: float = 60.0, distance: float | None = None) -> CameraRig:
    """SyncTweedies A1.3 / SyncMVD: 8 views every 45 deg at elevation 0, plus azimuth 0 and 180 at 30 deg.

    Distance is fitted to ``vertices`` (bounding sphere fills the fov) unless given; default 2.
    Groups for StochSync: the two interleaved quadruples of the equator and the two top views.
    """
    if distance is None:
        distance = fit_distance(vertices, fov) if vertices is not None else 2.0
    views = [(45.0 * k, 0.0) for k in range(8)] + [(0.0, 30.0), (180.0, 30.0)]
    return orbit_rig(views, distance, fov, groups=[[0, 2, 4, 6], [1, 3, 5, 7], [8, 9]], name="paper")


def stochsync_rig(vertices: np.ndarray | None = None, n_groups: int = 2, fov: float = 60.0, distance: float | None = None) -> CameraRig:
    """StochSync appendix B: groups of 4 views 90 deg apart (minimal overlap), rotated between groups.

    Group g has azimuths ``90 k + 90 g / n_groups`` at elevation 0; the sampler alternates groups.
    """
    if n_groups < 1:
        raise ValueError(f"n_groups must be >= 1, got {n_groups}")
    if distance is None:
        distance = fit_distance(vertices, fov) if vertices is not None else 2.0
    views, groups = [], []
    for g in range(n_groups):
        groups.append(list(range(4 * g, 4 * g + 4)))
        views += [(90.0 * k + 90.0 * g / n_groups, 0.0) for k in range(4)]
    return orbit_rig(views, distance, fov, groups=groups, name="stochsync")


def turntable_rig(n_views: int, elevation: float = 15.0, fov: float = 60.0, vertices=None, distance: float | None = None) -> CameraRig:
    """``n_views`` evenly spaced azimuths at one elevation, for preview videos."""
    if n_views < 1:
        raise ValueError(f"turntable needs n_views >= 1, got {n_views}")
    if distance is None:
        distance = fit_distance(vertices, fov) if vertices is not None else 2.0
    return orbit_rig([(360.0 * k / n_views, elevation) for k in range(n_views)], distance, fov, name="turntable")


def parse_views(text: str) -> list[tuple[float, float]]:
    """Parse ``"az:el, az:el, ..."`` (degrees; ``el`` optional, default 0) into pairs.

    >>> parse_views("0:0, 90, 180:30")
    [(0.0, 0.0), (90.0, 0.0), (180.0, 30.0)]
    """
    pairs = []
    for item in text.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        bits = item.split(":")
        try:
            nums = [float(b) for b in bits]
        except ValueError:
            raise ValueError(f"bad view {item!r}: expected 'azimuth:elevation' in degrees") from None
        if len(nums) > 2:
            raise ValueError(f"bad view {item!r}: expected 'azimuth:elevation' in degrees")
        if not all(math.isfinite(n) for n in nums):
            raise ValueError(f"bad view {item!r}: azimuth and elevation must be finite numbers of degrees")
        pairs.append((nums[0], nums[1] if len(nums) == 2 else 0.0))
    if not pairs:
        raise ValueError(f"no views in {text!r}")
    return pairs
