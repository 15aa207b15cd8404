"""Socket types and the small conversions every node family shares (no math lives here).

ComfyUI IMAGE is ``[B, H, W, 3]`` in [0, 1]; the projectors speak channels-first ``[C, *S]`` (canonical)
and ``[N, C, h, w]`` (views). These helpers only move axes and check shapes.
"""

from __future__ import annotations

import torch

from comfy_api.latest import io

CATEGORY = "Sync Canvas"

SyncProjector = io.Custom("SYNC_PROJECTOR")
"""A pixel-resolution ``projectors.Projector``; samplers derive the latent one with ``rescaled(8)``."""

VAE_FACTOR_DEFAULT = 8


def projector_input(tooltip: str = "The canvas geometry: a SYNC_PROJECTOR from a Sync Canvas projector node.") -> io.Input:
    return SyncProjector.Input("projector", tooltip=tooltip)


def require_kind(projector, kinds: tuple[str, ...], node: str):
    """Raise a ValueError naming both kinds when ``projector.kind`` is not one of ``kinds``."""
    kind = getattr(projector, "kind", type(projector).__name__)
    if kind not in kinds:
        raise ValueError(
            f"{node} needs a projector of kind {' or '.join(repr(k) for k in kinds)}, "
            f"but got one of kind {kind!r} ({type(projector).__name__})"
        )
    return projector


def canonical_image_to_tensor(image: torch.Tensor, projector, what: str = "image") -> torch.Tensor:
    """IMAGE ``[1, H, W, C]`` -> canonical ``[C, H, W]``, checked against ``projector.canonical_shape``."""
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"{what} must be a single image [1, H, W, C], got shape {tuple(image.shape)}")
    if len(projector.canonical_shape) != 2 or tuple(image.shape[1:3]) != tuple(projector.canonical_shape):
        raise ValueError(
            f"{what} is {image.shape[2]}x{image.shape[1]} (WxH) but the projector's canonical image is "
            f"{'x'.join(map(str, projector.canonical_shape[::-1]))} (WxH); resize it first"
        )
    return image[0].movedim(-1, 0)


def tensor_to_image(x: torch.Tensor) -> torch.Tensor:
    """``[N, C, h, w]`` (or canonical ``[C, H, W]``) -> IMAGE ``[N, h, w, C]`` (float32, on the CPU)."""
    if x.dim() == 3:
        x = x.unsqueeze(0)
    return x.movedim(1, -1).float().cpu().contiguous()


def canvas_to_image(canvas: torch.Tensor) -> torch.Tensor:
    """Canonical RGB ``[3, H, W]`` -> IMAGE ``[1, H, W, 3]``; stacked planes ``[3, M, H, W]`` -> ``[M, H, W, 3]``;
    per-element colours ``[3, G]`` (splats) -> a one-pixel-high strip ``[1, 1, G, 3]``."""
    if canvas.dim() == 2:
        return tensor_to_image(canvas.unsqueeze(1))
    if canvas.dim() == 4:
        return tensor_to_image(canvas.movedim(0, 1))
    if canvas.dim() != 3:
        raise ValueError(f"this canvas has shape {tuple(canvas.shape)} and cannot be shown as an image")
    return tensor_to_image(canvas)


def images_to_views(images: torch.Tensor) -> torch.Tensor:
    """IMAGE ``[N, h, w, C]`` -> ``[N, C, h, w]``."""
    if images.dim() != 4:
        raise ValueError(f"expected an IMAGE batch [N, H, W, C], got shape {tuple(images.shape)}")
    return images.movedim(-1, 1)


def latent_projector(projector, vae=None):
    """The latent-resolution twin of a pixel projector: ``rescaled(VAE downscale factor)`` (8 without a VAE)."""
    factor = VAE_FACTOR_DEFAULT
    if vae is not None and hasattr(vae, "spacial_compression_decode"):
        factor = int(vae.spacial_compression_decode())
    return projector.rescaled(factor)
