"""Fuse-rule samplers: DDR, DDE and SyncDiffusion, each a KSampler-style node (math in samplers/).

They run through ComfyUI's own stack (CFGGuider + KSAMPLER, previews, Cancel) exactly like the
SyncCanvas KSampler, reusing its helpers; only the pure sampler function differs:

* DDR  -- samplers/ddr.py          (Savani et al., "Diffusing Differentiable Representations")
* DDE  -- samplers/dde/fuse.py     (Lifar, Savkin et al., "Diffusion Domain Expansion")
* SyncDiffusion -- samplers/syncdiffusion.py (Lee et al., NeurIPS 2023)

Each node returns, and shows on itself, a report saying what actually fused the views (e.g. "averaging
(MultiDiffusion; no DDE coordinator loaded)") so a fallback is never silent.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable

import torch

import comfy.model_management
import folder_paths
from comfy_api.latest import io, ui
from comfy_execution.graph_utils import ExecutionBlocker

from ..samplers.dde import AVERAGING, load_coordinator, sample_dde
from ..samplers.ddr import sample_ddr
from ..samplers.ddr_representations import CanonicalRepresentation, SirenRepresentation
from ..samplers.syncdiffusion import sample_syncdiffusion
from ..samplers.syncdiffusion_losses import PerceptualLoss, load_lpips_vgg, statistics_loss
from .common import CATEGORY, decode_canvas, latent_projector, projector_input
from .sync_sampling import (ComfyRun, canonical_latent, check_view_conditioning, comfy_run, release_patch_caches,
                            run_with_comfy, sync_sigmas)
from .files import FileChoices
from .guards import guard_nodes
from .memory_check import require_memory, run_estimate

log = logging.getLogger(__name__)
FUSE_CATEGORY = f"{CATEGORY}/fuse rules"
DDE_FOLDER, PERCEPTUAL_FOLDER = "sync_canvas_dde", "sync_canvas_perceptual"
NONE = "none"

DDECoordinator = io.Custom("DDE_COORDINATOR")
PerceptualLossType = io.Custom("SYNC_PERCEPTUAL_LOSS")


def register_model_folders() -> None:
    """Adds ``models/sync_canvas_dde`` and ``models/sync_canvas_perceptual`` to ComfyUI's folder list.

    Called when a loader node is defined or run, never at import: importing the pack changes nothing."""
    for folder in (DDE_FOLDER, PERCEPTUAL_FOLDER):
        if folder not in folder_paths.folder_names_and_paths:
            folder_paths.add_model_folder_path(folder, os.path.join(folder_paths.models_dir, folder))


def _files(folder: str) -> FileChoices:
    """The model files of ``folder`` (resolved by ``_full_path``, which names a missing one)."""
    register_model_folders()
    try:
        return FileChoices([NONE] + folder_paths.get_filename_list(folder))
    except KeyError:
        return FileChoices([NONE])


def _full_path(folder: str, name: str) -> str:
    register_model_folders()
    return folder_paths.get_full_path_or_raise(folder, name)


# --------------------------------------------------------------------------------------------------
# the fuse rules: one entry per rule, each a pure sampler called with what the bridge prepared
@dataclass(frozen=True)
class FuseRule:
    """How one fuse rule samples: ``run(run, projector, sigmas, options) -> (result, report)`` where
    ``result.canonical`` is ``[C, *S]``; ``defaults(eta)`` are the papers' settings used when the rule is
    picked as a mode of the SyncCanvas KSampler (the rule's own node exposes every option)."""

    name: str
    run: Callable
    defaults: Callable[[float], dict]


def _ddr(run: ComfyRun, projector, sigmas, options: dict):
    representation = options.pop("representation")
    adam = dict(adam_steps=options.pop("adam_steps"), adam_lr=options.pop("adam_lr"))
    channels = run.noise.shape[0]
    rep = (SirenRepresentation(projector, channels, **adam) if representation == "siren"
           else CanonicalRepresentation(projector, channels, dtype=run.noise.dtype))
    # DDR starts from theta = 0 (Algorithm 1): the start latent is not used
    result = sample_ddr(run.denoiser, rep, sigmas, run.model_sampling, noise=run.noise, **options, **run.common())
    return result, (f"DDR ({representation} representation, eta {options['eta']}, {len(result.schedule)} schedule entries, "
                    f"{result.model_evals} view evaluations)")


def _dde(run: ComfyRun, projector, sigmas, options: dict):
    result = sample_dde(run.denoiser, projector, sigmas, run.noise, run.model_sampling, latent_image=run.latent_image,
                        **options, **run.common())
    return result, f"DDE: views fused by {result.fuse_rule}"


def _syncdiffusion(run: ComfyRun, projector, sigmas, options: dict):
    loss = options.pop("loss") or latent_rgb_statistics_loss(run.base_model)
    result = sample_syncdiffusion(run.denoiser, projector, sigmas, run.noise, run.model_sampling, loss=loss,
                                  through_model=False, latent_image=run.latent_image, **options, **run.common())
    return result, (f"SyncDiffusion (gradient step on x0; loss: {result.loss_name}; "
                    f"{result.model_evals} view evaluations)")


def _dde_defaults(eta: float) -> dict:
    log.warning("SyncCanvas DDE: %s", AVERAGING)
    return dict(eta=eta, coordinator=None)


FUSE_RULES: dict[str, FuseRule] = {rule.name: rule for rule in (
    FuseRule("ddr", _ddr, lambda eta: dict(eta=eta, representation="canvas", jump_length=0, jump_interval=1,
                                           jump_repeat=1, adam_steps=200, adam_lr=1e-4, consistent_noise=True)),
    FuseRule("dde", _dde, _dde_defaults),
    FuseRule("syncdiffusion", _syncdiffusion,
             lambda eta: dict(weight=20.0, decay=0.95, first_steps=None, every=1, anchor_view=0, eta=eta, loss=None)),
)}


def fuse_rule(name: str) -> FuseRule:
    if name not in FUSE_RULES:
        raise ValueError(f"unknown fuse rule {name!r}; expected one of {', '.join(FUSE_RULES)}")
    return FUSE_RULES[name]


def ksampler_mode_options(rule: str, eta: float) -> dict:
    """The papers' defaults for a fuse rule picked as a mode of the SyncCanvas KSampler (the rule's own
    node exposes every option): DDR on the canvas itself, no RePaint jumps; DDE without a coordinator
    (= averaging, reported); SyncDiffusion w 20, decay 0.95, weight-free loss."""
    return fuse_rule(rule).defaults(eta)


# the KSAMPLER function shared by the three nodes and the KSampler's fuse-rule modes
@torch.no_grad()
def sample_fuse_rule(model, x, sigmas, extra_args=None, callback=None, disable=None, rule="ddr", projector=None,
                     noise=None, latent_image=None, options=None, result_sink=None):
    """One canonical latent ``x [1, C, *S]`` -> ``[1, C, *S]`` with the fuse rule ``rule`` (``FUSE_RULES``).

    ``options`` go to the pure sampler. Runs outside inference mode so SyncDiffusion's gradient step can
    take a gradient (on x0 only: ComfyUI's weights are inference tensors, so Eq. 14's gradient through
    the UNet is not available here).
    """
    entry = fuse_rule(rule)
    with torch.inference_mode(False):
        projector = projector.to(x.device)  # the sampler's Engine copies it: the node output is never changed
        sigmas = sigmas.to(x.device).clone()
        run = comfy_run(model, x, sigmas, extra_args, callback, projector, noise, latent_image)
        try:
            result, text = entry.run(run, projector, sigmas, dict(options or {}))
        finally:
            release_patch_caches(extra_args)
        if result_sink is not None:
            result_sink["report"] = text
        return result.canonical.unsqueeze(0).to(x).clone()


def preview_rgb(base_model):
    """latents ``[n, C, h, w]`` -> approximate RGB in [-1, 1] ``[n, 3, h, w]`` with the model's own
    latent->RGB preview factors (weight-free, differentiable); None when the latent format has none."""
    fmt = base_model.latent_format
    factors = getattr(fmt, "latent_rgb_factors", None)
    if factors is None:
        return None
    bias = getattr(fmt, "latent_rgb_factors_bias", None) or [0.0, 0.0, 0.0]

    def to_rgb(x: torch.Tensor) -> torch.Tensor:
        # tensors made per call: made at node time they would be inference tensors autograd cannot save
        weight = torch.tensor(factors, dtype=x.dtype, device=x.device)  # [C, 3]
        return torch.einsum("nchw,cd->ndhw", x, weight) + torch.tensor(bias, dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1)

    return to_rgb


def latent_rgb_statistics_loss(base_model) -> PerceptualLoss:
    """The weight-free statistics loss on preview RGB (on the raw latents when there are no factors)."""
    to_rgb = preview_rgb(base_model)
    if to_rgb is None:
        return PerceptualLoss("statistics (weight-free style loss on the latents)", statistics_loss)
    return PerceptualLoss("statistics (weight-free style loss on preview RGB)", lambda v, a: statistics_loss(to_rgb(v), to_rgb(a)))


def rgb_loss(base_model, loss: PerceptualLoss, upscale: int = 8) -> PerceptualLoss:
    """A loss on RGB in [0, 1] (LPIPS) applied to latents through the preview latent->RGB factors,
    upsampled ``upscale`` times to pixel size (VGG's pooling needs image-sized inputs)."""
    to_rgb = preview_rgb(base_model)
    if to_rgb is None:
        raise ValueError(f"{type(base_model.latent_format).__name__} has no latent_rgb_factors; LPIPS needs RGB, use the weight-free loss")

    def unit(x):
        rgb = torch.nn.functional.interpolate(to_rgb(x), scale_factor=upscale, mode="bilinear", align_corners=False)
        return ((rgb + 1) / 2).clamp(0, 1)

    return PerceptualLoss(f"{loss.name} on preview RGB", _PreviewRGBLoss(loss, unit))


class _PreviewRGBLoss:
    """``loss(unit(views), unit(anchor))``; a class, not a lambda, so that the sampler can take its own copy
    of the wrapped network on the data's device (``PerceptualLoss.to``) without moving the node output."""

    def __init__(self, loss: PerceptualLoss, unit) -> None:
        self.loss, self.unit = loss, unit

    def __call__(self, views: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        return self.loss(self.unit(views), self.unit(anchor))

    def to(self, device) -> "_PreviewRGBLoss":
        return _PreviewRGBLoss(self.loss.to(device), self.unit)


# --------------------------------------------------------------------------------------------------
# node plumbing shared by the three samplers
def _common_inputs() -> list:
    return [
        io.Model.Input("model", tooltip="The diffusion model."),
        io.Conditioning.Input("positive", tooltip="Prompt for every view (per-view prompts and hints as in the SyncCanvas KSampler)."),
        io.Conditioning.Input("negative", tooltip="Negative prompt."),
        projector_input(),
        io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="Seed of the canvas noise and the per-step noise."),
        io.Int.Input("steps", default=50, min=1, max=10000, tooltip="Denoising steps."),
        io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01, tooltip="Classifier-free guidance scale."),
        io.Combo.Input("scheduler", options=list(comfy.samplers.SCHEDULER_NAMES), default="ddim_uniform", tooltip="Sigma schedule."),
    ]


