"""Canonical space <-> views. Pure torch; no ComfyUI imports (see DESIGN.md, "Projectors")."""

from .base import Projector, SparseViewMap, greedy_disjoint_groups
from .grid import grid_taps, index_taps
from .anagram import AnagramProjector, PatchPermute, PixelPermute, jigsaw
from .identity import IdentityProjector
from .multiplane import MultiplaneProjector
from .panorama import WidePanoramaProjector

__all__ = [
    "AnagramProjector",
    "IdentityProjector",
    "MultiplaneProjector",
    "PatchPermute",
    "PixelPermute",
    "Projector",
    "SparseViewMap",
    "WidePanoramaProjector",
    "greedy_disjoint_groups",
    "grid_taps",
    "index_taps",
    "jigsaw",
]
