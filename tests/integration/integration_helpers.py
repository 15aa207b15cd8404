"""Shared pieces of the integration tests: the shipped workflows, a stock graph, output checks.

Pure (no ComfyUI import): the tests talk to the server over HTTP through scripts/comfy_server.py.
"""

from __future__ import annotations

import json
import pathlib
import time

import numpy as np

from comfy_server import error_message, status_of
from workflow_format import is_api_graph, shipped_workflows

REPO = pathlib.Path(__file__).resolve().parents[2]
WORKFLOWS_DIR = REPO / "workflows"
TEMPLATES_DIR = REPO / "example_workflows"


def workflow_files() -> list[pathlib.Path]:
    """Every shipped workflow file: the UI templates and their API twins."""
    return sorted([*TEMPLATES_DIR.glob("*.json"), *(WORKFLOWS_DIR / "api").glob("*.json")])


def workflow_pairs() -> list[tuple[str, pathlib.Path, pathlib.Path | None]]:
    """(id, UI workflow, its API twin or None) for every workflow in workflows/meta/catalog.json."""
    return [(e["id"], e["ui"], e["api"] if e["api"].is_file() else None) for e in shipped_workflows(REPO)]


def api_workflows() -> list[tuple[str, pathlib.Path]]:
    """(id, path) of every API-format graph shipped (the ones the runner submits)."""
    out = []
    for name, _, api_path in workflow_pairs():
        if api_path is not None and is_api_graph(json.loads(api_path.read_text())):
            out.append((name, api_path))
    return out


# Loader node -> the test-only stand-in (tests/integration/family_stand_ins) with the same outputs, slot for slot.
STAND_INS = {"CheckpointLoaderSimple": "TinyFamilyCheckpoint", "UNETLoader": "TinyFamilyDiffusionModel",
             "DualCLIPLoader": "TinyFamilyTextEncoders", "CLIPLoader": "TinyFamilyTextEncoders",
             "VAELoader": "TinyFamilyVAE", "ControlNetLoader": "TinyFamilyControlNet"}


def workflow_family(name: str) -> str:
    """The model family a shipped workflow is made for (catalog "family"; sd15 when not recorded)."""
    for entry in shipped_workflows(REPO):
        if entry["id"] == name:
            return entry.get("family", "sd15")
    raise KeyError(name)


def with_stand_ins(graph: dict, family: str) -> tuple[dict, list[str]]:
    """A copy of an API graph whose loader nodes load tiny in-memory models of ``family`` instead of files."""
    out, changes = {}, []
    for node_id, node in graph.items():
        stand_in = STAND_INS.get(node["class_type"])
        if stand_in is None:
            out[node_id] = node
            continue
        out[node_id] = {"class_type": stand_in, "inputs": {"family": family}}
        changes.append(f"node {node_id} ({node['class_type']}) -> {stand_in}(family={family})")
    return out, changes


def node_types(path: pathlib.Path) -> set[str]:
    data = json.loads(path.read_text())
    if is_api_graph(data):
        return {node["class_type"] for node in data.values()}
    return {node["type"] for node in data.get("nodes", [])}


def stock_graph(width=64, height=64, batch=1, steps=2, prefix="stock", seed=1) -> dict:
    """CheckpointLoaderSimple -> CLIPTextEncode x2 -> KSampler -> VAEDecode -> SaveImage on the tiny model."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sync_canvas_tiny_sd15.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a mountain lake", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": batch}},
        "5": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
            "seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": prefix}},
    }


def read_image(path: pathlib.Path) -> np.ndarray:
    """[H, W, C] float array in [0, 1] from a saved PNG."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0


# Expected image sizes are read off the graph for the nodes whose output size their inputs fix;
# for any other node the size check is skipped (the other output checks still run).
def _latent_size(graph, link):
    """(width, height) in pixels of the LATENT behind `link` (None when it cannot be told from the graph)."""
    node = graph[str(link[0])]
    kind, inputs = node["class_type"], node["inputs"]
    if kind == "EmptyLatentImage":
        return inputs["width"], inputs["height"]
    if kind in ("KSampler", "KSamplerAdvanced") and isinstance(inputs.get("latent_image"), list):
        return _latent_size(graph, inputs["latent_image"])
    if kind == "SyncCanvasKSampler" and link[1] == 0:
        return _projector_canvas(graph, inputs["projector"])
    if kind == "SyncCanvasEmptyLatent":
        return _projector_canvas(graph, inputs["projector"])
    return None


