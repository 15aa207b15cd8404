"""The bad-input corpus (tests/bad_input_corpus.py) in-process: each graph evaluated by calling the
(guarded) node classes the way ComfyUI does, core nodes replaced by in-memory stand-ins. Every case must
fail with its expected message, or succeed with its expected warning. Needs ComfyUI."""

from __future__ import annotations

import os
import pathlib
import re
import sys

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bad_input_corpus import CASES, Case  # noqa: E402

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH not set: ComfyUI node tests skipped"),
]


def test_the_corpus_has_at_least_40_cases():
    assert len(CASES) >= 40
    assert all((c.expect is None) != (c.warning is None) for c in CASES), "each case expects an error or a warning"


@pytest.fixture(scope="module")
def node_classes(tiny):
    from sync_canvas.nodes import collect_nodes

    return {n.__name__: n for n in collect_nodes()}


@pytest.fixture
def folders(tmp_path, tiny, monkeypatch):
    import folder_paths

    (tmp_path / "work" / "input").mkdir(parents=True)
    (tmp_path / "work" / "output").mkdir()
    monkeypatch.setattr(folder_paths, "get_input_directory", lambda: str(tmp_path / "work" / "input"))
    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(tmp_path / "work" / "output"))
    return tmp_path / "work"


def _stand_ins(tiny):
    """Core ComfyUI nodes the corpus uses, as in-memory equivalents (no model files in-process)."""
    return {
        "CheckpointLoaderSimple": lambda ckpt_name: (tiny.tiny_model(), None, tiny.tiny_vae()),
        "CLIPTextEncode": lambda text, clip: (tiny.conditioning(len(text)),),
        "LatentMultiply": lambda samples, multiplier: ({"samples": samples["samples"] * multiplier},),
        "EmptyImage": lambda width, height, batch_size, color: (torch.zeros(batch_size, height, width, 3),),
    }


def run_graph(graph: dict, classes: dict, stand_ins: dict) -> list[str]:
    """Evaluates every node of an API graph (inputs first); returns the ui texts. Raises what a node raises."""
    results, texts = {}, []

    def evaluate(node_id: str):
        if node_id in results:
            return results[node_id]
        spec = graph[node_id]
        inputs = {k: (evaluate(str(v[0]))[v[1]] if isinstance(v, list) else v) for k, v in spec["inputs"].items()}
        kind = spec["class_type"]
        if kind in stand_ins:
            results[node_id] = stand_ins[kind](**inputs)
        else:
            out = classes[kind].execute(**inputs)
            results[node_id] = out.args
            if out.ui is not None:
                texts.extend(str(t) for t in out.ui.as_dict().get("text", []))
        return results[node_id]

    for node_id in graph:
        evaluate(node_id)
    return texts


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_its_message(case: Case, folders, node_classes, tiny):
    for name, data in case.files.items():
        (folders / "input" / name).write_bytes(data)
    before = {p: p.read_bytes() for p in (folders / "input").iterdir()}
    with torch.inference_mode():
        if case.warning:
            texts = run_graph(case.graph, node_classes, _stand_ins(tiny))
            assert any(re.search(case.warning, t) for t in texts), texts
        else:
            with pytest.raises(Exception) as err:
                run_graph(case.graph, node_classes, _stand_ins(tiny))
            message = str(err.value)
            assert re.search(case.expect, message), f"{type(err.value).__name__}: {message}"
            assert len(message) < 600, f"message too long ({len(message)} chars): {message[:300]}..."
            assert not isinstance(err.value, (IndexError, KeyError, AttributeError, TypeError)), repr(err.value)
    assert {p: p.read_bytes() for p in (folders / "input").iterdir()} == before  # input files untouched
    assert not list((folders / "output").rglob("*.*")), "a refused run wrote output"
