"""Rasterise a triangle mesh into N camera views behind ONE function with swappable back-ends.

``rasterize(mesh, cameras, (h, w))`` returns, per view pixel (row 0 at the top, sample at the pixel
centre), the visible face id (-1 on background), its perspective-correct barycentrics, and from them
UV, z-depth, the face normal and the cosine between view ray and normal. Back-ends only produce
``face_id`` and ``bary``; every other attribute is derived here once, so they agree by construction
wherever the visible face and barycentrics agree.

Back-ends:
* ``"embree"``: exact ray casting with trimesh + embreex (CPU, the default when installed);
* ``"torch"``: a pure-torch barycentric z-buffer rasteriser (always available; the reference twin);
* ``"nvdiffrast"``: NVIDIA's CUDA rasteriser for CUDA tensors. Written against nvdiffrast's documented
  API but UNVERIFIED: it has never run in this pack's tests (no GPU there). Opt-in only (``"auto"`` never
  picks it) and logged as unverified when chosen, until ``scripts/gpu_check.py`` has compared it with
  the torch rasteriser on a GPU (face ids and depth) and it is added to ``VERIFIED_BACKENDS``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..assets.cameras import Camera, CameraRig
from ..assets.mesh_data import MeshData
from .cancel import check_cancel, write_piece

BACKENDS = ("auto", "embree", "torch", "nvdiffrast")
RASTER_FIELDS = ("face_id", "bary", "uv", "depth", "normal", "view_cos")
VERIFIED_BACKENDS = ("embree", "torch")  # run and compared in the test suite; "auto" picks only these
UNVERIFIED_NOTE = "nvdiffrast is UNVERIFIED (never run by the pack's tests; scripts/gpu_check.py compares it with torch on a GPU)"
log = logging.getLogger(__name__)


@dataclass
class RasterResult:
    """Per-pixel geometry of N views of ``h x w`` (all tensors on one device).

    face_id [N, h, w] int64, -1 where the ray misses the mesh
    bary    [N, h, w, 3] float32, perspective-correct barycentrics of the face's corners (0 on background)
    uv      [N, h, w, 2] float32, interpolated UVs in [0, 1], v up (0 on background or without UVs)
    depth   [N, h, w] float32, z-depth along the camera axis in mesh units (0 on background)
    normal  [N, h, w, 3] float32, unit world-space face normal turned towards the camera (0 on background)
    view_cos [N, h, w] float32 in [0, 1], cos(angle between the reversed view ray and the normal)
    """

    face_id: torch.Tensor
    bary: torch.Tensor
    uv: torch.Tensor
    depth: torch.Tensor
    normal: torch.Tensor
    view_cos: torch.Tensor
    backend: str = ""

    @property
    def mask(self) -> torch.Tensor:
        """``[N, h, w]`` bool: pixel sees the mesh."""
        return self.face_id >= 0

    def to(self, device) -> "RasterResult":
        """A copy with every tensor on ``device``."""
        fields = ("face_id", "bary", "uv", "depth", "normal", "view_cos")
        return RasterResult(*(getattr(self, f).to(device) for f in fields), backend=self.backend)

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.face_id.shape[1]), int(self.face_id.shape[2])


def available_backends() -> list[str]:
    """Back-ends importable here, fastest first (nvdiffrast also needs CUDA at call time)."""
    found = []
    try:
        import nvdiffrast.torch  # noqa: F401

        if torch.cuda.is_available():
            found.append("nvdiffrast")
    except ImportError:
        pass
    try:
        import embreex  # noqa: F401

        found.append("embree")
    except ImportError:
        pass
    return found + ["torch"]


def preferred_device(backend: str = "auto") -> torch.device:
    """Where ``backend`` rasterises: CUDA for an explicitly chosen nvdiffrast (when importable with a GPU),
    else the CPU (``"auto"`` picks only verified back-ends, which run on the CPU)."""
    if backend == "nvdiffrast" and "nvdiffrast" in available_backends():
        return torch.device("cuda")
    return torch.device("cpu")


def _pick_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"raster backend must be one of {BACKENDS}, got {backend!r}")
    have = available_backends()
    if backend == "auto":
        return "embree" if "embree" in have else "torch"
    if backend not in have:
        raise ValueError(f"raster backend {backend!r} is not available here (available: {have})")
    if backend not in VERIFIED_BACKENDS:
        log.warning("SyncCanvas raster: %s", UNVERIFIED_NOTE)
    return backend


def rasterize(
    mesh: MeshData,
    cameras: CameraRig | Sequence[Camera],
    hw: tuple[int, int],
    backend: str = "auto",
    device: torch.device | str = "cpu",
) -> RasterResult:
    """Rasterise ``mesh`` into one ``hw`` view per camera; see :class:`RasterResult` for the outputs.

    Cameras must lie outside the mesh (faces crossing a camera's near plane are skipped by the
    torch and nvdiffrast back-ends); fitted rigs guarantee this.
    """
    h, w = int(hw[0]), int(hw[1])
    if h < 1 or w < 1:
        raise ValueError(f"view size must be positive, got {hw}")
    cams = list(cameras)
    if not cams:
        raise ValueError("rasterize needs at least one camera")
    device = torch.device(device)
    name = _pick_backend(backend, device)
    if name == "embree":
        from .raster_embree import rasterize_embree as impl
    elif name == "torch":
        from .raster_torch import rasterize_torch as impl
    else:
        from .raster_nvdiffrast import rasterize_nvdiffrast as impl
    face_id, bary = impl(mesh.vertices, mesh.faces, cams, h, w, device)
    # view by view, each written into the whole result: a cancel is seen between views, and no final
    # concatenation (an uninterruptible copy) is needed
    out = None
    for i in range(len(cams)):
        check_cancel()
        part = derive_attributes(mesh, cams[i : i + 1], face_id[i : i + 1].to(device), bary[i : i + 1].to(device), h, w, name)
        out = write_piece(out, part, RASTER_FIELDS, 0, i, len(cams), lambda *t: RasterResult(*t, backend=name))
    return out


def derive_attributes(mesh: MeshData, cams: list[Camera], face_id, bary, h: int, w: int, backend: str) -> RasterResult:
    """UV, depth, normal and view cosine from ``face_id [N, P]`` and ``bary [N, P, 3]`` (hit pixels only)."""
    device = face_id.device
    n = len(cams)
    hit = face_id >= 0
    view, pixel = torch.nonzero(hit, as_tuple=True)
    fid = face_id[view, pixel]
    b = bary[view, pixel].to(torch.float32)
    verts = torch.as_tensor(mesh.vertices, dtype=torch.float32, device=device)
    faces = torch.as_tensor(mesh.faces, dtype=torch.long, device=device)[fid]  # [K, 3]
    v0, v1, v2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    points = b[:, :1] * v0 + b[:, 1:2] * v1 + b[:, 2:] * v2
    positions = torch.as_tensor(np.stack([c.position for c in cams]), dtype=torch.float32, device=device)[view]
    forward = -torch.as_tensor(np.stack([c.rotation[:, 2] for c in cams]), dtype=torch.float32, device=device)[view]
    to_point = points - positions
    ray = torch.nn.functional.normalize(to_point, dim=-1)
    face_normal = torch.nn.functional.normalize(torch.cross(v1 - v0, v2 - v0, dim=-1), dim=-1)
    facing = (face_normal * ray).sum(-1, keepdim=True)
    normal = torch.where(facing > 0, -face_normal, face_normal)  # two-sided: turn towards the camera

    def scatter(values: torch.Tensor, *tail: int) -> torch.Tensor:
        out = torch.zeros(n, h * w, *tail, dtype=torch.float32, device=device)
        out[view, pixel] = values
        return out.reshape(n, h, w, *tail)

    if mesh.uvs is not None:
        uvs = torch.as_tensor(mesh.uvs, dtype=torch.float32, device=device)
        uv = b[:, :1] * uvs[faces[:, 0]] + b[:, 1:2] * uvs[faces[:, 1]] + b[:, 2:] * uvs[faces[:, 2]]
    else:
        uv = torch.zeros(len(fid), 2, device=device)
    return RasterResult(
        face_id=torch.where(hit, face_id, -1).reshape(n, h, w),
        bary=scatter(b, 3),
        uv=scatter(uv, 2),
        depth=scatter((to_point * forward).sum(-1)),
        normal=scatter(normal, 3),
        view_cos=scatter((-(normal * ray).sum(-1)).clamp(0, 1)),
        backend=backend,
    )
