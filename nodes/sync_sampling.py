"""The one bridge between ComfyUI's sampling stack and the pure synchronized samplers (``samplers/``).

The pack's sampler functions want ``denoiser(x_views [n,C,h,w], sigma, view_ids [n]) -> x0``. ComfyUI
hands a ``KSAMPLER`` function ``model(x, sigma_vec, **extra_args)`` that already applies CFG, LoRA patches
and ControlNet. Everything between the two lives here, once, and is used by the SyncCanvas KSampler, the
SAMPLER node and every fuse rule (``fuse_rules.py``):

* ``canonical_latent`` / ``sync_sigmas``: the start latent and the sigma schedule of a run;
* ``run_with_comfy``: CFGGuider + KSAMPLER + the latent preview callback (previews, progress, Cancel);
* ``comfy_run``: inside a KSAMPLER function, the seeded generator, the recovered noise and start latent,
  the denoiser and the preview report every pure sampler takes;
* ``sample_sync_canvas``: the KSAMPLER function of the SyncTweedies cases and StochSync;
* ``views_aligned`` makes per-view conditioning (ControlNet hints, per-view prompts) follow ``view_ids``
  when a step evaluates only a subset of the views (StochSync groups, chunking). Without it ComfyUI takes
  the first hints of the batch: with 4 hints and a 2-view CFG call, cond gets views 0,1 and uncond views
  2,3 (notes/comfyui-integration.md, section 1c, "the subset pitfall").
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator

from dataclasses import dataclass

import torch

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview

from ..samplers.cross_view_patch import with_views
from ..samplers.engine import RGBFuse
from ..samplers.stochsync import sample_stochsync, stochsync_sigmas
from ..samplers.synchronized import sample_synchronized

PER_VIEW_KEY = "sync_canvas_views"
"""Conditioning dict key set by the per-view prompt node: the number of views its batch lines up with."""

MODES = ("case_0", "case_1", "case_2", "case_3", "case_4", "case_5", "case_6", "stochsync")
FUSE_RULE_MODES = ("ddr", "dde", "syncdiffusion")
DEFAULT_MODE = "case_2"
MODE_TOOLTIP = (
    "What is synchronized each step (SyncTweedies Table 1). case_0: nothing, fuse once at the end; "
    "case_1/2/3: state in views, sync eps / x0 (Tweedie, SyncTweedies' pick) / x_prev; "
    "case_4/5/6: state in the canvas, sync eps / x0 / x_prev. stochsync: max-stochasticity StochSync "
    "(multi-step x0, alternating non-overlapping view groups, own t 900->270 schedule)."
)
FUSE_RULE_TOOLTIP = (
    " Fuse rules with the papers' defaults (their own nodes under 'fuse rules' expose every option): "
    "ddr: DDR's pulled-back least-squares fit of the canvas (Savani et al.); dde: DDE's learned "
    "coordinator - none can be loaded here, so this averages and says so (use the DDE KSampler with a "
    "coordinator); syncdiffusion: SyncDiffusion's coherence guidance, w 20 decaying 0.95 (Lee et al.)."
)


def mode_case(mode: str) -> int | None:
    """``"case_k"`` -> k; ``"stochsync"`` -> None; anything else raises a ValueError listing the modes."""
    if mode not in MODES:
        raise ValueError(f"unknown sampler mode {mode!r}; expected one of {', '.join(MODES)}")
    return None if mode == "stochsync" else int(mode.split("_")[1])


# --------------------------------------------------------------------------------------------------
# per-view conditioning that follows view_ids
def control_chain(control) -> Iterator:
    """A ControlNet object and every ``previous_controlnet`` behind it (ControlNetApplyAdvanced chains them)."""
    seen = set()
    while control is not None and id(control) not in seen:
        seen.add(id(control))
        yield control
        control = getattr(control, "previous_controlnet", None)


def hint_counts(conditionings) -> list[int]:
    """Batch sizes of every ControlNet hint reachable from raw CONDITIONING lists (``[[tensor, dict], ...]``)."""
    counts = []
    for conditioning in conditionings:
        for _, options in conditioning or []:
            for control in control_chain(options.get("control")):
                hint = getattr(control, "cond_hint_original", None)
                if hint is not None:
                    counts.append(int(hint.shape[0]))
    return counts


def check_view_conditioning(positive, negative, n_views: int) -> None:
    """Hints and per-view prompts must come one per view (or one for all): else a clear ValueError."""
    for count in hint_counts([positive, negative]):
        if count not in (1, n_views):
            raise ValueError(
                f"a ControlNet hint batch has {count} images but the projector has {n_views} views; "
                f"give one hint per view (e.g. from SyncCanvas Render Views) or a single hint for all"
            )
    for name, conditioning in (("positive", positive), ("negative", negative)):
        for tensor, options in conditioning or []:
            views = options.get(PER_VIEW_KEY)
            if views is not None and views != n_views:
                raise ValueError(
                    f"{name} conditioning assigns prompts to {views} views but the projector has {n_views} views"
                )


@contextmanager
def views_aligned(conds: dict, view_ids: torch.Tensor, n_views: int):
    """For one model call on ``view_ids``: slice every per-view hint and per-view prompt to those views.

    ``conds`` is the guider's processed conds (``{"positive": [dict], "negative": [dict]}``). Hints with
    batch ``n_views`` get ``cond_hint_original = full[view_ids]`` and a cleared ``cond_hint`` cache;
    per-view prompts (marked with ``PER_VIEW_KEY``) get their batch-``n_views`` model conds sliced.
    Everything is restored afterwards. Calls on all views in order change nothing.
    """
    if n_views <= 1 or torch.equal(view_ids.cpu(), torch.arange(n_views)):
        yield
        return
    ids = view_ids.cpu()
    swapped_controls, swapped_conds, seen = [], [], set()
    try:
        for cond_list in conds.values():
            for cond in cond_list:
                for control in control_chain(cond.get("control")):
                    hint = getattr(control, "cond_hint_original", None)
                    if id(control) in seen or hint is None or hint.shape[0] != n_views:
                        continue
                    seen.add(id(control))
                    swapped_controls.append((control, hint, control.cond_hint))
                    control.cond_hint_original = hint[ids.to(hint.device)]
                    control.cond_hint = None
                if cond.get(PER_VIEW_KEY) == n_views:
                    model_conds = cond["model_conds"]
                    swapped_conds.append((cond, model_conds))
                    cond["model_conds"] = {k: _slice_views(v, ids, n_views) for k, v in model_conds.items()}
        yield
    finally:
        for control, hint, cached in swapped_controls:
            control.cond_hint_original = hint
            control.cond_hint = cached
        for cond, model_conds in swapped_conds:
            cond["model_conds"] = model_conds


def _slice_views(model_cond, ids: torch.Tensor, n_views: int):
    tensor = getattr(model_cond, "cond", None)
    if isinstance(tensor, torch.Tensor) and tensor.dim() > 0 and tensor.shape[0] == n_views:
        return model_cond._copy_with(tensor[ids.to(tensor.device)])
    return model_cond


def make_denoiser(model, extra_args: dict, n_views: int, check_cancel: Callable[[], None]):
    """``denoiser(x_views, sigma, view_ids) -> x0`` over ComfyUI's CFG model, hints following ``view_ids``.

    The view ids also travel in ``transformer_options["sync_canvas_views"]`` (``with_views``), which is
    how the cross-view attention patch learns which views a call holds.
    """
    guider = getattr(model, "inner_model", None)

    def denoiser(x_views: torch.Tensor, sigma: torch.Tensor, view_ids: torch.Tensor) -> torch.Tensor:
        check_cancel()
        sigma_vec = torch.as_tensor(sigma, dtype=x_views.dtype, device=x_views.device).reshape(1).expand(x_views.shape[0])
        view_ids = torch.as_tensor(view_ids).long()
        with views_aligned(getattr(guider, "conds", None) or {}, view_ids, n_views):
            return model(x_views, sigma_vec, **with_views(extra_args, view_ids, n_views))

    return denoiser


# --------------------------------------------------------------------------------------------------
# RGB fusing through the user's VAE
def make_rgb_fuse(vae, base_model, pixel_projector, every_step: bool = False) -> RGBFuse:
    """``RGBFuse`` whose decode/encode go through ``vae`` and the model's latent scaling (process_in/out)."""

    def decode(latents: torch.Tensor) -> torch.Tensor:
        images = vae.decode(base_model.process_latent_out(latents))
        return images.reshape(-1, *images.shape[-3:]).movedim(-1, 1).to(latents.device, latents.dtype)

    def encode(rgb: torch.Tensor) -> torch.Tensor:
        latents = vae.encode(rgb.movedim(1, -1)[..., :3])
        return base_model.process_latent_in(latents.to(rgb.device)).to(rgb.dtype)

    return RGBFuse(decode=decode, encode=encode, projector=pixel_projector, every_step=every_step)


