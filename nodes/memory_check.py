"""Refuse, before allocating, what cannot fit: the node boundary of ``projectors/memory.py``'s estimates.

Memory available is ComfyUI's own figure (``comfy.model_management.get_free_memory``: free RAM on the CPU,
free VRAM plus PyTorch's reusable cache on a GPU). ``SYNC_CANVAS_MEMORY_LIMIT_GB`` caps it (for shared
servers, and for tests that must refuse deterministically on any machine).
"""

from __future__ import annotations

import ctypes
import gc
import os

import torch

import comfy.model_management

from ..projectors.memory import MemoryEstimate, fits, format_bytes, image_batch, sampling_run
from .common import vae_factor

LIMIT_ENV = "SYNC_CANVAS_MEMORY_LIMIT_GB"


class NotEnoughMemory(MemoryError):
    """Raised before allocating: the message names the estimate, the memory available and the setting to change."""


def available_bytes(device: torch.device | str | None = None) -> tuple[int, str]:
    """``(bytes free, "RAM" or "VRAM")`` on ``device`` (default: the CPU), capped by ``SYNC_CANVAS_MEMORY_LIMIT_GB``."""
    device = torch.device("cpu") if device is None else torch.device(device)
    free = int(comfy.model_management.get_free_memory(device))
    limit = os.environ.get(LIMIT_ENV)
    if limit:
        free = min(free, int(float(limit) * (1 << 30)))
    return free, ("RAM" if device.type == "cpu" else "VRAM")


def require_memory(node: str, estimate: MemoryEstimate, device: torch.device | str | None = None) -> None:
    """Raise :class:`NotEnoughMemory` unless ``estimate`` fits in what ``device`` has free."""
    free, kind = available_bytes(device)
    if not fits(estimate, free):
        raise NotEnoughMemory(
            f"{node}: needs about {format_bytes(estimate.bytes)} ({estimate.detail}) but only {format_bytes(free)} "
            f"of {kind} is available; {estimate.setting}"
        )


def require_batch(node: str, count: int, channels: int, shape, copies: int = 3, what: str = "views",
                  setting: str = "use a projector with fewer or smaller views", device=None) -> None:
    """:func:`require_memory` for ``copies`` float32 buffers of ``count`` items ``[channels, *shape]`` (view
    batches, renders, canvases: what a node allocates beyond the projector it was given)."""
    require_memory(node, image_batch(int(count), int(channels), tuple(int(s) for s in shape), copies, what, setting), device)


def release_after_failure() -> None:
    """Give back what a failed run allocated: collect the frames' tensors, return the GPU allocator's cache,
    and ask glibc to hand freed heap pages back to the OS (else RSS stays at the failed run's peak)."""
    gc.collect()
    comfy.model_management.soft_empty_cache()
    _trim_heap()


def _trim_heap() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to trim
        pass


def run_estimate(lat_projector, samples: torch.Tensor, vae=None) -> MemoryEstimate:
    """The sampling run's estimate for a latent projector and the canvas latent ``samples [1, C, *S]``."""
    return sampling_run(
        lat_projector.n_views, int(samples.shape[1]), tuple(lat_projector.view_hw), int(samples[0, 0].numel()),
        vae_factor(vae), decode=vae is not None,
    )
