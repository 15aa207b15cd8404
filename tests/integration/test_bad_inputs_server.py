"""The bad-input corpus (tests/bad_input_corpus.py) through a real ComfyUI server: every graph POSTed to
/prompt must end as ComfyUI's own validation refusal (HTTP 400) or as the case's node error in /history
(or succeed with its warning on the node), input files unchanged, nothing written outside the output
folder, and the server still serving afterwards."""

from __future__ import annotations

import pathlib
import re
import sys

import pytest

from comfy_server import PromptRejected, error_message, status_of
from integration_helpers import server_still_serves

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bad_input_corpus import CASES, Case  # noqa: E402


def with_outputs(graph: dict) -> dict:
    """The graph plus a PreviewAny on the first output of each node nothing else reads (a prompt needs an
    output node; our loaders and projectors are not ones). Only on those: ComfyUI runs whatever outputs
    pass its validation, so a preview on an upstream node would let a refused graph run in part."""
    used = {str(v[0]) for n in graph.values() for v in n["inputs"].values() if isinstance(v, list)}
    out = dict(graph)
    for node_id in graph:
        if node_id not in used:
            out[f"preview_{node_id}"] = {"class_type": "PreviewAny", "inputs": {"source": [node_id, 0]}}
    return out


def _ui_texts(entry: dict) -> list[str]:
    return [str(t) for out in entry.get("outputs", {}).values() for t in out.get("text", [])]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_through_the_server(case: Case, comfy):
    comfy.input_dir.mkdir(parents=True, exist_ok=True)
    for name, data in case.files.items():
        (comfy.input_dir / name).write_bytes(data)
    before = {p: p.read_bytes() for p in comfy.input_dir.iterdir() if p.is_file()}
    outside_before = set(comfy.work_dir.parent.glob("evil*")) | set(pathlib.Path("/tmp").glob("evil*"))
    try:
        entry = comfy.run(with_outputs(case.graph), timeout=300)
    except PromptRejected as err:
        pattern = case.server_expect or case.expect
        assert pattern and re.search(pattern, str(err), re.S), f"rejected with: {err}"
    else:
        if case.warning:
            assert status_of(entry) == "success", error_message(entry) + comfy.log_tail()
            assert any(re.search(case.warning, t) for t in _ui_texts(entry)), _ui_texts(entry)
        else:
            assert status_of(entry) == "error", f"expected an error, got {status_of(entry)}"
            assert re.search(case.expect, error_message(entry)), error_message(entry)
    assert {p: p.read_bytes() for p in comfy.input_dir.iterdir() if p.is_file() and p in before} == before
    assert set(comfy.work_dir.parent.glob("evil*")) | set(pathlib.Path("/tmp").glob("evil*")) == outside_before
    assert comfy.alive(), comfy.log_tail()


def test_server_still_serves_after_the_corpus(comfy):
    server_still_serves(comfy)


def test_interrupt_stops_a_long_projector_build(comfy):
    """/interrupt during a mesh projector build (about 19 s on a 2-core CPU, ~6 GB, no model call in it) ends the
    prompt as interrupted: the build checks for cancellation (projectors/cancel.py), it does not run to its end.
    The texture is 3072^2 because the rasteriser got fast enough (680db1a) that 768 / 1024 builds in ~2 s."""
    import time

    from integration_helpers import _wait_until_running

    from sync_canvas.assets import procedural
    from sync_canvas.assets.mesh_io import export_obj

    export_obj(procedural.torus(128, 64), procedural.checker_texture(8), comfy.input_dir, "corpus_dense_torus")
    graph = with_outputs({
        "1": {"class_type": "SyncCanvasLoadMesh", "inputs": {"mesh": "corpus_dense_torus.obj", "unwrap": "never"}},
        "2": {"class_type": "SyncCanvasCameraRig", "inputs": {"sync_mesh": ["1", 0], "rig": "paper", "views": "",
                                                             "fov": 60.0, "distance": 0.0, "groups": 2}},
        "3": {"class_type": "SyncCanvasMeshProjector", "inputs": {
            "sync_mesh": ["1", 0], "cameras": ["2", 0], "view_size": 1024, "texture_size": 3072,
            "latent_texture_ratio": 1.5, "cos_exponent": 3.0, "sampling": "nearest", "backend": "torch"}},
    })
    prompt_id = comfy.submit(graph)
    _wait_until_running(comfy, prompt_id)
    time.sleep(3.0)  # loading and unwrapping are done; the projector build is under way
    assert comfy.history(prompt_id) is None, "the build finished before it could be interrupted"
    start = time.perf_counter()
    comfy.interrupt()
    entry = comfy.wait(prompt_id, timeout=60)
    elapsed = time.perf_counter() - start
    print(f"interrupt -> prompt ended as {status_of(entry)} after {elapsed * 1000:.0f} ms")
    assert status_of(entry) == "interrupted", entry["status"]
    assert elapsed < 5.0, f"interrupt took {elapsed:.1f} s"
    server_still_serves(comfy)