# --------------------------------------------------------------------------------------------------
# a run: start latent, schedule, ComfyUI's guider and KSAMPLER
def canonical_latent(model, latent: dict | None, projector, pixel_projector=None) -> torch.Tensor:
    """The canonical start latent ``[1, C, *S]`` (raw VAE space): the given one, checked, or zeros.
    ``pixel_projector`` (the node's input) names the pixel canvas the latent must come from in errors."""
    latent_format = model.get_model_object("latent_format")
    shape = tuple(projector.canonical_shape)
    if latent is None:
        return torch.zeros(1, latent_format.latent_channels, *shape)
    samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    if samples.shape[0] != 1 or tuple(samples.shape[2:]) != shape:
        got = "x".join(map(str, samples.shape[2:][::-1]))
        raise ValueError(
            f"the latent is {got} (WxH, batch {samples.shape[0]}) but the projector's canonical latent is "
            f"{'x'.join(map(str, shape[::-1]))} (batch 1)"
            + ("" if pixel_projector is None else
               f", i.e. a {'x'.join(map(str, pixel_projector.canonical_shape[::-1]))} pixel canvas")
            + "; use SyncCanvas Empty Canonical Latent or VAE-encode the canvas image"
        )
    if "noise_mask" in latent:
        raise ValueError("the latent has a noise_mask; inpainting a canvas is not supported by the SyncCanvas KSampler")
    return samples


