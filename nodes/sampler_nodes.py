"""The synchronized KSampler node and the SAMPLER for SamplerCustomAdvanced.

Both run through ComfyUI's own stack (CFGGuider + KSAMPLER), so LoRA-patched models, CFG, ControlNet,
previews and Cancel behave as with the stock KSampler. All synchronization math is in ``samplers/``.
"""

from __future__ import annotations

import comfy.model_management
import comfy.samplers
from comfy_api.latest import io, ui
from comfy_execution.graph_utils import ExecutionBlocker

from .common import CATEGORY, canvas_to_image, check_view_size, decode_canvas, latent_projector, projector_input, tensor_to_image
from .fuse_rules import FUSE_RULES, ksampler_mode_options, run_fuse_rule
from .names import mode_choices, mode_error, mode_label, mode_of
from .sync_sampling import (
    DEFAULT_MODE,
    FUSE_RULE_MODES,
    FUSE_RULE_TOOLTIP,
    MODE_TOOLTIP,
    MODES,
    canonical_latent,
    check_view_conditioning,
    run_with_comfy,
    sample_sync_canvas,
    sync_sigmas,
)
from .guards import guard_nodes
from .memory_check import require_memory, run_estimate

NO_VAE_MESSAGE = "connect a VAE to the SyncCanvas KSampler to get its IMAGE outputs"
assert set(FUSE_RULE_MODES) == set(FUSE_RULES), "every fuse rule is a KSampler mode"


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
                io.Int.Input("steps", default=30, min=1, max=10000, tooltip="Denoising steps (SyncTweedies panorama: 30; wide image: 50; StochSync: 25 outer steps)."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01, tooltip="Classifier-free guidance scale."),
                io.Combo.Input("mode", options=mode_choices(MODES + FUSE_RULE_MODES), default=mode_label(DEFAULT_MODE), tooltip=MODE_TOOLTIP + FUSE_RULE_TOOLTIP),
                io.Combo.Input("scheduler", options=list(comfy.samplers.SCHEDULER_NAMES), default="ddim_uniform", tooltip="Sigma schedule (ignored by stochsync, which uses t 900 -> 270)."),
                io.Float.Input("eta", default=0.0, min=0.0, max=1.0, step=0.01, tooltip="DDIM stochasticity: 0 deterministic, 1 = fresh noise each step (StochSync always uses 1)."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01, tooltip="Below 1 starts from the given latent (SDEdit)."),
                io.Int.Input("max_views_per_batch", default=0, min=0, max=1024, tooltip="Views per model call (0 = all at once); lower it to save memory."),
                io.Int.Input("inner_steps", default=50, min=1, max=1000, tooltip="stochsync only (other modes make one model call per view per step): deterministic inner DDIM steps per x0 estimate at the first outer step, fewer later (StochSync Appendix B: 50 inner, 25 outer steps)."),
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
    def validate_inputs(cls, mode) -> bool | str:
        # Replaces ComfyUI's own check of this combo: the short ids saved by older versions stay valid.
        return mode_error(mode, MODES + FUSE_RULE_MODES)

    @classmethod
    def execute(cls, model, positive, negative, projector, seed, steps, cfg, mode, scheduler, eta, denoise,
                max_views_per_batch=0, inner_steps=50, vae=None, latent=None, rgb_every_step=False) -> io.NodeOutput:
        mode = mode_of(mode)  # checked once, by the guard (and by validate_inputs on the server)
        if mode in FUSE_RULE_MODES:
            return cls.execute_fuse_rule(model, positive, negative, projector, seed, steps, cfg, mode, scheduler, eta,
                                         denoise, vae, latent, max_views_per_batch, rgb_every_step)
        check_view_size(model, projector, vae)
        lat_projector = latent_projector(projector, vae)
        check_view_conditioning(positive, negative, projector.n_views)
        samples = canonical_latent(model, latent, lat_projector, projector)
        if denoise < 1.0 and latent is None:
            raise ValueError(f"denoise={denoise} needs a latent to start from; connect one or set denoise to 1")
        sigmas = sync_sigmas(model, mode, scheduler, steps, denoise)
        require_memory("SyncCanvas KSampler", run_estimate(lat_projector, samples, vae), comfy.model_management.get_torch_device())
        sink: dict = {}
        options = dict(projector=lat_projector, mode=mode, eta=eta, max_views_per_batch=max_views_per_batch,
                       inner_steps=inner_steps, vae=vae, pixel_projector=projector, rgb_every_step=rgb_every_step,
                       result_sink=sink)
        out = run_with_comfy(model, positive, negative, cfg, seed, samples, sigmas, sample_sync_canvas, options)
        result = sink["result"]
        canvas = {"samples": out.to(comfy.model_management.intermediate_device())}
        if vae is None:
            blocked = ExecutionBlocker(NO_VAE_MESSAGE)
            return io.NodeOutput(canvas, blocked, blocked)
        # with a VAE the sampler always runs the final RGB synchronization, so both RGB results exist
        return io.NodeOutput(canvas, canvas_to_image(projector, result.canonical_rgb.clamp(0, 1)),
                             tensor_to_image(result.views_rgb.clamp(0, 1)))

    @classmethod
    def execute_fuse_rule(cls, model, positive, negative, projector, seed, steps, cfg, rule, scheduler, eta, denoise,
                          vae, latent, max_views_per_batch=0, rgb_every_step=False) -> io.NodeOutput:
        """DDR / DDE / SyncDiffusion with the papers' defaults; the report of what fused the views shows on the node.

        ``max_views_per_batch`` chunks their model calls as in every other mode; ``rgb_every_step`` cannot
        apply (they fuse latents only) and is refused; ``inner_steps`` is StochSync's alone."""
        if denoise < 1.0 or latent is not None:
            raise ValueError(f"mode {rule!r} starts from noise: set denoise to 1 and disconnect the latent (got denoise={denoise})")
        if rgb_every_step:
            raise ValueError(f"mode {rule!r} fuses latents only; turn rgb_every_step off (it applies to case_2, case_5 and stochsync)")
        check_view_size(model, projector, vae)
        lat_projector = latent_projector(projector, vae)
        options = dict(ksampler_mode_options(rule, eta), max_views_per_batch=max_views_per_batch or None)
        out, report = run_fuse_rule(rule, model, positive, negative, lat_projector, seed, steps, cfg, scheduler, options, vae)
        canvas = {"samples": out.to(comfy.model_management.intermediate_device())}
        if vae is None:
            blocked = ExecutionBlocker(NO_VAE_MESSAGE)
            return io.NodeOutput(canvas, blocked, blocked, ui=ui.PreviewText(report))
        views_rgb = vae.decode(lat_projector.project(out[0].to(lat_projector.device))).clamp(0, 1)  # [N, H, W, 3]
        image = decode_canvas(lat_projector, vae, out[0])
        if image is None:
            image = ExecutionBlocker(f"a {lat_projector.kind} canvas is not an image; use the views IMAGE")
        return io.NodeOutput(canvas, image, views_rgb, ui=ui.PreviewText(report))


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
                io.Combo.Input("mode", options=mode_choices(MODES), default=mode_label(DEFAULT_MODE), tooltip=MODE_TOOLTIP),
                io.Float.Input("eta", default=0.0, min=0.0, max=1.0, step=0.01, tooltip="DDIM stochasticity (0 deterministic, 1 fresh noise each step)."),
                io.Int.Input("max_views_per_batch", default=0, min=0, max=1024, tooltip="Views per model call (0 = all at once)."),
                io.Int.Input("inner_steps", default=50, min=1, max=1000, optional=True, tooltip="stochsync only: inner DDIM steps per x0 estimate at the first outer step (StochSync Appendix B: 50)."),
                io.Vae.Input("vae", optional=True, tooltip="Final synchronization in RGB through this VAE; also sets the latent downscale factor."),
            ],
            outputs=[io.Sampler.Output(tooltip="Use with SamplerCustomAdvanced and a canvas-sized latent.")],
        )

    @classmethod
    def validate_inputs(cls, mode) -> bool | str:
        return mode_error(mode, MODES)

    @classmethod
    def execute(cls, projector, mode, eta, max_views_per_batch=0, inner_steps=50, vae=None) -> io.NodeOutput:
        mode = mode_of(mode)  # checked once, by the guard (and by validate_inputs on the server)
        options = dict(projector=latent_projector(projector, vae), mode=mode, eta=eta,
                       max_views_per_batch=max_views_per_batch, inner_steps=inner_steps, vae=vae,
                       pixel_projector=projector)
        return io.NodeOutput(comfy.samplers.KSAMPLER(sample_sync_canvas, extra_options=options))


NODES = [SyncCanvasKSampler, SyncCanvasSamplerSelect]
guard_nodes(NODES)  # each node's inputs checked against its schema before execute (nodes/guards.py)
