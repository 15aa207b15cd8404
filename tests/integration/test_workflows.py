"""Every shipped workflow: its UI file opens in the graph editor, its API twin is the same graph, and
the twin runs end to end through ComfyUI (tiny models, --fast) and saves sane images. Workflows for other
families than SD1.5 (catalog "family") run with tiny in-memory models of their family standing in for the
loader nodes (tests/integration/family_stand_ins: ComfyUI cannot load a tiny Flux or SDXL text encoder
from files).

Pairs are example_workflows/<Title>.json (UI, schema 0.4) + workflows/api/<id>.json (API), as listed in
workflows/meta/catalog.json at collection time.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from comfy_server import error_message, status_of
from integration_helpers import api_workflows, read_image, saved_images, with_stand_ins, workflow_family, workflow_pairs
from run_workflow import prepare_graph
from workflow_format import diff_api_graphs, ui_to_api, validate_ui_workflow

PAIRS = workflow_pairs()
API_GRAPHS = api_workflows()
_no_workflows = pytest.mark.skipif(not PAIRS, reason="no workflows in workflows/meta/catalog.json yet")


@_no_workflows
@pytest.mark.parametrize("name, ui_path, api_path", PAIRS, ids=[p[0] for p in PAIRS] or None)
def test_ui_workflow_follows_the_editor_schema(name, ui_path, api_path, object_info):
    problems = validate_ui_workflow(json.loads(ui_path.read_text()), object_info)
    assert not problems, f"{ui_path.name}:\n" + "\n".join(problems)


@_no_workflows
@pytest.mark.parametrize("name, ui_path, api_path", PAIRS, ids=[p[0] for p in PAIRS] or None)
def test_api_twin_is_the_same_graph(name, ui_path, api_path, object_info):
    assert api_path is not None, f"{ui_path.name} has no API twin (workflows/api/{name}.json)"
    converted = ui_to_api(json.loads(ui_path.read_text()), object_info)
    problems = diff_api_graphs(converted, json.loads(api_path.read_text()))
    assert not problems, f"{ui_path.name} (converted) vs {api_path.name}:\n" + "\n".join(problems)


@pytest.mark.skipif(not API_GRAPHS, reason="no API-format workflows in workflows/api/ yet")
@pytest.mark.parametrize("name, api_path", API_GRAPHS, ids=[p[0] for p in API_GRAPHS] or None)
def test_workflow_runs_end_to_end(name, api_path, comfy, run_logged):
    graph, stand_ins = json.loads(api_path.read_text()), []
    family = workflow_family(name)
    if family != "sd15":  # SDXL/Flux/...: tiny in-memory models of the family stand in for the loader nodes
        graph, stand_ins = with_stand_ins(graph, family)
    graph, changes = prepare_graph(graph, fast=True)
    changes = stand_ins + changes
    entry = run_logged(name, graph)
    assert status_of(entry) == "success", f"{error_message(entry)}\nchanges: {changes}\n{comfy.log_tail()}"
    files = comfy.output_files(entry)
    assert files, f"{name} saved nothing (outputs: {entry.get('outputs')})"
    for path in files:
        assert path.is_file() and path.stat().st_size > 0, f"{path} missing or empty"
    images = saved_images(graph, entry, comfy.output_dir)
    for node_id, path, expected in images:
        assert path.is_file(), path
        pixels = read_image(path)
        if expected is not None:
            assert (pixels.shape[1], pixels.shape[0]) == expected, f"node {node_id} saved {path.name}"
        assert pixels.shape[0] >= 8 and pixels.shape[1] >= 8
        # PNGs cannot hold NaN; a NaN image decodes to one flat colour, so flat means broken.
        assert np.isfinite(pixels).all() and pixels.std() > 1e-3, f"{path.name} is a flat image"