def _projector_canvas(graph, link):
    """(width, height) of the canvas of the projector node behind `link`, where its inputs fix it."""
    node = graph[str(link[0])]
    kind, inputs = node["class_type"], node["inputs"]
    if kind == "SyncCanvasWidePanorama":
        return inputs["width"], inputs["height"]
    if kind == "SyncCanvas360Panorama" and inputs.get("width"):
        return inputs["width"], inputs["width"] // 2
    if kind == "SyncCanvasAnagram":
        return inputs["size"], inputs["size"]
    return None


def _projector_view(graph, link):
    """(width, height) of one view of the projector node behind `link`."""
    node = graph[str(link[0])]
    key = {"SyncCanvasWidePanorama": "window", "SyncCanvas360Panorama": "view_size",
           "SyncCanvasAnagram": "size"}.get(node["class_type"])
    return (node["inputs"][key], node["inputs"][key]) if key else None


def expected_image_size(graph: dict, link) -> tuple[int, int] | None:
    """(width, height) the IMAGE behind `link` must have, where the graph says; None when it does not."""
    node = graph[str(link[0])]
    kind, inputs = node["class_type"], node["inputs"]
    if kind == "VAEDecode" and isinstance(inputs.get("samples"), list):
        return _latent_size(graph, inputs["samples"])
    if kind in ("SyncCanvasRenderViews", "SyncCanvasRenderDepth"):
        return _projector_view(graph, inputs["projector"])
    if kind == "SyncCanvasKSampler":
        if link[1] == 1:
            return _projector_canvas(graph, inputs["projector"])
        if link[1] == 2:
            return _projector_view(graph, inputs["projector"])
    return None


def saved_images(graph: dict, entry: dict, output_dir: pathlib.Path) -> list[tuple[str, pathlib.Path, tuple | None]]:
    """(saving node id, file, expected (w, h) or None) for every image an output node of `graph` saved."""
    out = []
    for node_id, result in entry.get("outputs", {}).items():
        node = graph.get(node_id, {})
        link = node.get("inputs", {}).get("images")
        expected = expected_image_size(graph, link) if isinstance(link, list) else None
        for item in result.get("images", []):
            if item.get("type") == "output":
                out.append((node_id, output_dir / item.get("subfolder", "") / item["filename"], expected))
    return out


def server_still_serves(comfy) -> None:
    """The server process lives and still executes a prompt (a model-free one: this is about the server)."""
    assert comfy.alive(), comfy.log_tail()
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0xFF0000}},
             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "still_serving"}}}
    entry = comfy.run(graph, timeout=60)
    assert status_of(entry) == "success", error_message(entry)


def assert_interrupt_stops(comfy, graph: dict, warm_graph: dict | None = None) -> None:
    """Submits a run far too long to finish, interrupts it mid-sampling, wants 'interrupted' within 5 s."""
    if warm_graph is not None:  # loaders and encoders cached, so the long run is sampling within a second
        assert status_of(comfy.run(warm_graph, timeout=180)) == "success"
    prompt_id = comfy.submit(graph)
    _wait_until_running(comfy, prompt_id)
    time.sleep(1.5)
    assert comfy.history(prompt_id) is None, "the 'long' run finished before it could be interrupted"
    start = time.perf_counter()
    comfy.interrupt()
    entry = comfy.wait(prompt_id, timeout=30)
    elapsed = time.perf_counter() - start
    assert status_of(entry) == "interrupted", entry["status"]
    assert elapsed < 5.0, f"interrupt took {elapsed:.1f} s"
    server_still_serves(comfy)


def _wait_until_running(comfy, prompt_id: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = comfy.get("/queue").get("queue_running", [])
        if any(item[1] == prompt_id for item in running):
            return
        time.sleep(0.1)
    raise AssertionError(f"prompt {prompt_id} never started running")
