"""The graph editor's workflow format (UI, schema 0.4) checked and converted to ComfyUI's API format.

Pure standard library; the node definitions come from a running server's GET /object_info.
ComfyUI has no Python UI->API converter (the frontend's graphToPrompt does it in JS); these are the
rules it follows, as recorded in notes/comfyui-integration.md §1e and the frontend 1.27 sources:
- UI top level: last_node_id, last_link_id, nodes[], links[], version (0.4).
- node: id, type, pos, size, flags, order, mode (0 run, 2 muted, 4 bypassed), properties; inputs/outputs.
- link: [link_id, origin_id, origin_slot, target_id, target_slot, TYPE], mirrored by
  nodes[origin].outputs[origin_slot].links and nodes[target].inputs[target_slot].link.
- widgets_values: one value per widget input in /object_info input_order (required, then optional),
  plus the control_after_generate mode after an INT with that option (or, lacking the option, named
  seed / noise_seed) and after a COMBO with it, plus the upload widget's value after *_upload combos.
"""

from __future__ import annotations

import math
import re

FRONTEND_ONLY_NODES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
CONTROL_AFTER_GENERATE_VALUES = ("fixed", "increment", "decrement", "randomize", True, False)
UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload")
MODE_ALWAYS, MODE_NEVER, MODE_BYPASS = 0, 2, 4


def input_specs(info: dict) -> list[tuple[str, object, dict]]:
    """(name, type, options) of a node's inputs in input_order: required, then optional (hidden left out)."""
    order = info.get("input_order") or {s: list(info.get("input", {}).get(s, {})) for s in ("required", "optional")}
    specs = []
    for section in ("required", "optional"):
        defs = info.get("input", {}).get(section, {})
        for name in order.get(section, []):
            spec = defs[name]
            specs.append((name, spec[0], spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}))
    return specs


def is_widget(input_type, options: dict) -> bool:
    """A widget (value stored in widgets_values) rather than a socket: primitive types and combos, and
    newer ComfyUI's multi-type inputs that carry a widget (``widgetType``, e.g. 0.33.0's Preview3D model_file:
    "STRING,FILE_3D_GLB,...")."""
    if options.get("forceInput"):
        return False
    return isinstance(input_type, list) or input_type in WIDGET_TYPES or options.get("widgetType") in WIDGET_TYPES


def widget_layout(info: dict) -> list[tuple[str, int]]:
    """(widget input name, number of widgets_values slots it takes: 1, or 2 with a control/upload value)."""
    layout = []
    for name, input_type, options in input_specs(info):
        if not is_widget(input_type, options):
            continue
        extra = 0
        if input_type == "INT":
            extra = int(bool(options.get("control_after_generate", name in ("seed", "noise_seed"))))
        elif isinstance(input_type, list) or input_type == "COMBO":
            extra = int(bool(options.get("control_after_generate")) or any(options.get(k) for k in UPLOAD_OPTIONS))
        layout.append((name, 1 + extra))
    return layout


def widget_default(input_type, options: dict):
    """The value a fresh widget shows: its default, else a combo's first option."""
    if "default" in options:
        return options["default"]
    combo = input_type if isinstance(input_type, list) else options.get("options")
    return combo[0] if combo else None


def widget_values_by_name(node: dict, info: dict) -> dict:
    """{widget input name: value} read from a UI node's widgets_values (list or name-keyed dict)."""
    values = node.get("widgets_values")
    if values is None:
        return {}
    if isinstance(values, dict):
        return {name: values[name] for name, _ in widget_layout(info) if name in values}
    out, i = {}, 0
    for name, slots in widget_layout(info):
        if i < len(values):
            out[name] = values[i]
        i += slots
    return out


def _links_by_id(ui: dict) -> dict:
    return {link[0]: link for link in ui.get("links", []) if isinstance(link, list) and link}


def validate_ui_workflow(ui: dict, object_info: dict) -> list[str]:
    """Everything wrong with a UI-format workflow, as readable lines ([] = valid).

    Checks the schema-0.4 shape, link/slot consistency both ways, socket and output types against
    /object_info, that every required socket is connected, and widgets_values count and kinds.
    """
    problems = _check_top_level(ui)
    if problems:
        return problems
    nodes, problems = _check_node_fields(ui)
    problems += _check_links(ui, nodes)
    for node in nodes.values():
        problems += _check_node_against_definition(node, object_info, f"node {node.get('id')!r} ({node.get('type')})")
    return problems


