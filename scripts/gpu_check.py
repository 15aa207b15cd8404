"""One command for a machine with a GPU: is the pack right and fast there? Prints one table.

    python scripts/gpu_check.py                      # CUDA, full sizes (needs COMFYUI_PATH for (c) and (d))
    python scripts/gpu_check.py --device cpu --small # what the test suite runs (tests/test_gpu_check.py)

(a) fast back-ends against their pure-torch twins: nvdiffrast vs the torch rasteriser (face ids, depth),
    embree vs torch, gsplat renders vs the compositing weights; a back-end that is not installed is
    reported as skipped, not passed;
(b) the device-contract and precision tests (tests/test_device_contract.py, tests/test_precision.py)
    with the data on ``--device`` (SYNC_CANVAS_TEST_DEVICE);
(c) shipped SD1.5 workflows through a real ComfyUI (scripts/run_workflow.py, tiny demo models, --fast);
(d) timings with random-weight models of full size (ComfyUI's own SD1.5 UNet and ControlNet classes, fp16
    on CUDA): mesh texturing, 10 views at 768^2, 30 steps, CFG, depth ControlNet (target <= 10 s on an
    H200-class GPU); 360 StochSync, 25 outer steps, CFG; and the share of each run spent outside the
    model (synchronization: projections, fuses, CG; target <= 2% on the GPU). ``--small`` shrinks
    every size (tiny UNet, few views and steps) so the whole check runs on a CPU in about a minute.

Exit status 0 when no row failed (skipped rows do not fail). Nothing is downloaded; weights are random.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import traceback

import torch

from pack_import import import_pack  # scripts/ (this script's folder)
from workflow_format import shipped_workflows

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEMO_FAMILY = "sd15"  # run_workflow's demo model; the catalog's other families need their own models


class Table:
    """Rows of (section, check, status, measured, detail); status PASS / FAIL / SKIP / INFO."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, section: str, check: str, status: str, measured: str = "", detail: str = "") -> None:
        self.rows.append(dict(section=section, check=check, status=status, measured=measured, detail=detail))
        print(f"[{status}] {section}: {check} {measured} {detail}".rstrip(), file=sys.stderr, flush=True)

    def guarded(self, section: str, check: str, fn) -> None:
        """Runs ``fn(table)``; an exception becomes a FAIL row naming it (one broken check never hides the rest)."""
        try:
            fn()
        except Exception as err:  # noqa: BLE001 - reported in the table
            self.add(section, check, "FAIL", "", f"{type(err).__name__}: {str(err)[:300]}")
            traceback.print_exc(file=sys.stderr)

    def markdown(self) -> str:
        lines = ["| section | check | status | measured | detail |", "|---|---|---|---|---|"]
        for r in self.rows:
            cells = [r[k].replace("|", "/").replace("\n", " ") for k in ("section", "check", "status", "measured", "detail")]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    @property
    def failed(self) -> bool:
        return any(r["status"] == "FAIL" for r in self.rows)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------------
# (a) fast back-ends vs their pure-torch twins
def check_rasterisers(table: Table, device: torch.device, small: bool) -> None:
    from sync_canvas.assets import procedural
    from sync_canvas.assets.cameras import paper_rig
    from sync_canvas.projectors.raster import VERIFIED_BACKENDS, available_backends, rasterize

    mesh = procedural.torus(24, 12) if small else procedural.torus(96, 48)
    rig = paper_rig(mesh.vertices)
    size = 48 if small else 768
    reference = rasterize(mesh, rig, (size, size), "torch", "cpu")
    have = available_backends()
    for name in ("embree", "nvdiffrast"):
        if name not in have:
            table.add("a back-ends", f"{name} vs torch rasteriser", "SKIP", "", f"not available here (available: {have})")
            continue
        where = device if name == "nvdiffrast" else torch.device("cpu")
        start = time.perf_counter()
        got = rasterize(mesh, rig, (size, size), name, where).to("cpu")
        seconds = time.perf_counter() - start
        both = reference.mask & got.mask
        agree = float((reference.face_id == got.face_id).float().mean())
        depth = float((reference.depth - got.depth)[both].abs().max()) if bool(both.any()) else 0.0
        ok = agree >= 0.995 and depth <= 1e-3
        label = "verified" if name in VERIFIED_BACKENDS else "unverified until this passes"
        table.add("a back-ends", f"{name} vs torch rasteriser ({len(rig)} views {size}^2)", "PASS" if ok else "FAIL",
                  f"face ids agree {100 * agree:.3f}%, depth max diff {depth:.2e}",
                  f"{label}; {seconds:.2f} s; pass: >= 99.5% and <= 1e-3")