def _max_views_input() -> io.Input:
    return io.Int.Input("max_views_per_batch", default=0, min=0, max=1024, optional=True,
                        tooltip="Views per model call (0 = all at once); lower it to save memory (a wide panorama has many windows).")


def _outputs() -> list:
    return [
        io.Latent.Output("canonical_latent", display_name="canonical LATENT", tooltip="The canvas latent."),
        io.Image.Output("canonical_image", display_name="canonical IMAGE", tooltip="The canvas decoded by the VAE (needs the VAE)."),
        io.String.Output("report", tooltip="What fused the views (says so when DDE falls back to averaging)."),
    ]


def run_fuse_rule(rule, model, positive, negative, lat_projector, seed, steps, cfg, scheduler, options,
                  vae=None) -> tuple[torch.Tensor, str]:
    """Samples the canonical latent ``[1, C, *S]`` with ``rule``; returns it with the report of what fused the views.
    Refuses first when the run (and, with ``vae``, its decode) cannot fit."""
    fuse_rule(rule)
    check_view_conditioning(positive, negative, lat_projector.n_views)
    samples = canonical_latent(model, None, lat_projector)
    require_memory(f"SyncCanvas {rule}", run_estimate(lat_projector, samples, vae), comfy.model_management.get_torch_device())
    sigmas = sync_sigmas(model, "case_2", scheduler, steps, 1.0)
    sink: dict = {}
    out = run_with_comfy(model, positive, negative, cfg, seed, samples, sigmas, sample_fuse_rule,
                         dict(rule=rule, projector=lat_projector, options=options, result_sink=sink))
    report = sink.get("report", "")
    log.info("SyncCanvas %s: %s", rule, report)
    return out, report