def _check_top_level(ui: dict) -> list[str]:
    problems = []
    for key, kind in (("last_node_id", (int, str)), ("last_link_id", int), ("nodes", list), ("links", list),
                      ("version", (int, float))):
        if key not in ui:
            problems.append(f"top level: missing required key {key!r}")
        elif not isinstance(ui[key], kind) or isinstance(ui[key], bool):
            problems.append(f"top level: {key!r} has type {type(ui[key]).__name__}")
    return problems


def _check_node_fields(ui: dict) -> tuple[dict, list[str]]:
    """({node id: node}, problems with the required node fields and ids)."""
    problems, nodes = [], {}
    for node in ui["nodes"]:
        where = f"node {node.get('id')!r} ({node.get('type')})"
        for key, kind in (("id", (int, str)), ("type", str), ("pos", (list, dict)), ("size", (list, dict)),
                          ("flags", dict), ("order", int), ("mode", int), ("properties", dict)):
            if not isinstance(node.get(key), kind) or isinstance(node.get(key), bool):
                problems.append(f"{where}: field {key!r} missing or of type {type(node.get(key)).__name__}")
        for key in ("pos", "size"):
            if isinstance(node.get(key), list) and len(node[key]) != 2:
                problems.append(f"{where}: {key} must be [x, y], got {node[key]!r}")
        if node.get("id") in nodes:
            problems.append(f"{where}: duplicate node id")
        nodes[node.get("id")] = node
    int_ids = [n for n in nodes if isinstance(n, int)]
    if int_ids and isinstance(ui["last_node_id"], int) and ui["last_node_id"] < max(int_ids):
        problems.append(f"top level: last_node_id {ui['last_node_id']} < largest node id {max(int_ids)}")
    return nodes, problems


def _check_links(ui: dict, nodes: dict) -> list[str]:
    """Every link 6-tuple agrees with both ends' slots, and every slot's link ids name such a link."""
    problems, links = [], _links_by_id(ui)
    for link in ui["links"]:
        if not (isinstance(link, list) and len(link) == 6):
            problems.append(f"link {link!r}: must be [id, origin_id, origin_slot, target_id, target_slot, type]")
            continue
        link_id, origin_id, origin_slot, target_id, target_slot, link_type = link
        if link_id > ui["last_link_id"]:
            problems.append(f"link {link_id}: id above last_link_id {ui['last_link_id']}")
        origin, target = nodes.get(origin_id), nodes.get(target_id)
        if origin is None or target is None:
            problems.append(f"link {link_id}: node {origin_id if origin is None else target_id} does not exist")
            continue
        outputs, inputs = origin.get("outputs") or [], target.get("inputs") or []
        if not 0 <= origin_slot < len(outputs) or link_id not in (outputs[origin_slot].get("links") or []):
            problems.append(f"link {link_id}: not listed in node {origin_id} outputs[{origin_slot}].links")
        elif outputs[origin_slot].get("type") not in (link_type, "*"):
            problems.append(f"link {link_id}: type {link_type} but node {origin_id} output {origin_slot} "
                            f"is {outputs[origin_slot].get('type')}")
        if not 0 <= target_slot < len(inputs) or inputs[target_slot].get("link") != link_id:
            problems.append(f"link {link_id}: node {target_id} inputs[{target_slot}].link is not {link_id}")
    for node in nodes.values():
        where = f"node {node.get('id')!r} ({node.get('type')})"
        for slot, inp in enumerate(node.get("inputs") or []):
            if inp.get("link") is not None and (inp["link"] not in links or links[inp["link"]][3] != node["id"]
                                                or links[inp["link"]][4] != slot):
                problems.append(f"{where}: input {inp.get('name')!r} names link {inp['link']} that does not end here")
        for slot, out in enumerate(node.get("outputs") or []):
            for link_id in out.get("links") or []:
                if link_id not in links or links[link_id][1] != node["id"] or links[link_id][2] != slot:
                    problems.append(f"{where}: output {out.get('name')!r} names link {link_id} that does not start here")
    return problems


