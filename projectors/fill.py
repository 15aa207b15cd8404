"""Voronoi fills: uncovered canvas elements take the value of the nearest covered one, on grids (scipy's
exact EDT, optionally wrapping columns for 360 panoramas) and over points (cKDTree: splat centres,
cube-map texel directions). Index maps stay on the host; values move on the data's device."""

from __future__ import annotations

import numpy as np
import torch

from .cancel import check_cancel, run_checked


def voronoi_sources(covered: np.ndarray, wrap_columns: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The Voronoi fill of a 2-D grid as index pairs: (uncovered flat indices ``[M]``, the flat index of
    the nearest covered element of each ``[M]``), both int64. scipy's exact EDT with indices only (no
    distance array); only the M uncovered elements are indexed afterwards.

    ``wrap_columns``: columns wrap around (360 panoramas): an element near the last column may take its
    value from one just past it at the first. The mask is padded by W/2 wrapped columns on each side
    (enough: no wrapped horizontal distance exceeds W/2) and source columns are taken modulo W.
    """
    from scipy.ndimage import distance_transform_edt

    check_cancel()
    uncovered = np.flatnonzero(~covered)
    if not wrap_columns:  # any number of dimensions
        # scipy's transform cannot check for cancellation itself: run_checked polls while it runs
        nearest = run_checked(distance_transform_edt, ~covered, return_distances=False, return_indices=True)
        coords = np.unravel_index(uncovered, covered.shape)
        return uncovered, np.ravel_multi_index(tuple(n[coords] for n in nearest), covered.shape).astype(np.int64)
    h, w = covered.shape
    pad = w // 2
    wide = np.concatenate([covered[:, w - pad :], covered, covered[:, :pad]], axis=1)
    nearest = run_checked(distance_transform_edt, ~wide, return_distances=False, return_indices=True)  # [2, h, w + 2 pad]
    del wide
    rows, cols = np.divmod(uncovered, w)
    src_rows = nearest[0][rows, cols + pad].astype(np.int64)
    src_cols = (nearest[1][rows, cols + pad].astype(np.int64) - pad) % w
    return uncovered, src_rows * w + src_cols


def fill_from_sources(z: torch.Tensor, uncovered, sources, chunk: int = 1 << 22) -> torch.Tensor:
    """``z`` ``[C, *S]`` with ``z[:, uncovered] = z[:, sources]`` (flat indices), copied in chunks of
    ``chunk`` elements so no index temporary grows with the canvas."""
    out = z.reshape(z.shape[0], -1).clone()
    uncovered, sources = torch.as_tensor(uncovered, device="cpu"), torch.as_tensor(sources, device="cpu")  # host index maps
    for start in range(0, len(uncovered), chunk):
        dst = uncovered[start : start + chunk].to(z.device)
        out[:, dst] = out[:, sources[start : start + chunk].to(z.device)]
    return out.reshape(z.shape)


def fill_from_nearest_points(z: torch.Tensor, covered: torch.Tensor, points) -> torch.Tensor:
    """Voronoi fill over points: every uncovered element takes the value of the covered element whose
    point is nearest (scipy cKDTree). ``z`` ``[C, *S]``, ``covered`` bool ``[*S]``, ``points`` ``[prod(S), D]``
    (splat centres in 3-D, cube-map texel directions). ``z`` unchanged when all or nothing is covered."""
    from scipy.spatial import cKDTree

    covered = covered.reshape(-1).cpu()
    if bool(covered.all()) or not bool(covered.any()):
        return z
    points = torch.as_tensor(points, device="cpu").numpy()
    seen = torch.nonzero(covered).squeeze(1)
    unseen = torch.nonzero(~covered).squeeze(1)
    _, nearest = cKDTree(points[seen.numpy()]).query(points[unseen.numpy()])
    flat = z.reshape(z.shape[0], -1).clone()
    flat[:, unseen.to(z.device)] = flat[:, seen[torch.as_tensor(nearest, device="cpu")].to(z.device)]
    return flat.reshape(z.shape)
