"""Exact ray casting with trimesh's Embree back-end (``embreex``): one ray per pixel centre."""

from __future__ import annotations

import numpy as np
import torch


def rasterize_embree(vertices: np.ndarray, faces: np.ndarray, cams, h: int, w: int, device=None):
    """First hit of every pixel-centre ray: ``(face_id [N, h*w] int64 (-1 miss), bary [N, h*w, 3])``."""
    import trimesh
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    mesh = trimesh.Trimesh(np.asarray(vertices, np.float64), np.asarray(faces), process=False)
    intersector = RayMeshIntersector(mesh)
    rays = [c.rays(h, w) for c in cams]
    origins = np.concatenate([r[0] for r in rays])
    directions = np.concatenate([r[1] for r in rays])
    tri, ray_id, locations = intersector.intersects_id(origins, directions, multiple_hits=False, return_locations=True)
    n, p = len(cams), h * w
    face_id = np.full(n * p, -1, dtype=np.int64)
    bary = np.zeros((n * p, 3), dtype=np.float64)
    if len(tri):
        face_id[ray_id] = tri
        bary[ray_id] = trimesh.triangles.points_to_barycentric(mesh.triangles[tri], locations)
    # embree reports float32 hit points: clean barycentrics that stray a hair outside the triangle
    bary = np.clip(bary, 0.0, 1.0)
    bary /= np.maximum(bary.sum(1, keepdims=True), 1e-12)
    return torch.from_numpy(face_id.reshape(n, p)), torch.from_numpy(bary.reshape(n, p, 3)).float()