def sync_sigmas(model, mode: str, scheduler: str, steps: int, denoise: float) -> torch.Tensor:
    """The sigma schedule: StochSync's own t 900 -> 270 of 1000 as fractions of the model's noise schedule
    (any family, shift nodes honoured; denoise < 1 starts later), else ComfyUI's KSampler rule."""
    model_sampling = model.get_model_object("model_sampling")
    if mode == "stochsync":
        return stochsync_sigmas(model_sampling, steps=steps, denoise=denoise).cpu()
    return comfy.samplers.KSampler(model, steps, "cpu", "euler", scheduler, denoise).sigmas.cpu()


def run_with_comfy(model, positive, negative, cfg: float, seed: int, samples: torch.Tensor, sigmas: torch.Tensor,
                   function, options: dict) -> torch.Tensor:
    """``function`` (a KSAMPLER function) through CFGGuider with ComfyUI's latent previews and progress bar.

    ``samples [1, C, *S]`` is the raw start latent; the standard-normal noise (``prepare_noise`` of the
    seed) and ``samples`` also reach ``function`` as ``noise`` / ``latent_image`` so it recovers them
    exactly. Returns the sampled canonical latent ``[1, C, *S]`` (raw VAE space).
    """
    noise = comfy.sample.prepare_noise(samples, seed)
    sampler = comfy.samplers.KSAMPLER(function, extra_options=dict(options, noise=noise, latent_image=samples))
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    callback = latent_preview.prepare_callback(model, sigmas.shape[-1] - 1)
    return guider.sample(noise, samples, sampler, sigmas, denoise_mask=None, callback=callback,
                         disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)


@dataclass
class ComfyRun:
    """What every pure sampler takes, made from what a KSAMPLER function is given."""

    base_model: object  # ComfyUI's BaseModel (latent format, process_latent_in/out)
    model_sampling: object  # its ModelSampling (noise_scaling, sigma <-> timestep)
    denoiser: Callable  # denoiser(x_views, sigma, view_ids) -> x0, hints following view_ids
    noise: torch.Tensor  # [C, *S] standard normal (canonical)
    latent_image: torch.Tensor | None  # [C, *S] model-space start, None for an empty canvas
    max_denoise: bool  # ComfyUI's KSAMPLER max_denoise rule (the schedule starts at sigma_max)
    generator: torch.Generator  # seeded from the run's seed, on the data's device
    report: Callable[[int, int, torch.Tensor], None]  # the pure samplers' callback -> ComfyUI previews
    check_cancel: Callable[[], None]

    def common(self) -> dict:
        """Keyword arguments every pure sampler takes."""
        return dict(generator=self.generator, callback=self.report, check_cancel=self.check_cancel)


def comfy_run(model, x, sigmas, extra_args, callback, projector, noise=None, latent_image=None) -> ComfyRun:
    """Inside a KSAMPLER function: recover the noise and start latent, seed the generator, wrap the model.

    ``x`` is what ``KSAMPLER.sample`` passes: ``noise_scaling(sigmas[0], noise, latent)``. The pack's nodes
    pass the standard-normal ``noise`` and raw ``latent_image`` explicitly (exact SDEdit); used as a plain
    SAMPLER, ``x / noise_scaling(sigma_0, 1, 0)`` is taken as the noise with a zero latent, which
    reproduces ``x`` at the first step exactly. Previews show ``projector.preview_latent`` of the x0.
    """
    extra_args = {} if extra_args is None else extra_args
    base_model = model.inner_model.inner_model
    model_sampling = base_model.model_sampling
    max_denoise = noise is not None and starts_at_max_sigma(model_sampling, sigmas)
    if noise is None:  # x is already scaled (max_denoise included): undo the plain scaling only
        scale = model_sampling.noise_scaling(sigmas[:1], torch.ones_like(x[:1, :1]), torch.zeros_like(x[:1, :1]))
        noise, latent_image = x / scale, None
    else:
        noise = noise.to(x)
        if latent_image is not None:
            latent_image = latent_image.to(x)
            latent_image = base_model.process_latent_in(latent_image) if torch.count_nonzero(latent_image) else None
    last = len(sigmas) - 1

    def report(step: int, total_steps: int, canonical_x0: torch.Tensor) -> None:
        preview = projector.preview_latent(canonical_x0)
        if callback is not None and preview is not None:
            x0 = preview.unsqueeze(0)
            i = min(step, max(last - 1, 0))
            callback({"i": i, "x": x0, "denoised": x0, "sigma": sigmas[i], "sigma_hat": sigmas[i]})

    check = comfy.model_management.throw_exception_if_processing_interrupted
    return ComfyRun(
        base_model=base_model,
        model_sampling=model_sampling,
        denoiser=make_denoiser(model, extra_args, projector.n_views, check),
        noise=noise[0].clone(),
        latent_image=None if latent_image is None else latent_image[0].clone(),
        max_denoise=max_denoise,
        generator=torch.Generator(device=x.device).manual_seed(int(extra_args.get("seed", 0) or 0)),
        report=report,
        check_cancel=check,
    )