def check_gsplat(table: Table, device: torch.device, small: bool) -> None:
    from sync_canvas.assets.splat_cameras import fit_orbit
    from sync_canvas.assets.splat_procedural import procedural_splat_scene
    from sync_canvas.projectors import splat_render

    if not splat_render._gsplat_available(device):
        table.add("a back-ends", "gsplat vs compositing weights (renders)", "SKIP", "", f"needs CUDA and the gsplat package (device {device})")
        return
    scene = procedural_splat_scene(500 if small else 20000, seed=0)
    size = 32 if small else 512
    cams = fit_orbit(scene.means, scene.opacities, n_views=4, width=size, height=size)
    colors = torch.rand(3, scene.means.shape[0], generator=torch.Generator().manual_seed(0))
    geometry = (scene.means, scene.quats, scene.log_scales, scene.opacities)
    ref, ref_alpha, _ = splat_render.render(*geometry, colors, cams, backend="torch")
    got, alpha, _ = splat_render.render(*(t.to(device) for t in geometry), colors.to(device), cams, backend="gsplat")
    diff, adiff = float((got.cpu() - ref).abs().max()), float((alpha.cpu() - ref_alpha).abs().max())
    mean = float((got.cpu() - ref).abs().mean())
    ok = mean <= 1e-2 and diff <= 0.1
    table.add("a back-ends", f"gsplat vs compositing weights ({len(cams)} views {size}^2)", "PASS" if ok else "FAIL",
              f"render max diff {diff:.3g}, mean {mean:.2e}; alpha max diff {adiff:.3g}", "pass: mean <= 1e-2, max <= 0.1")


# --------------------------------------------------------------------------------------------------
# (b) the device-contract tests on the device
def check_contract(table: Table, device: torch.device, small: bool) -> None:
    env = dict(os.environ, SYNC_CANVAS_TEST_DEVICE=str(device), PYTHONDONTWRITEBYTECODE="1")
    args = [sys.executable, "-m", "pytest", "tests/test_device_contract.py", "tests/test_precision.py", "-q",
            "-p", "no:cacheprovider", "--no-header"]
    if small:
        args += ["-k", "wide or identity or cross_view or networks"]
    start = time.perf_counter()
    out = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    summary = (out.stdout.strip().splitlines() or ["(no output)"])[-1]
    status = "PASS" if out.returncode == 0 else "FAIL"
    table.add("b contract", f"device-contract + precision tests on {device}", status, summary,
              f"{time.perf_counter() - start:.0f} s" + ("; subset (-k) with --small" if small else ""))
    if out.returncode != 0:
        print(out.stdout[-4000:], out.stderr[-2000:], file=sys.stderr)


# --------------------------------------------------------------------------------------------------
# (c) shipped workflows through a real ComfyUI
def check_workflows(table: Table, device: torch.device, names: list[str] | None, comfyui: str | None,
                    models_dir: str | None = None) -> None:
    if not comfyui:
        table.add("c workflows", "shipped workflows through ComfyUI", "SKIP", "", "COMFYUI_PATH not set")
        return
    catalog = shipped_workflows(ROOT)
    files = sorted(e["api"] for e in catalog)
    if names is not None:
        files = [f for f in files if f.stem in names]
    else:
        skipped = sorted(e["id"] for e in catalog if e["family"] != DEMO_FAMILY)
        files = sorted(e["api"] for e in catalog if e["family"] == DEMO_FAMILY)
        if skipped:
            table.add("c workflows", ", ".join(skipped), "SKIP", "", "need SDXL/Flux models (tests/integration runs them with in-memory family models)")
    for wf in files:
        with tempfile.TemporaryDirectory() as out_dir:
            args = [sys.executable, str(ROOT / "scripts" / "run_workflow.py"), str(wf), "--fast", "--json",
                    "--device", "cpu" if device.type == "cpu" else "gpu", "--comfyui", comfyui, "--output", out_dir]
            args += ["--models-dir", models_dir] if models_dir else []
            run = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "SYNC_CHECKPOINT": ""})
        try:
            report = json.loads(run.stdout[run.stdout.index("{"):])
        except ValueError:
            report = {"status": "no report", "error": (run.stderr or run.stdout)[-300:]}
        ok = report.get("status") == "success"
        table.add("c workflows", wf.stem, "PASS" if ok else "FAIL",
                  f"run {report.get('run_seconds', '?')} s, total {report.get('total_seconds', '?')} s on {report.get('device', '?')}",
                  "" if ok else str(report.get("error", ""))[:300])


