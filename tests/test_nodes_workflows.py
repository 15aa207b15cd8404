"""The shipped workflows: generated twins are up to date, the UI twin is a valid graph-editor workflow and
converts to exactly the API twin; every node schema is valid and documented. Skipped without COMFYUI_PATH."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import sys

import pytest

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.slow,  # imports ComfyUI's nodes (~10 s on a loaded 2-core machine)
    pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH not set: ComfyUI node tests skipped"),
]

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(path: pathlib.Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def build():
    return _load(ROOT / "workflows" / "build_workflows.py", "build_workflows")


@pytest.fixture(scope="module")
def definitions(build):
    return build.load_definitions(os.environ["COMFYUI_PATH"])


@pytest.fixture(scope="module")
def workflow_format():
    return _load(ROOT / "scripts" / "workflow_format.py", "workflow_format")


def test_workflow_files_are_what_the_builder_writes(build, definitions):
    files = build.build_files(definitions)
    graphs, inputs = build.all_workflows()
    assert len(graphs) >= 10 and len(files) == 2 * len(graphs) + len(inputs) + 1  # + the catalog
    stale = [str(p.relative_to(ROOT)) for p, data in files.items() if not p.exists() or p.read_bytes() != data]
    assert stale == [], f"run workflows/build_workflows.py: {stale}"
    assert build.leftover_files(files) == [], "run workflows/build_workflows.py (it removes files it no longer writes)"


def test_files_do_not_depend_on_the_running_comfyui(build, definitions, monkeypatch):
    """Core nodes' widgets come from the pinned workflows/meta/core_nodes.json: a ComfyUI whose stock nodes
    grew a widget (as newer versions' do) writes the same files."""
    import nodes

    before = build.build_files(build.load_definitions(os.environ["COMFYUI_PATH"]))
    save_image = nodes.NODE_CLASS_MAPPINGS["SaveImage"]
    original = save_image.INPUT_TYPES

    def grown():
        spec = original()
        spec["required"]["quality"] = ("INT", {"default": 95})
        return spec

    monkeypatch.setattr(save_image, "INPUT_TYPES", staticmethod(grown))
    assert build.build_files(build.load_definitions(os.environ["COMFYUI_PATH"])) == before
    # comfy_extras nodes load in a server (checked there by tests/integration), not in this process
    extras = {"PreviewAny", "FluxGuidance", "ModelSamplingFlux", "Preview3D"}
    assert set(build.core_definitions()) <= set(nodes.NODE_CLASS_MAPPINGS) | extras


@pytest.mark.parametrize("name", ["wide_panorama", "panorama360_stochsync", "panorama360_depth", "ambiguous_image"])
def test_ui_twin_is_valid_and_converts_to_the_api_twin(name, build, definitions, workflow_format):
    entry = next(e for e in json.loads(build.CATALOG.read_text()) if e["id"] == name)
    ui = json.loads((ROOT / entry["ui"]).read_text())
    api = json.loads((ROOT / entry["api"]).read_text())
    assert workflow_format.validate_ui_workflow(ui, definitions) == []
    assert workflow_format.diff_api_graphs(api, workflow_format.ui_to_api(ui, definitions)) == []
    assert {n["class_type"] for n in api.values()} <= set(definitions)


def test_every_node_has_a_prefixed_id_a_category_and_a_tooltip_on_every_input(definitions):
    from sync_canvas.nodes import collect_nodes

    ids = []
    for node in collect_nodes():
        schema = node.GET_SCHEMA()  # validates ids (unique between inputs and outputs)
        ids.append(schema.node_id)
        assert schema.node_id.startswith("SyncCanvas") and schema.category.startswith("Sync Canvas")
        for spec in schema.inputs:
            assert spec.tooltip, f"{schema.node_id}.{spec.id} has no tooltip"
    assert len(ids) == len(set(ids))
    assert {"SyncCanvasKSampler", "SyncCanvasSamplerSelect", "SyncCanvasWidePanorama", "SyncCanvas360Panorama",
            "SyncCanvasAnagram", "SyncCanvasMultiplane", "SyncCanvasPerViewConditioning", "SyncCanvasSaveImage"} <= set(ids)


def test_demo_inputs_are_copied_when_missing_and_a_users_file_is_kept(definitions, tmp_path):
    from sync_canvas.nodes.files import DEMO_INPUTS, install_demo_inputs

    shipped = sorted(p.name for p in DEMO_INPUTS.iterdir())
    assert {"mesh_demo_torus.glb", "splat_snowman.ply", "sync_canvas_room_depth.png"} <= set(shipped)
    (tmp_path / "splat_snowman.ply").write_bytes(b"the user's own scene")
    copied = install_demo_inputs(input_dir=str(tmp_path))
    assert sorted(p.name for p in copied) == [n for n in shipped if n != "splat_snowman.ply"]
    assert (tmp_path / "splat_snowman.ply").read_bytes() == b"the user's own scene"
    for name in shipped:
        if name != "splat_snowman.ply":
            assert (tmp_path / name).read_bytes() == (DEMO_INPUTS / name).read_bytes()
    assert install_demo_inputs(input_dir=str(tmp_path)) == [], "a second load copies nothing"
