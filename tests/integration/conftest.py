"""Real-ComfyUI integration tests: one ComfyUI server per session, driven over its HTTP API.

Every test here is marked `comfyui`. Without COMFYUI_PATH they are skipped, and the end of the run says
so in capitals (a green run that silently skipped them would read as a pass).
The tiny random-weight models live in $SYNC_CANVAS_MODELS (default ~/.cache/sync_canvas/models) and
are built on first use (about 4 s, 290 MB).
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
for path in (REPO / "scripts", HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
SKIP_REASON = "set COMFYUI_PATH to a ComfyUI checkout to run the real-ComfyUI integration tests"

_marked_for_skip: set[str] = set()
_skipped_for_missing_comfyui: list[str] = []
RUN_LOG: list[tuple[str, float]] = []  # (workflow name, seconds) of every workflow that ran through ComfyUI
_SESSION: dict[str, float] = {}  # server launch time and startup seconds, for the summary


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in pathlib.Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.comfyui)
            if not COMFYUI_PATH:
                item.add_marker(pytest.mark.skip(reason=SKIP_REASON))
                _marked_for_skip.add(item.nodeid)


def pytest_runtest_logreport(report):
    if report.skipped and report.nodeid in _marked_for_skip:  # counts only tests that were run (and skipped)
        _skipped_for_missing_comfyui.append(report.nodeid)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter):
    """Printed after the other summaries, right above pytest's own closing stats line (which CI reads,
    so it must stay last)."""
    yield
    if _skipped_for_missing_comfyui:
        terminalreporter.write_sep(
            "!", f"SKIPPED: {len(_skipped_for_missing_comfyui)} ComfyUI integration tests - set COMFYUI_PATH", red=True)
    elif RUN_LOG:
        seconds = sum(s for _, s in RUN_LOG)
        names = ", ".join(sorted({name for name, _ in RUN_LOG}))
        wall = time.perf_counter() - _SESSION["server_started"] if "server_started" in _SESSION else float("nan")
        terminalreporter.write_sep(
            "=", f"ComfyUI integration: {len({n for n, _ in RUN_LOG})} workflows ran through a real ComfyUI {_comfyui_version()} "
                 f"in {seconds:.1f} s of prompt time ({names}); server up {_SESSION.get('startup', 0):.1f} s "
                 f"after launch, {wall:.0f} s from launch to the end of the run", green=True)


def _comfyui_version() -> str:
    """The checkout's version (comfyui_version.py), e.g. '0.33.0', for the summary line."""
    try:
        text = (pathlib.Path(COMFYUI_PATH) / "comfyui_version.py").read_text()
        return text.split("__version__")[1].split('"')[1]
    except (OSError, IndexError, TypeError):
        return "(version unknown)"


@pytest.fixture(scope="session")
def tiny_models_dir() -> pathlib.Path:
    from run_workflow import DEFAULT_MODELS_DIR, ensure_tiny_models

    models = DEFAULT_MODELS_DIR.resolve()
    ensure_tiny_models(models, pathlib.Path(COMFYUI_PATH).resolve())
    return models


@pytest.fixture(scope="session")
def comfy(tiny_models_dir, tmp_path_factory):
    """The session's ComfyUI server (comfy_server.ComfyServer), this pack loaded, tiny models on its paths."""
    from comfy_server import ComfyServer

    server = ComfyServer(COMFYUI_PATH, models_dir=tiny_models_dir, work_dir=tmp_path_factory.mktemp("comfyui"),
                         extra_packs=[HERE / "family_stand_ins"])  # tiny SDXL/Flux/... loaders for family workflows
    _SESSION["server_started"] = time.perf_counter()
    server.start()
    _SESSION["startup"] = server.startup_seconds
    from run_workflow import workflow_input_files

    server.add_input_files(workflow_input_files(REPO / "workflows" / "api" / "any.json"))  # files the workflows load
    yield server
    server.stop()


@pytest.fixture(scope="session")
def object_info(comfy) -> dict:
    return comfy.object_info()


@pytest.fixture
def run_logged(comfy):
    """run_logged(name, graph) -> history entry; records the run for the end-of-session summary."""

    def run(name: str, graph: dict, timeout: float = 300.0) -> dict:
        start = time.perf_counter()
        entry = comfy.run(graph, timeout=timeout)
        RUN_LOG.append((name, time.perf_counter() - start))
        return entry

    return run