def _check_node_against_definition(node: dict, object_info: dict, where: str) -> list[str]:
    if node.get("type") in FRONTEND_ONLY_NODES:
        return []
    info = object_info.get(node.get("type"))
    if info is None:
        return [f"{where}: node type is not registered in /object_info"]
    problems = []
    specs = {name: (t, o) for name, t, o in input_specs(info)}
    required = set(info.get("input", {}).get("required", {}))
    sockets = {inp.get("name"): inp for inp in node.get("inputs") or []}
    for name, inp in sockets.items():
        if name not in specs:
            problems.append(f"{where}: input {name!r} is not an input of {node['type']}")
            continue
        input_type, options = specs[name]
        expected = "COMBO" if isinstance(input_type, list) else input_type
        # "A,B,C" is a multi-type input (newer ComfyUI's MultiType): the editor accepts any of the types
        accepted = {expected, "*"} | (set(expected.split(",")) if isinstance(expected, str) else set())
        if inp.get("type") not in accepted and not (expected == "COMBO" and inp.get("widget")):
            problems.append(f"{where}: input {name!r} has type {inp.get('type')}, {node['type']} takes {expected}")
    for name, (input_type, options) in specs.items():
        if (name in required and not is_widget(input_type, options) and node.get("mode") not in (MODE_NEVER, MODE_BYPASS)
                and sockets.get(name, {}).get("link") is None):
            problems.append(f"{where}: required input {name!r} is not connected")
    for slot, out in enumerate(node.get("outputs") or []):
        types = info.get("output", [])
        if slot >= len(types) or out.get("type") not in (types[slot], "*"):
            problems.append(f"{where}: output {slot} has type {out.get('type')}, {node['type']} gives "
                            f"{types[slot] if slot < len(types) else 'nothing'}")
    values = node.get("widgets_values")
    layout = widget_layout(info)
    if isinstance(values, list):
        want = sum(slots for _, slots in layout)
        if len(values) != want:
            names = ", ".join(f"{n}(+control)" if s == 2 else n for n, s in layout)
            problems.append(f"{where}: widgets_values has {len(values)} values, {node['type']} has {want}: {names}")
        else:
            problems += _check_widget_kinds(values, layout, specs, where)
    elif values is not None and not isinstance(values, dict):
        problems.append(f"{where}: widgets_values must be a list, got {type(values).__name__}")
    return problems


def _check_widget_kinds(values: list, layout, specs, where: str) -> list[str]:
    """Each value fits its widget (catches values shifted by one, the usual widgets_values mistake)."""
    problems, i = [], 0
    for name, slots in layout:
        value, (input_type, options) = values[i], specs[name]
        i += slots
        combo = input_type if isinstance(input_type, list) else options.get("options") if input_type == "COMBO" else None
        if combo is not None:
            # A file picker (checkpoint, ControlNet, image) lists what this machine has, not what the workflow may name.
            if value not in combo and not (isinstance(value, str) and re.search(r"\.[A-Za-z0-9]{1,12}$", value)):
                problems.append(f"{where}: widget {name!r} = {value!r} is not one of its options {combo[:8]}")
        elif not _fits(input_type, value):
            problems.append(f"{where}: widget {name!r} got {value!r}, not a valid {input_type} value")
        elif input_type in ("INT", "FLOAT"):
            low, high = options.get("min"), options.get("max")
            if (low is not None and value < low) or (high is not None and value > high):
                problems.append(f"{where}: widget {name!r} = {value!r} is outside [{low}, {high}]")
        if slots == 2 and not any(options.get(k) for k in UPLOAD_OPTIONS):
            if values[i - 1] not in CONTROL_AFTER_GENERATE_VALUES:
                problems.append(f"{where}: after {name!r} expected a control_after_generate mode, got {values[i - 1]!r}")
    return problems


def _fits(input_type, value) -> bool:
    if isinstance(value, bool):
        return input_type == "BOOLEAN"
    return {"INT": isinstance(value, int), "FLOAT": isinstance(value, (int, float)),
            "STRING": isinstance(value, str), "BOOLEAN": False}.get(input_type, True)


