"""nvdiffrast (CUDA) back-end. UNTESTED: written against nvdiffrast's documented torch API
(``RasterizeCudaContext``, ``rasterize``, ``interpolate``) on a machine without a GPU.

Barycentrics are obtained by interpolating one-hot corner attributes through a per-corner triangle
list, so we never depend on nvdiffrast's own (u, v) corner convention; clip-space y is negated so that
row 0 is the top of the image, as in the other back-ends.
"""

from __future__ import annotations

import math

import numpy as np
import torch

_CONTEXTS: dict = {}


def _projection(cam, near: float, far: float, aspect: float) -> np.ndarray:
    """OpenGL perspective matrix times view matrix, ``[4, 4]``."""
    f = 1 / math.tan(math.radians(cam.fov) / 2)
    proj = np.array(
        [
            [f / aspect, 0, 0, 0],
            [0, f, 0, 0],
            [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)],
            [0, 0, -1, 0],
        ]
    )
    return proj @ cam.world_to_camera()


def rasterize_nvdiffrast(vertices: np.ndarray, faces: np.ndarray, cams, h: int, w: int, device=None):
    """``(face_id [N, h*w] int64 (-1 background), bary [N, h*w, 3] float32)`` on a CUDA device."""
    import nvdiffrast.torch as dr

    device = torch.device(device if device is not None else "cuda")
    if device.type != "cuda":
        raise ValueError(f"the nvdiffrast back-end needs a CUDA device, got {device}")
    if device not in _CONTEXTS:
        _CONTEXTS[device] = dr.RasterizeCudaContext(device=device)
    radius = float(np.linalg.norm(vertices, axis=1).max())
    mats = []
    for cam in cams:
        near = max(cam.distance - radius, 1e-3 * cam.distance) * 0.5
        far = cam.distance + radius * 2
        mats.append(_projection(cam, near, far, w / h))
    mvp = torch.as_tensor(np.stack(mats), dtype=torch.float32, device=device)  # [N, 4, 4]
    v = torch.as_tensor(vertices, dtype=torch.float32, device=device)
    v_h = torch.cat([v, torch.ones_like(v[:, :1])], 1)
    clip = torch.einsum("nij,vj->nvi", mvp, v_h).contiguous()
    clip[..., 1] = -clip[..., 1]  # nvdiffrast puts clip y = -1 at row 0; we want the top there
    tri = torch.as_tensor(faces, dtype=torch.int32, device=device).contiguous()
    rast, _ = dr.rasterize(_CONTEXTS[device], clip, tri, resolution=[h, w])
    face_id = rast[..., 3].long() - 1  # 0 means background
    n_faces = tri.shape[0]
    corner_attr = torch.eye(3, device=device).repeat(n_faces, 1).unsqueeze(0).contiguous()  # [1, 3F, 3]
    corner_tri = torch.arange(3 * n_faces, dtype=torch.int32, device=device).reshape(n_faces, 3)
    bary, _ = dr.interpolate(corner_attr, rast, corner_tri)
    n = len(cams)
    return face_id.reshape(n, h * w), bary.reshape(n, h * w, 3) * (face_id >= 0).reshape(n, h * w, 1)
