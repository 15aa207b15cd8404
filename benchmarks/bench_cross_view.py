"""Extra time per model call from the cross-view attention patch, full-size SD1.5 UNet, random weights.

One ComfyUI ``UNetModel`` with SD1.5's configuration (model_channels 320, channel_mult 1,2,4,4, two res
blocks per level, one transformer per attention level, context 768, 8 heads; 860 M parameters), built
file-less through ``comfy.supported_models.SD15`` and wrapped in a ``ModelPatcher``. One model call =
``apply_model`` on 8 views of 64x64 latents (512 px images) with 77 text tokens, as one cond chunk.

Settings, printed side by side with the ratio to the unpatched call:
* unpatched;
* patched, weight 0 (registered but inactive: the cost of the dispatch alone);
* patched, SyncMVD ring neighbours (i-1, i+1: each view attends to 3x the keys), no reference;
* patched, ring neighbours + reference view 0 (SyncMVD's first 20% of the schedule: one more attention).

Run:  COMFYUI_PATH=/work/ComfyUI flock /tmp/cpu-heavy.lock .venv/bin/python benchmarks/bench_cross_view.py
      [--views 8] [--latent 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
import conftest  # noqa: E402,F401  (imports the pack as `sync_canvas`)

SD15_UNET = dict(
    image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
    channel_mult=[1, 2, 4, 4], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
    transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], transformer_depth_middle=1,
    context_dim=768, use_linear_in_transformer=False, use_spatial_transformer=True, legacy=False,
    adm_in_channels=None, use_temporal_resblock=False, use_temporal_attention=False, use_checkpoint=False,
)


def import_comfy():
    path = os.environ.get("COMFYUI_PATH")
    if not path:
        sys.exit("set COMFYUI_PATH to a ComfyUI checkout (e.g. /work/ComfyUI)")
    sys.path.insert(0, path)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401
    import comfy.model_patcher
    import comfy.supported_models

    return comfy


def sd15_patcher(comfy):
    config = comfy.supported_models.SD15(SD15_UNET)
    config.set_inference_dtype(torch.float32, None)
    base = config.get_model({})
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in base.named_parameters():
            if name.endswith("bias"):
                param.zero_()
            elif param.ndim == 1:
                param.fill_(1.0)
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(base, load_device=cpu, offload_device=cpu)


class RingProjector:
    """Only the view count: with ``neighbours="ring"`` the node needs no geometry. The 360 rig's
    overlap (8 views, fov 72, 45 deg apart) is this ring (tests/test_cross_view_attention.py)."""

    def __init__(self, n_views):
        self.n_views = n_views


def model_call(model, x, context):
    """One ``apply_model`` as ``calc_cond_batch`` makes it: one cond chunk holding all views in order."""
    options = dict(model.model_options.get("transformer_options", {}))
    sigma = torch.full((x.shape[0],), 5.0)
    options.update(cond_or_uncond=[0], sigmas=sigma,
                   sync_canvas_views={"view_ids": torch.arange(x.shape[0]), "n_views": x.shape[0]})

    def call():
        with torch.inference_mode():
            model.model.apply_model(x, sigma, c_crossattn=context, transformer_options=options)

    return call


def interleaved_seconds(calls: dict, repeats: int) -> dict:
    """{name: [seconds]}: settings take turns each round so load from other jobs hits all of them."""
    times = {name: [] for name in calls}
    for round_index in range(repeats + 1):                  # round 0 warms up and is not counted
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            seconds = time.perf_counter() - start
            print(f"  round {round_index}: {name:34s} {seconds:7.2f} s", file=sys.stderr, flush=True)
            if round_index:
                times[name].append(seconds)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--latent", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    comfy = import_comfy()
    from sync_canvas.nodes.cross_view_attention import patch_model

    build = time.perf_counter()
    unet = sd15_patcher(comfy)
    n_params = sum(p.numel() for p in unet.model.diffusion_model.parameters())
    print(f"SD1.5 UNet (ComfyUI UNetModel), {n_params / 1e6:.0f} M parameters, random weights, "
          f"built in {time.perf_counter() - build:.1f} s; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"one model call: {args.views} views of {args.latent}x{args.latent} latents, 77 text tokens, "
          f"{args.repeats} interleaved rounds after a warm-up round\n")

    torch.manual_seed(0)
    x = torch.randn(args.views, 4, args.latent, args.latent)
    context = torch.randn(args.views, 77, 768)
    ring = RingProjector(args.views)
    settings = [
        ("unpatched", unet),
        ("patched, weight 0 (inactive)", patch_model(unet, ring, neighbours="ring", weight=0.0)),
        ("ring neighbours (3x keys)", patch_model(unet, ring, neighbours="ring", reference_view=-1)),
        ("ring neighbours + reference", patch_model(unet, ring, neighbours="ring", reference_view=0,
                                                     reference_end=1.0)),
    ]
    times = interleaved_seconds({name: model_call(model, x, context) for name, model in settings}, args.repeats)
    base = min(times["unpatched"])
    print(f"{'setting':34s} {'min s':>7s} {'median s':>9s} {'extra s':>8s} {'ratio':>6s}   (ratio and extra from the min)")
    for name, seconds in times.items():
        fastest = min(seconds)
        print(f"{name:34s} {fastest:7.2f} {statistics.median(seconds):9.2f} {fastest - base:8.2f} {fastest / base:6.2f}")


if __name__ == "__main__":
    main()
