"""The pack's one-way architecture, checked from the source (no ComfyUI needed except for the side-effect test).

Rooms (DESIGN.md): ``nodes/`` is the only ComfyUI glue; ``projectors/`` and ``samplers/`` are pure torch;
``assets/`` is file I/O and cameras and depends on neither. Imports between the pack's modules form no
cycle, function-level imports included (a cycle hidden in a function is still a cycle).
"""

from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys

import pytest

PACK_ROOT = pathlib.Path(__file__).resolve().parents[1]
ROOMS = ("nodes", "projectors", "samplers", "assets")
COMFY_MODULES = ("comfy", "comfy_api", "comfy_execution", "comfy_extras", "folder_paths", "latent_preview",
                 "nodes", "server", "execution", "node_helpers")


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACK_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def pack_modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for room in ROOMS for p in sorted((PACK_ROOT / room).rglob("*.py"))}


def imports_of(path: pathlib.Path) -> tuple[set[str], set[str]]:
    """(pack modules imported, absolute top-level modules imported) by ``path``, at any depth of the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    modules = pack_modules()
    internal, external = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            external.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                external.add((node.module or "").split(".")[0])
                continue
            base = package.split(".") if package else []
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            target = ".".join(base + ([node.module] if node.module else []))
            # `from . import x` / `from .pkg import mod`: a submodule when one exists, else the package
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                if sub in modules:
                    internal.add(sub)
                elif target in modules:
                    internal.add(target)
                elif target == "" and alias.name in modules:
                    internal.add(alias.name)
    internal.discard(name)
    return internal, external


def import_graph() -> dict[str, set[str]]:
    return {name: imports_of(path)[0] for name, path in pack_modules().items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None. A package importing its own
    submodules (``projectors/__init__`` re-exporting) is not a cycle unless a submodule imports back."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path):
    # the checker itself can fail: a two-module cycle in a synthetic graph
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_pack_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_assets_import_nothing_from_projectors_or_samplers():
    offenders = {name: sorted(m for m in deps if m.split(".")[0] in ("projectors", "samplers", "nodes"))
                 for name, deps in import_graph().items() if name.startswith("assets")}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, offenders


@pytest.mark.parametrize("room", ["projectors", "samplers"])
def test_pure_rooms_import_neither_comfyui_nor_nodes(room):
    bad = {}
    for name, path in pack_modules().items():
        if name.split(".")[0] != room:
            continue
        internal, external = imports_of(path)
        wrong = sorted(external & set(COMFY_MODULES)) + sorted(m for m in internal if m.split(".")[0] == "nodes")
        if wrong:
            bad[name] = wrong
    assert not bad, f"{room}/ must stay pure torch: {bad}"


def test_importing_the_node_modules_registers_no_model_folders():
    """Importing a node module changes nothing in ComfyUI (folders are registered when the extension loads)."""
    comfy_path = os.environ.get("COMFYUI_PATH")
    if not comfy_path:
        pytest.skip("COMFYUI_PATH not set")
    script = f"""
import sys, importlib.util
sys.path.insert(0, {comfy_path!r})
import comfy.options; comfy.options.enable_args_parsing(False)
import comfy.cli_args; comfy.cli_args.args.cpu = True
import folder_paths
before = {{k: list(v[0]) for k, v in folder_paths.folder_names_and_paths.items()}}
spec = importlib.util.spec_from_file_location("sync_canvas", {str(PACK_ROOT / '__init__.py')!r},
                                              submodule_search_locations=[{str(PACK_ROOT)!r}])
module = importlib.util.module_from_spec(spec); sys.modules["sync_canvas"] = module; spec.loader.exec_module(module)
import sync_canvas.nodes as nodes
for name in nodes.NODE_MODULES:
    importlib.import_module("sync_canvas.nodes." + name)
after = {{k: list(v[0]) for k, v in folder_paths.folder_names_and_paths.items()}}
print(sorted(set(after) - set(before)) or "unchanged")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "unchanged", out.stdout


def test_nodes_and_samplers_ask_projectors_for_capabilities_not_internals():
    """projectors/CONTRACT.md: outside projectors/, nothing reads the taps or dispatches on ``kind``."""
    import re

    internals = re.compile(r"\.(taps|nearest_taps|_view_ids|_compact|_flat)\b|\.kind\s*(==|!=|in\b)")
    found = []
    for name, path in pack_modules().items():
        if name.split(".")[0] not in ("nodes", "samplers"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if internals.search(code):
                found.append(f"{path.relative_to(PACK_ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
