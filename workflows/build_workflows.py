#!/usr/bin/env python
"""Writes every example workflow twice, from one graph description: UI format (X.json) and API format (X_api.json).

    COMFYUI_PATH=/path/to/ComfyUI python workflows/build_workflows.py [--check]

Widget order comes from the node definitions themselves (ComfyUI's stock nodes' INPUT_TYPES and this
pack's V3 schemas, i.e. what /object_info serves), so the UI twin's ``widgets_values`` and the API twin's
``inputs`` cannot disagree. ``--check`` writes nothing and exits 1 if a file on disk differs. Also writes
the procedural 360 depth map the depth workflow loads (``inputs/sync_canvas_room_depth.png``; copy it into
ComfyUI's ``input`` folder).

Defaults are the papers' (notes/prior-art.md): SyncTweedies wide image 512x3072, stride 64, 50 steps,
CFG 7.5; SyncTweedies 360: 8 views, fov 72, 30 steps, CFG 25 with depth ControlNet (scale 0.7 -> 0.9,
here 0.8); StochSync 360: 2x5 views, fov 72, 25 steps, t 900 -> 270, CFG 7.5; Visual Anagrams: 2 views
(identity, rotate_cw), 30 steps, CFG 10.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import sys
from dataclasses import dataclass, field

HERE = pathlib.Path(__file__).resolve().parent
PACK_ROOT = HERE.parent
CHECKPOINT = "v1-5-pruned-emaonly.safetensors"
DEPTH_CONTROLNET = "control_v11f1p_sd15_depth.pth"
DEPTH_IMAGE = "sync_canvas_room_depth.png"
NEGATIVE = "blurry, lowres, watermark, text"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


@dataclass
class Node:
    """One graph node: ``inputs`` maps names to widget values or ``(source node id, output slot)`` links."""

    id: int
    type: str
    inputs: dict = field(default_factory=dict)
    title: str | None = None


def link(node_id: int, slot: int = 0) -> tuple[int, int]:
    return (node_id, slot)


def _loaders(prompt: str, negative: str = NEGATIVE) -> list[Node]:
    return [
        Node(1, "CheckpointLoaderSimple", {"ckpt_name": CHECKPOINT}),
        Node(2, "CLIPTextEncode", {"text": prompt, "clip": link(1, 1)}, "Positive prompt"),
        Node(3, "CLIPTextEncode", {"text": negative, "clip": link(1, 1)}, "Negative prompt"),
    ]


def _sampler(node_id: int, positive, negative, projector, steps: int, cfg: float, mode: str, vae=True, **extra) -> Node:
    inputs = {"model": link(1), "positive": positive, "negative": negative, "projector": projector, "seed": 0,
              "steps": steps, "cfg": cfg, "mode": mode, "scheduler": "ddim_uniform", "eta": 0.0, "denoise": 1.0,
              "max_views_per_batch": 0, "inner_steps": 25, "rgb_every_step": False}
    if vae:
        inputs["vae"] = link(1, 2)
    inputs.update(extra)
    return Node(node_id, "SyncCanvasKSampler", inputs)


def wide_panorama() -> list[Node]:
    return _loaders("a photo of a mountain range at sunrise, lake in the foreground, highly detailed") + [
        Node(4, "SyncCanvasWidePanorama", {"width": 3072, "height": 512, "window": 512, "stride": 64, "wrap": False}),
        _sampler(5, link(2), link(3), link(4), steps=50, cfg=7.5, mode="case_2"),
        Node(6, "SyncCanvasSaveImage", {"images": link(5, 1), "filename_prefix": "SyncCanvas/wide_panorama", "projection": "flat"}),
        Node(7, "SaveImage", {"images": link(5, 2), "filename_prefix": "SyncCanvas/wide_panorama_views"}),
    ]


def panorama360_stochsync() -> list[Node]:
    return _loaders("a cozy living room with a fireplace, bookshelves and large windows, 360 view") + [
        Node(4, "SyncCanvas360Panorama", {"rig": "stochsync", "view_size": 512, "fov": 72.0, "pitch": 0.0,
                                          "pole_views": False, "width": 2048, "interpolation": "nearest"}),
        # Off (weight 0): StochSync denoises groups of non-overlapping views, so no neighbour is ever in the call.
        Node(8, "SyncCanvasCrossViewAttention", {"model": link(1), "projector": link(4), "weight": 0.0},
             "Cross-view attention (off; StochSync groups share no neighbours)"),
        _sampler(5, link(2), link(3), link(4), steps=25, cfg=7.5, mode="stochsync", eta=1.0, model=link(8)),
        Node(6, "SyncCanvasSaveImage", {"images": link(5, 1), "filename_prefix": "SyncCanvas/panorama360_stochsync", "projection": "equirectangular"}),
        Node(7, "SaveImage", {"images": link(5, 2), "filename_prefix": "SyncCanvas/panorama360_stochsync_views"}),
    ]


def panorama360_depth() -> list[Node]:
    return _loaders("a medieval castle hall with stone walls, banners and torches, 360 view") + [
        Node(4, "SyncCanvas360Panorama", {"rig": "synctweedies", "view_size": 512, "fov": 72.0, "pitch": 0.0,
                                          "pole_views": False, "width": 2048, "interpolation": "nearest"}),
        Node(5, "LoadImage", {"image": DEPTH_IMAGE}, "360 depth map (near = bright)"),
        Node(6, "SyncCanvasRenderDepth", {"projector": link(4), "depth": link(5), "encoding": "near_bright"}),
        Node(7, "ControlNetLoader", {"control_net_name": DEPTH_CONTROLNET}),
        Node(8, "ControlNetApplyAdvanced", {"positive": link(2), "negative": link(3), "control_net": link(7),
                                            "image": link(6), "strength": 0.8, "start_percent": 0.0, "end_percent": 1.0}),
        # SyncTweedies A1.2 uses SyncMVD's modified self-attention for 360 panoramas: neighbours + front view.
        Node(12, "SyncCanvasCrossViewAttention", {"model": link(1), "projector": link(4), "neighbours": "overlap",
                                                  "weight": 1.0, "reference_view": 0, "reference_end": 0.2},
             "Cross-view attention (SyncMVD)"),
        _sampler(9, link(8, 0), link(8, 1), link(4), steps=30, cfg=25.0, mode="case_2", model=link(12)),
        Node(10, "SyncCanvasSaveImage", {"images": link(9, 1), "filename_prefix": "SyncCanvas/panorama360_depth", "projection": "equirectangular"}),
        Node(11, "SaveImage", {"images": link(9, 2), "filename_prefix": "SyncCanvas/panorama360_depth_views"}),
    ]


def ambiguous_image() -> list[Node]:
    nodes = _loaders("an oil painting of a rabbit")
    return nodes + [
        Node(4, "CLIPTextEncode", {"text": "an oil painting of a duck", "clip": link(1, 1)}, "Prompt of the rotated view"),
        Node(5, "SyncCanvasAnagram", {"size": 512, "views": "identity, rotate_cw"}),
        Node(6, "SyncCanvasPerViewConditioning", {"projector": link(5), "assignment": "0,1", "prompt_0": link(2), "prompt_1": link(4)}),
        _sampler(7, link(6), link(3), link(5), steps=30, cfg=10.0, mode="case_2", vae=False),
        Node(8, "VAEDecode", {"samples": link(7, 0), "vae": link(1, 2)}),
        Node(9, "SyncCanvasSaveImage", {"images": link(8), "filename_prefix": "SyncCanvas/ambiguous_image", "projection": "flat"}),
        Node(10, "SyncCanvasRenderViews", {"projector": link(5), "image": link(8), "interpolation": "nearest"}),
        Node(11, "SaveImage", {"images": link(10), "filename_prefix": "SyncCanvas/ambiguous_image_views"}),
    ]


WORKFLOWS = {
    "wide_panorama": wide_panorama,
    "panorama360_stochsync": panorama360_stochsync,
    "panorama360_depth": panorama360_depth,
    "ambiguous_image": ambiguous_image,
}


# --------------------------------------------------------------------------------------------------
# node definitions (what /object_info serves)
def load_definitions(comfyui_path: str) -> dict[str, dict]:
    """``{node type: V1 info}`` for ComfyUI's stock nodes and this pack's nodes (needs a ComfyUI checkout)."""
    if comfyui_path not in sys.path:
        sys.path.insert(0, comfyui_path)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401
    import nodes

    if "sync_canvas" not in sys.modules:  # the pack as a package, as tests/conftest.py imports it
        spec = importlib.util.spec_from_file_location("sync_canvas", PACK_ROOT / "__init__.py", submodule_search_locations=[str(PACK_ROOT)])
        pack = importlib.util.module_from_spec(spec)
        sys.modules["sync_canvas"] = pack
        spec.loader.exec_module(pack)
    from sync_canvas.nodes import collect_nodes

    definitions = {}
    for name, cls in nodes.NODE_CLASS_MAPPINGS.items():
        outputs = list(cls.RETURN_TYPES)
        definitions[name] = {"input": cls.INPUT_TYPES(), "output": outputs,
                             "output_name": list(getattr(cls, "RETURN_NAMES", None) or outputs)}
    for cls in collect_nodes():
        info = cls.GET_NODE_INFO_V1()
        definitions[info["name"]] = {"input": info["input"], "output": list(info["output"]), "output_name": list(info["output_name"])}
    return definitions


def input_specs(definition: dict) -> list[tuple[str, str, dict]]:
    """(name, type, options) of every input, required then optional, in declaration order."""
    specs = []
    for section in ("required", "optional"):
        for name, spec in definition["input"].get(section, {}).items():
            kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
            specs.append((name, "COMBO" if isinstance(kind, list) else kind, options))
    return specs


def widget_values(node: Node, definition: dict) -> list:
    """The UI ``widgets_values``: widget inputs in order, plus the control value after seeds / uploads."""
    values = []
    for name, kind, options in input_specs(definition):
        if kind not in WIDGET_TYPES:
            continue
        value = node.inputs.get(name, options.get("default"))
        if kind == "COMBO" and value is None:
            choices = definition["input"].get("required", {}).get(name, [[None]])[0]
            value = choices[0] if isinstance(choices, list) else None
        values.append(value)
        if options.get("control_after_generate"):
            values.append("fixed")
        if options.get("image_upload"):
            values.append("image")
    return values


# --------------------------------------------------------------------------------------------------
# the two formats
def to_api(graph: list[Node], definitions: dict) -> dict:
    prompt = {}
    for node in graph:
        inputs = {}
        for name, kind, options in input_specs(definitions[node.type]):
            if name in node.inputs:
                value = node.inputs[name]
                inputs[name] = [str(value[0]), value[1]] if isinstance(value, tuple) else value
            elif kind in WIDGET_TYPES and "default" in options:
                inputs[name] = options["default"]
        unknown = set(node.inputs) - {n for n, _, _ in input_specs(definitions[node.type])}
        if unknown:
            raise ValueError(f"node {node.id} ({node.type}) has no inputs named {sorted(unknown)}")
        prompt[str(node.id)] = {"class_type": node.type, "inputs": inputs, "_meta": {"title": node.title or node.type}}
    return prompt


def _depths(graph: list[Node]) -> dict[int, int]:
    depth: dict[int, int] = {}
    by_id = {n.id: n for n in graph}

    def visit(node_id: int) -> int:
        if node_id not in depth:
            sources = [v[0] for v in by_id[node_id].inputs.values() if isinstance(v, tuple)]
            depth[node_id] = 1 + max((visit(s) for s in sources), default=-1)
        return depth[node_id]

    for node in graph:
        visit(node.id)
    return depth


def to_ui(graph: list[Node], definitions: dict) -> dict:
    depth = _depths(graph)
    order = sorted(graph, key=lambda n: (depth[n.id], n.id))
    links, rows = [], {}
    outgoing: dict[tuple[int, int], list[int]] = {}
    ui_nodes = {}
    for index, node in enumerate(order):
        definition = definitions[node.type]
        inputs = []
        for slot_name, kind, _ in input_specs(definition):
            if kind in WIDGET_TYPES:
                continue
            entry = {"name": slot_name, "type": kind, "link": None}
            value = node.inputs.get(slot_name)
            if isinstance(value, tuple):
                link_id = len(links) + 1
                source_type = definitions[next(n.type for n in graph if n.id == value[0])]["output"][value[1]]
                links.append([link_id, value[0], value[1], node.id, len(inputs), source_type])
                outgoing.setdefault(value, []).append(link_id)
                entry["link"] = link_id
            inputs.append(entry)
        column = depth[node.id]
        row = rows.get(column, 0)
        height = 60 + 26 * (len(inputs) + len(widget_values(node, definition)))
        rows[column] = row + height + 40
        ui = {"id": node.id, "type": node.type, "pos": [60 + 380 * column, 60 + row], "size": [340, height],
              "flags": {}, "order": index, "mode": 0, "inputs": inputs, "outputs": [],
              "properties": {"Node name for S&R": node.type}, "widgets_values": widget_values(node, definition)}
        if node.title:
            ui["title"] = node.title
        ui_nodes[node.id] = ui
    for node in order:
        definition = definitions[node.type]
        ui_nodes[node.id]["outputs"] = [
            {"name": name, "type": kind, "links": outgoing.get((node.id, slot)) or None, "slot_index": slot}
            for slot, (kind, name) in enumerate(zip(definition["output"], definition["output_name"]))
        ]
    return {"last_node_id": max(n.id for n in graph), "last_link_id": len(links),
            "nodes": [ui_nodes[n.id] for n in order], "links": links, "groups": [], "config": {},
            "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}}, "version": 0.4}


# --------------------------------------------------------------------------------------------------
# the procedural depth map the depth workflow loads
def room_depth_png(width: int = 512) -> bytes:
    """Equirect disparity of a 6 x 3 x 8 m box room seen from 1.6 m up, near = bright, as 8-bit PNG bytes."""
    import io

    import numpy as np
    from PIL import Image

    height = width // 2
    lon = ((np.arange(width) + 0.5) / width - 0.5) * 2 * np.pi
    lat = (0.5 - (np.arange(height) + 0.5) / height) * np.pi
    lon, lat = np.meshgrid(lon, lat)
    d = np.stack([np.cos(lat) * np.sin(lon), np.sin(lat), np.cos(lat) * np.cos(lon)])
    half_extent = np.array([3.0, 1.5, 4.0])[:, None, None]
    centre_offset = np.array([0.0, 0.1, 0.0])[:, None, None]  # eye 1.6 m above a 3 m tall room's floor
    with np.errstate(divide="ignore"):
        distance = np.min(np.where(d > 0, (half_extent - centre_offset) / d, (-half_extent - centre_offset) / d), axis=0)
    disparity = 1.0 / distance
    disparity = (disparity - disparity.min()) / (disparity.max() - disparity.min())
    buffer = io.BytesIO()
    Image.fromarray((disparity * 255).round().astype(np.uint8), mode="L").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


FAMILY_MODULES = ("mesh_workflows", "splat_workflows", "fuse_rule_workflows")
"""Modules beside this file with more graphs: each has ``WORKFLOWS`` and ``INPUT_FILES`` ({file name in
inputs/: function returning its bytes}); they import this module as ``build_workflows``."""


def all_workflows() -> tuple[dict, dict]:
    """``({name: graph function}, {input file path: bytes function})`` of this module and every family."""
    sys.modules.setdefault("build_workflows", sys.modules[__name__])  # one copy of Node/link for the families
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    graphs, inputs = dict(WORKFLOWS), {HERE / "inputs" / DEPTH_IMAGE: room_depth_png}
    for name in FAMILY_MODULES:
        family = importlib.import_module(name)
        graphs.update(family.WORKFLOWS)
        inputs.update({HERE / "inputs" / file: make for file, make in family.INPUT_FILES.items()})
    return graphs, inputs


def build_files(definitions: dict) -> dict[pathlib.Path, bytes]:
    graphs, inputs = all_workflows()
    files = {}
    for name, make in graphs.items():
        graph = make()
        files[HERE / f"{name}.json"] = (json.dumps(to_ui(graph, definitions), indent=2) + "\n").encode()
        files[HERE / f"{name}_api.json"] = (json.dumps(to_api(graph, definitions), indent=2) + "\n").encode()
    files.update({path: make() for path, make in inputs.items()})
    return files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    args = parser.parse_args(argv)
    comfyui = os.environ.get("COMFYUI_PATH")
    if not comfyui:
        print("build_workflows: set COMFYUI_PATH to a ComfyUI checkout (the node definitions come from it)", file=sys.stderr)
        return 2
    files = build_files(load_definitions(comfyui))
    stale = [path for path, data in files.items() if not path.exists() or path.read_bytes() != data]
    if args.check:
        for path in stale:
            print(f"build_workflows: {path.relative_to(PACK_ROOT)} is out of date", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[path])
        print(f"wrote {path.relative_to(PACK_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
