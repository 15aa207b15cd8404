"""The pack imported as the package ``sync_canvas`` whatever its folder is called (a folder such as
``sync-canvas`` is no valid module name), without ComfyUI: for the scripts, the workflow builder and the
benchmarks (tests/conftest.py does the same for the tests)."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

PACK_ROOT = pathlib.Path(__file__).resolve().parents[1]


def import_pack(name: str = "sync_canvas"):
    """The pack's ``__init__`` loaded once as module ``name`` (its submodules import as ``name.x``)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, PACK_ROOT / "__init__.py", submodule_search_locations=[str(PACK_ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
