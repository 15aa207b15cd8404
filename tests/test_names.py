"""Readable sampler modes, search aliases and advanced widgets (nodes/names.py).

The table tests need no ComfyUI (names.py is loaded by its path); the schema tests need COMFYUI_PATH.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("names_under_test", ROOT / "nodes" / "names.py")
names = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(names)

needs_comfyui = pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH not set: ComfyUI node tests skipped")


def test_every_mode_has_a_distinct_label_naming_its_paper_and_case():
    labels = list(names.MODE_LABELS.values())
    assert len(set(labels)) == len(labels)
    assert names.MODE_LABELS["case_2"] == "SyncTweedies: x0 in views (case 2)"
    for k in range(7):
        assert f"(case {k})" in names.MODE_LABELS[f"case_{k}"]
    assert names.MODE_LABELS["stochsync"].startswith("StochSync")


@pytest.mark.parametrize("value, expected", [
    ("case_2", "case_2"), ("SyncTweedies: x0 in views (case 2)", "case_2"), ("stochsync", "stochsync"),
    ("StochSync: max stochasticity, alternating view groups", "stochsync"), ("DDR: least-squares fit of the canvas", "ddr"),
])
def test_labels_and_the_ids_saved_by_older_versions_are_both_accepted(value, expected):
    assert names.mode_id(value) == expected


def test_an_unknown_or_disallowed_mode_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"unknown sampler mode 'case_9'.*SyncTweedies: x0 in views \(case 2\)"):
        names.mode_id("case_9")
    message = names.mode_error("ddr", ("case_2", "stochsync"))
    assert isinstance(message, str) and "'ddr'" in message and "DDR" not in message.split("expected")[1]
    assert names.mode_error("case_2", ("case_2",)) is True


@needs_comfyui
def test_sampler_nodes_show_labels_and_validate_old_ids(tiny):
    from sync_canvas.nodes.sampler_nodes import SyncCanvasKSampler, SyncCanvasSamplerSelect

    for node, n_modes in ((SyncCanvasKSampler, 11), (SyncCanvasSamplerSelect, 8)):
        mode = next(i for i in node.GET_SCHEMA().inputs if i.id == "mode")
        assert len(mode.options) == n_modes and all(o in names.MODE_IDS for o in mode.options)
        assert mode.default == "SyncTweedies: x0 in views (case 2)"
        assert node.validate_inputs(mode="case_2") is True
        assert node.validate_inputs(mode=mode.options[-1]) is True
        assert "unknown sampler mode 'junk'" in node.validate_inputs(mode="junk")
    assert "unknown sampler mode 'ddr'" in SyncCanvasSamplerSelect.validate_inputs(mode="ddr")


@needs_comfyui
def test_the_input_guard_accepts_old_ids_and_still_refuses_junk(tiny):
    from sync_canvas.nodes.guards import InputError, check_inputs
    from sync_canvas.nodes.sampler_nodes import SyncCanvasSamplerSelect

    schema = SyncCanvasSamplerSelect.define_schema()
    check_inputs(schema, {"mode": "case_2"})
    check_inputs(schema, {"mode": "SyncTweedies: x0 in views (case 2)"})
    with pytest.raises(InputError, match="mode='junk' is not one of its options"):
        check_inputs(schema, {"mode": "junk"})


@needs_comfyui
def test_aliases_and_advanced_flags_name_real_nodes_and_inputs_and_apply_where_supported(tiny):
    from sync_canvas.nodes import collect_nodes

    schemas = {node.GET_SCHEMA().node_id: node.GET_SCHEMA() for node in collect_nodes()}
    assert set(names.SEARCH_ALIASES) <= set(schemas) and set(names.ADVANCED_INPUTS) <= set(schemas)
    for node_id, inputs in names.ADVANCED_INPUTS.items():
        ids = {i.id for i in schemas[node_id].inputs}
        assert set(inputs) <= ids, (node_id, set(inputs) - ids)
    wanted = {"360", "equirectangular", "texture", "skybox", "anagram", "illusion"}
    assert wanted <= {a for aliases in names.SEARCH_ALIASES.values() for a in aliases}
    pano = schemas["SyncCanvas360Panorama"]
    if names.supports_search_aliases():  # ComfyUI >= 0.3.7x: the search finds "360", "skybox"...
        assert {"360", "equirectangular", "skybox"} <= set(pano.search_aliases)
        assert next(i for i in schemas["SyncCanvasKSampler"].inputs if i.id == "eta").advanced is True
        info = collect_nodes()[0].GET_NODE_INFO_V1()
        assert "search_aliases" in info
    else:  # 0.3.64: nothing added that the schema does not know
        assert not hasattr(pano, "search_aliases")
