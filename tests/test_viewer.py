"""The 360 viewer node (nodes/viewer.py) and its frontend extension's files. Node tests need COMFYUI_PATH;
the editor itself is driven in tests/integration/test_browser.py."""

from __future__ import annotations

import os
import pathlib

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
needs_comfyui = pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH not set: ComfyUI node tests skipped")


def test_the_pack_serves_its_web_folder_without_network_access():
    init = (ROOT / "__init__.py").read_text()
    assert 'WEB_DIRECTORY = "./web"' in init
    script = (ROOT / "web" / "sync_canvas_360.js").read_text()
    assert "SyncCanvasView360" in script and "sync_canvas_360" in script
    for remote in ("http://", "https://", "cdn", "unpkg", "jsdelivr"):
        assert remote not in script.lower(), f"the viewer must not load anything from the network ({remote})"


@needs_comfyui
def test_viewer_saves_the_panorama_to_temp_and_names_it_in_its_ui_output(tiny, tmp_path, monkeypatch):
    import folder_paths

    from sync_canvas.nodes.viewer import UI_KEY, SyncCanvasView360

    monkeypatch.setattr(folder_paths, "get_temp_directory", lambda: str(tmp_path))
    image = torch.rand(1, 16, 32, 3)
    out = SyncCanvasView360.execute(image, 75.0, 10.0)
    shown = out.ui[UI_KEY][0]
    assert shown["type"] == "temp" and shown["fov"] == 75.0 and shown["yaw"] == 10.0
    saved = tmp_path / shown["subfolder"] / shown["filename"]
    from PIL import Image

    with Image.open(saved) as picture:
        assert picture.size == (32, 16)


@needs_comfyui
def test_viewer_refuses_an_image_that_is_not_equirectangular(tiny):
    from sync_canvas.nodes.viewer import SyncCanvasView360

    with pytest.raises(ValueError, match="is 48x16; an equirectangular panorama is twice as wide"):
        SyncCanvasView360.execute(torch.rand(1, 16, 48, 3), 90.0, 0.0)