def _run(rule, model, positive, negative, projector, seed, steps, cfg, scheduler, vae, options,
         max_views_per_batch=0) -> io.NodeOutput:
    lat_projector = latent_projector(projector, vae)
    options = dict(options, max_views_per_batch=max_views_per_batch or None)
    out, report = run_fuse_rule(rule, model, positive, negative, lat_projector, seed, steps, cfg, scheduler, options, vae)
    canvas = {"samples": out.to(comfy.model_management.intermediate_device())}
    if vae is None:
        return io.NodeOutput(canvas, ExecutionBlocker("connect a VAE to get the canonical IMAGE"), report, ui=ui.PreviewText(report))
    image = decode_canvas(lat_projector, vae, out[0])
    if image is None:
        image = ExecutionBlocker(f"a {lat_projector.kind} canvas is not an image")
    return io.NodeOutput(canvas, image, report, ui=ui.PreviewText(report))  # the report shows on the node


# --------------------------------------------------------------------------------------------------
class SyncCanvasDDRKSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasDDRKSampler",
            display_name="SyncCanvas DDR KSampler",
            category=FUSE_CATEGORY,
            description=(
                "DDR (Savani, Finzi, Kolter, 'Diffusing Differentiable Representations'): each step fits the "
                "canvas representation to all views by least squares (pulled-back reverse process, Eq. 5-8), "
                "with stochastic DDIM (eta 0.75) and RePaint forward jumps (Algorithm 1)."
            ),
            inputs=_common_inputs() + [
                io.Float.Input("eta", default=0.75, min=0.0, max=1.0, step=0.01, tooltip="DDIM stochasticity (DDR paper: 0.75)."),
                io.Combo.Input("representation", options=["canvas", "siren"], default="canvas", tooltip="canvas: the latent canvas itself (closed-form least-squares fit). siren: a SIREN image network (DDR's main experiment: 128-dim sin embedding, 3 sin layers of 256), fitted by Adam each step."),
                io.Int.Input("jump_length", default=0, min=0, max=100, tooltip="RePaint: levels to re-noise at each jump (0 = no jumps; DDR NeRF: 1 forward step per reverse step)."),
                io.Int.Input("jump_interval", default=1, min=1, max=1000, tooltip="RePaint: jump after every this many reverse steps."),
                io.Int.Input("jump_repeat", default=1, min=0, max=100, tooltip="RePaint: how many times each jump is repeated."),
                io.Int.Input("adam_steps", default=200, min=1, max=10000, tooltip="siren: Adam steps per fit (DDR: 200)."),
                io.Float.Input("adam_lr", default=1e-4, min=1e-7, max=1.0, step=1e-5, round=1e-7, tooltip="siren: Adam learning rate (not given by the paper)."),
                io.Boolean.Input("consistent_noise", default=True, tooltip="Draw the per-view noise from one canvas noise (overlaps agree); off = independent noise per view as in Algorithm 1."),
                io.Vae.Input("vae", optional=True, tooltip="Decodes the canvas for the IMAGE output."),
                _max_views_input(),
            ],
            outputs=_outputs(),
        )

    @classmethod
    def execute(cls, model, positive, negative, projector, seed, steps, cfg, scheduler, eta, representation,
                jump_length, jump_interval, jump_repeat, adam_steps, adam_lr, consistent_noise, vae=None,
                max_views_per_batch=0) -> io.NodeOutput:
        options = dict(eta=eta, representation=representation, jump_length=jump_length, jump_interval=jump_interval,
                       jump_repeat=jump_repeat, adam_steps=adam_steps, adam_lr=adam_lr, consistent_noise=consistent_noise)
        return _run("ddr", model, positive, negative, projector, seed, steps, cfg, scheduler, vae, options, max_views_per_batch)


