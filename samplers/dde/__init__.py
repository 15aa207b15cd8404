"""DDE (Diffusion Domain Expansion): a learned coordinator fuses per-view x0 (notes/paper-dde.md)."""

from .checkpoint import load_coordinator, save_coordinator
from .coordinator import Coordinator, CoordinatorConfig
from .fuse import AVERAGING, DDEResult, dde_fuse, dde_fuse_cfg, sample_dde, view_positions

__all__ = [
    "AVERAGING",
    "Coordinator",
    "CoordinatorConfig",
    "DDEResult",
    "dde_fuse",
    "dde_fuse_cfg",
    "load_coordinator",
    "sample_dde",
    "save_coordinator",
    "view_positions",
]
