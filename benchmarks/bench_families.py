"""One row per model family (issue 11's closing table), measured on the tiny test models of tests/comfy_tiny.py.

For SD1.5, SDXL, SD2 v-prediction, SD3 and Flux (ComfyUI's own family classes, tiny widths, variance-
preserving random weights), through ComfyUI 0.3.64 on the CPU:

* move:      ||x_out - x_T|| / ||x_T|| of a 4-step euler KSampler run from pure noise (does the model denoise?);
* identity:  max |SyncCanvas KSampler (one view, case 2, eta 0) - ComfyUI KSampler (euler)|, 3 steps, CFG 2,
             absolute and relative to max |output|;
* cases 1-6: max pairwise spread of the canvases of cases 1..6 on a 1-to-1 anagram (identity, flip_h),
             relative to max |output|; and case 0's distance for scale;
* StochSync: first / last outer sigma (denoise 1) against the family's [sigma_min, sigma_max], plain and
             after the family's shift node (ModelSamplingDiscrete zsnr / ModelSamplingSD3 shift 6 /
             ModelSamplingFlux at 2048x1024), beside what the old timestep rule ms.sigma(900), ms.sigma(270) gave;
* cross-view: the patch on 4 views whose overlaps form pairs {0,1}, {2,3}: weight 0 and one view equal the
             unpatched model bit for bit, view 0 moves when view 1 changes and not when view 2 changes,
             the cond half does not move when the uncond half changes.

Run:  COMFYUI_PATH=/work/main/.comfyui OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_families.py
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import sys

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import conftest  # noqa: E402,F401  (imports the pack as `sync_canvas`)

spec = importlib.util.spec_from_file_location("comfy_tiny", ROOT / "tests" / "comfy_tiny.py")
tiny = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tiny)


def ksampler(model, name, steps=3, cfg=2.0):
    import nodes as comfy_nodes

    latent = torch.zeros(1, tiny.FAMILY_LATENT_CHANNELS[name], 8, 8)
    pos, neg = tiny.family_conditioning(name, 0), tiny.family_conditioning(name, 1)
    with torch.inference_mode():
        return comfy_nodes.common_ksampler(model, 3, steps, cfg, "euler", "normal", pos, neg, {"samples": latent})[0]["samples"]


def sync(model, name, projector, mode="SyncTweedies: x0 in views (case 2)"):
    from sync_canvas.nodes.sampler_nodes import SyncCanvasKSampler

    pos, neg = tiny.family_conditioning(name, 0), tiny.family_conditioning(name, 1)
    settings = dict(seed=3, steps=3, cfg=2.0, mode=mode, scheduler="normal", eta=0.0, denoise=1.0)
    with torch.inference_mode():
        return SyncCanvasKSampler.execute(model, pos, neg, projector, **settings).args[0]["samples"]


def mode_names():
    from sync_canvas.nodes import sync_sampling

    names = list(sync_sampling.MODES)
    return {sync_sampling.mode_case(m): m for m in names if sync_sampling.mode_case(m) is not None}


def shifted(model, name):
    from comfy_extras import nodes_model_advanced as adv

    if name in ("sd15", "sdxl", "sd2_v"):
        sampling = "v_prediction" if name == "sd2_v" else "eps"
        return adv.ModelSamplingDiscrete().patch(model, sampling, True)[0], "ModelSamplingDiscrete zsnr"
    if name == "sd3":
        return adv.ModelSamplingSD3().patch(model, 6.0)[0], "ModelSamplingSD3 shift 6"
    return adv.ModelSamplingFlux().patch(model, 1.15, 0.5, 2048, 1024)[0], "ModelSamplingFlux 2048x1024"


def schedule(model):
    from sync_canvas.nodes.sampler_nodes import sync_sigmas

    ms = model.get_model_object("model_sampling")
    sig = sync_sigmas(model, "stochsync", "normal", 25, 1.0)
    old = [float(ms.sigma(torch.tensor(t))) for t in (900.0, 270.0)]
    return float(sig[0]), float(sig[-2]), float(ms.sigma_min), float(ms.sigma_max), old


def cross_view(model, name):
    from sync_canvas.nodes.cross_view_attention import patch_model

    def run(m, x, chunks=(0,)):
        n = x.shape[0] // len(chunks)
        options = dict(m.model_options.get("transformer_options", {}))
        options.update(cond_or_uncond=list(chunks), sigmas=torch.full((x.shape[0],), 0.5),
                       sync_canvas_views={"view_ids": torch.arange(n), "n_views": 4})
        conds = [tiny.family_conditioning(name, s) for s in (0, 1)]
        context = torch.cat([conds[c][0][0].expand(n, -1, -1) for c in chunks])
        extra = {}
        if "pooled_output" in conds[0][0][1]:
            pooled = torch.cat([conds[c][0][1]["pooled_output"].expand(n, -1) for c in chunks])
            extra["y"] = pooled if name != "sdxl" else torch.randn(x.shape[0], 2816, generator=torch.Generator().manual_seed(5))
        if name == "flux":
            extra["guidance"] = torch.full((x.shape[0],), 3.5)
        with torch.inference_mode():
            return m.model.apply_model(x, torch.full((x.shape[0],), 0.5), c_crossattn=context, transformer_options=options, **extra)

    c = tiny.FAMILY_LATENT_CHANNELS[name]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, c, 8, 8, generator=g)
    on, off = patch_model(model, tiny.PairedViewsProjector(), reference_view=-1), patch_model(model, tiny.PairedViewsProjector(), weight=0.0)
    base, plain = run(on, x), run(model, x)
    checks = {"w0=": torch.equal(run(off, x), plain)}
    x1 = x.clone()
    x1[1] = torch.randn(c, 8, 8, generator=g)
    x2 = x.clone()
    x2[2] = torch.randn(c, 8, 8, generator=g)
    checks["nbr"] = float((run(on, x1)[0] - base[0]).abs().max()) > 0
    checks["non-nbr=0"] = torch.equal(run(on, x2)[0], base[0])
    both = torch.cat([x, x])
    both2 = torch.cat([x, torch.randn(4, c, 8, 8, generator=g)])
    checks["cond/uncond"] = torch.equal(run(on, both, (0, 1))[:4], run(on, both2, (0, 1))[:4])
    return checks


def main():
    if not os.environ.get("COMFYUI_PATH"):
        raise SystemExit("set COMFYUI_PATH")
    tiny.import_comfy()
    import comfy.sample
    from sync_canvas.projectors import AnagramProjector, IdentityProjector

    torch.set_num_threads(1)
    cases = mode_names()
    print(f"{'family':7} {'move':>6} {'identity abs':>12} {'rel':>8} {'cases1-6 rel':>12} {'case0 rel':>9} "
          f"{'StochSync first..last':>22} {'range':>16} {'old rule':>16} {'shift node -> first..last':>42} cross-view")
    for name in tiny.FAMILIES:
        model = tiny.family_model(name)
        out = ksampler(model, name, steps=4, cfg=1.0)
        ms = model.get_model_object("model_sampling")
        noise = comfy.sample.prepare_noise(torch.zeros_like(out), 3)
        x_t = ms.noise_scaling(ms.sigma_max, noise, torch.zeros_like(noise), max_denoise=True)
        move = float((model.model.process_latent_in(out) - x_t).norm() / x_t.norm())
        stock = ksampler(model, name)
        ours = sync(model, name, IdentityProjector(64, 64))
        scale = float(stock.abs().max())
        ident = float((ours - stock).abs().max())
        anagram = AnagramProjector(64, 64, ("identity", "flip_h"))
        runs = [sync(model, name, anagram, cases[k]) for k in range(1, 7)]
        spread = max(float((a - b).abs().max()) for a in runs for b in runs) / float(runs[0].abs().max())
        case0 = float((sync(model, name, anagram, cases[0]) - runs[0]).abs().max()) / float(runs[0].abs().max())
        first, last, lo, hi, old = schedule(model)
        shift_model, shift_name = shifted(model, name)
        s_first, s_last, s_lo, s_hi, _ = schedule(shift_model)
        checks = cross_view(model, name)
        print(f"{name:7} {move:6.2f} {ident:12.2e} {ident / scale:8.1e} {spread:12.1e} {case0:9.1e} "
              f"{first:10.4f}..{last:<10.4f} [{lo:.4f}, {hi:.3f}] {old[0]:7.3f}..{old[1]:<7.3f} "
              f"{shift_name:27} {s_first:.4f}..{s_last:.4f} (max {s_hi:.3f}) "
              + " ".join(f"{k}{'ok' if v else 'FAIL'}" for k, v in checks.items()), flush=True)


if __name__ == "__main__":
    main()
