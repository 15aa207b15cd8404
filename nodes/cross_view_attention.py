"""SyncCanvas Cross-View Attention: a MODEL -> MODEL patch (SyncMVD's modified self-attention).

Glue only: the math is ``samplers/cross_view_attention.py``, the per-call logic (schedule, view layout,
reference cache) ``samplers/cross_view_patch.py``. This module finds the UNet's self-attention layers
and registers the patch on each with ``ModelPatcher.set_model_attn1_replace``, or, for Flux and SD3
DiTs, the block patch on every joint block with ``set_model_patch_replace(..., "dit", ...)``.
"""

from __future__ import annotations

import logging

import torch

import comfy.ldm.modules.attention as comfy_attention
from comfy_api.latest import io

from ..samplers.cross_view_attention import ring_neighbours, shared_elements, strongest_neighbours
from ..samplers.cross_view_patch import CrossViewAttentionPatch, CrossViewBlockPatch, CrossViewSettings
from .common import CATEGORY, check_view_size, model_family, projector_input
from .guards import guard_nodes

NEIGHBOURS = ("overlap", "ring", "none")
BLOCKS = ("input", "middle", "output")


def model_attention(q, k, v, heads, extra_options):
    """The kernel the unpatched ``CrossAttention`` would call, with the same arguments (bit-for-bit)."""
    return comfy_attention.optimized_attention(
        q, k, v, heads, attn_precision=extra_options.get("attn_precision"), transformer_options=extra_options
    )


def attn1_keys(diffusion_model, blocks=BLOCKS) -> list[tuple[str, int, int]]:
    """``(block_name, block_id, transformer_index)`` of every self-attention in a UNet's chosen blocks.

    Keys as ``BasicTransformerBlock.forward`` looks them up (openaimodel sets ``block``, the
    SpatialTransformer ``block_index``). Empty for models without SD-style blocks (DiT, Flux, SD3).
    """
    found = []
    for name, container in (
        ("input", getattr(diffusion_model, "input_blocks", None)),
        ("middle", [getattr(diffusion_model, "middle_block", None)]),
        ("output", getattr(diffusion_model, "output_blocks", None)),
    ):
        if name not in blocks or container is None:
            continue
        for block_id, block in enumerate(container):
            if block is None:
                continue
            for layer in block:
                for index, transformer in enumerate(getattr(layer, "transformer_blocks", [])):
                    if hasattr(transformer, "attn1"):
                        found.append((name, 0 if name == "middle" else block_id, index))
    return found


def dit_blocks(diffusion_model) -> list[tuple[str, int]]:
    """``(block_name, index)`` of every joint-attention block of a DiT, as ComfyUI's "dit" block
    replacement keys them: Flux ``double_blocks`` + ``single_blocks``, SD3 (MMDiT) ``joint_blocks``."""
    if hasattr(diffusion_model, "double_blocks") and hasattr(diffusion_model, "single_blocks"):
        return ([("double_block", i) for i in range(len(diffusion_model.double_blocks))]
                + [("single_block", i) for i in range(len(diffusion_model.single_blocks))])
    if hasattr(diffusion_model, "joint_blocks"):
        return [("double_block", i) for i in range(len(diffusion_model.joint_blocks))]
    return []


def _chained(block_patch, previous):
    """Our block patch around another node's replacement of the same block (which then runs as the
    "original" block, seeing our attention override in its transformer_options)."""

    def patch(args, extra):
        return block_patch(args, {**extra, "original_block": lambda inner_args: previous(inner_args, extra)})

    return patch


def neighbour_table(projector, mode: str, max_neighbours: int = 0) -> torch.Tensor:
    if mode == "overlap":
        return strongest_neighbours(shared_elements(projector), max_neighbours)
    if mode == "ring":
        return ring_neighbours(projector.n_views)
    if mode == "none":
        return torch.zeros(projector.n_views, projector.n_views, dtype=torch.bool)
    raise ValueError(f"unknown neighbours mode {mode!r}; expected one of {', '.join(NEIGHBOURS)}")


