"""Imports the pack as the package `sync_canvas`, whatever its folder is called, without ComfyUI."""

import importlib.util
import os
import pathlib
import sys

import pytest

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


@pytest.fixture(scope="session")
def tiny():
    """``tests/comfy_tiny.py`` with ComfyUI imported on the CPU: tiny in-memory models, VAE, ControlNet."""
    if not os.environ.get("COMFYUI_PATH"):
        pytest.skip("COMFYUI_PATH not set: ComfyUI tests skipped")
    spec = importlib.util.spec_from_file_location("comfy_tiny", PACK_ROOT / "tests" / "comfy_tiny.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.import_comfy()
    return module


@pytest.fixture(scope="module")
def model(tiny):
    """The tiny SD1.5-layout ComfyUI model the node tests sample with (one per module: tests may patch it)."""
    return tiny.tiny_model()


@pytest.fixture(scope="module")
def vae(tiny):
    """The tiny ComfyUI VAE matching ``model``."""
    return tiny.tiny_vae()


@pytest.fixture
def one_thread():
    """One intra-op thread for the test: small ops (Adam loops, tiny transformers, tiny UNets) run many
    times slower when two threads fight other jobs for a 2-core machine. Opt in per module with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
