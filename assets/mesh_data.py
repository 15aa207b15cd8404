"""The in-memory mesh every mesh feature works on: triangles, per-vertex UVs, the undo transform.

Conventions:
* ``vertices`` are normalised into the unit box: centred at the origin, longest bounding-box side 1
  (so every coordinate lies in [-0.5, 0.5]); ``to_original`` (4x4) maps them back to file units.
* ``uvs`` are per vertex (vertices are split along UV seams, as trimesh and xatlas do), in [0, 1],
  glTF/OBJ convention with v pointing *up*: texel row = (1 - v) * T.
* ``texture`` is the image the file came with (``[H, W, 3]`` uint8) or None; it is only used as a
  starting point for texture editing (SDEdit) and for previews.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


class MeshError(ValueError):
    """A mesh file or array that cannot be used (empty, degenerate, malformed, unreadable)."""


@dataclass
class MeshData:
    vertices: np.ndarray  # [V, 3] float32, normalised coordinates
    faces: np.ndarray  # [F, 3] int64 vertex indices
    uvs: np.ndarray | None = None  # [V, 2] float32 in [0, 1], v up
    texture: np.ndarray | None = None  # [H, W, 3] uint8 original texture, if the file had one
    to_original: np.ndarray = field(default_factory=lambda: np.eye(4))  # [4, 4] normalised -> file units
    source: str = ""  # where it came from (file name or generator), for messages
    warnings: list[str] = field(default_factory=list)  # what loading refused or could not find (shown to the user)

    @property
    def n_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def n_faces(self) -> int:
        return int(self.faces.shape[0])

    @property
    def has_uvs(self) -> bool:
        return self.uvs is not None

    def original_vertices(self) -> np.ndarray:
        """Vertices in the file's own units, ``[V, 3]`` float32 (undoes the normalisation)."""
        homog = np.concatenate([self.vertices.astype(np.float64), np.ones((self.n_vertices, 1))], 1)
        return (homog @ self.to_original.T)[:, :3].astype(np.float32)

    def with_uvs(self, vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray) -> "MeshData":
        """A copy with new (seam-split) vertices, faces and UVs; the old texture no longer applies."""
        return replace(self, vertices=vertices, faces=faces, uvs=uvs, texture=None)

    def __repr__(self) -> str:
        tex = "x".join(map(str, self.texture.shape[:2])) if self.texture is not None else "none"
        return (
            f"MeshData({self.source or 'mesh'}: {self.n_vertices} vertices, {self.n_faces} faces, "
            f"uvs={'yes' if self.has_uvs else 'no'}, texture={tex})"
        )


def normalise_to_unit_box(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre the bounding box at the origin and scale its longest side to 1.

    Returns ``(normalised [V, 3] float32, to_original [4, 4])`` with ``original = to_original @ [v, 1]``.
    Raises MeshError when the box is flat in every direction (all vertices coincide).
    """
    lo, hi = vertices.min(0), vertices.max(0)
    extent = float((hi - lo).max())
    if not np.isfinite(extent) or extent <= 1e-12:
        raise MeshError(f"mesh is degenerate: its bounding box has extent {extent:g}")
    centre = (lo + hi) / 2
    to_original = np.eye(4)
    to_original[:3, :3] *= extent
    to_original[:3, 3] = centre
    return ((vertices - centre) / extent).astype(np.float32), to_original


def validate_arrays(vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray | None, source: str) -> np.ndarray:
    """Check shapes, indices and finiteness; drop zero-area faces. Returns the kept faces ``[F', 3]``.

    Raises MeshError naming ``source`` when nothing usable remains.
    """
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise MeshError(f"{source}: mesh has no vertices (vertex array shape {vertices.shape})")
    if faces.ndim != 2 or len(faces) == 0:
        raise MeshError(f"{source}: mesh has no faces (a point cloud or an empty file?)")
    if faces.shape[1] != 3:
        raise MeshError(f"{source}: faces have {faces.shape[1]} corners after triangulation, expected 3")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise MeshError(
            f"{source}: face indices range over [{faces.min()}, {faces.max()}] but there are {len(vertices)} vertices"
        )
    if not np.isfinite(vertices).all():
        raise MeshError(f"{source}: vertex coordinates contain NaN or infinity")
    if uvs is not None and (uvs.shape != (len(vertices), 2) or not np.isfinite(uvs).all()):
        raise MeshError(f"{source}: UVs have shape {uvs.shape} (or non-finite values), expected ({len(vertices)}, 2)")
    tri = vertices[faces].astype(np.float64)
    area2 = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    scale = float(np.ptp(vertices, axis=0).max()) or 1.0
    keep = area2 > 1e-12 * scale * scale
    if not keep.any():
        raise MeshError(f"{source}: all {len(faces)} faces are degenerate (zero area)")
    return faces[keep]
