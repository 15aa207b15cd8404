"""Imports the pack as the package `sync_canvas`, whatever its folder is called, without ComfyUI."""

import importlib.util
import pathlib
import sys

PACK_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _import_pack_as(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, PACK_ROOT / "__init__.py", submodule_search_locations=[str(PACK_ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_import_pack_as("sync_canvas")
