"""Canonical space <-> views. Pure torch; no ComfyUI imports (see DESIGN.md, "Projectors")."""

from .base import Projector, SparseViewMap, greedy_disjoint_groups
from .grid import grid_taps, index_taps
from .anagram import AnagramProjector, PatchPermute, PixelPermute, jigsaw
from .cubemap import CubeMapProjector
from .identity import IdentityProjector
from .mesh_texture import MeshTextureProjector
from .multiplane import MultiplaneProjector
from .panorama import WidePanoramaProjector
from .panorama360 import EquirectProjector
from .splat import SplatProjector

__all__ = [
    "AnagramProjector",
    "CubeMapProjector",
    "EquirectProjector",
    "IdentityProjector",
    "MeshTextureProjector",
    "MultiplaneProjector",
    "PatchPermute",
    "PixelPermute",
    "Projector",
    "SparseViewMap",
    "SplatProjector",
    "WidePanoramaProjector",
    "greedy_disjoint_groups",
    "grid_taps",
    "index_taps",
    "jigsaw",
]