# --------------------------------------------------------------------------------------------------
# (d) timings with full-size random-weight models
SD15_UNET = dict(  # the SD1.5 UNet as ComfyUI's model detection configures it (860M parameters)
    image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
    channel_mult=[1, 2, 4, 4], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
    transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], transformer_depth_middle=1, context_dim=768,
    num_heads=8, num_head_channels=-1, use_linear_in_transformer=False, use_spatial_transformer=True, legacy=False,
    adm_in_channels=None, use_temporal_resblock=False, use_temporal_attention=False, use_checkpoint=False,
)
TINY_UNET = dict(SD15_UNET, model_channels=32, num_res_blocks=[1], channel_mult=[1], transformer_depth=[1],
                 transformer_depth_output=[0, 0], transformer_depth_middle=-1, num_heads=2)


def import_comfy(comfyui: str, device: torch.device):
    if comfyui not in sys.path:
        sys.path.insert(0, comfyui)
    import comfy.cli_args

    comfy.cli_args.args.cpu = device.type == "cpu"
    import comfy.cldm.cldm
    import comfy.ldm.modules.diffusionmodules.openaimodel
    import comfy.ops

    return comfy


def random_init(module: torch.nn.Module, seed: int = 0) -> None:
    """Variance-preserving random weights, drawn on the module's device (fast on a GPU)."""
    generator = torch.Generator(next(module.parameters()).device).manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.ndim <= 1:
                p.fill_(1.0)
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=generator, device=p.device, dtype=torch.float32) / math.sqrt(fan_in))


def build_models(comfy, config: dict, device: torch.device, dtype: torch.dtype, controlnet: bool):
    ops = comfy.ops.disable_weight_init
    unet = comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel(**config, operations=ops, device=device, dtype=dtype)
    random_init(unet)
    net = None
    if controlnet:
        cfg = {k: v for k, v in config.items() if k not in ("out_channels", "transformer_depth_output")}
        net = comfy.cldm.cldm.ControlNet(hint_channels=3, operations=ops, device=device, dtype=dtype, **cfg)
        random_init(net, seed=1)
    return unet.eval(), net if net is None else net.eval()


class TimedCFGDenoiser:
    """``denoiser(x, sigma, view_ids) -> x0``: CFG over the UNet (+ ControlNet on per-view hints) in the
    model's dtype, as ComfyUI runs it; ``model_seconds`` accumulates the time spent in the model."""

    def __init__(self, unet, controlnet, ms, context, hints, cfg: float, device: torch.device, dtype: torch.dtype):
        self.unet, self.controlnet, self.ms = unet, controlnet, ms
        self.context, self.hints, self.cfg, self.device, self.dtype = context, hints, cfg, device, dtype
        self.model_seconds = 0.0

    @torch.no_grad()
    def __call__(self, x, sigma, view_ids):
        sync(self.device)
        start = time.perf_counter()
        n, s = x.shape[0], float(sigma)
        x_in = (torch.cat([x, x]) / math.sqrt(s * s + 1)).to(self.dtype)
        t = torch.full((2 * n,), float(self.ms.timestep(torch.tensor(s))), device=self.device, dtype=self.dtype)
        ctx = self.context[:2].repeat_interleave(n, 0)
        control = None
        if self.controlnet is not None:
            hint = self.hints[view_ids.to(self.hints.device)].repeat(2, 1, 1, 1)
            out = self.controlnet(x=x_in, hint=hint, timesteps=t, context=ctx)
            control = {"middle": list(out["middle"]), "output": list(out["output"])}
        eps = self.unet(x_in, t, context=ctx, control=control).float()
        cond, uncond = eps[:n], eps[n:]
        x0 = x - s * (uncond + self.cfg * (cond - uncond))
        sync(self.device)
        self.model_seconds += time.perf_counter() - start
        return x0.to(self.dtype)  # what a half-precision model hands back


def timed_run(table: Table, label: str, target: str, run, denoiser: TimedCFGDenoiser, device: torch.device) -> None:
    run()  # warm-up: kernels, caches (the projector's selections), allocator
    denoiser.model_seconds = 0.0
    sync(device)
    start = time.perf_counter()
    result = run()
    sync(device)
    total = time.perf_counter() - start
    share = max(0.0, 1 - denoiser.model_seconds / total)
    finite = bool(torch.isfinite(result.canonical).all())
    table.add("d timings", label, "INFO" if finite else "FAIL",
              f"{total:.2f} s total, model {denoiser.model_seconds:.2f} s, sync share {100 * share:.1f}%, "
              f"{result.model_evals} view evals", target if finite else "non-finite result")