def check_latent_shape(x: torch.Tensor, projector) -> None:
    if projector is None:
        raise ValueError("the synchronized sampler needs a latent-resolution projector")
    if x.shape[0] != 1 or tuple(x.shape[2:]) != tuple(projector.canonical_shape):
        raise ValueError(
            f"the latent has shape {tuple(x.shape)} but the projector's canonical latent is "
            f"[1, C, {', '.join(map(str, projector.canonical_shape))}]"
        )


# --------------------------------------------------------------------------------------------------
# the KSAMPLER function of the SyncTweedies cases and StochSync
def release_patch_caches(extra_args: dict | None) -> None:
    """Empty the per-run caches of the model's attention patches (cross-view attention keeps the reference
    view's keys/values of the current step). The patches live in the MODEL node output, which ComfyUI
    caches: without this the last step's tensors would stay pinned (on the GPU) after the run."""
    options = ((extra_args or {}).get("model_options") or {}).get("transformer_options") or {}
    for patches in (options.get("patches_replace") or {}).values():
        for patch in patches.values():
            clear = getattr(patch, "clear_cache", None)
            if callable(clear):
                clear()


@torch.no_grad()
def sample_sync_canvas(
    model,
    x,
    sigmas,
    extra_args=None,
    callback=None,
    disable=None,
    projector=None,
    mode: str = DEFAULT_MODE,
    eta: float = 0.0,
    max_views_per_batch: int | None = None,
    vae=None,
    pixel_projector=None,
    rgb_every_step: bool = False,
    inner_steps: int = 50,
    noise: torch.Tensor | None = None,
    latent_image: torch.Tensor | None = None,
    result_sink: dict | None = None,
):
    """Synchronized sampling of one canonical latent ``x [1, C, *S]`` (model space) -> ``[1, C, *S]``.

    Noise and start latent as in ``comfy_run``. With a ``vae`` (and the ``pixel_projector``) the views
    are also fused in RGB (at the end, or every step). ``result_sink["result"]`` receives the SyncResult.
    """
    check_latent_shape(x, projector)
    case = mode_case(mode)
    # read here for previews only; the sampler's Engine makes the run's own copy (node outputs never change)
    projector = projector.to(x.device)
    sigmas = sigmas.to(x.device)
    run = comfy_run(model, x, sigmas, extra_args, callback, projector, noise, latent_image)
    rgb_fuse = None
    if vae is not None:
        if pixel_projector is None:
            raise ValueError("RGB fusing needs the pixel-resolution projector next to the VAE")
        rgb_fuse = make_rgb_fuse(vae, run.base_model, pixel_projector.to(x.device), rgb_every_step)
    options = dict(latent_image=run.latent_image, max_views_per_batch=max_views_per_batch or None, rgb_fuse=rgb_fuse,
                   **run.common())
    try:
        if case is None:
            result = sample_stochsync(run.denoiser, projector, sigmas, run.noise, run.model_sampling,
                                      inner_steps=inner_steps, **options)
        else:
            result = sample_synchronized(run.denoiser, projector, sigmas, run.noise, run.model_sampling, case=case,
                                         eta=eta, max_denoise=run.max_denoise, **options)
    finally:
        release_patch_caches(extra_args)
    if result_sink is not None:
        result_sink["result"] = result
    return result.canonical.unsqueeze(0).to(x)


def starts_at_max_sigma(model_sampling, sigmas: torch.Tensor) -> bool:
    """ComfyUI's ``KSAMPLER.max_denoise`` rule: the schedule starts at (or above) the model's sigma_max."""
    sigma_max, sigma = float(model_sampling.sigma_max), float(sigmas[0])
    return math.isclose(sigma_max, sigma, rel_tol=1e-05) or sigma > sigma_max
