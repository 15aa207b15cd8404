#!/usr/bin/env python
"""The templates' thumbnails (``example_workflows/<Title>.jpg``) as real outputs: every shipped SD1.5
workflow run headless with the pack's demo model at its own size (``run_workflow.py --demo-size``: 256 px
views, <= 12 steps), one ComfyUI server for all, on the CPU unless a GPU is there.

    COMFYUI_PATH=/path/to/ComfyUI python scripts/make_thumbnails.py [--only ID ...]

The picture is what the workflow is for: the mesh / splat turntable (four frames), the ambiguous image's
two readings (its views), else the canvas (SyncCanvas Save Image), else the first saved image. The SDXL /
Flux workflows need models the demo model cannot stand in for: their thumbnails are the SD1.5 demo output
of the workflow with the same rig (same README figure), and their caption says so. Each thumbnail is
512 x 384, letterboxed on white, with a one-line caption naming what made it.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile

from PIL import Image, ImageDraw

SCRIPTS = pathlib.Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(0, str(ROOT / "workflows"))
from comfy_server import ComfyServer, error_message, status_of  # noqa: E402
from run_workflow import DEFAULT_MODELS_DIR, ensure_tiny_models, gpu_available, prepare_graph, workflow_input_files  # noqa: E402
from workflow_format import shipped_workflows  # noqa: E402

DEMO_FAMILY = "sd15"
SIZE, CAPTION_HEIGHT = (512, 384), 22
PICTURE_SUFFIX = {"ambiguous_image": "_views"}  # whose main picture is not the canvas


def _saved_images(entry: dict, output_dir: pathlib.Path, api: dict) -> dict[str, list[pathlib.Path]]:
    """``{filename_prefix: [image paths]}`` of the run's saved images."""
    saved = {}
    for node_id, outputs in entry.get("outputs", {}).items():
        prefix = api.get(node_id, {}).get("inputs", {}).get("filename_prefix", node_id)
        items = [i for i in outputs.get("images", []) if isinstance(i, dict) and i.get("type") == "output"]
        saved[str(prefix)] = [output_dir / i.get("subfolder", "") / i["filename"] for i in items]
    return saved


def main_picture(workflow_id: str, api: dict, saved: dict[str, list[pathlib.Path]]) -> list[pathlib.Path]:
    """The images the thumbnail shows (see the module docstring for the order of preference)."""
    wanted = PICTURE_SUFFIX.get(workflow_id, "_turntable")
    for prefix, paths in saved.items():
        if prefix.endswith(wanted) and paths:
            return paths[:: max(1, len(paths) // 4)][:4]
    canvases = [str(n["inputs"].get("filename_prefix")) for n in api.values() if n["class_type"] == "SyncCanvasSaveImage"]
    for prefix in canvases + list(saved):
        if saved.get(prefix):
            return saved[prefix][:1]
    raise RuntimeError(f"{workflow_id}: the run saved no image")


def compose(pictures: list[pathlib.Path], caption: str) -> Image.Image:
    """The pictures side by side, fitted into 512 x (384 - caption), on white, the caption underneath."""
    frames = [Image.open(p).convert("RGB") for p in pictures]
    row = Image.new("RGB", (sum(f.width for f in frames), max(f.height for f in frames)), "white")
    x = 0
    for frame in frames:
        row.paste(frame, (x, (row.height - frame.height) // 2))
        x += frame.width
    scale = min(SIZE[0] / row.width, (SIZE[1] - CAPTION_HEIGHT) / row.height)  # up too: demo outputs can be small
    row = row.resize((max(1, round(row.width * scale)), max(1, round(row.height * scale))), Image.LANCZOS)
    canvas = Image.new("RGB", SIZE, "white")
    canvas.paste(row, ((SIZE[0] - row.width) // 2, (SIZE[1] - CAPTION_HEIGHT - row.height) // 2))
    draw = ImageDraw.Draw(canvas)
    width = draw.textlength(caption)
    draw.text(((SIZE[0] - width) / 2, SIZE[1] - CAPTION_HEIGHT + 5), caption, fill=(90, 90, 90))
    return canvas


def stand_in_for(entry: dict, catalog: list[dict], figures: dict[str, str]) -> dict:
    """The SD1.5 workflow with the same rig (same README figure) as an SDXL / Flux one."""
    figure = figures.get(entry["id"], entry["id"])
    return next(e for e in catalog if e["family"] == DEMO_FAMILY and figures.get(e["id"], e["id"]) == figure)


def main(argv=None) -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="workflow ids to refresh (default: all)")
    parser.add_argument("--comfyui", type=pathlib.Path, default=os.environ.get("COMFYUI_PATH"))
    parser.add_argument("--models-dir", type=pathlib.Path, default=DEFAULT_MODELS_DIR)
    args = parser.parse_args(argv)
    if args.comfyui is None:
        parser.error("set COMFYUI_PATH or pass --comfyui PATH")
    import build_workflows

    figures = build_workflows.catalog().thumbnails
    catalog = shipped_workflows(ROOT)
    targets = [e for e in catalog if not args.only or e["id"] in args.only]
    to_run = {stand_in_for(e, catalog, figures)["id"] if e["family"] != DEMO_FAMILY else e["id"] for e in targets}
    ensure_tiny_models(args.models_dir.resolve(), args.comfyui.resolve())
    with tempfile.TemporaryDirectory() as scratch, \
            ComfyServer(args.comfyui, models_dir=args.models_dir, cpu=not gpu_available(), work_dir=pathlib.Path(scratch)) as server:
        for entry in (e for e in catalog if e["id"] in to_run):
            server.add_input_files(workflow_input_files(entry["api"]))
            api, _ = prepare_graph(json.loads(entry["api"].read_text()), demo_size=True)
            run = server.run(api, timeout=3600)
            if status_of(run) != "success":
                print(f"{entry['id']}: {status_of(run)} - {error_message(run)}", file=sys.stderr)
                return 1
            pictures = main_picture(entry["id"], api, _saved_images(run, server.output_dir, api))
            print(f"{entry['id']}: ran in {run['seconds']:.0f} s, picture {', '.join(p.name for p in pictures)}")
            for target in targets:  # written as each run ends: a long batch keeps what it has made
                if target["id"] == entry["id"]:
                    caption = "demo model output (256 px views, CPU)"
                elif target["family"] != DEMO_FAMILY and stand_in_for(target, catalog, figures)["id"] == entry["id"]:
                    caption = f"{target['family'].upper()} not run: SD1.5 demo model on the same rig"
                else:
                    continue
                compose(pictures, caption).save(target["thumbnail"], quality=88)
                print(f"wrote {target['thumbnail'].relative_to(ROOT)} (from {entry['id']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
