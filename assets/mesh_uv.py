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


def uv_overlap_fraction(mesh: MeshData, size: int = 256) -> float:
    """Fraction of the UV area covered more than once (mirrored or stacked UV islands), in [0, 1).

    Computed as ``1 - union / sum`` of the UV triangles' areas, the union measured by rasterising the
    atlas at ``size x size``. Overlapping UVs make two surface points share one texel, which
    synchronization cannot resolve, so ``load_mesh(unwrap="auto")`` re-unwraps such meshes.
    """
    import torch

    from .screen_raster import rasterize_screen

    if not mesh.has_uvs:
        raise MeshError(f"{mesh.source}: mesh has no UVs")
    uv = torch.as_tensor(mesh.uvs, dtype=torch.float64)[torch.as_tensor(mesh.faces)]
    e1, e2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    total = float((e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).abs().sum() / 2)
    if total <= 0:
        return 0.0
    fx, fy = uv[..., 0] * size, (1 - uv[..., 1]) * size
    face_id, _ = rasterize_screen(fx, fy, torch.ones_like(fx), size, size)
    union = float((face_id >= 0).double().mean())
    return max(0.0, 1.0 - union / total)
