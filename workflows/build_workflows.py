#!/usr/bin/env python
"""Writes every example workflow twice, from one graph description: the UI format ComfyUI lists as a template
(``example_workflows/<Title>.json``, beside its thumbnail ``<Title>.jpg``) and the API format
(``workflows/api/<id>.json``, where ComfyUI does not list it), plus ``workflows/meta/catalog.json`` (id, title
and both paths of every workflow).

    COMFYUI_PATH=/path/to/ComfyUI python workflows/build_workflows.py [--check] [--thumbnails]
    COMFYUI_PATH=/path/to/ComfyUI python workflows/build_workflows.py --pin-core   # refresh core_nodes.json

Widget order comes from the node definitions: this pack's V3 schemas, and ComfyUI's stock nodes as pinned
in ``workflows/meta/core_nodes.json`` (an excerpt of ComfyUI 0.3.64's /object_info), so the files are the same
whichever supported ComfyUI runs the builder, and the UI file's ``widgets_values`` and the API twin's
``inputs`` cannot disagree. ``--check`` writes nothing and exits 1 if a file on disk differs or is left
over. Also writes the demo inputs the workflows load (``inputs/``: a procedural 360 depth map, a mesh, a
splat scene); the pack copies them into ComfyUI's ``input`` folder when they are missing there.
``--thumbnails`` makes missing thumbnails from the README figures (``docs/figures``); the shipped ones are
real demo-model outputs (``scripts/make_thumbnails.py``).

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
if str(PACK_ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(PACK_ROOT / "scripts"))
from workflow_format import TITLE_HEIGHT, estimated_node_size  # noqa: E402  (the editor's sizing, shared with the tests)
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from node_definitions import (  # noqa: E402  (widget order: the pack's schemas, the pinned stock nodes)
    CORE_NODES,
    WIDGET_TYPES,
    core_definitions,
    input_specs,
    load_definitions,
    pack_definitions,
    pin_core_definitions,
    widget_values,
)
CHECKPOINT = "v1-5-pruned-emaonly.safetensors"
DEPTH_CONTROLNET = "control_v11f1p_sd15_depth.pth"
DEPTH_IMAGE = "sync_canvas_room_depth.png"
NEGATIVE = "blurry, lowres, watermark, text"
TEMPLATES = PACK_ROOT / "example_workflows"  # ComfyUI lists every *.json here as one of the pack's templates
API_DIR = HERE / "api"  # not listed by ComfyUI (it globs <pack>/workflows/*.json, not sub-folders)
CATALOG = HERE / "meta" / "catalog.json"  # not workflows/*.json: ComfyUI would list it as a template


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


def _names():
    """nodes/names.py by its path (it imports nothing from ComfyUI; the nodes package does)."""
    if "sync_canvas_names" not in sys.modules:
        spec = importlib.util.spec_from_file_location("sync_canvas_names", PACK_ROOT / "nodes" / "names.py")
        sys.modules["sync_canvas_names"] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules["sync_canvas_names"]


def mode_label(mode: str) -> str:
    """The readable label the sampler's mode combo shows for a mode id (``case_2``, ``stochsync``...)."""
    return _names().mode_label(mode)


def viewer_360(node_id: int, images) -> Node:
    """The pack's 360 viewer on an equirectangular result: looked around in inside the editor after a run."""
    return Node(node_id, "SyncCanvasView360", {"images": images, "fov": 90.0, "yaw": 0.0}, "Look around (360 viewer)")


def _sampler(node_id: int, positive, negative, projector, steps: int, cfg: float, mode: str, vae=True, **extra) -> Node:
    inputs = {"model": link(1), "positive": positive, "negative": negative, "projector": projector, "seed": 0,
              "steps": steps, "cfg": cfg, "mode": mode_label(mode), "scheduler": "ddim_uniform", "eta": 0.0, "denoise": 1.0,
              "max_views_per_batch": 0, "inner_steps": 50, "rgb_every_step": False}
    if vae:  # True: the checkpoint's VAE (node 1, slot 2); or a link to a separate VAE loader
        inputs["vae"] = link(1, 2) if vae is True else vae
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
        viewer_360(9, link(5, 1)),
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
        viewer_360(13, link(9, 1)),
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


TITLES = {
    "wide_panorama": "Wide panorama (SyncTweedies)",
    "panorama360_stochsync": "360 panorama without depth (StochSync)",
    "panorama360_depth": "360 panorama from a depth map (SyncTweedies, ControlNet)",
    "ambiguous_image": "Ambiguous image - rabbit or duck (Visual Anagrams)",
}
"""Template titles (ComfyUI shows the file name): also the UI file's name in example_workflows/."""

THUMBNAILS = {"wide_panorama": "wide_panorama", "panorama360_stochsync": "panorama360",
              "panorama360_depth": "panorama360", "ambiguous_image": "ambiguous_image"}
"""Workflow id -> README figure (docs/figures/<name>.png) its template thumbnail is made from."""

