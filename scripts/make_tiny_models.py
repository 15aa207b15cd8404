#!/usr/bin/env python
"""Writes tiny random-weight models in the file formats ComfyUI's stock loaders accept.

    python scripts/make_tiny_models.py OUT_DIR [--comfyui PATH]

Writes (skipping files that already exist):
    OUT_DIR/checkpoints/sync_canvas_tiny_sd15.safetensors      ~271 MB: tiny SD1.5-layout UNet, TAESD VAE, full CLIP-L
    OUT_DIR/controlnet/sync_canvas_tiny_controlnet.safetensors  ~20 MB: ldm-format ControlNet matching the tiny UNet
    OUT_DIR/controlnet/sync_canvas_demo_controlnet.safetensors  ~36 MB: zero-output ControlNet in its layout
    OUT_DIR/checkpoints/sync_canvas_demo_landscapes.safetensors ~310 MB: the demo model that paints landscapes
        (assets/weights/sync_canvas_demo_unet.safetensors padded to SD1.5 width, written-down TAESD and CLIP;
        see scripts/demo_model.py); rebuilt when the shipped weights change

The weights are random (no model can be downloaded here), so the images they make are noise: they
exist to run real workflows through real ComfyUI loaders, samplers and savers on a CPU in seconds.
Recipe and why each size is what it is: ../shared/notes/comfyui-integration.md §3.
- The UNet must keep model_channels=320 and context_dim=768 or ComfyUI's detection will not call it SD15;
  its depth (one level, one res block) is free, which is what makes it tiny (15.9 M parameters).
- CLIP must be the full CLIP-L: the SD15 loader builds it from a fixed config and leaves missing keys as garbage.
- The VAE is TAESD (2.4 M parameters), which CheckpointLoaderSimple accepts under `first_stage_model.`.
Deterministic: torch seeded with 0 and every parameter filled in a fixed order, so the same ComfyUI
version writes byte-identical files.
"""

import argparse
import os
import pathlib
import sys
import time

CHECKPOINT_NAME = "sync_canvas_tiny_sd15.safetensors"
CONTROLNET_NAME = "sync_canvas_tiny_controlnet.safetensors"
DEMO_CHECKPOINT_NAME = "sync_canvas_demo_landscapes.safetensors"
DEMO_CONTROLNET_NAME = "sync_canvas_demo_controlnet.safetensors"
REPO = pathlib.Path(__file__).resolve().parents[1]
DEMO_UNET_FILE = REPO / "assets" / "weights" / "sync_canvas_demo_unet.safetensors"

# SD15 detection keys (model_channels, context_dim, use_linear_in_transformer, adm_in_channels,
# use_temporal_attention) at their SD1.5 values; everything else as small as the loaders allow.
_UNET_CONFIG = dict(
    image_size=32, in_channels=4, model_channels=320,
    num_res_blocks=[1], channel_mult=[1], transformer_depth=[1],
    transformer_depth_middle=-1, context_dim=768, num_heads=8, num_head_channels=-1,
    use_linear_in_transformer=False, use_spatial_transformer=True, legacy=False, adm_in_channels=None,
    use_temporal_resblock=False, use_temporal_attention=False, use_checkpoint=False,
)


def _import_comfy(comfyui_path: pathlib.Path):
    """Puts ComfyUI on sys.path and forces the CPU before comfy.model_management picks a device."""
    if not (comfyui_path / "comfy").is_dir():
        raise ValueError(f"COMFYUI_PATH={str(comfyui_path)!r} is not a ComfyUI checkout (no comfy/ folder)")
    sys.path.insert(0, str(comfyui_path))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401  (device chosen now, on the CPU)


def _fill_deterministically(module, std: float) -> None:
    """Biases 0, 1-D norm weights 1, everything else N(0, std^2); comfy's disable_weight_init leaves torch.empty."""
    import torch

    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("bias"):
                param.zero_()
            elif param.ndim <= 1 and "norm" in name:
                param.fill_(1.0)
            else:
                param.normal_(0.0, std)