def ui_to_api(ui: dict, object_info: dict) -> dict:
    """The API-format graph (/prompt body "prompt") the graph editor would submit for this UI workflow.

    Muted nodes are dropped, bypassed ones are wired through (first input of the same type), Reroutes
    are followed, PrimitiveNode values are inlined, Notes are ignored. Node ids become strings.
    """
    nodes = {node["id"]: node for node in ui["nodes"]}
    links = _links_by_id(ui)

    def source_of(link_id):
        """[origin id, slot] or ("value", v) after following Reroutes, bypassed nodes and primitives."""
        _, origin_id, origin_slot, _, _, link_type = links[link_id]
        origin = nodes[origin_id]
        if origin["type"] == "Reroute" or origin.get("mode") == MODE_BYPASS:
            for inp in origin.get("inputs") or []:
                if inp.get("link") is not None and (origin["type"] == "Reroute" or inp.get("type") in (link_type, "*")):
                    return source_of(inp["link"])
            return None
        if origin["type"] == "PrimitiveNode":
            return ("value", (origin.get("widgets_values") or [None])[0])
        if origin.get("mode") == MODE_NEVER:
            return None
        return [str(origin_id), origin_slot]

    graph = {}
    for node_id, node in nodes.items():
        if node["type"] in FRONTEND_ONLY_NODES or node.get("mode") in (MODE_NEVER, MODE_BYPASS):
            continue
        info = object_info[node["type"]]
        widget_values = widget_values_by_name(node, info)
        linked = {inp["name"]: inp["link"] for inp in node.get("inputs") or [] if inp.get("link") is not None}
        inputs = {}
        for name, input_type, options in input_specs(info):
            if name in linked:
                source = source_of(linked[name])
                if isinstance(source, tuple):
                    inputs[name] = source[1]
                elif source is not None:
                    inputs[name] = source
            elif name in widget_values:
                inputs[name] = widget_values[name]
            elif is_widget(input_type, options):  # saved without widgets_values: the editor uses defaults
                inputs[name] = widget_default(input_type, options)
        entry = {"class_type": node["type"], "inputs": inputs}
        if node.get("title"):
            entry["_meta"] = {"title": node["title"]}
        graph[str(node_id)] = entry
    return graph


def fill_widget_defaults(graph: dict, object_info: dict) -> dict:
    """In place, and returned: every required widget input a node of `graph` lacks gets its default.

    Lets hand-built test graphs name only the inputs they care about, as the graph editor would.
    """
    for node in graph.values():
        info = object_info.get(node["class_type"])
        required = set((info or {}).get("input", {}).get("required", {}))
        for name, input_type, options in input_specs(info or {}):
            if name in required and name not in node["inputs"] and is_widget(input_type, options):
                node["inputs"][name] = widget_default(input_type, options)
    return graph


def diff_api_graphs(expected: dict, actual: dict, rel_tol: float = 1e-6) -> list[str]:
    """Differences between two API graphs (class types, links and widget values; _meta titles ignored)."""
    problems = []
    for node_id in sorted(set(expected) | set(actual), key=str):
        if node_id not in actual:
            problems.append(f"node {node_id} ({expected[node_id]['class_type']}) missing from the second graph")
            continue
        if node_id not in expected:
            problems.append(f"node {node_id} ({actual[node_id]['class_type']}) missing from the first graph")
            continue
        a, b = expected[node_id], actual[node_id]
        if a["class_type"] != b["class_type"]:
            problems.append(f"node {node_id}: class_type {a['class_type']} != {b['class_type']}")
            continue
        for name in sorted(set(a["inputs"]) | set(b["inputs"])):
            va, vb = a["inputs"].get(name, "<absent>"), b["inputs"].get(name, "<absent>")
            if not _same_value(va, vb, rel_tol):
                problems.append(f"node {node_id} ({a['class_type']}).{name}: {va!r} != {vb!r}")
    return problems


def _same_value(a, b, rel_tol: float) -> bool:
    if isinstance(a, list) and isinstance(b, list) and len(a) == 2 == len(b):
        return str(a[0]) == str(b[0]) and a[1] == b[1]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-12)
    return a == b


def is_ui_workflow(data: dict) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def is_api_graph(data: dict) -> bool:
    return isinstance(data, dict) and bool(data) and all(
        isinstance(v, dict) and "class_type" in v and "inputs" in v for v in data.values())


# --------------------------------------------------------------------------------------------------
# Layout: how big the graph editor draws a node (frontend 1.2x-1.4x LiteGraph rules, rounded up so that
# a layout that passes here does not overlap in the editor) and whether two nodes overlap.
TITLE_HEIGHT = 30  # LiteGraph draws the title bar above ``pos``
SLOT_HEIGHT = 20  # one input/output socket row
WIDGET_HEIGHT = 24  # one widget row (20 + 4 margin)
MULTILINE_HEIGHT = 110  # a multi-line text box (CLIPTextEncode's prompt, a long string widget)
TEXT_PREVIEW_HEIGHT = 110  # a node whose run result shows text on it (ui PreviewText / PreviewAny)
IMAGE_PREVIEW = (420, 360)  # (min width, extra height) of a node that shows images after a run
VIEWER_3D = (520, 480)  # Preview3D / Load3D / the 360 viewer: a canvas in the node
NODE_WIDTH = 320

