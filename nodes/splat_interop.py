"""ComfyUI's own SPLAT type in and out of the pack (ComfyUI versions with the core 3D types, e.g. 0.33.0:
core .ply/.spz/.splat loaders, renderers and savers speak it). On versions without it (0.3.64) these nodes
are not registered.

Core SPLAT: activated, world-space, batched (``B, N, ...``): positions, linear scales, unit quaternions
(w, x, y, z), opacities in [0, 1] ``(B, N, 1)`` and SH ``(B, N, K, 3)`` with the DC term at ``K = 0``.
The pack's ``SplatScene`` keeps the 3DGS file's raw parameters (log scales, opacity logits, SH DC
``[G, 3]`` and the rest ``[G, 3, K - 1]``); the conversions below are exact inverses up to float rounding.
"""

from __future__ import annotations

import torch

from comfy_api.latest import io

from ..assets.splat_ply import SplatScene
from .common import CATEGORY
from .guards import guard_nodes
from .splat import SyncSplat

CoreSplat = getattr(io, "Splat", None)
"""``io.Splat`` where the running ComfyUI has it, else None."""


def scene_to_core_tensors(scene: SplatScene) -> dict[str, torch.Tensor]:
    """The scene as core SPLAT's tensors, batch of one."""
    quats = scene.quats / scene.quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    sh = torch.cat([scene.sh_dc[:, None, :], scene.sh_rest.permute(0, 2, 1)], dim=1)  # [G, K, 3]
    return {"positions": scene.means[None].float(), "scales": scene.log_scales.exp()[None].float(),
            "rotations": quats[None].float(), "opacities": torch.sigmoid(scene.opacity_logits)[None, :, None].float(),
            "sh": sh[None].float()}


def core_tensors_to_scene(positions, scales, rotations, opacities, sh, count: int | None = None) -> SplatScene:
    """One item of a core SPLAT (``[N, ...]`` tensors, the first ``count`` rows) as a SplatScene."""
    n = positions.shape[0] if count is None else int(count)
    eps = 1e-6
    opacity = opacities[:n].reshape(n).float().clamp(eps, 1 - eps)
    coeffs = sh[:n].float()  # [N, K, 3]
    return SplatScene(means=positions[:n].float().cpu(), quats=rotations[:n].float().cpu(),
                      log_scales=scales[:n].float().clamp_min(1e-12).log().cpu(),
                      opacity_logits=torch.logit(opacity).cpu(), sh_dc=coeffs[:, 0, :].contiguous().cpu(),
                      sh_rest=coeffs[:, 1:, :].permute(0, 2, 1).contiguous().cpu())


class SyncCanvasSplatToComfy(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasSplatToComfy",
            display_name="SyncCanvas Splat to ComfyUI SPLAT",
            category=f"{CATEGORY}/splat",
            description="The pack's splat scene (e.g. recoloured) as ComfyUI's own SPLAT, for the core splat savers and viewers.",
            inputs=[SyncSplat.Input("splat", tooltip="A scene from SyncCanvas Load Gaussian Splat or Splat from ComfyUI SPLAT.")],
            outputs=[CoreSplat.Output("core_splat", display_name="SPLAT", tooltip="ComfyUI's SPLAT (batch of one).")],
        )

    @classmethod
    def execute(cls, splat) -> io.NodeOutput:
        from comfy_api.latest import Types

        return io.NodeOutput(Types.SPLAT(**scene_to_core_tensors(splat)))


class SyncCanvasSplatFromComfy(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasSplatFromComfy",
            display_name="SyncCanvas Splat from ComfyUI SPLAT",
            category=f"{CATEGORY}/splat",
            description="ComfyUI's own SPLAT (from its .ply/.spz/.splat loaders or generators) as a scene the pack can recolour.",
            inputs=[CoreSplat.Input("core_splat", display_name="SPLAT", tooltip="ComfyUI's SPLAT; the first item of a batch is used."),],
            outputs=[SyncSplat.Output("splat", tooltip="The scene for SyncCanvas Splat Orbit / Projector.")],
        )

    @classmethod
    def execute(cls, core_splat) -> io.NodeOutput:
        counts = getattr(core_splat, "counts", None)
        count = None if counts is None else int(counts[0])
        if core_splat.positions.shape[1] == 0 or count == 0:
            raise ValueError("SyncCanvas Splat from ComfyUI SPLAT: the SPLAT has no gaussians")
        return io.NodeOutput(core_tensors_to_scene(core_splat.positions[0], core_splat.scales[0], core_splat.rotations[0],
                                                   core_splat.opacities[0], core_splat.sh[0], count))


NODES = [SyncCanvasSplatToComfy, SyncCanvasSplatFromComfy] if CoreSplat is not None else []
guard_nodes(NODES)  # each node's inputs checked against its schema before execute (nodes/guards.py)
