"""The pack's own nodes through the server: a synchronized run, /interrupt, and bad input.

Graphs are built here at the smallest sizes the tiny SD1.5 UNet takes (64 px windows = 8 latent texels).
Tests of a node skip (naming it) while that node is not registered yet.
"""

from __future__ import annotations

import numpy as np
import pytest

from comfy_server import PromptRejected, error_message, status_of
from integration_helpers import assert_interrupt_stops, read_image, saved_images, server_still_serves
from workflow_format import fill_widget_defaults

# Canvas 192x64 px, window 64, stride 32: five views of 8x8 latent texels.
CANVAS_W, CANVAS_H, WINDOW, STRIDE = 192, 64, 64, 32
N_VIEWS = (CANVAS_W - WINDOW) // STRIDE + 1


@pytest.fixture
def require(object_info):
    def check(*node_ids):
        missing = [n for n in node_ids if n not in object_info]
        if missing:
            pytest.skip(f"node(s) not registered yet: {', '.join(missing)}")
    return check


@pytest.fixture
def sync_panorama_graph(object_info):
    """sync_panorama_graph(**options) -> the graph below with every other widget at its default."""
    return lambda **options: fill_widget_defaults(panorama_graph(**options), object_info)


def panorama_graph(steps=2, prefix="sync/pano", mode="case_2", seed=3) -> dict:
    """tiny checkpoint -> prompts -> wide panorama projector -> SyncCanvasKSampler -> save canvas + views."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sync_canvas_tiny_sd15.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a mountain range at dawn", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "SyncCanvasWidePanorama", "inputs": {
            "width": CANVAS_W, "height": CANVAS_H, "window": WINDOW, "stride": STRIDE, "wrap": False}},
        "5": {"class_type": "SyncCanvasKSampler", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "projector": ["4", 0],
            "seed": seed, "steps": steps, "cfg": 7.5, "mode": mode, "scheduler": "ddim_uniform", "eta": 0.0,
            "denoise": 1.0, "max_views_per_batch": 0, "vae": ["1", 2]}},
        "6": {"class_type": "SyncCanvasSaveImage", "inputs": {
            "images": ["5", 1], "filename_prefix": prefix, "projection": "flat"}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["5", 2], "filename_prefix": prefix + "_views"}},
    }


PANO_NODES = ("SyncCanvasWidePanorama", "SyncCanvasKSampler", "SyncCanvasSaveImage")


def test_synchronized_panorama_runs_and_saves_canvas_and_views(comfy, require, sync_panorama_graph):
    require(*PANO_NODES)
    graph = sync_panorama_graph()
    entry = comfy.run(graph, timeout=300)
    assert status_of(entry) == "success", error_message(entry) + comfy.log_tail()
    images = saved_images(graph, entry, comfy.output_dir)
    by_node = {}
    for node_id, path, expected in images:
        pixels = read_image(path)
        assert (pixels.shape[1], pixels.shape[0]) == expected, (node_id, path.name)
        assert pixels.std() > 1e-3, f"{path.name} is flat"
        by_node.setdefault(node_id, []).append(pixels)
    assert len(by_node["6"]) == 1 and by_node["6"][0].shape[:2] == (CANVAS_H, CANVAS_W)
    assert len(by_node["7"]) == N_VIEWS


def test_interrupt_stops_a_long_synchronized_run(comfy, require, sync_panorama_graph):
    require(*PANO_NODES)
    assert_interrupt_stops(comfy, sync_panorama_graph(steps=10_000, prefix="sync/long", seed=4),
                            warm_graph=sync_panorama_graph(steps=1, prefix="sync/warm", seed=4))


def _assert_node_error(comfy, graph, node_id: str, *needles: str) -> str:
    """The prompt fails at node_id with a message containing every needle; the server keeps serving."""
    try:
        entry = comfy.run(graph, timeout=300)
    except PromptRejected as rejected:  # validation caught it: just as good, if it names the node
        assert node_id in rejected.node_errors, str(rejected)
        message = str(rejected)
    else:
        assert status_of(entry) == "error", f"bad input was accepted: {entry.get('outputs')}"
        message = error_message(entry)
        assert f"node {node_id} " in message, message
    for needle in needles:
        assert needle in message, message
    server_still_serves(comfy)
    return message


def test_wrong_latent_size_for_the_projector_is_a_node_error(comfy, require, sync_panorama_graph):
    require(*PANO_NODES)
    graph = sync_panorama_graph(prefix="sync/badlatent")
    graph["8"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    graph["5"]["inputs"]["latent"] = ["8", 0]
    _assert_node_error(comfy, graph, "5", "ValueError", "canonical latent")


def test_controlnet_hint_count_not_matching_views_is_a_node_error(comfy, require, sync_panorama_graph):
    require(*PANO_NODES)
    graph = sync_panorama_graph(prefix="sync/badhints")
    graph["8"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "sync_canvas_tiny_controlnet.safetensors"}}
    graph["9"] = {"class_type": "EmptyImage", "inputs": {"width": WINDOW, "height": WINDOW, "batch_size": N_VIEWS - 2, "color": 0}}
    graph["10"] = {"class_type": "ControlNetApplyAdvanced", "inputs": {
        "positive": ["2", 0], "negative": ["3", 0], "control_net": ["8", 0], "image": ["9", 0],
        "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}}
    graph["5"]["inputs"]["positive"] = ["10", 0]
    graph["5"]["inputs"]["negative"] = ["10", 1]
    _assert_node_error(comfy, graph, "5", "ValueError", f"{N_VIEWS - 2} images", f"{N_VIEWS} views")


def test_per_view_hints_run(comfy, require, sync_panorama_graph):
    """The control path the depth workflows use: one hint per view through ControlNetApplyAdvanced."""
    require(*PANO_NODES)
    graph = sync_panorama_graph(prefix="sync/hints")
    graph["8"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "sync_canvas_tiny_controlnet.safetensors"}}
    graph["9"] = {"class_type": "EmptyImage", "inputs": {"width": WINDOW, "height": WINDOW, "batch_size": N_VIEWS, "color": 0x808080}}
    graph["10"] = {"class_type": "ControlNetApplyAdvanced", "inputs": {
        "positive": ["2", 0], "negative": ["3", 0], "control_net": ["8", 0], "image": ["9", 0],
        "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}}
    graph["5"]["inputs"]["positive"] = ["10", 0]
    graph["5"]["inputs"]["negative"] = ["10", 1]
    entry = comfy.run(graph, timeout=300)
    assert status_of(entry) == "success", error_message(entry)


def test_projector_socket_refuses_other_types(comfy, require, sync_panorama_graph):
    require(*PANO_NODES)
    graph = sync_panorama_graph(prefix="sync/badsocket")
    graph["5"]["inputs"]["projector"] = ["1", 2]  # a VAE where a SYNC_PROJECTOR belongs
    with pytest.raises(PromptRejected) as err:
        comfy.submit(graph)
    assert "5" in err.value.node_errors, str(err.value)
    server_still_serves(comfy)


@pytest.mark.parametrize("prefix", ["../../evil", "/tmp/evil_abs"])
def test_save_canvas_refuses_to_leave_the_output_folder(comfy, require, sync_panorama_graph, prefix):
    require(*PANO_NODES)
    graph = sync_panorama_graph(prefix="sync/ok")
    graph["6"]["inputs"]["filename_prefix"] = prefix
    del graph["7"]
    _assert_node_error(comfy, graph, "6", "ValueError", repr(prefix))
    assert not list(comfy.output_dir.parent.parent.glob("evil*")) and not list(comfy.output_dir.parent.glob("evil*"))


def test_projector_of_another_kind_is_a_node_error(comfy, require, object_info):
    """A wide-panorama projector fed to the 360-only depth renderer: a ValueError naming both kinds."""
    require("SyncCanvasWidePanorama", "SyncCanvasRenderDepth")
    graph = fill_widget_defaults({
        "1": {"class_type": "SyncCanvasWidePanorama", "inputs": {
            "width": CANVAS_W, "height": CANVAS_H, "window": WINDOW, "stride": STRIDE, "wrap": False}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 128, "height": 64, "batch_size": 1, "color": 0}},
        "3": {"class_type": "SyncCanvasRenderDepth", "inputs": {"projector": ["1", 0], "depth": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "sync/badkind"}},
    }, object_info)
    _assert_node_error(comfy, graph, "3", "ValueError", "360 panorama")
