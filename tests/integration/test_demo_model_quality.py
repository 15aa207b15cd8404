"""The demo model through the real pipeline (CheckpointLoaderSimple, CLIP, CFG, the pack's KSampler, VAE,
SaveImage): the shipped wide panorama at the demo model's own size, synchronized (Case 2) against no
synchronization (Case 0), judged on the saved PNG with the benchmark's seam measure."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from comfy_server import error_message, status_of
from integration_helpers import REPO  # not conftest: with tests/ collected too, "conftest" is tests/conftest.py
from integration_helpers import read_image
from run_workflow import demo_model_available, prepare_graph

_spec = importlib.util.spec_from_file_location("bench_quality_i", REPO / "benchmarks" / "bench_quality.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

# Measured through ComfyUI 0.3.64 on the CPU (700-step weights, 6 steps, seed 0): case 0 2.11, case 2 1.42.
SEAM_CASE0_MIN = 1.8
SEAM_CASE2_MAX = 1.7
SEAM_SEPARATION_MIN = 1.25


def _panorama(mode: str) -> dict:
    graph = json.loads((REPO / "workflows" / "api" / "wide_panorama.json").read_text())
    graph, _ = prepare_graph(graph)  # the demo model, and a prompt it knows
    for node in graph.values():
        if node["class_type"] == "SyncCanvasWidePanorama":
            node["inputs"].update(width=512, height=256, window=256, stride=128)  # 3 windows at 32x32 latents
        if node["class_type"] == "SyncCanvasKSampler":
            node["inputs"].update(steps=6, mode=mode)
        if node["class_type"] in ("SyncCanvasSaveImage", "SaveImage"):
            node["inputs"]["filename_prefix"] = f"SyncCanvas/demo_quality_{mode}_{node['inputs']['filename_prefix'].rsplit('/', 1)[-1]}"
    return graph


@pytest.mark.skipif(not demo_model_available(), reason="no demo weights in assets/weights")
def test_demo_panorama_seams_through_comfyui_case2_vs_case0(comfy, run_logged):
    ratios = {}
    for mode in ("case_0", "case_2"):
        graph = _panorama(mode)
        entry = run_logged(f"demo_quality_{mode}", graph)
        assert status_of(entry) == "success", f"{error_message(entry)}\n{comfy.log_tail()}"
        canvas = [p for p in comfy.output_files(entry) if "_views" not in p.name and p.suffix == ".png"]
        assert canvas, comfy.output_files(entry)
        pixels = read_image(canvas[0])  # (H, W, 3) in [0, 1], 256 x 512
        assert pixels.shape[:2] == (256, 512)
        blocks = torch.from_numpy(np.ascontiguousarray(pixels[::8, ::8, :3])).permute(2, 0, 1).float()
        ratios[mode] = bench.seam_ratio(blocks, [16, 32, 48])  # window starts and ends, in latent columns
    print("seam ratios through ComfyUI:", ratios)
    assert ratios["case_0"] > SEAM_CASE0_MIN and ratios["case_2"] < SEAM_CASE2_MAX, ratios
    assert ratios["case_0"] / ratios["case_2"] > SEAM_SEPARATION_MIN, ratios
