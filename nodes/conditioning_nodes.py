"""Per-view prompts: one CONDITIONING whose batch lines up with the projector's views.

The sampler slices the batch to the views of each model call (``sync_sampling.views_aligned``), so the
prompts stay with their views even when a step evaluates a subset (StochSync groups, chunking).
"""

from __future__ import annotations

import math

import torch

from comfy_api.latest import io

from .common import CATEGORY, projector_input
from .sync_sampling import PER_VIEW_KEY
from .guards import guard_nodes

MAX_PROMPTS = 8


def parse_assignment(text: str, n_views: int, connected: list[int]) -> list[int]:
    """``"0,1,1"`` -> prompt number per view; empty -> cycle the connected prompts over the views."""
    if not text.strip():
        return [connected[i % len(connected)] for i in range(n_views)]
    try:
        picks = [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError as error:
        raise ValueError(f"assignment {text!r} must be comma-separated prompt numbers, e.g. '0,1,0,1'") from error
    if len(picks) != n_views:
        raise ValueError(f"assignment {text!r} names {len(picks)} views but the projector has {n_views} views")
    bad = sorted({p for p in picks if p not in connected})
    if bad:
        raise ValueError(f"assignment {text!r} uses prompt numbers {bad}, but only {connected} are connected")
    return picks


def stack_per_view(conditionings: dict[int, list], picks: list[int]) -> list:
    """One-entry CONDITIONING with cross-attention (and pooled output) stacked in view order.

    Token lengths are matched by repetition (as ComfyUI's CONDCrossAttn.concat does, which leaves the
    attention result unchanged).
    """
    firsts = {}
    for number, conditioning in conditionings.items():
        if len(conditioning) != 1:
            raise ValueError(f"prompt {number} has {len(conditioning)} conditioning entries; per-view prompts need exactly one each")
        if conditioning[0][0].shape[0] != 1:
            raise ValueError(f"prompt {number} already has a batch of {conditioning[0][0].shape[0]}; give single prompts")
        firsts[number] = conditioning[0]
    tokens = math.lcm(*(firsts[p][0].shape[1] for p in picks))
    cross = torch.cat([firsts[p][0].repeat(1, tokens // firsts[p][0].shape[1], 1) for p in picks])
    options = {k: v for k, v in firsts[picks[0]][1].items() if k != "pooled_output"}
    pooled = [firsts[p][1].get("pooled_output") for p in picks]
    if all(x is not None for x in pooled):
        options["pooled_output"] = torch.cat(pooled)
    options[PER_VIEW_KEY] = len(picks)
    return [[cross, options]]


class SyncCanvasPerViewConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        optional = [
            io.Conditioning.Input(f"prompt_{i}", optional=True, tooltip=f"Prompt number {i} (optional).")
            for i in range(1, MAX_PROMPTS)
        ]
        return io.Schema(
            node_id="SyncCanvasPerViewConditioning",
            display_name="SyncCanvas Per-View Conditioning",
            category=f"{CATEGORY}/conditioning",
            description="Gives each view its own prompt (anagrams: one per view; textures: front/side/back).",
            inputs=[
                projector_input(),
                io.String.Input("assignment", default="", tooltip="Prompt number per view, comma-separated (e.g. '0,1' or '0,1,1,2'); empty cycles the connected prompts over the views."),
                io.Conditioning.Input("prompt_0", tooltip="Prompt number 0."),
                *optional,
            ],
            outputs=[io.Conditioning.Output(tooltip="Per-view conditioning for the SyncCanvas KSampler (ControlNet can be applied on top).")],
        )

    @classmethod
    def execute(cls, projector, assignment, prompt_0, **more) -> io.NodeOutput:
        prompts = {0: prompt_0}
        for i in range(1, MAX_PROMPTS):
            if more.get(f"prompt_{i}") is not None:
                prompts[i] = more[f"prompt_{i}"]
        picks = parse_assignment(assignment, projector.n_views, sorted(prompts))
        return io.NodeOutput(stack_per_view(prompts, picks))


NODES = [SyncCanvasPerViewConditioning]
guard_nodes(NODES)  # each node's inputs checked against its schema before execute (nodes/guards.py)
