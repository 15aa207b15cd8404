"""scripts/gpu_check.py section (c): a shipped workflow through a real ComfyUI, as the GPU check runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from integration_helpers import REPO


@pytest.mark.slow
def test_gpu_check_runs_a_shipped_workflow_through_comfyui(tiny_models_dir, tmp_path):
    rows_file = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--device", "cpu", "--small", "--only", "c",
         "--models-dir", str(tiny_models_dir), "--json", str(rows_file)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [r for r in json.loads(rows_file.read_text()) if r["section"] == "c workflows"]
    assert [(r["check"], r["status"]) for r in rows] == [("wide_panorama", "PASS")]
