#!/usr/bin/env python
"""Run one workflow headless through a real ComfyUI with this pack loaded, and report what it made.

    python scripts/run_workflow.py workflows/api/wide_panorama.json [--checkpoint NAME] [--fast] [--output DIR]
    python scripts/run_workflow.py "example_workflows/Wide panorama (SyncTweedies).json" --fast

- Starts ComfyUI's `main.py` from $COMFYUI_PATH on a free port (on the GPU if torch sees one, else --cpu); its custom_nodes path is a temporary folder
  holding only a link to this pack, its outputs go to a temporary folder and are copied to --output
  (default ./output), keeping their sub-folders.
- Takes an API-format graph, or a UI-format workflow (converted with the server's /object_info, as
  the graph editor would).
- Every CheckpointLoaderSimple is pointed at --checkpoint (a file in your ComfyUI's models/checkpoints),
  or, without one, at the demo model (scripts/train_demo_model.py: a small SD1.5-layout model trained on
  procedural landscapes, built from assets/weights on first use; it paints five scene classes - mountains,
  desert, ocean, night, forest - so positive prompts naming none of them are replaced, and printed).
  --demo-size runs it at its own size (256 px views, <= 12 steps): a recognisable panorama in seconds to a
  minute on a CPU. Depth ControlNets get a zero-output ControlNet in the demo model's layout.
- Files in an inputs/ folder next to the workflow (e.g. a depth map for LoadImage) are copied into
  the server's input folder; for the pack's own workflows, the pack's demo inputs (workflows/inputs/;
  the pack also copies them itself when it loads, if missing).
- --fast shrinks step counts and sizes where the graph exposes them and prints each change.
- Stops the server at the end, on errors and on Ctrl-C. Exit status 0 only if the prompt succeeded.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import make_tiny_models  # noqa: E402
from comfy_server import ComfyServer, PromptRejected, error_message, status_of  # noqa: E402
from workflow_format import is_api_graph, is_ui_workflow, ui_to_api  # noqa: E402

SCRIPTS = pathlib.Path(__file__).resolve().parent
# The tiny random-weight models and the demo model that paints landscapes (scripts/train_demo_model.py;
# built from assets/weights on first use): names as make_tiny_models.py writes them.
TINY_CHECKPOINT, TINY_CONTROLNET = make_tiny_models.CHECKPOINT_NAME, make_tiny_models.CONTROLNET_NAME
DEMO_CHECKPOINT, DEMO_CONTROLNET = make_tiny_models.DEMO_CHECKPOINT_NAME, make_tiny_models.DEMO_CONTROLNET_NAME
DEMO_WEIGHTS = make_tiny_models.DEMO_UNET_FILE
# Prompts for positive CLIPTextEncode nodes that name none of the demo model's scene classes, in node order.
DEMO_PROMPTS = ("a snowy mountain landscape, wide panorama", "an ocean coast at noon", "a desert with dunes",
                "a moonlit night", "a green forest")
# --demo-size: the demo model's own size (256 px views = its 32x32 training latents) and enough steps to paint.
DEMO_LENGTH_FACTOR = 2
DEMO_MAX_STEPS = 12
DEFAULT_MODELS_DIR = pathlib.Path(os.environ.get("SYNC_CANVAS_MODELS") or
                                  pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
                                  / "sync_canvas" / "models")

# --fast: pixel lengths shrink by this factor (a 512 window becomes 64 px = 8 latent texels, the
# smallest a SD1.5 UNet level takes), never below the floor, always a multiple of 8.
FAST_LENGTH_FACTOR = 8
FAST_MAX_STEPS = 2
FAST_MAX_VIEWS = 4  # INT inputs that count views or frames (camera orbits, turntables)
FAST_COUNT_INPUTS = ("views", "n_views", "num_views", "frames")
FAST_LENGTH_INPUTS = ("width", "height", "window", "view_size", "view_width", "view_height", "size",
                      "resolution", "texture_size", "canvas_width", "canvas_height")
# Canvas nodes whose view count grows with width/stride: cap them at a few windows, half-overlapping,
# so a fast run has a handful of views. node id -> (width input, window input, stride input, max windows)
FAST_VIEW_CAPS = {"SyncCanvasWidePanorama": ("width", "window", "stride", 3)}


def _round8(value: float, floor: int) -> int:
    return max(floor, int(round(value / 8)) * 8)


def shrink_for_speed(graph: dict, length_factor: int = FAST_LENGTH_FACTOR, max_steps: int = FAST_MAX_STEPS) -> list[str]:
    """--fast (and --demo-size with its own factor and steps), in place: fewer steps and smaller
    canvases/views. Returns one line per change made."""
    originals: dict[tuple[str, str], object] = {}  # first value of every input changed, for the report

    def set_input(node_id, node, name, value):
        if node["inputs"][name] != value:
            originals.setdefault((node_id, name), node["inputs"][name])
            node["inputs"][name] = value

    for node_id, node in graph.items():
        inputs = node["inputs"]
        for name, value in list(inputs.items()):
            if isinstance(value, bool) or not isinstance(value, int):
                continue  # links are lists; only literal INT widgets are shrunk
            if name == "steps" or name.endswith("_steps"):
                set_input(node_id, node, name, min(value, max_steps))
            elif name in FAST_LENGTH_INPUTS or name.endswith(("_width", "_height")):
                set_input(node_id, node, name, _round8(value / length_factor, 64))
            elif name == "stride" or name.endswith("_stride"):
                set_input(node_id, node, name, _round8(value / length_factor, 8))
            elif name in FAST_COUNT_INPUTS:
                set_input(node_id, node, name, min(value, FAST_MAX_VIEWS))
        cap = FAST_VIEW_CAPS.get(node["class_type"])
        if cap and all(isinstance(inputs.get(k), int) for k in cap[:3]):
            width, window, stride, max_windows = cap
            set_input(node_id, node, width, min(inputs[width], max_windows * inputs[window]))
            set_input(node_id, node, stride, max(inputs[stride], _round8(inputs[window] / 2, 8)))
    return [f"node {node_id} ({graph[node_id]['class_type']}).{name}: {old} -> {graph[node_id]['inputs'][name]}"
            for (node_id, name), old in originals.items() if graph[node_id]["inputs"][name] != old]


def demo_model_available() -> bool:
    return DEMO_WEIGHTS.is_file()


def default_models() -> tuple[str, str]:
    """(checkpoint, ControlNet) used without --checkpoint: the demo model when its weights ship, else the tiny one."""
    return (DEMO_CHECKPOINT, DEMO_CONTROLNET) if demo_model_available() else (TINY_CHECKPOINT, TINY_CONTROLNET)


def retarget_models(graph: dict, checkpoint: str | None, controlnet: str | None) -> list[str]:
    """In place: every CheckpointLoaderSimple loads `checkpoint` (the demo model if None); ControlNetLoaders
    load `controlnet` if given, else the demo model's ControlNet when the checkpoint is the default one."""
    changes = []
    default_checkpoint, default_controlnet = default_models()
    if controlnet is None and checkpoint is None:
        controlnet = default_controlnet
    targets = {"CheckpointLoaderSimple": ("ckpt_name", checkpoint or default_checkpoint),
               "ControlNetLoader": ("control_net_name", controlnet)}
    for node_id, node in graph.items():
        name, value = targets.get(node["class_type"], (None, None))
        if value is not None and node["inputs"].get(name) != value:
            changes.append(f"node {node_id} ({node['class_type']}).{name}: {node['inputs'].get(name)} -> {value}")
            node["inputs"][name] = value
    return changes


