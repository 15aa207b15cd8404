"""Sync Canvas: synchronized multi-view diffusion nodes for ComfyUI.

ComfyUI imports this file as a package. Only the V3 entry point lives here; the nodes (the only
code that imports ComfyUI) are imported lazily so that `projectors/` and `samplers/` stay importable
without ComfyUI.
"""

WEB_DIRECTORY = "./web"  # the 360 viewer (web/sync_canvas_360.js), served by ComfyUI to its editor


async def comfy_entrypoint():
    from .nodes import SyncCanvasExtension

    return SyncCanvasExtension()
