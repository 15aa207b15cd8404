"""The pack inside a real ComfyUI server: it loads, stock graphs run, /interrupt and bad input behave.

Bad input must end as ComfyUI's validation error (HTTP 400 from /prompt) or as a clear node error in
/history, and the server must keep serving afterwards.
"""

from __future__ import annotations

import numpy as np
import pytest

from comfy_server import PromptRejected, error_message, status_of
from integration_helpers import (assert_interrupt_stops, node_types, read_image, saved_images, server_still_serves,
                                 stock_graph, workflow_files)

SYNC_PREFIX = "SyncCanvas"


def test_pack_loads_and_registers_its_nodes(comfy, object_info):
    log = comfy.log_tail(200_000)
    failed = [line for line in log.splitlines() if "IMPORT FAILED" in line and "sync_canvas" in line]
    assert not failed, f"the pack failed to import:\n{log[-4000:]}"
    ours = sorted(n for n in object_info if n.startswith(SYNC_PREFIX))
    assert ours, f"no {SYNC_PREFIX}* node in /object_info; server log:\n{log[-4000:]}"
    for node_id in ours:
        info = object_info[node_id]
        assert info["python_module"].startswith("custom_nodes."), (node_id, info["python_module"])
        assert info["category"].startswith("Sync Canvas"), (node_id, info["category"])


def test_every_node_used_by_a_workflow_is_registered(object_info):
    files = workflow_files()
    if not files:
        pytest.skip("no shipped workflows yet")
    missing = {f.name: sorted(t for t in node_types(f) if t not in object_info and t not in ("Note", "MarkdownNote", "Reroute", "PrimitiveNode"))
               for f in files}
    assert not {k: v for k, v in missing.items() if v}, missing


def test_stock_graph_runs_on_the_tiny_model(comfy):
    graph = stock_graph(width=96, height=64, batch=2, prefix="stock/run")
    entry = comfy.run(graph, timeout=120)
    assert status_of(entry) == "success", error_message(entry) + comfy.log_tail()
    images = saved_images(graph, entry, comfy.output_dir)
    assert len(images) == 2
    for _, path, expected in images:
        pixels = read_image(path)
        assert expected == (96, 64)
        assert (pixels.shape[1], pixels.shape[0]) == expected
        assert np.isfinite(pixels).all() and pixels.std() > 0, f"{path} is blank"


def test_interrupt_stops_a_long_stock_run(comfy):
    assert_interrupt_stops(comfy, stock_graph(steps=10_000, prefix="stock/long"))


def test_socket_type_mismatch_is_a_validation_error(comfy):
    graph = stock_graph()
    graph["6"]["inputs"]["samples"] = ["2", 0]  # CONDITIONING into a LATENT socket
    with pytest.raises(PromptRejected) as err:
        comfy.submit(graph)
    assert err.value.error.get("type") == "prompt_outputs_failed_validation"
    assert "6" in err.value.node_errors, err.value.node_errors
    server_still_serves(comfy)


def test_stock_save_image_refuses_to_leave_the_output_folder(comfy):
    graph = stock_graph(prefix="../../evil")
    entry = comfy.run(graph, timeout=120)
    assert status_of(entry) == "error"
    assert "outside the output folder" in error_message(entry), error_message(entry)
    escaped = list(comfy.output_dir.parent.parent.glob("evil*")) + list(comfy.output_dir.parent.glob("evil*"))
    assert not escaped, escaped
    server_still_serves(comfy)
