"""Node definitions as ComfyUI's /object_info serves them, for the workflow builder: this pack's nodes
from their V3 schemas (needs a ComfyUI checkout for comfy_api) and ComfyUI's stock nodes as pinned in
``workflows/meta/core_nodes.json`` (so the files do not vary with the ComfyUI that builds them), and the
widget values a UI-format node stores in that order."""

from __future__ import annotations

import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
PACK_ROOT = HERE.parent
if str(PACK_ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(PACK_ROOT / "scripts"))
from pack_import import import_pack  # noqa: E402
CORE_NODES = HERE / "meta" / "core_nodes.json"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# Combo inputs whose choices are the user's files: pinned empty (the workflow names its own file).
FILE_COMBOS = {"ckpt_name", "control_net_name", "image", "vae_name", "unet_name", "clip_name", "clip_name1",
               "clip_name2", "lora_name", "model_file", "style_model_name", "clip_vision_name"}


def _import_pack(comfyui_path: str):
    if comfyui_path not in sys.path:
        sys.path.insert(0, comfyui_path)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401

    import_pack()  # the pack as the package sync_canvas


def pack_definitions(comfyui_path: str) -> dict[str, dict]:
    """``{node type: V1 info}`` of this pack's nodes (their V3 schemas; needs a ComfyUI checkout for comfy_api)."""
    _import_pack(comfyui_path)
    from sync_canvas.nodes import collect_nodes

    definitions = {}
    for cls in collect_nodes():
        info = cls.GET_NODE_INFO_V1()
        # Output names as the editor shows them: the display name, else the type (0.3.64's V1 info says so;
        # 0.33.0's gives the output id instead): the same files whichever version builds them.
        names = [o.display_name if o.display_name and o.display_name != o.id else kind
                 for o, kind in zip(cls.GET_SCHEMA().outputs, info["output"])]
        definitions[info["name"]] = {"input": info["input"], "output": list(info["output"]), "output_name": names}
    return definitions


def core_definitions() -> dict[str, dict]:
    """ComfyUI's stock nodes as pinned in core_nodes.json (not the running ComfyUI's: files must not vary by version)."""
    return json.loads(CORE_NODES.read_text())


def load_definitions(comfyui_path: str) -> dict[str, dict]:
    """``{node type: V1 info}``: the pinned stock nodes and this pack's nodes."""
    return {**core_definitions(), **pack_definitions(comfyui_path)}


def pin_core_definitions(comfyui_path: str, types: set[str]) -> dict[str, dict]:
    """The running ComfyUI's definitions of the stock node ``types``, file-name combos emptied."""
    _import_pack(comfyui_path)
    import nodes

    if not getattr(nodes, "_sync_canvas_extras_loaded", False):  # PreviewAny & co. live in comfy_extras
        import asyncio

        asyncio.run(nodes.init_builtin_extra_nodes())
        nodes._sync_canvas_extras_loaded = True
    pinned = {}
    for name in sorted(types):
        cls = nodes.NODE_CLASS_MAPPINGS[name]
        if hasattr(cls, "GET_NODE_INFO_V1"):
            info = cls.GET_NODE_INFO_V1()
            definition = {"input": info["input"], "output": list(info["output"]), "output_name": list(info["output_name"])}
        else:
            outputs = list(cls.RETURN_TYPES)
            definition = {"input": cls.INPUT_TYPES(), "output": outputs,
                          "output_name": list(getattr(cls, "RETURN_NAMES", None) or outputs)}
        definition["input"] = {section: {k: v for k, v in definition["input"].get(section, {}).items()}
                               for section in ("required", "optional") if definition["input"].get(section)}
        for section in definition["input"].values():
            for key, spec in section.items():
                if key in FILE_COMBOS and isinstance(spec[0], list):
                    section[key] = [[], *spec[1:]]
                elif key in FILE_COMBOS and spec[0] == "COMBO":
                    section[key] = ["COMBO", {**spec[1], "options": []}]
        pinned[name] = json.loads(json.dumps(definition, default=str))
    return pinned


def input_specs(definition: dict) -> list[tuple[str, str, dict]]:
    """(name, type, options) of every input, required then optional, in declaration order."""
    specs = []
    for section in ("required", "optional"):
        for name, spec in definition["input"].get(section, {}).items():
            kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
            specs.append((name, "COMBO" if isinstance(kind, list) else kind, options))
    return specs


def widget_values(node, definition: dict) -> list:
    """The UI ``widgets_values``: widget inputs in order, plus the control value after seeds / uploads."""
    values = []
    for name, kind, options in input_specs(definition):
        if kind not in WIDGET_TYPES:
            continue
        value = node.inputs.get(name, options.get("default"))
        if isinstance(value, tuple):  # fed by a link: the editor keeps the widget's own default
            value = options.get("default")
        if kind == "COMBO" and value is None:
            choices = definition["input"].get("required", {}).get(name, [[None]])[0]
            value = choices[0] if isinstance(choices, list) else None
        values.append(value)
        if options.get("control_after_generate"):
            values.append("fixed")
        if options.get("image_upload"):
            values.append("image")
    return values
