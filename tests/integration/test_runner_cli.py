"""scripts/run_workflow.py as the README uses it: its own server, a UI-format workflow, outputs copied out."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from integration_helpers import REPO, read_image
from workflow_format import shipped_workflows


@pytest.mark.slow
def test_runner_converts_a_ui_workflow_runs_it_and_copies_the_outputs(tiny_models_dir, tmp_path):
    workflow = next((e["ui"] for e in shipped_workflows(REPO) if e["id"] == "wide_panorama"), None)
    if workflow is None or not workflow.is_file():
        pytest.skip("the wide panorama workflow is not shipped yet")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "run_workflow.py"), str(workflow), "--fast", "--device", "cpu",
         "--output", str(out), "--models-dir", str(tiny_models_dir), "--json"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "SYNC_CHECKPOINT": ""})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["status"] == "success" and report["format"] == "ui"
    assert any("ckpt_name" in c for c in report["changes"]) and any(".steps:" in c for c in report["changes"])
    saved = sorted(out.rglob("*.png"))
    assert len(saved) == len(report["outputs"]) >= 2
    canvas = read_image(next(p for p in saved if "views" not in p.name))
    assert canvas.shape[:2] == (64, 192), "the --fast wide panorama is 192x64"
