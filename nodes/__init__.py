"""ComfyUI glue for Sync Canvas: thin V3 nodes. The only package that imports ComfyUI.

Each module listed in ``NODE_MODULES`` exports a ``NODES`` list of ``io.ComfyNode`` classes; adding a
node family (mesh, splat, fuse rules, cross-view attention, ...) is one line in that tuple.
"""

from __future__ import annotations

import importlib

from typing_extensions import override

from comfy_api.latest import ComfyExtension, io

from .guards import fractional_int_marker, is_guarded
from .names import decorate

NODE_MODULES: tuple[str, ...] = (
    "projector_nodes",
    "view_nodes",
    "conditioning_nodes",
    "sampler_nodes",
    "save_nodes",
    "cross_view_attention",
    "mesh",
    "splat",
    "fuse_rules",
    "cubemap",
    "viewer",
    "splat_interop",
)


def collect_nodes(modules: tuple[str, ...] = NODE_MODULES) -> list[type[io.ComfyNode]]:
    """The ``NODES`` of every module in ``modules`` (relative to this package), in order, no duplicates,
    each guarded by its module (``guards.guard_nodes(NODES)``: inputs checked against the schema before it runs;
    in-process calls too). A node a module forgot to guard is refused here rather than registered unchecked."""
    nodes: list[type[io.ComfyNode]] = []
    for name in modules:
        module = importlib.import_module(f".{name}", __name__)
        for node in getattr(module, "NODES"):
            if node not in nodes:
                if not is_guarded(node):
                    raise TypeError(f"{name}.{node.__name__} is not guarded: its module must call guard_nodes(NODES)")
                nodes.append(decorate(node))
    return nodes


class SyncCanvasExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        # Here, not in on_load: ComfyUI 0.3.64 never calls on_load. The shipped workflows' inputs are then
        # in the input folder without copying by hand (missing ones only; a user's file is kept).
        from .files import install_demo_inputs

        install_demo_inputs()
        nodes = collect_nodes()
        _check_prompts(nodes)
        return nodes


def _check_prompts(nodes) -> None:
    """Registers ``guards.fractional_int_marker`` with the running server (none in-process: nothing to do)."""
    try:
        from server import PromptServer
    except ImportError:
        return
    if getattr(PromptServer, "instance", None) is not None:
        PromptServer.instance.add_on_prompt_handler(fractional_int_marker(nodes))


__all__ = ["NODE_MODULES", "SyncCanvasExtension", "collect_nodes"]
