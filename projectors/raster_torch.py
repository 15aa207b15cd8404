"""A pure-torch barycentric z-buffer rasteriser: the always-available fallback and the reference twin
that the ray-casting back-end is tested against.

Each face is projected to the screen and rasterised by ``assets.screen_raster.rasterize_screen`` (edge
functions at pixel centres, perspective-correct barycentrics, scatter-min z-buffer).
"""

from __future__ import annotations


import numpy as np
import torch

from ..assets.screen_raster import rasterize_screen
from .cancel import check_cancel


def _screen(vertices: torch.Tensor, cam, h: int, w: int):
    """Vertices -> (screen x, screen y in pixel units, depth along the view axis): ``Camera.project``."""
    return cam.project(vertices, h, w)


def rasterize_torch(vertices: np.ndarray, faces: np.ndarray, cams, h: int, w: int, device=None):
    """``(face_id [N, h*w] int64 (-1 background), bary [N, h*w, 3] float32)`` for every camera."""
    verts = torch.as_tensor(np.asarray(vertices), dtype=torch.float64)
    fcs = torch.as_tensor(np.asarray(faces), dtype=torch.long)
    # written view by view into the result: no final stack, whose copy of every view cannot be interrupted
    ids = torch.empty(len(cams), h * w, dtype=torch.long)
    barys = torch.empty(len(cams), h * w, 3, dtype=torch.float32)
    for i, cam in enumerate(cams):
        check_cancel()
        ids[i], barys[i] = _rasterize_view(verts, fcs, cam, h, w)
    return ids, barys


def _rasterize_view(verts, faces, cam, h, w):
    sx, sy, d = _screen(verts, cam, h, w)
    return rasterize_screen(sx[faces], sy[faces], d[faces], h, w, near=1e-6 * cam.distance, check=check_cancel)
