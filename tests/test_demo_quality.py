"""Quality that reaches the picture, on the demo model: synchronization (Case 2) must keep beating no
synchronization (Case 0) on what the benchmark measures (benchmarks/bench_quality.py). Thresholds come
from measurement (numbers in the comments, notes/issue16.md) with margin; a regression in the samplers,
projectors or the demo model's weights that brings back seams, breaks the 360 wrap or mixes anagram
classes fails here."""

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


def test_case_2_panorama_has_no_seams_where_case_0_has_them(bench, model):
    case0, _ = bench.wide_panorama(model, "case_0", STEPS, seed=0, klass=0)
    case2, img = bench.wide_panorama(model, "case_2", STEPS, seed=0, klass=0)
    assert img.std() > 0.05, "the demo model painted a flat canvas"
    assert case0["seam"] > SEAM_CASE0_MIN, case0
    assert case2["seam"] < SEAM_CASE2_MAX, case2
    assert case0["horizon"] > case2["horizon"], (case0, case2)


def test_anagram_views_show_their_prompts_class_with_sync_not_without(bench, model):
    pairs = bench.ANAGRAM_PAIRS[:2]
    acc = {mode: sum(bench.anagram(model, mode, STEPS, seed, pair)[0]["anagram"] for seed, pair in enumerate(pairs)) / len(pairs)
           for mode in ("case_0", "case_2")}
    assert acc["case_2"] >= ANAGRAM_CASE2_MIN and acc["case_2"] > acc["case_0"], acc


# Measured (notes/issue16.md), thresholds with margin:
SEAM_CASE0_MIN = 1.5
SEAM_CASE2_MAX = 1.3
ANAGRAM_CASE2_MIN = 0.5
