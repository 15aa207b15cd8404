"""The synchronized KSampler node and the SAMPLER for SamplerCustomAdvanced.

Both run through ComfyUI's own stack (CFGGuider + KSAMPLER), so LoRA-patched models, CFG, ControlNet,
previews and Cancel behave as with the stock KSampler. All synchronization math is in ``samplers/``.
"""

from __future__ import annotations

import torch

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
from comfy_api.latest import io, ui
from comfy_execution.graph_utils import ExecutionBlocker

from ..samplers.stochsync import stochsync_sigmas
from .common import CATEGORY, canvas_to_image, latent_projector, projector_input, tensor_to_image
from .sync_sampling import (
    DEFAULT_MODE,
    FUSE_RULE_MODES,
    FUSE_RULE_TOOLTIP,
    MODE_TOOLTIP,
    MODES,
    check_view_conditioning,
    mode_case,
    sample_sync_canvas,
)

NO_VAE_MESSAGE = "connect a VAE to the SyncCanvas KSampler to get its IMAGE outputs"


def canonical_latent(model, latent: dict | None, projector) -> torch.Tensor:
    """The canonical start latent ``[1, C, *S]`` (raw VAE space): the given one, checked, or zeros."""
    latent_format = model.get_model_object("latent_format")
    shape = tuple(projector.canonical_shape)
    if latent is None:
        return torch.zeros(1, latent_format.latent_channels, *shape)
    samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    if samples.shape[0] != 1 or tuple(samples.shape[2:]) != shape:
        got = "x".join(map(str, samples.shape[2:][::-1]))
        raise ValueError(
            f"the latent is {got} (WxH, batch {samples.shape[0]}) but the projector's canonical latent is "
            f"{'x'.join(map(str, shape[::-1]))} (batch 1), i.e. a "
            f"{'x'.join(str(8 * s) for s in shape[::-1])} pixel canvas; "
            f"use SyncCanvas Empty Canonical Latent or VAE-encode an image of that size"
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


class SyncCanvasKSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasKSampler",
            display_name="SyncCanvas KSampler",
            category=f"{CATEGORY}/sampling",
            description=(
                "Denoises every view of the canvas with your model and synchronizes the views through the "
                "canvas at each step (SyncTweedies cases 0-6, StochSync)."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model (LoRAs and other patches apply as usual)."),
                io.Conditioning.Input("positive", tooltip="Prompt for every view; per-view prompts from SyncCanvas Per-View Conditioning; ControlNet with one hint per view."),
                io.Conditioning.Input("negative", tooltip="Negative prompt (same rules as positive)."),
                projector_input(),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="Seed of the canvas noise (and of the per-step noise)."),
                io.Int.Input("steps", default=30, min=1, max=10000, tooltip="Denoising steps (SyncTweedies panorama: 30; wide image: 50; StochSync: 25)."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01, tooltip="Classifier-free guidance scale."),
                io.Combo.Input("mode", options=list(MODES + FUSE_RULE_MODES), default=DEFAULT_MODE, tooltip=MODE_TOOLTIP + FUSE_RULE_TOOLTIP),
                io.Combo.Input("scheduler", options=list(comfy.samplers.SCHEDULER_NAMES), default="ddim_uniform", tooltip="Sigma schedule (ignored by stochsync, which uses t 900 -> 270)."),
                io.Float.Input("eta", default=0.0, min=0.0, max=1.0, step=0.01, tooltip="DDIM stochasticity: 0 deterministic, 1 = fresh noise each step (StochSync always uses 1)."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01, tooltip="Below 1 starts from the given latent (SDEdit)."),
                io.Int.Input("max_views_per_batch", default=0, min=0, max=1024, tooltip="Views per model call (0 = all at once); lower it to save memory."),
                io.Int.Input("inner_steps", default=25, min=1, max=1000, tooltip="stochsync only: deterministic inner DDIM steps per x0 estimate at the first step (StochSync: 25), fewer later."),
                io.Vae.Input("vae", optional=True, tooltip="Enables the IMAGE outputs and the final synchronization in RGB at full resolution."),
                io.Latent.Input("latent", optional=True, tooltip="Canonical start latent (needed for denoise < 1); default: an empty canvas."),
                io.Boolean.Input("rgb_every_step", default=False, optional=True, tooltip="Also fuse x0 in RGB through the VAE at every step (slower; needed by n-to-1 canvases)."),
            ],
            outputs=[
                io.Latent.Output("canonical_latent", display_name="canonical LATENT", tooltip="The synchronized canvas latent."),
                io.Image.Output("canonical_image", display_name="canonical IMAGE", tooltip="The canvas in RGB (needs the VAE)."),
                io.Image.Output("view_images", display_name="views IMAGE", tooltip="Every view in RGB, one image per view (needs the VAE)."),
            ],
        )

    @classmethod
    def execute(cls, model, positive, negative, projector, seed, steps, cfg, mode, scheduler, eta, denoise,
                max_views_per_batch=0, inner_steps=25, vae=None, latent=None, rgb_every_step=False) -> io.NodeOutput:
        if mode in FUSE_RULE_MODES:
            return cls.execute_fuse_rule(model, positive, negative, projector, seed, steps, cfg, mode, scheduler, eta,
                                         denoise, vae, latent)
        mode_case(mode)
        lat_projector = latent_projector(projector, vae)
        check_view_conditioning(positive, negative, projector.n_views)
        samples = canonical_latent(model, latent, lat_projector)
        if denoise < 1.0 and latent is None:
            raise ValueError(f"denoise={denoise} needs a latent to start from; connect one or set denoise to 1")
        sigmas = sync_sigmas(model, mode, scheduler, steps, denoise)
        noise = comfy.sample.prepare_noise(samples, seed)

        sink: dict = {}
        sampler = comfy.samplers.KSAMPLER(
            sample_sync_canvas,
            extra_options=dict(projector=lat_projector, mode=mode, eta=eta, max_views_per_batch=max_views_per_batch,
                               inner_steps=inner_steps, vae=vae, pixel_projector=projector, rgb_every_step=rgb_every_step, noise=noise, latent_image=samples, result_sink=sink),
        )
        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        callback = latent_preview.prepare_callback(model, sigmas.shape[-1] - 1)
        out = guider.sample(noise, samples, sampler, sigmas, denoise_mask=None, callback=callback,
                            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
        result = sink["result"]
        canvas = {"samples": out.to(comfy.model_management.intermediate_device())}
        if vae is None:
            blocked = ExecutionBlocker(NO_VAE_MESSAGE)
            return io.NodeOutput(canvas, blocked, blocked)
        # with a VAE the sampler always runs the final RGB synchronization, so both RGB results exist
        return io.NodeOutput(canvas, canvas_to_image(result.canonical_rgb.clamp(0, 1)),
                             tensor_to_image(result.views_rgb.clamp(0, 1)))

    @classmethod
    def execute_fuse_rule(cls, model, positive, negative, projector, seed, steps, cfg, rule, scheduler, eta, denoise,
                          vae, latent) -> io.NodeOutput:
        """DDR / DDE / SyncDiffusion with the papers' defaults; the report of what fused the views shows on the node."""
        from .fuse_rules import ksampler_mode_options, run_fuse_rule  # fuse_rules imports this module

        if denoise < 1.0 or latent is not None:
            raise ValueError(f"mode {rule!r} starts from noise: set denoise to 1 and disconnect the latent (got denoise={denoise})")
        lat_projector = latent_projector(projector, vae)
        out, report = run_fuse_rule(rule, model, positive, negative, lat_projector, seed, steps, cfg, scheduler,
                                    ksampler_mode_options(rule, eta))
        canvas = {"samples": out.to(comfy.model_management.intermediate_device())}
        if vae is None:
            blocked = ExecutionBlocker(NO_VAE_MESSAGE)
            return io.NodeOutput(canvas, blocked, blocked, ui=ui.PreviewText(report))
        views_rgb = vae.decode(lat_projector.project(out[0].to(lat_projector.device))).clamp(0, 1)  # [N, H, W, 3]
        if out.dim() != 4:
            return io.NodeOutput(canvas, ExecutionBlocker("this canvas is not an image"), views_rgb, ui=ui.PreviewText(report))
        canonical = vae.decode(out)[0].movedim(-1, 0).clamp(0, 1)  # [3, H, W]
        return io.NodeOutput(canvas, canvas_to_image(canonical), views_rgb, ui=ui.PreviewText(report))


class SyncCanvasSamplerSelect(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasSamplerSelect",
            display_name="SyncCanvas Sampler (SAMPLER)",
            category=f"{CATEGORY}/sampling",
            description=(
                "The synchronized sampler as a SAMPLER for SamplerCustom/SamplerCustomAdvanced. Limits: the "
                "LATENT must be the canvas latent (batch 1); outputs only the canvas latent (no view images); "
                "an image-to-image start is treated as part of the noise (exact at the first step, but n-to-1 "
                "canvases start their views from fresh noise); stochsync expects stochsync-like sigmas."
            ),
            inputs=[
                projector_input(),
                io.Combo.Input("mode", options=list(MODES), default=DEFAULT_MODE, tooltip=MODE_TOOLTIP),
                io.Float.Input("eta", default=0.0, min=0.0, max=1.0, step=0.01, tooltip="DDIM stochasticity (0 deterministic, 1 fresh noise each step)."),
                io.Int.Input("max_views_per_batch", default=0, min=0, max=1024, tooltip="Views per model call (0 = all at once)."),
                io.Vae.Input("vae", optional=True, tooltip="Final synchronization in RGB through this VAE; also sets the latent downscale factor."),
            ],
            outputs=[io.Sampler.Output(tooltip="Use with SamplerCustomAdvanced and a canvas-sized latent.")],
        )

    @classmethod
    def execute(cls, projector, mode, eta, max_views_per_batch=0, vae=None) -> io.NodeOutput:
        mode_case(mode)
        options = dict(projector=latent_projector(projector, vae), mode=mode, eta=eta,
                       max_views_per_batch=max_views_per_batch, vae=vae, pixel_projector=projector)
        return io.NodeOutput(comfy.samplers.KSAMPLER(sample_sync_canvas, extra_options=options))


NODES = [SyncCanvasKSampler, SyncCanvasSamplerSelect]