WORKFLOWS = {
    "wide_panorama": wide_panorama,
    "panorama360_stochsync": panorama360_stochsync,
    "panorama360_depth": panorama360_depth,
    "ambiguous_image": ambiguous_image,
}


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


COLUMN_GAP, ROW_GAP = 70, 40


def to_ui(graph: list[Node], definitions: dict) -> dict:
    """The graph as the editor saves it: columns by link depth, each node as big as the editor draws it
    after a run (``workflow_format.estimated_node_size``), none overlapping."""
    depth = _depths(graph)
    order = sorted(graph, key=lambda n: (depth[n.id], n.id))
    links = []
    outgoing: dict[tuple[int, int], list[int]] = {}
    ui_nodes = {}
    for index, node in enumerate(order):
        definition = definitions[node.type]
        inputs = []
        for slot_name, kind, _ in input_specs(definition):
            value = node.inputs.get(slot_name)
            if kind in WIDGET_TYPES and not isinstance(value, tuple):
                continue
            entry = {"name": slot_name, "type": kind, "link": None}
            if kind in WIDGET_TYPES:  # a widget fed by a link: the editor saves it as a socket naming its widget
                entry["widget"] = {"name": slot_name}
            if isinstance(value, tuple):
                link_id = len(links) + 1
                source_type = definitions[next(n.type for n in graph if n.id == value[0])]["output"][value[1]]
                links.append([link_id, value[0], value[1], node.id, len(inputs), source_type])
                outgoing.setdefault(value, []).append(link_id)
                entry["link"] = link_id
            inputs.append(entry)
        ui = {"id": node.id, "type": node.type, "pos": [0, 0], "size": [0, 0],
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
    x = 60
    for column in sorted(set(depth.values())):
        y, width = 60 + TITLE_HEIGHT, 0
        for node in (n for n in order if depth[n.id] == column):
            size = list(estimated_node_size(ui_nodes[node.id]))
            ui_nodes[node.id]["pos"], ui_nodes[node.id]["size"] = [x, y], size
            y += size[1] + TITLE_HEIGHT + ROW_GAP
            width = max(width, size[0])
        x += width + COLUMN_GAP
    return {"last_node_id": max(n.id for n in graph), "last_link_id": len(links),
            "nodes": [ui_nodes[n.id] for n in order], "links": links, "groups": [], "config": {},
            "extra": {"ds": {"scale": 0.6, "offset": [0, 0]}}, "version": 0.4}


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


_LISTED_FAMILIES = ("mesh_workflows", "splat_workflows", "fuse_rule_workflows", "family_workflows")
FAMILY_MODULES = _LISTED_FAMILIES + tuple(sorted(  # any other *_workflows.py beside this file: a family = a file
    p.stem for p in HERE.glob("*_workflows.py") if p.stem not in (*_LISTED_FAMILIES, "build_workflows")))
"""Modules beside this file with more graphs: each has ``WORKFLOWS``, ``INPUT_FILES`` ({file name in
inputs/: function returning its bytes}) and optionally ``TITLES`` / ``THUMBNAILS`` (as this module's) and
``FAMILY_OF`` ({id: model family}, default sd15; the catalog records it);
they import this module as ``build_workflows``."""
TITLE_CHARACTERS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -(),.")


@dataclass
class Catalog:
    graphs: dict = field(default_factory=dict)  # id -> graph function
    inputs: dict = field(default_factory=dict)  # path in inputs/ -> bytes function
    titles: dict = field(default_factory=dict)  # id -> template title
    thumbnails: dict = field(default_factory=dict)  # id -> README figure stem
    families: dict = field(default_factory=dict)  # id -> model family it is made for (default sd15)


def title_of(name: str, titles: dict) -> str:
    title = titles.get(name) or name.replace("_", " ").capitalize()
    bad = set(title) - TITLE_CHARACTERS
    if bad:  # it is a file name and part of a URL: keep it plain
        raise ValueError(f"workflow {name!r}: title {title!r} has characters {sorted(bad)}; use letters, digits, spaces, -(),.")
    return title


def catalog() -> Catalog:
    """Every workflow of this module and of every family, with its inputs, title and thumbnail figure."""
    sys.modules.setdefault("build_workflows", sys.modules[__name__])  # one copy of Node/link for the families
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    out = Catalog(dict(WORKFLOWS), {HERE / "inputs" / DEPTH_IMAGE: room_depth_png}, dict(TITLES), dict(THUMBNAILS))
    for name in FAMILY_MODULES:
        family = importlib.import_module(name)
        out.graphs.update(family.WORKFLOWS)
        out.inputs.update({HERE / "inputs" / file: make for file, make in family.INPUT_FILES.items()})
        out.titles.update(getattr(family, "TITLES", {}))
        out.thumbnails.update(getattr(family, "THUMBNAILS", {}))
        out.families.update(getattr(family, "FAMILY_OF", {}))
    return out


def all_workflows() -> tuple[dict, dict]:
    """``({name: graph function}, {input file path: bytes function})`` of this module and every family."""
    found = catalog()
    return found.graphs, found.inputs


def build_files(definitions: dict) -> dict[pathlib.Path, bytes]:
    """Every generated file: UI templates, API twins, the catalog and the demo inputs (thumbnails aside)."""
    found = catalog()
    files, entries = {}, []
    for name, make in found.graphs.items():
        graph = make()
        title = title_of(name, found.titles)
        ui_path, api_path = TEMPLATES / f"{title}.json", API_DIR / f"{name}.json"
        files[ui_path] = (json.dumps(to_ui(graph, definitions), indent=2) + "\n").encode()
        files[api_path] = (json.dumps(to_api(graph, definitions), indent=2) + "\n").encode()
        entries.append({"id": name, "title": title, "family": found.families.get(name, "sd15"),
                        "ui": ui_path.relative_to(PACK_ROOT).as_posix(),
                        "api": api_path.relative_to(PACK_ROOT).as_posix(),
                        "thumbnail": ui_path.with_suffix(".jpg").relative_to(PACK_ROOT).as_posix()})
    titles = [e["title"] for e in entries]
    if len(set(titles)) != len(titles):
        raise ValueError(f"two workflows share a title: {sorted(t for t in titles if titles.count(t) > 1)}")
    files[CATALOG] = (json.dumps(entries, indent=2) + "\n").encode()
    files.update({path: make() for path, make in found.inputs.items()})
    return files


def leftover_files(files: dict[pathlib.Path, bytes]) -> list[pathlib.Path]:
    """Workflow files on disk the builder did not write (renamed or removed workflows; old twins in workflows/)."""
    expected = set(files) | {p.with_suffix(".jpg") for p in files if p.parent == TEMPLATES}
    on_disk = [*TEMPLATES.glob("*.json"), *TEMPLATES.glob("*.jpg"), *API_DIR.glob("*.json"),
               *HERE.glob("*.json")]
    return sorted(p for p in on_disk if p not in expected)


def make_thumbnails(found: Catalog | None = None, overwrite: bool = False) -> list[pathlib.Path]:
    """``<Title>.jpg`` beside each template, 512x384, from the workflow's README figure (letterboxed on white)."""
    from PIL import Image

    found = found or catalog()
    written = []
    for name in found.graphs:
        target = TEMPLATES / f"{title_of(name, found.titles)}.jpg"
        if target.exists() and not overwrite:
            continue
        figure = PACK_ROOT / "docs" / "figures" / f"{found.thumbnails.get(name, name)}.png"
        if not figure.is_file():
            raise FileNotFoundError(f"no figure {figure.relative_to(PACK_ROOT)} for the thumbnail of {name!r}; "
                                    f"add one or name another in THUMBNAILS")
        picture = Image.open(figure).convert("RGB")
        picture.thumbnail((512, 384), Image.LANCZOS)
        canvas = Image.new("RGB", (512, 384), "white")
        canvas.paste(picture, ((512 - picture.width) // 2, (384 - picture.height) // 2))
        target.parent.mkdir(parents=True, exist_ok=True)
        canvas.save(target, quality=88)
        written.append(target)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    parser.add_argument("--thumbnails", action="store_true", help="also make missing thumbnails from docs/figures")
    parser.add_argument("--pin-core", action="store_true", help="rewrite core_nodes.json from this ComfyUI's stock nodes")
    args = parser.parse_args(argv)
    comfyui = os.environ.get("COMFYUI_PATH")
    if not comfyui:
        print("build_workflows: set COMFYUI_PATH to a ComfyUI checkout (the pack's node definitions need comfy_api)", file=sys.stderr)
        return 2
    if args.pin_core:
        pack = pack_definitions(comfyui)
        types = {node.type for make in catalog().graphs.values() for node in make()} - set(pack)
        types |= set(json.loads(CORE_NODES.read_text())) if CORE_NODES.exists() else set()
        CORE_NODES.write_text(json.dumps(pin_core_definitions(comfyui, types), indent=1) + "\n")  # key order = widget order
        print(f"wrote {CORE_NODES.relative_to(PACK_ROOT)} ({len(types)} stock nodes)")
    files = build_files(load_definitions(comfyui))
    stale = [path for path, data in files.items() if not path.exists() or path.read_bytes() != data]
    leftover = leftover_files(files)
    if args.check:
        for path in stale:
            print(f"build_workflows: {path.relative_to(PACK_ROOT)} is out of date", file=sys.stderr)
        for path in leftover:
            print(f"build_workflows: {path.relative_to(PACK_ROOT)} is not written by the builder (remove it)", file=sys.stderr)
        return 1 if stale or leftover else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[path])
        print(f"wrote {path.relative_to(PACK_ROOT)}")
    for path in leftover:
        path.unlink()
        print(f"removed {path.relative_to(PACK_ROOT)}")
    if args.thumbnails:
        for path in make_thumbnails():
            print(f"wrote {path.relative_to(PACK_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
