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


def require_capability(projector, capability: str, node: str, what: str):
    """The projector's ``capability`` (a method or attribute, projectors/CONTRACT.md), or a ValueError
    naming the node, what it needs (``what``, e.g. "a mesh projector") and what it got."""
    if not hasattr(projector, capability):
        raise ValueError(
            f"{node} needs {what} (a projector with {capability!r}), but got {getattr(projector, 'kind', '?')!r} "
            f"({type(projector).__name__})"
        )
    return getattr(projector, capability)


def canonical_image_to_tensor(image: torch.Tensor, projector, what: str = "image") -> torch.Tensor:
    """IMAGE ``[B, H, W, C]`` (the canvas's images, e.g. one for a flat canvas, six cube faces) -> canonical
    ``[C, *S]``, checked by the projector (``canvas_from_images``)."""
    if image.dim() != 4:
        raise ValueError(f"{what} must be an IMAGE batch [B, H, W, C], got shape {tuple(image.shape)}")
    try:
        return projector.canvas_from_images(image.movedim(-1, 1))
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from e


def tensor_to_image(x: torch.Tensor) -> torch.Tensor:
    """``[N, C, h, w]`` (or canonical ``[C, H, W]``) -> IMAGE ``[N, h, w, C]`` (float32, on the CPU)."""
    if x.dim() == 3:
        x = x.unsqueeze(0)
    return x.movedim(1, -1).float().cpu().contiguous()


def canvas_to_image(projector, canvas: torch.Tensor) -> torch.Tensor:
    """Canonical ``[C, *S]`` -> IMAGE ``[B, H, W, C]`` as the projector shows its canvas (``canvas_images``:
    one image for a flat canvas, one per plane, six cube faces, a strip of splat colours)."""
    return tensor_to_image(projector.canvas_images(canvas))


def decode_canvas(projector, vae, latent: torch.Tensor):
    """The canvas latent ``[C, *S]`` decoded to IMAGE ``[B, H, W, 3]`` in [0, 1], or None when the canvas is
    no image (``projector.canvas_is_image``; e.g. per-splat latents)."""
    if not projector.canvas_is_image:
        return None
    images = vae.decode(projector.canvas_images(latent))
    return images.reshape(-1, *images.shape[-3:]).clamp(0, 1)


def images_to_views(images: torch.Tensor) -> torch.Tensor:
    """IMAGE ``[N, h, w, C]`` -> ``[N, C, h, w]``."""
    if images.dim() != 4:
        raise ValueError(f"expected an IMAGE batch [N, H, W, C], got shape {tuple(images.shape)}")
    return images.movedim(-1, 1)


def vae_factor(vae=None) -> int:
    """Pixels per latent pixel of a VAE (its ``spacial_compression_decode``; 8 without one)."""
    if vae is not None and hasattr(vae, "spacial_compression_decode"):
        return int(vae.spacial_compression_decode())
    return VAE_FACTOR_DEFAULT


def latent_projector(projector, vae=None):
    """The latent-resolution twin of a pixel projector: ``rescaled(VAE downscale factor)`` (8 without a VAE)."""
    return projector.rescaled(vae_factor(vae))


_FAMILY_NAMES = {"SD15": "SD1.5", "SD20": "SD2.x", "SD21UnclipL": "SD2.x", "SD21UnclipH": "SD2.x", "SDXL": "SDXL",
                 "SDXLRefiner": "SDXL refiner", "SD3": "SD3", "Flux": "Flux", "FluxSchnell": "Flux schnell"}


def model_family(model) -> str:
    """A readable family name of a MODEL (ModelPatcher), from ComfyUI's detected model config."""
    config = getattr(getattr(model, "model", None), "model_config", None)
    name = type(config).__name__ if config is not None else type(getattr(model, "model", model)).__name__
    return _FAMILY_NAMES.get(name, name)


def model_patch_size(model) -> int:
    """How many latent pixels one model token spans per side: 2 for Flux/SD3 DiTs, 1 for UNets."""
    diffusion_model = model.get_model_object("diffusion_model")
    patch = getattr(diffusion_model, "patch_size", 1)
    if isinstance(patch, (tuple, list)):
        patch = patch[-1]
    return int(patch or 1)


def check_view_size(model, projector, vae=None) -> None:
    """ValueError naming the family when the projector's views do not divide by its pixel-per-token factor.

    A DiT turns each patch of p x p latent pixels into a token and pads a view that does not divide,
    so its views would not line up with the canvas; UNets need only the VAE factor.
    """
    per_latent = vae_factor(vae)
    factor = per_latent * model_patch_size(model)
    h, w = (int(s) for s in projector.view_hw)
    if h % factor or w % factor:
        def fix(size):
            return size if size % factor == 0 else f"{size - size % factor} or {size - size % factor + factor}"
        raise ValueError(
            f"{model_family(model)} needs views whose width and height divide by {factor} pixels (VAE {per_latent} "
            f"x patch {factor // per_latent}), but the projector's views are {w}x{h} (WxH): make the view "
            f"(window) size {fix(w)} wide and {fix(h)} high"
        )
