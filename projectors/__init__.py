"""Canonical space <-> views. Pure torch; no ComfyUI imports (see DESIGN.md, "Projectors")."""

from .base import Projector, SparseViewMap, greedy_disjoint_groups
from .grid import grid_taps

__all__ = ["Projector", "SparseViewMap", "greedy_disjoint_groups", "grid_taps"]