class SyncCanvasLoadDDECoordinator(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasLoadDDECoordinator",
            display_name="SyncCanvas Load DDE Coordinator",
            category=FUSE_CATEGORY,
            description=(
                f"Loads a DDE coordinator (.safetensors from models/{DDE_FOLDER}, trained with scripts/train_dde.py). "
                "No coordinator for SD models exists publicly: train one per base model and domain."
            ),
            inputs=[io.Combo.Input("checkpoint", options=_files(DDE_FOLDER), tooltip=f"A file in models/{DDE_FOLDER}.")],
            outputs=[DDECoordinator.Output("coordinator")],
        )

    @classmethod
    def execute(cls, checkpoint) -> io.NodeOutput:
        if checkpoint == NONE:
            raise ValueError(f"no DDE coordinator selected; put a .safetensors from scripts/train_dde.py in models/{DDE_FOLDER}")
        with torch.inference_mode(False):
            return io.NodeOutput(load_coordinator(_full_path(DDE_FOLDER, checkpoint)))


class SyncCanvasDDEKSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasDDEKSampler",
            display_name="SyncCanvas DDE KSampler",
            category=FUSE_CATEGORY,
            description=(
                "DDE (Lifar, Savkin et al., 'Diffusion Domain Expansion', Eq. 4): a trained coordinator (a ViT "
                "over all windows' x0 with 2-D rotary positions) corrects the views' x0 before they are averaged. "
                "Without a coordinator it falls back to plain averaging and the report says so."
            ),
            inputs=_common_inputs() + [
                io.Float.Input("eta", default=0.0, min=0.0, max=1.0, step=0.01, tooltip="DDIM stochasticity."),
                DDECoordinator.Input("coordinator", optional=True, tooltip="From SyncCanvas Load DDE Coordinator; missing = averaging (reported)."),
                io.Vae.Input("vae", optional=True, tooltip="Decodes the canvas for the IMAGE output."),
                _max_views_input(),
            ],
            outputs=_outputs(),
        )

    @classmethod
    def execute(cls, model, positive, negative, projector, seed, steps, cfg, scheduler, eta, coordinator=None, vae=None,
                max_views_per_batch=0) -> io.NodeOutput:
        if coordinator is None:
            log.warning("SyncCanvas DDE: %s", AVERAGING)
        return _run("dde", model, positive, negative, projector, seed, steps, cfg, scheduler, vae,
                    dict(eta=eta, coordinator=coordinator), max_views_per_batch)


