"""Node help pages: ComfyUI's editor shows web/docs/<node id>.md (served at /extensions/<pack>/docs/) in
its node help panel. The main nodes have one, with a picture that exists, and name only real nodes."""

from __future__ import annotations

import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = REPO / "web" / "docs"
MAIN_NODES = ("SyncCanvasKSampler", "SyncCanvasWidePanorama", "SyncCanvas360Panorama", "SyncCanvasAnagram",
              "SyncCanvasMeshProjector", "SyncCanvasSplatProjector", "SyncCanvasView360", "SyncCanvasSaveImage",
              "SyncCanvasCrossViewAttention", "SyncCanvasPerViewConditioning")


def _node_ids() -> set[str]:
    return {m for path in (REPO / "nodes").glob("*.py") for m in re.findall(r'node_id="(SyncCanvas\w+)"', path.read_text())}


def test_every_main_node_has_a_help_page_with_a_picture():
    ids = _node_ids()
    for node in MAIN_NODES:
        assert node in ids, f"{node} is not a node of the pack"
        page = DOCS / f"{node}.md"
        assert page.is_file(), f"no help page {page.relative_to(REPO)}"
        text = page.read_text()
        assert text.startswith("# "), f"{page.name}: start with the node's title"
        pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
        assert pictures, f"{page.name} has no picture"
        for picture in pictures:
            assert not picture.startswith(("http:", "https:", "//")), f"{page.name}: pictures come from the pack, not the network"
            assert (DOCS / picture).is_file(), f"{page.name}: {picture} does not exist"


def test_help_pages_are_named_after_real_nodes_and_the_web_folder_holds_no_stray_scripts():
    ids = _node_ids()
    for page in DOCS.glob("*.md"):
        assert page.stem in ids, f"{page.name} is not named after a node id"
    # ComfyUI imports every .js under WEB_DIRECTORY as an extension: only the viewer belongs there.
    assert sorted(p.relative_to(REPO / "web").as_posix() for p in (REPO / "web").rglob("*.js")) == ["sync_canvas_360.js"]