IMAGE_NODES = frozenset({"SaveImage", "PreviewImage", "LoadImage", "SyncCanvasSaveImage"})
VIEWER_NODES = frozenset({"Preview3D", "Load3D", "SaveGLB", "Preview3DAnimation", "SyncCanvasView360"})  # a 3D / 360 canvas in the node
TEXT_NODES = frozenset({"PreviewAny", "SyncCanvasKSampler", "SyncCanvasDDRKSampler", "SyncCanvasDDEKSampler",
                        "SyncCanvasSyncDiffusionKSampler", "SyncCanvasSaveTexturedMesh", "SyncCanvasSaveSplat"})


def estimated_node_size(node: dict) -> tuple[int, int]:
    """(width, body height) a UI node takes in the editor after a run, from its JSON alone.

    Body = socket rows (max of inputs and outputs) + one row per widget (multi-line strings taller)
    + room for what the node shows after a run (images, 3D canvas, text). The title bar is extra.
    """
    widgets = node.get("widgets_values") or []
    if isinstance(widgets, dict):
        widgets = list(widgets.values())
    sockets = [i for i in node.get("inputs", []) if not i.get("widget")]
    height = 10 + SLOT_HEIGHT * max(len(sockets), len(node.get("outputs", [])))
    for value in widgets:
        long_text = isinstance(value, str) and (len(value) > 40 or "\n" in value)
        height += MULTILINE_HEIGHT if long_text else WIDGET_HEIGHT
    if node.get("type") == "CLIPTextEncode" and not any(isinstance(v, str) and (len(v) > 40 or "\n" in v) for v in widgets):
        height += MULTILINE_HEIGHT - WIDGET_HEIGHT  # the prompt box is multi-line whatever its text
    width = NODE_WIDTH
    kind = node.get("type")
    if kind in IMAGE_NODES:
        width, height = max(width, IMAGE_PREVIEW[0]), height + IMAGE_PREVIEW[1]
    if kind in VIEWER_NODES:
        width, height = max(width, VIEWER_3D[0]), height + VIEWER_3D[1]
    if kind in TEXT_NODES:
        height += TEXT_PREVIEW_HEIGHT
    return width, height


def node_rectangle(node: dict) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the node as drawn, title bar included, at least the estimated size."""
    width, height = estimated_node_size(node)
    saved = node.get("size") or [0, 0]
    if isinstance(saved, dict):
        saved = [saved.get("0", 0), saved.get("1", 0)]
    width, height = max(width, saved[0]), max(height, saved[1])
    x, y = node.get("pos", [0, 0])[:2] if isinstance(node.get("pos"), list) else (node["pos"]["0"], node["pos"]["1"])
    return x, y - TITLE_HEIGHT, x + width, y + height


def overlapping_nodes(ui: dict, margin: float = 10.0) -> list[str]:
    """Pairs of nodes whose drawn rectangles (plus ``margin``) overlap, as readable lines ([] = none)."""
    nodes = ui.get("nodes", [])
    rects = [(n, node_rectangle(n)) for n in nodes]
    problems = []
    for i, (a, ra) in enumerate(rects):
        for b, rb in rects[i + 1:]:
            if ra[0] < rb[2] + margin and rb[0] < ra[2] + margin and ra[1] < rb[3] + margin and rb[1] < ra[3] + margin:
                problems.append(f"node {a.get('id')} ({a.get('title') or a.get('type')}) at {[round(v) for v in ra]} "
                                f"overlaps node {b.get('id')} ({b.get('title') or b.get('type')}) at {[round(v) for v in rb]}")
    return problems


def shipped_workflows(pack_root) -> list[dict]:
    """The pack's workflows from ``workflows/meta/catalog.json`` (written by workflows/build_workflows.py):
    ``{"id", "title", "ui", "api", "thumbnail"}`` with the three paths as ``pathlib.Path`` under ``pack_root``."""
    import json
    import pathlib

    root = pathlib.Path(pack_root)
    catalog = root / "workflows" / "meta" / "catalog.json"
    if not catalog.is_file():
        return []
    entries = json.loads(catalog.read_text())
    return [{**e, **{k: root / e[k] for k in ("ui", "api", "thumbnail")}} for e in entries]