def patch_model(model, projector, *, neighbours="overlap", max_neighbours=2, weight=1.0, reference_view=0,
                reference_weight=1.0, reference_end=0.2, start=0.0, end=1.0, blocks=BLOCKS):
    """A clone of ``model`` (ModelPatcher) with cross-view attention on the chosen blocks' ``attn1``."""
    if not 0.0 <= start <= end <= 1.0:
        raise ValueError(f"need 0 <= start <= end <= 1, got start={start}, end={end}")
    if not 0.0 <= reference_end <= 1.0:
        raise ValueError(f"reference_end must be in [0, 1], got {reference_end}")
    patched = model.clone()
    diffusion_model = patched.get_model_object("diffusion_model")
    keys = attn1_keys(diffusion_model, blocks)
    dit = dit_blocks(diffusion_model)
    if not keys and not dit:
        if weight == 0:
            return patched
        if hasattr(diffusion_model, "input_blocks"):  # a UNet, but no block chosen
            logging.warning("SyncCanvas Cross-View Attention: no UNet block chosen (%s); the model is returned "
                            "unchanged", ", ".join(blocks) or "none")
            return patched
        raise ValueError(
            f"SyncCanvas Cross-View Attention cannot patch a {model_family(patched)} model "
            f"({type(diffusion_model).__name__}): it patches SD1.5/SD2/SDXL UNets and Flux/SD3 DiTs. "
            f"Remove the node (or set its weight to 0) for this model"
        )
    if dit:
        check_view_size(patched, projector)
    sampling = patched.get_model_object("model_sampling")
    settings = CrossViewSettings(
        neighbour_table(projector, neighbours, max_neighbours),
        weight=weight,
        ref_view=None if reference_view < 0 else reference_view,
        ref_weight=reference_weight,
        sigma_start=float(sampling.percent_to_sigma(start)),
        sigma_end=float(sampling.percent_to_sigma(end)),
        ref_sigma_start=float(sampling.percent_to_sigma(start)),
        ref_sigma_end=float(sampling.percent_to_sigma(min(reference_end, end))),
    )
    if dit:  # one patch object per model: single blocks reuse the text length its double blocks saw
        block_patch = CrossViewBlockPatch(settings)
        existing = patched.model_options.get("transformer_options", {}).get("patches_replace", {}).get("dit", {})
        for block_name, index in dit:
            previous = existing.get((block_name, index))
            patch = block_patch if previous is None else _chained(block_patch, previous)
            patched.set_model_patch_replace(patch, "dit", block_name, index)
        return patched
    patch = CrossViewAttentionPatch(settings, attention=model_attention)
    for block_name, block_id, index in keys:
        patched.set_model_attn1_replace(patch, block_name, block_id, index)
    return patched


class SyncCanvasCrossViewAttention(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasCrossViewAttention",
            display_name="SyncCanvas Cross-View Attention",
            category=CATEGORY,
            description=(
                "SyncMVD's modified self-attention: each view's self-attention also attends to its neighbour "
                "views (and a reference view early on), so distant views agree. SD1.5/SD2/SDXL UNets: every chosen "
                "self-attention. Flux/SD3 DiTs: every joint block; image tokens also attend to the neighbours' "
                "image tokens, text stays per view, no reference view. Costs about (k+1)x the "
                "self-attention keys for k neighbours. Works with the SyncCanvas samplers, or with a plain "
                "sampler over a batch of exactly all views in order."
            ),
            inputs=[
                io.Model.Input("model", tooltip="An SD1.5/SD2/SDXL UNet or a Flux/SD3 DiT; returned patched (a clone)."),
                projector_input("The canvas geometry; its views' overlap gives the neighbours."),
                io.Combo.Input("neighbours", options=list(NEIGHBOURS), default="overlap",
                               tooltip="overlap: views sharing canvas pixels (projector); ring: SyncMVD's i-1, i+1 "
                                       "in view order; none: reference view only."),
                io.Int.Input("max_neighbours", default=2, min=0, max=64,
                             tooltip="overlap mode: keep each view's k most-overlapping views (SyncMVD: 2); "
                                     "0 = every overlapping view. Memory and time grow with k + 1."),
                io.Float.Input("weight", default=1.0, min=0.0, max=1.0, step=0.05,
                               tooltip="Blend into the model's own self-attention; 0 = off (unchanged model), "
                                       "1 = SyncMVD."),
                io.Int.Input("reference_view", default=0, min=-1, max=4096,
                             tooltip="View every view also attends to (SyncMVD: the front view); -1 = none. UNets only."),
                io.Float.Input("reference_weight", default=1.0, min=0.0, max=10.0, step=0.05,
                               tooltip="w in (attn_neighbours + w attn_ref) / (1 + w); SyncMVD uses 1."),
                io.Float.Input("reference_end", default=0.2, min=0.0, max=1.0, step=0.01,
                               tooltip="Fraction of the schedule with the reference active (SyncMVD: 0.2)."),
                io.Float.Input("start", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Schedule fraction where cross-view attention starts."),
                io.Float.Input("end", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Schedule fraction where it stops (SyncMVD keeps it to the end)."),
                io.Boolean.Input("input_blocks", default=True,
                                 tooltip="Patch the UNet's down (input) blocks' self-attention."),
                io.Boolean.Input("middle_block", default=True,
                                 tooltip="Patch the middle block's self-attention."),
                io.Boolean.Input("output_blocks", default=True,
                                 tooltip="Patch the up (output) blocks' self-attention."),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model, projector, neighbours, max_neighbours, weight, reference_view, reference_weight,
                reference_end, start, end, input_blocks=True, middle_block=True, output_blocks=True) -> io.NodeOutput:
        blocks = tuple(b for b, on in zip(BLOCKS, (input_blocks, middle_block, output_blocks)) if on)
        return io.NodeOutput(patch_model(
            model, projector, neighbours=neighbours, max_neighbours=max_neighbours, weight=weight,
            reference_view=reference_view, reference_weight=reference_weight, reference_end=reference_end,
            start=start, end=end, blocks=blocks,
        ))


NODES = [SyncCanvasCrossViewAttention]
guard_nodes(NODES)  # each node's inputs checked against its schema before execute (nodes/guards.py)
