"""scripts/gpu_check.py stays runnable: its CPU smoke run (small sizes) on every test run, so the GPU
self-check never rots on machines without a GPU. Section (c), the workflows through a real ComfyUI, is
exercised by tests/integration/test_gpu_check_workflows.py."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_gpu_check_cpu_smoke_run_prints_one_table_and_passes(tmp_path):
    rows_file = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--device", "cpu", "--small", "--only", "abd",
         "--json", str(rows_file)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.startswith("| section | check | status | measured | detail |")
    rows = json.loads(rows_file.read_text())
    status = {(r["section"], r["check"].split(" (")[0]): r["status"] for r in rows}
    assert status[("a back-ends", "gsplat vs compositing weights")] == "SKIP"  # no CUDA here: skipped, never "passed"
    assert status[("b contract", "device-contract + precision tests on cpu")] == "PASS"
    timings = [r for r in rows if r["section"] == "d timings"]
    if os.environ.get("COMFYUI_PATH"):
        assert [r["status"] for r in timings] == ["INFO"] * 3
        assert all("sync share" in r["measured"] for r in timings[1:])
    else:
        assert [r["status"] for r in timings] == ["SKIP"]