def _to_fp16_state(module, prefix: str) -> dict:
    import torch

    return {prefix + k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous()
            for k, v in module.state_dict().items()}


def build_unet():
    import torch
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    unet = UNetModel(out_channels=4, transformer_depth_output=[0, 0], dtype=torch.float32, device="cpu",
                     operations=comfy.ops.disable_weight_init, **_UNET_CONFIG)
    _fill_deterministically(unet, 0.02)
    return unet


def build_controlnet():
    import torch
    import comfy.ops
    from comfy.cldm.cldm import ControlNet

    controlnet = ControlNet(hint_channels=3, dtype=torch.float32, device="cpu",
                            operations=comfy.ops.disable_weight_init, **_UNET_CONFIG)
    _fill_deterministically(controlnet, 0.02)
    return controlnet


# The demo UNet's layout (scripts/demo_model.py NarrowUNet, padded): two levels, transformers at the second.
_DEMO_UNET_CONFIG = dict(_UNET_CONFIG, num_res_blocks=[1, 1], channel_mult=[1, 1], transformer_depth=[0, 1],
                         transformer_depth_middle=1)


def build_demo_controlnet():
    """A ControlNet for the demo UNet's layout as ControlNet training starts: zero output convolutions, so it
    runs through ComfyUI's ControlNet code and adds exactly nothing (no depth-trained demo ControlNet exists)."""
    import torch
    import comfy.ops
    from comfy.cldm.cldm import ControlNet

    controlnet = ControlNet(hint_channels=3, dtype=torch.float32, device="cpu",
                            operations=comfy.ops.disable_weight_init, **_DEMO_UNET_CONFIG)
    _fill_deterministically(controlnet, 0.02)
    with torch.no_grad():
        for name, param in controlnet.named_parameters():
            if name.startswith(("zero_convs.", "middle_block_out.")):
                param.zero_()
    return controlnet


def build_taesd():
    import torch
    from comfy.taesd.taesd import TAESD

    taesd = TAESD(latent_channels=4)
    _fill_deterministically(taesd, 0.05)
    with torch.no_grad():  # the scalars are named like weights; they must stay identity
        taesd.vae_scale.fill_(1.0)
        taesd.vae_shift.fill_(0.0)
    return taesd


def build_clip():
    import torch
    from comfy.sd1_clip import SDClipModel

    clip = SDClipModel(device="cpu", dtype=torch.float32)
    _fill_deterministically(clip.transformer, 0.02)
    return clip


def _demo_model_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sync_canvas_demo_model", REPO / "scripts" / "demo_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def file_sha256(path: pathlib.Path) -> str:
    import hashlib

    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def build_demo_checkpoint(unet_file: pathlib.Path = DEMO_UNET_FILE) -> dict:
    """The demo checkpoint's state dict (float16): shipped narrow UNet padded to SD1.5, written-down VAE and CLIP."""
    import torch
    from safetensors.torch import load_file

    dm = _demo_model_module()
    net = dm.NarrowUNet(dm.WIDTH)
    net.load_state_dict({k: v.float() for k, v in load_file(str(unet_file)).items()})
    parts = {"model.diffusion_model.": net.padded_state_dict(), "first_stage_model.": dm.comfy_taesd_state(),
             "cond_stage_model.": dm.comfy_clip_state()}
    return {prefix + k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous()
            for prefix, state in parts.items() for k, v in state.items()}


