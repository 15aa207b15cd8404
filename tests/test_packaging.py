"""Registry readiness: what the Comfy registry and ComfyUI-Manager read from the repository."""

from __future__ import annotations

import fnmatch
import pathlib
import tomllib

REPO = pathlib.Path(__file__).resolve().parents[1]
RUNTIME = ("__init__.py", "nodes", "projectors", "samplers", "assets", "example_workflows", "workflows", "web",
           "requirements.txt", "pyproject.toml", "README.md", "LICENSE", "docs")


def test_pyproject_names_issues_an_icon_and_the_tested_comfyui():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    urls = project["project"]["urls"]
    assert urls["Issues"].startswith("https://") and urls["Repository"].startswith("https://")
    comfy = project["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["requires-comfyui"]
    assert comfy["Icon"].startswith("https://") and comfy["Icon"].endswith("/docs/icon.png")
    assert (REPO / "docs" / "icon.png").is_file()


def test_comfyignore_leaves_out_development_files_and_keeps_everything_the_pack_runs_with():
    patterns = [line.strip() for line in (REPO / ".comfyignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    ignored = lambda name: any(fnmatch.fnmatch(name + "/", p) or fnmatch.fnmatch(name, p.rstrip("/")) for p in patterns)  # noqa: E731
    assert ignored("tests") and ignored("benchmarks") and ignored(".ci")
    kept = [name for name in RUNTIME if ignored(name)]
    assert not kept, f".comfyignore would drop files the pack needs at run time: {kept}"
