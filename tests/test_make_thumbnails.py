"""scripts/make_thumbnails.py's choices, without running ComfyUI: which saved images a thumbnail shows,
which SD1.5 workflow stands in for an SDXL / Flux one, and the thumbnail's size and caption strip."""

import pathlib
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))
import make_thumbnails as mt  # noqa: E402


def _api(*nodes):
    return {str(i): {"class_type": t, "inputs": {"filename_prefix": p}} for i, (t, p) in enumerate(nodes, 1)}


def test_turntable_wins_then_the_canvas_then_the_first_saved_image():
    frames = [pathlib.Path(f"t{i}.png") for i in range(24)]
    saved = {"x_views": [pathlib.Path("v.png")], "x_turntable": frames, "x": [pathlib.Path("c.png")]}
    api = _api(("SaveImage", "x_views"), ("SaveImage", "x_turntable"), ("SyncCanvasSaveImage", "x"))
    assert mt.main_picture("mesh", api, saved) == frames[::6]  # four frames around the turn
    del saved["x_turntable"]
    assert mt.main_picture("wide", api, saved) == [pathlib.Path("c.png")]
    assert mt.main_picture("ambiguous_image", api, saved) == [pathlib.Path("v.png")]  # both readings


def test_family_workflows_borrow_the_sd15_workflow_with_the_same_figure():
    catalog = [{"id": "a", "family": "sd15"}, {"id": "b", "family": "sd15"}, {"id": "flux_b", "family": "flux"}]
    assert mt.stand_in_for(catalog[2], catalog, {"b": "wide", "flux_b": "wide", "a": "mesh"})["id"] == "b"


def test_thumbnail_is_512_by_384_with_the_pictures_above_a_caption(tmp_path):
    paths = []
    for i, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (100, 50), colour).save(paths[-1])
    thumb = np.asarray(mt.compose(paths, "caption"))
    assert thumb.shape == (384, 512, 3)
    row = thumb[(384 - mt.CAPTION_HEIGHT) // 2]
    assert row[200, 0] > 200 and row[200, 2] < 50 and row[300, 2] > 200 and row[300, 0] < 50  # side by side, centred
    assert (thumb[-mt.CAPTION_HEIGHT:] < 200).any()  # the caption is drawn