def demo_checkpoint_current(path: pathlib.Path, unet_file: pathlib.Path = DEMO_UNET_FILE) -> bool:
    """Whether the demo checkpoint at path records the sha256 of the shipped weights it was built from
    (read from the safetensors header with the standard library: the runner calls it before any venv)."""
    import json

    try:
        with open(path, "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    except (OSError, ValueError):
        return False
    return header.get("__metadata__", {}).get("demo_unet_sha256") == file_sha256(unet_file)


def write_tiny_models(out_dir: pathlib.Path, comfyui_path: pathlib.Path, log=print) -> dict:
    """Builds whichever tiny files are missing (or, for the demo model, stale) under out_dir.
    Returns {"checkpoints": path, "controlnet": path, "demo": path, "demo_controlnet": path} (no demo
    entries when the demo weights are not in the repository)."""
    paths = {"checkpoints": out_dir / "checkpoints" / CHECKPOINT_NAME,
             "controlnet": out_dir / "controlnet" / CONTROLNET_NAME,
             "demo": out_dir / "checkpoints" / DEMO_CHECKPOINT_NAME,
             "demo_controlnet": out_dir / "controlnet" / DEMO_CONTROLNET_NAME}
    stale = None
    if not DEMO_UNET_FILE.is_file():
        log(f"tiny models: no demo weights at {DEMO_UNET_FILE} (scripts/train_demo_model.py writes them): demo model skipped")
        del paths["demo"], paths["demo_controlnet"]
    elif paths["demo"].is_file() and not demo_checkpoint_current(paths["demo"]):
        # rebuilt below through a .partial file and os.replace: a server listing models meanwhile never
        # finds it missing (several checkouts with other weights may share this folder)
        log(f"tiny models: {paths['demo']} was built from other weights than {DEMO_UNET_FILE}: rebuilding")
        stale = paths.pop("demo")
    if stale is None and all(p.is_file() for p in paths.values()):
        log(f"tiny models: all present in {out_dir}")
        return paths
    if stale is not None:
        paths["demo"] = stale
    _import_comfy(comfyui_path)
    import torch
    from safetensors.torch import save_file

    builders = {
        "checkpoints": lambda: {**_to_fp16_state(build_unet(), "model.diffusion_model."),
                                **_to_fp16_state(build_taesd(), "first_stage_model."),
                                **_to_fp16_state(build_clip(), "cond_stage_model.")},
        "controlnet": lambda: _to_fp16_state(build_controlnet(), ""),
        "demo": build_demo_checkpoint,
        "demo_controlnet": lambda: _to_fp16_state(build_demo_controlnet(), ""),
    }
    metadata = {"checkpoints": {"sync_canvas": "tiny random-weight test model"},
                "controlnet": {"sync_canvas": "tiny random-weight test model"},
                "demo": {"sync_canvas": "demo model trained on procedural landscapes (scripts/train_demo_model.py)",
                         "demo_unet_sha256": file_sha256(DEMO_UNET_FILE) if DEMO_UNET_FILE.is_file() else ""},
                "demo_controlnet": {"sync_canvas": "zero-output ControlNet in the demo model's layout"}}
    for kind, path in paths.items():
        if path.is_file() and path != stale:
            log(f"tiny models: keep {path}")
            continue
        start = time.perf_counter()
        torch.manual_seed({"checkpoints": 0, "controlnet": 1, "demo": 2, "demo_controlnet": 3}[kind])  # per file, so either can be rebuilt alone
        with torch.inference_mode():
            state = builders[kind]()
        path.parent.mkdir(parents=True, exist_ok=True)
        # never a truncated file under the real name; per process, as test runs of several checkouts share the folder
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        save_file(state, str(partial), metadata=metadata[kind])
        os.replace(partial, path)
        log(f"tiny models: wrote {path} ({path.stat().st_size / 2**20:.0f} MiB, "
            f"{time.perf_counter() - start:.1f} s)")
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=pathlib.Path, help="models folder to write into (checkpoints/, controlnet/)")
    parser.add_argument("--comfyui", type=pathlib.Path, default=os.environ.get("COMFYUI_PATH"),
                        help="ComfyUI checkout (default: $COMFYUI_PATH)")
    args = parser.parse_args(argv)
    if args.comfyui is None:
        parser.error("set COMFYUI_PATH or pass --comfyui PATH")
    write_tiny_models(args.out_dir.resolve(), args.comfyui.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