class SyncCanvasLoadPerceptualLoss(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasLoadPerceptualLoss",
            display_name="SyncCanvas Load LPIPS (VGG)",
            category=FUSE_CATEGORY,
            description=(
                f"LPIPS-VGG for SyncDiffusion from your own files in models/{PERCEPTUAL_FOLDER}: torchvision VGG16 "
                "weights (features.*) and optionally LPIPS' vgg.pth (lin0..lin4). Files are validated."
            ),
            inputs=[
                io.Combo.Input("vgg16", options=_files(PERCEPTUAL_FOLDER), tooltip="torchvision vgg16 state dict (.pth/.safetensors)."),
                io.Combo.Input("lpips_lin", options=_files(PERCEPTUAL_FOLDER), tooltip="LPIPS vgg.pth calibration (none = plain VGG distance)."),
            ],
            outputs=[PerceptualLossType.Output("loss")],
        )

    @classmethod
    def execute(cls, vgg16, lpips_lin) -> io.NodeOutput:
        if vgg16 == NONE:
            raise ValueError(f"select a VGG16 weights file from models/{PERCEPTUAL_FOLDER}")
        lin = None if lpips_lin == NONE else _full_path(PERCEPTUAL_FOLDER, lpips_lin)
        with torch.inference_mode(False):
            return io.NodeOutput(load_lpips_vgg(_full_path(PERCEPTUAL_FOLDER, vgg16), lin))


class SyncCanvasSyncDiffusionKSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasSyncDiffusionKSampler",
            display_name="SyncCanvas SyncDiffusion KSampler",
            category=FUSE_CATEGORY,
            description=(
                "SyncDiffusion (Lee et al., NeurIPS 2023): MultiDiffusion plus a gradient step pulling every "
                "window's x0 toward the anchor window under a perceptual loss (w 20, decay 0.95; Eq. 14). "
                "weight 0 = MultiDiffusion. The step is taken on x0 (no backward through the model)."
            ),
            inputs=_common_inputs() + [
                io.Float.Input("weight", default=20.0, min=0.0, max=10000.0, step=0.5, tooltip="Gradient step weight w (paper: 20; 0 = MultiDiffusion)."),
                io.Float.Input("decay", default=0.95, min=0.01, max=1.0, step=0.01, tooltip="w is multiplied by this every step (paper: 0.95)."),
                io.Int.Input("first_steps", default=0, min=0, max=10000, tooltip="Guide only the first N steps (supp. Table S3: 5 or 3 keep most of the coherence at a fraction of the cost); 0 = every step."),
                io.Int.Input("every", default=1, min=1, max=1000, tooltip="Guide every k-th step (Table S3: f = steps / k)."),
                io.Int.Input("anchor_view", default=0, min=0, max=4096, tooltip="The window the others are pulled toward (paper: the first)."),
                io.Float.Input("eta", default=0.0, min=0.0, max=1.0, step=0.01, tooltip="DDIM stochasticity (paper: 0)."),
                PerceptualLossType.Input("loss", optional=True, tooltip="LPIPS from SyncCanvas Load LPIPS; missing = a weight-free style/statistics loss (reported)."),
                io.Vae.Input("vae", optional=True, tooltip="Decodes the canvas for the IMAGE output."),
                _max_views_input(),
            ],
            outputs=_outputs(),
        )

    @classmethod
    def execute(cls, model, positive, negative, projector, seed, steps, cfg, scheduler, weight, decay, first_steps,
                every, anchor_view, eta, loss=None, vae=None, max_views_per_batch=0) -> io.NodeOutput:
        if anchor_view >= projector.n_views:
            raise ValueError(f"anchor_view {anchor_view} but the projector has {projector.n_views} views")
        if loss is not None:
            loss = rgb_loss(model.model, loss)
        options = dict(weight=weight, decay=decay, first_steps=first_steps or None, every=every,
                       anchor_view=anchor_view, eta=eta, loss=loss)
        return _run("syncdiffusion", model, positive, negative, projector, seed, steps, cfg, scheduler, vae, options,
                    max_views_per_batch)


NODES = [SyncCanvasDDRKSampler, SyncCanvasLoadDDECoordinator, SyncCanvasDDEKSampler, SyncCanvasLoadPerceptualLoss,
         SyncCanvasSyncDiffusionKSampler]
guard_nodes(NODES)  # each node's inputs checked against its schema before execute (nodes/guards.py)