def class_of_prompt(text: str) -> int | None:
    """The demo model's scene class a prompt names (``assets/landscapes.py``, the words it was trained on), or None."""
    import importlib.util

    module = sys.modules.get("sync_canvas_landscapes")
    if module is None:  # by path: this script runs without the pack on sys.path (torch is imported here, lazily)
        spec = importlib.util.spec_from_file_location("sync_canvas_landscapes", SCRIPTS.parent / "assets" / "landscapes.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["sync_canvas_landscapes"] = module
    return module.class_of_prompt(text)


def demo_prompts(graph: dict) -> list[str]:
    """In place, for the demo model: positive CLIPTextEncode prompts naming none of its five scene classes
    get one that does (it paints nothing else). Negative prompts (linked to a `negative` input) stay."""
    negative = {str(v[0]) for node in graph.values() for k, v in node["inputs"].items()
                if k == "negative" and isinstance(v, list)}
    changes, pick = [], 0
    for node_id in sorted(graph, key=lambda k: (len(k), k)):
        node = graph[node_id]
        text = node["inputs"].get("text")
        if node["class_type"] != "CLIPTextEncode" or node_id in negative or not isinstance(text, str):
            continue
        if class_of_prompt(text) is not None:
            continue
        node["inputs"]["text"] = DEMO_PROMPTS[pick % len(DEMO_PROMPTS)]
        pick += 1
        changes.append(f"node {node_id} (CLIPTextEncode).text: {text!r} -> {node['inputs']['text']!r} "
                       "(the demo model paints five landscape classes)")
    return changes


def prepare_graph(graph: dict, checkpoint=None, controlnet=None, fast=False, demo_size=False) -> tuple[dict, list[str]]:
    """A retargeted (and with fast=True or demo_size=True shrunk) copy of an API graph, and the changes made.

    Without a checkpoint the demo model is used (when its weights ship) and prompts are pointed at its classes.
    """
    graph = copy.deepcopy(graph)
    changes = retarget_models(graph, checkpoint, controlnet)
    if checkpoint is None and demo_model_available():
        changes += demo_prompts(graph)
    if fast:
        changes += shrink_for_speed(graph)
    elif demo_size:
        changes += shrink_for_speed(graph, DEMO_LENGTH_FACTOR, DEMO_MAX_STEPS)
    return graph, changes


def load_graph(path: pathlib.Path, server: ComfyServer | None = None) -> tuple[dict, str]:
    """(API graph, "api" | "ui") from a workflow file; a UI workflow needs a running server to convert."""
    try:
        data = json.loads(pathlib.Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read workflow {str(path)!r}: {err}") from None
    if is_api_graph(data):
        return data, "api"
    if is_ui_workflow(data):
        if server is None:
            raise ValueError(f"{path} is a UI-format workflow; converting it needs a running server")
        return ui_to_api(data, server.object_info()), "ui"
    raise ValueError(f"{path} is neither an API-format graph nor a UI-format workflow")


PACK_ROOT = SCRIPTS.parent
DEMO_INPUTS = PACK_ROOT / "workflows" / "inputs"


def workflow_input_files(workflow: pathlib.Path) -> list[pathlib.Path]:
    """Files a workflow loads (LoadImage, meshes, splats): the inputs/ folder next to it, else, for a workflow
    inside this pack (example_workflows/, workflows/api/), the pack's demo inputs."""
    workflow = pathlib.Path(workflow).resolve()
    folder = workflow.parent / "inputs"
    if not folder.is_dir() and PACK_ROOT in workflow.parents:
        folder = DEMO_INPUTS
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def link_model_file(name: str | None, models_dir: pathlib.Path, kind: str) -> str | None:
    """A model given as a path to a file is linked into models_dir/kind and named by its file name;
    a bare name is left for ComfyUI to find in its own models folders."""
    if name is None or not (os.sep in name or pathlib.Path(name).is_file()):
        return name
    path = pathlib.Path(name).expanduser().absolute()  # not resolve(): a linked file keeps its own name
    if not path.is_file():
        raise SystemExit(f"run_workflow: {kind} file {name!r} does not exist")
    link = models_dir / kind / path.name
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.resolve() == path.resolve():
            return path.name
        if not link.is_symlink():
            raise SystemExit(f"run_workflow: {link} exists and is another file; rename {name!r}")
        link.unlink()
    link.symlink_to(path)
    return path.name


def gpu_available(python: str = sys.executable) -> bool:
    """Whether ComfyUI's torch sees a CUDA device (asked in a child process: importing torch here is slow)."""
    probe = "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def ensure_tiny_models(models_dir: pathlib.Path, comfyui_path: pathlib.Path, python: str = sys.executable) -> None:
    """Builds the tiny demo models in a child process (keeps comfy out of this process); skips existing files."""
    wanted = [models_dir / "checkpoints" / TINY_CHECKPOINT, models_dir / "controlnet" / TINY_CONTROLNET]
    if demo_model_available():
        wanted += [models_dir / "checkpoints" / DEMO_CHECKPOINT, models_dir / "controlnet" / DEMO_CONTROLNET]
    if all(p.is_file() for p in wanted) and (not demo_model_available() or make_tiny_models.demo_checkpoint_current(wanted[2])):
        return
    subprocess.run([python, str(SCRIPTS / "make_tiny_models.py"), str(models_dir), "--comfyui", str(comfyui_path)],
                   check=True)


def image_sizes(files: list[pathlib.Path]) -> list[str]:
    try:
        from PIL import Image
    except ImportError:
        return ["?" for _ in files]
    sizes = []
    for f in files:
        try:
            with Image.open(f) as im:
                sizes.append(f"{im.width}x{im.height}")
        except OSError:
            sizes.append("-")
    return sizes


def _copy_keeping_subfolder(file: pathlib.Path, output_root: pathlib.Path, dest_root: pathlib.Path) -> pathlib.Path:
    dest = dest_root / file.relative_to(output_root)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return pathlib.Path(shutil.copy2(file, dest))


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("workflow", type=pathlib.Path, help="API-format (workflows/api/*.json) or UI-format (example_workflows/*.json) workflow file")
    parser.add_argument("--checkpoint", help="checkpoint: a file name in your ComfyUI's models/checkpoints or a path "
                        "to a file (default: $SYNC_CHECKPOINT, else the demo model)",
                        default=os.environ.get("SYNC_CHECKPOINT") or None)
    parser.add_argument("--controlnet", help="ControlNet (file name or path) for ControlNetLoader nodes (default: unchanged "
                        "with --checkpoint, the tiny demo ControlNet without)")
    parser.add_argument("--fast", action="store_true", help="fewer steps and smaller canvases (tests, smoke runs)")
    parser.add_argument("--demo-size", action="store_true",
                        help=f"the demo model's own size: views halved to 256 px (its training size), at most "
                             f"{DEMO_MAX_STEPS} steps, a few windows (what scripts/demo.sh runs without a checkpoint)")
    parser.add_argument("--output", type=pathlib.Path, default=pathlib.Path("output"),
                        help="copy the output files into this folder (default: ./output; the server's own "
                             "output folder is temporary)")
    parser.add_argument("--comfyui", type=pathlib.Path, default=os.environ.get("COMFYUI_PATH"),
                        help="ComfyUI checkout (default: $COMFYUI_PATH)")
    parser.add_argument("--models-dir", type=pathlib.Path, default=DEFAULT_MODELS_DIR,
                        help=f"where the tiny demo models live (default: {DEFAULT_MODELS_DIR})")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                        help="auto: the GPU when torch sees one, else the CPU")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the prompt")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    args = parser.parse_args(argv)
    if args.comfyui is None:
        parser.error("set COMFYUI_PATH (scripts/setup.sh prints it) or pass --comfyui PATH")
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)

    args.checkpoint = link_model_file(args.checkpoint, args.models_dir, "checkpoints")
    args.controlnet = link_model_file(args.controlnet, args.models_dir, "controlnet")
    default_label = (f"{DEMO_CHECKPOINT} (demo model: five procedural landscape classes)" if demo_model_available()
                     else f"{TINY_CHECKPOINT} (tiny demo, random weights)")
    report = {"workflow": str(args.workflow), "checkpoint": args.checkpoint or default_label}
    total = time.perf_counter()
    if args.checkpoint is None:
        ensure_tiny_models(args.models_dir.resolve(), args.comfyui.resolve())
    try:
        cpu = args.device == "cpu" or (args.device == "auto" and not gpu_available())
        report["device"] = "cpu" if cpu else "gpu"
        with ComfyServer(args.comfyui, models_dir=args.models_dir, cpu=cpu) as server:
            report["startup_seconds"] = round(server.startup_seconds, 1)
            inputs = workflow_input_files(args.workflow)
            if inputs:
                report["input_files"] = server.add_input_files(inputs)
            graph, kind = load_graph(args.workflow, server)
            graph, changes = prepare_graph(graph, args.checkpoint, args.controlnet, args.fast, args.demo_size)
            report.update(format=kind, changes=changes)
            try:
                entry = server.run(graph, timeout=args.timeout)
            except PromptRejected as err:
                report.update(status="rejected", error=str(err))
                entry = None
            if entry is not None:
                files = server.output_files(entry)
                report.update(status=status_of(entry), error=error_message(entry), run_seconds=round(entry["seconds"], 2))
                files = [_copy_keeping_subfolder(f, server.output_dir, args.output.resolve()) for f in files]
                report["outputs"] = [f"{f} ({size})" for f, size in zip(files, image_sizes(files))]
                if report["status"] != "success":
                    report["server_log_tail"] = server.log_tail(2000)
    except KeyboardInterrupt:
        report["status"] = "cancelled"
    report["total_seconds"] = round(time.perf_counter() - total, 1)
    _print_report(report, as_json=args.json)
    return 0 if report.get("status") == "success" else 1


def _print_report(report: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=1))
        return
    print(f"workflow:   {report['workflow']} ({report.get('format', '?')} format)")
    print(f"checkpoint: {report['checkpoint']} on the {report.get('device', '?').upper()}")
    if report.get("input_files"):
        print(f"inputs:     copied {', '.join(report['input_files'])} into the server's input folder")
    for change in report.get("changes", []):
        print(f"changed:    {change}")
    print(f"status:     {report.get('status')}" + (f" - {report['error']}" if report.get("error") else ""))
    for out in report.get("outputs", []):
        print(f"output:     {out}")
    print(f"timing:     server start {report.get('startup_seconds', '-')} s, prompt {report.get('run_seconds', '-')} s, "
          f"total {report['total_seconds']} s")
    if report.get("server_log_tail"):
        print("server log (tail):\n" + report["server_log_tail"])


if __name__ == "__main__":
    sys.exit(main())
