"""Small procedural meshes with UVs (cube, UV sphere, torus) for tests, demos and integration tests.

All are returned as :class:`MeshData` already in the unit box (longest side 1, centred), with
per-vertex UVs in [0, 1] (v up), seams split, counter-clockwise faces seen from outside.
"""

from __future__ import annotations

import numpy as np

from .mesh_data import MeshData, normalise_to_unit_box


def _finish(vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, name: str) -> MeshData:
    normalised, to_original = normalise_to_unit_box(vertices.astype(np.float64))
    return MeshData(normalised, faces.astype(np.int64), uvs.astype(np.float32), None, to_original, name)


def _grid_faces(rows: int, cols: int, offset: int = 0) -> np.ndarray:
    """Two triangles per cell of a (rows+1) x (cols+1) vertex grid laid out row-major."""
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    a = (r * (cols + 1) + c).ravel() + offset
    b, d = a + 1, a + cols + 1
    e = d + 1
    return np.concatenate([np.stack([a, d, b], 1), np.stack([b, d, e], 1)])


def cube(subdivisions: int = 1) -> MeshData:
    """Axis-aligned cube, each side a ``subdivisions`` x ``subdivisions`` grid; 6 UV charts in a 3x2 atlas."""
    if subdivisions < 1:
        raise ValueError(f"cube subdivisions must be >= 1, got {subdivisions}")
    n = subdivisions
    s = np.linspace(-1.0, 1.0, n + 1)
    gu, gv = np.meshgrid(s, s[::-1], indexing="xy")  # row 0 = top of the chart (v up)
    gu, gv = gu.ravel(), gv.ravel()
    # each side: (normal, right, up) so that right x up = normal (counter-clockwise from outside)
    sides = [
        ((0, 0, 1), (1, 0, 0), (0, 1, 0)),
        ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
        ((0, 0, -1), (-1, 0, 0), (0, 1, 0)),
        ((-1, 0, 0), (0, 0, 1), (0, 1, 0)),
        ((0, 1, 0), (1, 0, 0), (0, 0, -1)),
        ((0, -1, 0), (1, 0, 0), (0, 0, 1)),
    ]
    verts, faces, uvs = [], [], []
    pad = 0.02  # gutter between charts so bilinear lookups never bleed across charts
    for k, (normal, right, up) in enumerate(sides):
        nrm, rgt, upv = (np.array(x, dtype=np.float64) for x in (normal, right, up))
        verts.append(nrm + gu[:, None] * rgt + gv[:, None] * upv)
        col, row = k % 3, k // 3
        u = (col + pad + (gu + 1) / 2 * (1 - 2 * pad)) / 3
        v = (row + pad + (gv + 1) / 2 * (1 - 2 * pad)) / 2
        uvs.append(np.stack([u, v], 1))
        faces.append(_grid_faces(n, n, offset=k * (n + 1) ** 2))
    return _finish(np.concatenate(verts), np.concatenate(faces), np.concatenate(uvs), "cube")


def uv_sphere(rings: int = 16, segments: int = 32) -> MeshData:
    """Latitude-longitude sphere; u = longitude / 2 pi, v = 1 - latitude / pi (seam at u = 0 = 1)."""
    if rings < 2 or segments < 3:
        raise ValueError(f"uv_sphere needs rings >= 2 and segments >= 3, got {rings}, {segments}")
    theta = np.linspace(0, np.pi, rings + 1)  # from the north pole (+y)
    phi = np.linspace(0, 2 * np.pi, segments + 1)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    verts = np.stack([np.sin(t) * np.sin(p), np.cos(t), np.sin(t) * np.cos(p)], -1).reshape(-1, 3)
    uvs = np.stack([p / (2 * np.pi), 1 - t / np.pi], -1).reshape(-1, 2)
    faces = _grid_faces(rings, segments)
    return _drop_pole_slivers(_finish(verts, faces, uvs, "uv_sphere"))


def torus(major_segments: int = 32, minor_segments: int = 16, major_radius: float = 1.0, minor_radius: float = 0.4) -> MeshData:
    """Torus around the y axis; u along the major circle, v along the tube (both seams split)."""
    if major_segments < 3 or minor_segments < 3 or not 0 < minor_radius < major_radius:
        raise ValueError(
            f"torus needs >= 3 segments and 0 < minor_radius < major_radius, got "
            f"{major_segments}, {minor_segments}, {minor_radius}, {major_radius}"
        )
    a = np.linspace(0, 2 * np.pi, major_segments + 1)
    b = np.linspace(0, 2 * np.pi, minor_segments + 1)
    ga, gb = np.meshgrid(a, b, indexing="ij")  # rows: major angle, cols: minor (tube) angle
    ring = major_radius + minor_radius * np.cos(gb)
    verts = np.stack([ring * np.sin(ga), minor_radius * np.sin(gb), ring * np.cos(ga)], -1).reshape(-1, 3)
    uvs = np.stack([ga / (2 * np.pi), gb / (2 * np.pi)], -1).reshape(-1, 2)
    faces = _grid_faces(major_segments, minor_segments)
    return _finish(verts, faces, uvs, "torus")


def _drop_pole_slivers(mesh: MeshData) -> MeshData:
    """Remove the zero-area triangles the lat-long grid makes at the poles."""
    tri = mesh.vertices[mesh.faces].astype(np.float64)
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    mesh.faces = mesh.faces[area > 1e-10]
    return mesh


def checker_texture(size: int = 64, squares: int = 8) -> np.ndarray:
    """A colourful checkerboard ``[size, size, 3]`` float32 in [0, 1] (smooth gradients + checks)."""
    y, x = np.mgrid[0:size, 0:size] / size
    checks = ((np.floor(x * squares) + np.floor(y * squares)) % 2).astype(np.float32)
    return np.stack([x, y, 0.25 + 0.5 * checks], -1).astype(np.float32)
