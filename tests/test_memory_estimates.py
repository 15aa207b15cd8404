"""Estimates before allocating (projectors/memory.py) and the refusal at the node boundary (nodes/memory_check.py)."""

import os
import resource

import pytest

from sync_canvas.projectors import WidePanoramaProjector, memory
from sync_canvas.projectors.panorama import window_starts


@pytest.mark.parametrize("length, window, stride, wrap", [(3072, 512, 64, False), (3000, 512, 64, False),
                                                          (2048, 512, 96, True), (512, 512, 8, False), (100, 512, 8, False)])
def test_count_starts_matches_window_starts(length, window, stride, wrap):
    expected = len(window_starts(length, window, stride, wrap, "width")) if window <= length else 0
    assert memory.count_starts(length, window, stride, wrap) == expected


def test_wide_estimate_counts_the_projectors_windows():
    est = memory.wide_panorama(512, 3072, 512, 64, False)
    assert f"{WidePanoramaProjector(512, 3072, 512, 64).n_views} windows" in est.detail
    assert est.bytes >= 41 * 512 * 512 * 16  # at least the taps it keeps: int64 index + 2 float32 weights


def test_the_4m_window_panorama_is_estimated_without_allocating():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    est = memory.wide_panorama(16384, 16384, 512, 8, False)
    assert "3940225 windows" in est.detail and est.bytes > 10 * 2**40  # tens of TiB
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 10_000  # KiB
    assert not memory.fits(est, 2**40)


def test_sampling_run_estimate_grows_with_decode():
    plain = memory.sampling_run(8, 4, (64, 64), 256 * 512)
    decoded = memory.sampling_run(8, 4, (64, 64), 256 * 512, decode=True)
    assert plain.bytes == (8 * 4 * 64 * 64 + 4 * 256 * 512) * 4 * memory.STATE_COPIES
    assert decoded.bytes > plain.bytes and "RGB" in decoded.detail
    assert memory.format_bytes(3 * 2**30) == "3.0 GiB"