def check_timings(table: Table, device: torch.device, small: bool, comfyui: str | None) -> None:
    if not comfyui:
        table.add("d timings", "random-weight SD1.5 UNet + ControlNet runs", "SKIP", "", "COMFYUI_PATH not set (ComfyUI's UNet classes)")
        return
    from sync_canvas.assets import procedural
    from sync_canvas.assets.cameras import paper_rig
    from sync_canvas.projectors import EquirectProjector
    from sync_canvas.projectors.mesh_texture import MeshTextureProjector
    from sync_canvas.samplers import DiscreteEpsSampling, sample_stochsync, sample_synchronized, stochsync_sigmas
    from sync_canvas.samplers.model_sampling import timesteps_to_sigmas

    comfy = import_comfy(comfyui, device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    config = TINY_UNET if small else SD15_UNET
    ms = DiscreteEpsSampling()
    gen = torch.Generator().manual_seed(0)
    context = torch.randn(2, 77, 768, generator=gen).to(device, dtype)
    unet, controlnet = build_models(comfy, config, device, dtype, controlnet=True)
    params = sum(p.numel() for p in unet.parameters()) / 1e6
    table.add("d timings", "models", "INFO", f"UNet {params:.1f}M + ControlNet {sum(p.numel() for p in controlnet.parameters()) / 1e6:.1f}M parameters, {dtype}",
              "random weights, ComfyUI's openaimodel.UNetModel / cldm.ControlNet")

    # mesh texturing: 10 views (SyncMVD rig) at 768^2 (latent 96), 30 steps, CFG 15.5, depth ControlNet
    view, steps, texture = (16, 2, 64) if small else (96, 30, 1536)
    mesh = procedural.torus(48, 24)
    projector = MeshTextureProjector(mesh, paper_rig(mesh.vertices), view, texture)
    hints = projector.depth_maps().repeat(1, 3, 1, 1)  # the depth hints, at latent size, upsampled below
    hints = torch.nn.functional.interpolate(hints, scale_factor=8, mode="nearest").to(device, dtype)
    denoiser = TimedCFGDenoiser(unet, controlnet, ms, context, hints, 15.5, device, dtype)
    sigmas = timesteps_to_sigmas(ms, torch.linspace(999, 0, steps).round().tolist())
    noise = torch.randn(4, texture, texture, generator=gen).to(device)
    timed_run(table, f"mesh texturing: {projector.n_views} views {8 * view}^2, {steps} steps, CFG, ControlNet, case 2",
              "target <= 10 s on an H200-class GPU (full size); sync share <= 2%",
              lambda: sample_synchronized(denoiser, projector, sigmas, noise, ms, case=2), denoiser, device)

    # 360 StochSync: 10 views in two groups, 25 outer steps, CFG 7.5, no ControlNet
    view, outer, inner = (64, 2, 2) if small else (512, 25, 25)
    pano = EquirectProjector(view, rig="stochsync").rescaled(8)
    denoiser = TimedCFGDenoiser(unet, None, ms, context, None, 7.5, device, dtype)
    sigmas = stochsync_sigmas(ms, outer)
    noise = torch.randn(4, *pano.canonical_shape, generator=gen).to(device)
    timed_run(table, f"360 StochSync: {pano.n_views} views {view}^2, {outer} outer steps (K from {inner}), CFG",
              "sync share <= 2% on the GPU",
              lambda: sample_stochsync(denoiser, pano, sigmas, noise, ms, inner_steps=inner), denoiser, device)
    del unet, controlnet
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--small", action="store_true", help="small sizes everywhere (CPU smoke run; what the tests run)")
    parser.add_argument("--only", default="abcd", help="sections to run, e.g. 'ab' (default: abcd)")
    parser.add_argument("--workflows", default=None, help="comma-separated workflow names for (c) (default: all SD1.5 ones; "
                        "with --small: wide_panorama)")
    parser.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH"), help="ComfyUI checkout (default: $COMFYUI_PATH)")
    parser.add_argument("--models-dir", default=None, help="tiny demo models for (c) (default: run_workflow.py's)")
    parser.add_argument("--json", type=pathlib.Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("torch sees no CUDA device; use --device cpu --small for the CPU smoke run")
    import_pack()
    table = Table()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    table.add("setup", "device", "INFO", f"{device} ({name}), torch {torch.__version__}", "--small" if args.small else "full sizes")
    if "a" in args.only:
        table.guarded("a back-ends", "rasterisers", lambda: check_rasterisers(table, device, args.small))
        table.guarded("a back-ends", "gsplat", lambda: check_gsplat(table, device, args.small))
    if "b" in args.only:
        table.guarded("b contract", "device-contract tests", lambda: check_contract(table, device, args.small))
    if "c" in args.only:
        names = args.workflows.split(",") if args.workflows else (["wide_panorama"] if args.small else None)
        table.guarded("c workflows", "workflows", lambda: check_workflows(table, device, names, args.comfyui, args.models_dir))
    if "d" in args.only:
        with torch.inference_mode():
            table.guarded("d timings", "timings", lambda: check_timings(table, device, args.small, args.comfyui))
    print(table.markdown())
    if args.json:
        args.json.write_text(json.dumps(table.rows, indent=1))
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main())
