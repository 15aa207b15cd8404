"""Quality that reaches the picture, on the demo model: synchronization (Case 2) must keep beating no
synchronization (Case 0) on what the benchmark measures (benchmarks/bench_quality.py). Thresholds come
from measurement (numbers in the comments, notes/issue16.md) with margin; a regression in the samplers,
projectors or the demo model's weights that brings back seams fails here. (Anagram class accuracy
does not separate the cases on this model - 0.5 for both in the benchmark - so no test holds it.)"""

from __future__ import annotations

import importlib.util
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS = 8  # the benchmark's default is 12; 8 keeps this test to about a minute on one core


@pytest.fixture(scope="module")
def bench():
    if not os.environ.get("COMFYUI_PATH"):
        pytest.skip("COMFYUI_PATH not set: the demo model's prompts need ComfyUI's CLIP tokenizer")
    spec = importlib.util.spec_from_file_location("bench_quality_t", REPO / "benchmarks" / "bench_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model(bench):
    return bench.DemoModel()


def test_case_2_panorama_has_much_weaker_seams_than_case_0(bench, model):
    case0, _ = bench.wide_panorama(model, "case_0", STEPS, seed=0, klass=0)
    case2, img = bench.wide_panorama(model, "case_2", STEPS, seed=0, klass=0)
    assert img.std() > 0.05, "the demo model painted a flat canvas"
    assert case0["seam"] > SEAM_CASE0_MIN, case0
    assert case2["seam"] < SEAM_CASE2_MAX, case2
    assert case0["seam"] / case2["seam"] > SEAM_SEPARATION_MIN, (case0, case2)


# Measured at 8 steps, seed 0, mountains (700-step weights): case 0 seam ratio 3.08, case 2 2.06 (ratio 1.49);
# seed 1, desert: 2.64 vs 1.78. Thresholds with margin:
SEAM_CASE0_MIN = 2.6
SEAM_CASE2_MAX = 2.4
SEAM_SEPARATION_MIN = 1.25
