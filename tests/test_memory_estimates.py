"""Estimates before allocating (projectors/memory.py) and the refusal at the node boundary (nodes/memory_check.py)."""

import os
import pathlib
import resource

import pytest

from sync_canvas.projectors import WidePanoramaProjector, memory


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


SPLAT_PEAK = r"""
import ctypes, json, sys
import torch
from sync_canvas.assets.splat_cameras import fit_orbit
from sync_canvas.assets.splat_procedural import procedural_splat_scene
from sync_canvas.projectors.splat import SplatProjector
from sync_canvas.projectors.splat_memory import build_estimate
def status(key):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))
out = []
for g, n, size in json.loads(sys.argv[1]):
    scene = procedural_splat_scene(g, seed=1)
    cams = fit_orbit(scene.means, scene.opacities, n, 50.0, size, size)
    est = build_estimate(scene.means, scene.quats, scene.log_scales, scene.opacities, cams)
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    open("/proc/self/clear_refs", "w").write("5")  # resets VmHWM to the current RSS
    before = status("VmRSS")
    projector = SplatProjector.from_scene(scene, cams)
    projector.rescaled(8)  # the latent twin the sampler builds: part of the estimate
    out.append([est.bytes, status("VmHWM") - before])
    del projector
print(json.dumps(out))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="peak RSS reset needs Linux /proc")
def test_splat_estimate_bounds_the_measured_peak_of_small_builds():
    """The estimate (from a sample of footprints) is at least the peak RSS growth of the projector build plus
    its latent twin, and within 4x of it: an upper bound that does not refuse what fits."""
    import json
    import subprocess
    import sys

    scenes = [[2000, 8, 128], [20000, 4, 128], [3000, 3, 256]]
    code = f"import sys; sys.path.insert(0, {str(pathlib.Path(__file__).parent)!r}); import conftest\n" + SPLAT_PEAK
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(scenes)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    for scene, (estimate, peak) in zip(scenes, json.loads(done.stdout.splitlines()[-1])):
        assert peak <= estimate <= 4 * peak, f"{scene}: estimate {estimate / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB"
