#!/usr/bin/env python
"""Writes the fuse-rule workflows (DDR, DDE, SyncDiffusion; UI + API twins) with ``build_workflows.py``'s
graph description and writer.

    COMFYUI_PATH=/path/to/ComfyUI python workflows/fuse_rule_workflows.py [--check]

Settings are the papers': DDR 4.2 (360 wrap-around panorama, 45 deg windows = aspect 8, its panorama
prompt, CFG 10, eta 0.75, RePaint with one forward step per reverse step); SyncDiffusion 5 / supp. S.2
(512x3072, w 20, decay 0.95, DDIM 50 steps, CFG 7.5); DDE with no coordinator loaded falls back to
averaging and its report (shown on the node) says so -- train one with scripts/train_dde.py and add
SyncCanvas Load DDE Coordinator.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("sync_canvas_build_workflows", HERE / "build_workflows.py")
bw = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bw  # dataclasses look their module up here
_spec.loader.exec_module(bw)
Node, link = bw.Node, bw.link

COMMON = {"model": link(1), "positive": link(2), "negative": link(3), "projector": link(4), "seed": 0,
          "scheduler": "ddim_uniform", "vae": link(1, 2)}


def _outputs(sampler: int, prefix: str) -> list[Node]:
    return [
        Node(sampler + 1, "SaveImage", {"images": link(sampler, 1), "filename_prefix": f"SyncCanvas/{prefix}"}),
    ]


def fuse_ddr_panorama() -> list[Node]:
    prompt = "Landscape picture of a mountain range in the background with an empty plain in the foreground 50mm f/1.8"
    return bw._loaders(prompt) + [
        Node(4, "SyncCanvasWidePanorama", {"width": 4096, "height": 512, "window": 512, "stride": 128, "wrap": True}),
        Node(5, "SyncCanvasDDRKSampler", {**COMMON, "steps": 50, "cfg": 10.0, "eta": 0.75, "representation": "canvas",
                                          "jump_length": 1, "jump_interval": 1, "jump_repeat": 1, "adam_steps": 200,
                                          "adam_lr": 1e-4, "consistent_noise": True}),
    ] + _outputs(5, "fuse_ddr_panorama")


def fuse_dde_panorama() -> list[Node]:
    return bw._loaders("a photo of a mountain range at sunrise, lake in the foreground, highly detailed") + [
        Node(4, "SyncCanvasWidePanorama", {"width": 2048, "height": 512, "window": 512, "stride": 256, "wrap": False}),
        Node(5, "SyncCanvasDDEKSampler", {**COMMON, "steps": 50, "cfg": 7.5, "eta": 0.0}),
    ] + _outputs(5, "fuse_dde_panorama")


def fuse_syncdiffusion_panorama() -> list[Node]:
    return bw._loaders("a photo of a city skyline at night") + [
        Node(4, "SyncCanvasWidePanorama", {"width": 3072, "height": 512, "window": 512, "stride": 128, "wrap": False}),
        Node(5, "SyncCanvasSyncDiffusionKSampler", {**COMMON, "steps": 50, "cfg": 7.5, "weight": 20.0, "decay": 0.95,
                                                    "first_steps": 0, "every": 1, "anchor_view": 0, "eta": 0.0}),
    ] + _outputs(5, "fuse_syncdiffusion_panorama")


WORKFLOWS = {"fuse_ddr_panorama": fuse_ddr_panorama, "fuse_dde_panorama": fuse_dde_panorama,
             "fuse_syncdiffusion_panorama": fuse_syncdiffusion_panorama}


def build_files(definitions: dict) -> dict[pathlib.Path, bytes]:
    files = {}
    for name, make in WORKFLOWS.items():
        graph = make()
        files[HERE / f"{name}.json"] = (json.dumps(bw.to_ui(graph, definitions), indent=2) + "\n").encode()
        files[HERE / f"{name}_api.json"] = (json.dumps(bw.to_api(graph, definitions), indent=2) + "\n").encode()
    return files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    args = parser.parse_args(argv)
    comfyui = os.environ.get("COMFYUI_PATH")
    if not comfyui:
        print("fuse_rule_workflows: set COMFYUI_PATH to a ComfyUI checkout (the node definitions come from it)", file=sys.stderr)
        return 2
    files = build_files(bw.load_definitions(comfyui))
    stale = [path for path, data in files.items() if not path.exists() or path.read_bytes() != data]
    if args.check:
        for path in stale:
            print(f"fuse_rule_workflows: {path.relative_to(bw.PACK_ROOT)} is out of date", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_bytes(files[path])
        print(f"wrote {path.relative_to(bw.PACK_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
