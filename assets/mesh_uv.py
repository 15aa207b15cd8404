"""Automatic UV unwrapping with xatlas (charts packed into one atlas, vertices split at seams)."""

from __future__ import annotations

import numpy as np

from .mesh_data import MeshData, MeshError


def unwrap_uvs(mesh: MeshData, resolution: int = 1024, padding: int = 4) -> MeshData:
    """Return a copy of ``mesh`` with fresh xatlas UVs (any previous UVs and texture are dropped).

    ``resolution`` is the texture size the packer plans for and ``padding`` the gutter between charts
    in texels at that size (bilinear lookups at a chart's border must not read its neighbour).
    The vertex count grows where seams are cut; faces keep their order.
    """
    try:
        import xatlas
    except ImportError as e:  # pragma: no cover - xatlas is a declared dependency
        raise MeshError("automatic UV unwrapping needs the 'xatlas' package (pip install xatlas)") from e
    atlas = xatlas.Atlas()
    atlas.add_mesh(mesh.vertices.astype(np.float32), mesh.faces.astype(np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = int(resolution)
    pack.padding = int(padding)
    pack.bilinear = True
    atlas.generate(pack_options=pack)
    vmapping, indices, uvs = atlas[0]
    if len(indices) != mesh.n_faces:
        raise MeshError(f"{mesh.source}: xatlas returned {len(indices)} faces for {mesh.n_faces}")
    return mesh.with_uvs(
        mesh.vertices[vmapping].astype(np.float32), indices.astype(np.int64), np.clip(uvs, 0, 1).astype(np.float32)
    )
