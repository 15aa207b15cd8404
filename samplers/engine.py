"""Shared machinery of the synchronized samplers: chunked denoiser calls, fusing, noise, validation, results.

Shapes: canonical ``[C, *projector.canonical_shape]`` (no batch axis), views ``[n, C, h, w]``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import nn

from ..projectors.base import Projector, working_dtype

Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``denoiser(x_views [n,C,h,w], sigma (0-d tensor), view_ids (LongTensor [n])) -> x0 [n,C,h,w]``."""


@dataclass
class RGBFuse:
    """Fuse x0 in RGB through a VAE (needed for splats; offered for every projector).

    decode: latents ``[n,C,h,w]`` (model space) -> rgb ``[n,3,H,W]`` in [0, 1].
    encode: rgb ``[n,3,H,W]`` -> latents ``[n,C,h,w]`` (model space).
    projector: the same geometry at pixel resolution (same number of views).
    every_step: decode -> fuse -> encode x0 inside the loop (else only the final RGB synchronization).
    """

    decode: Callable[[torch.Tensor], torch.Tensor]
    encode: Callable[[torch.Tensor], torch.Tensor]
    projector: Projector
    every_step: bool = False


@dataclass
class SyncResult:
    """What every synchronized sampler returns."""

    canonical: torch.Tensor  # [C, *S] final canonical latent (model space), filled where uncovered
    views: torch.Tensor  # [N, C, h, w] final view latents
    canonical_rgb: torch.Tensor | None = None  # [3, *S_rgb] when rgb_fuse is given (final RGB synchronization)
    views_rgb: torch.Tensor | None = None  # [N, 3, H, W] the RGB views projected from canonical_rgb
    model_evals: int = 0  # view-denoiser evaluations (one per view per call)
    # the fuse rules add what they report: DDR its walked schedule, DDE its fuse rule, SyncDiffusion its loss


def module_on(module, device: torch.device | str):
    """``module`` when its tensors are already on ``device``; else a moved copy (``nn.Module.to`` moves in
    place, and the module may be a node output in ComfyUI's cache). Non-modules with ``to`` delegate."""
    device = torch.device(device)
    if not isinstance(module, nn.Module):
        return module.to(device)
    tensors = [*module.parameters(), *module.buffers()]
    if all(t.device == device for t in tensors):
        return module
    return copy.deepcopy(module).to(device)


class SamplingCancelled(RuntimeError):
    """Raised by a ``check_cancel`` hook to stop sampling (any exception works; this one is for callers)."""


# --------------------------------------------------------------------------------------------------
# validation
def check_sigmas(sigmas: torch.Tensor, allow_final_zero: bool = True) -> torch.Tensor:
    """A 1-D, strictly decreasing, non-negative schedule with at least two entries; returned as a tensor."""
    sigmas = torch.as_tensor(sigmas)
    if sigmas.dim() != 1 or sigmas.numel() < 2:
        raise ValueError(f"sigmas must be a 1-D schedule of at least 2 values, got shape {tuple(sigmas.shape)}")
    if not torch.isfinite(sigmas).all() or (sigmas < 0).any():
        raise ValueError(f"sigmas must be finite and >= 0, got {sigmas.tolist()}")
    if (sigmas[1:] >= sigmas[:-1]).any():
        bad = int(torch.nonzero(sigmas[1:] >= sigmas[:-1])[0])
        raise ValueError(
            f"sigmas must be strictly decreasing, but sigmas[{bad}]={float(sigmas[bad]):.6g} <= "
            f"sigmas[{bad + 1}]={float(sigmas[bad + 1]):.6g} in {sigmas.tolist()}"
        )
    if not allow_final_zero and (sigmas == 0).any():
        raise ValueError(f"sigmas must all be > 0 here, got {sigmas.tolist()}")
    return sigmas


def check_eta(eta) -> float:
    """DDIM stochasticity: a number in [0, 1] (0 deterministic, 1 fresh noise each step), else ValueError."""
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta!r}")
    return float(eta)


def run_preamble(sigmas, projector: Projector, noise: torch.Tensor, latent_image=None, generator=None,
                 max_views_per_batch=None, rgb_fuse=None, eta: float = 0.0):
    """What every sampler checks and converts first: ``(sigmas, noise, latent_image)`` with the sigmas
    checked (``check_sigmas``), eta in [0, 1], shapes and options checked (``check_inputs``), and noise and
    start latent in the working precision (float32; float64 stays)."""
    sigmas = check_sigmas(sigmas)
    check_eta(eta)
    check_inputs(projector, noise, latent_image, generator, max_views_per_batch, rgb_fuse)
    return sigmas, in_working_precision(noise), in_working_precision(latent_image)


def check_inputs(projector: Projector, noise: torch.Tensor, latent_image, generator, max_views_per_batch, rgb_fuse):
    """Shape, device and option checks common to every sampler; raises ValueError naming the value."""
    if noise.dim() < 2 or tuple(noise.shape[1:]) != projector.canonical_shape:
        raise ValueError(
            f"noise has shape {tuple(noise.shape)} but the projector's canonical space is "
            f"[C, {', '.join(map(str, projector.canonical_shape))}]"
        )
    if latent_image is not None and tuple(latent_image.shape) != tuple(noise.shape):
        raise ValueError(f"latent_image has shape {tuple(latent_image.shape)}, expected {tuple(noise.shape)} (as noise)")
    if max_views_per_batch is not None and (not isinstance(max_views_per_batch, int) or max_views_per_batch < 1):
        raise ValueError(f"max_views_per_batch must be a positive int or None, got {max_views_per_batch!r}")
    if rgb_fuse is not None and rgb_fuse.projector.n_views != projector.n_views:
        raise ValueError(
            f"rgb_fuse.projector has {rgb_fuse.projector.n_views} views but the latent projector has {projector.n_views}"
        )


class NonFiniteModelOutput(FloatingPointError):
    """The denoiser returned NaN or infinity: continuing would only produce a black image."""


def in_working_precision(t: torch.Tensor | None) -> torch.Tensor | None:
    """``t`` lifted to the samplers' working precision (float32; float64 stays): the state of a run never
    lives in float16/bfloat16, whatever the caller's latents or the model's outputs are."""
    return None if t is None else t.to(working_dtype(t.dtype))


class Engine:
    """State shared by one sampling run: the denoiser in chunks, fusing with memory of the last value, noise."""

    def __init__(
        self,
        denoiser: Denoiser,
        projector: Projector,
        model_sampling,
        noise: torch.Tensor,
        generator: torch.Generator | None,
        max_views_per_batch: int | None,
        rgb_fuse: RGBFuse | None,
        check_cancel: Callable[[], None] | None,
    ) -> None:
        self.denoiser = denoiser
        self.projector = projector.to(noise.device, copy=True)  # the run's own: never touches the node output
        self.ms = model_sampling
        # the state, the fuses and the solves run in float32 (float64 stays) whatever the model returns
        self.dtype, self.device = working_dtype(noise.dtype), noise.device
        self.channels = noise.shape[0]
        self.generator = generator if generator is not None else torch.Generator(noise.device).manual_seed(0)
        self.chunk = max_views_per_batch or projector.n_views
        # the run's own copies on the data's device: the caller's projectors are node outputs, never moved
        self.rgb = None if rgb_fuse is None else replace(rgb_fuse, projector=rgb_fuse.projector.to(noise.device, copy=True))
        self.check_cancel = check_cancel
        self.model_evals = 0
        self.previous: dict[str, torch.Tensor] = {}
        self._own_fuses: dict[str, torch.Tensor] = {}

    # ---- model calls ---------------------------------------------------------------------------
    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, view_ids: torch.Tensor) -> torch.Tensor:
        """x0 for views ``x [n,C,h,w]`` at ``sigma``, at most ``self.chunk`` views per denoiser call."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(())
        out, finite = [], []
        for start in range(0, x.shape[0], self.chunk):
            if self.check_cancel is not None:
                self.check_cancel()
            part = x[start : start + self.chunk]
            x0 = self.denoiser(part, sigma, view_ids[start : start + self.chunk])
            if tuple(x0.shape) != tuple(part.shape):
                raise ValueError(f"denoiser returned shape {tuple(x0.shape)} for input {tuple(part.shape)}")
            finite.append(torch.isfinite(x0).all())  # stays on the device: no host sync per model call
            out.append(x0.to(x.dtype))
        # one host sync per denoise call (per sampler step), not per chunk of views
        ok = finite[0] if len(finite) == 1 else torch.stack(finite)
        if not bool(ok.all()):
            bad = int(torch.nonzero(~ok.reshape(-1))[0])
            start = bad * self.chunk
            raise NonFiniteModelOutput(
                f"the model returned non-finite values (NaN or infinity) at sigma={float(sigma):.6g} "
                f"(model evaluation {self.model_evals + start + 1}, views {view_ids[start : start + self.chunk].tolist()}); "
                "the run was stopped. Check the model, its precision (fp16 overflow) and the start latent"
            )
        self.model_evals += x.shape[0]
        return torch.cat(out) if len(out) > 1 else out[0]

    def chunked(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``fn`` (a VAE decode/encode) applied to at most ``self.chunk`` views at a time."""
        parts = []
        for start in range(0, x.shape[0], self.chunk):
            if self.check_cancel is not None:
                self.check_cancel()
            parts.append(fn(x[start : start + self.chunk]))
        return torch.cat(parts)

    # ---- fusing --------------------------------------------------------------------------------
    def fuse(self, views: torch.Tensor, key: str, view_ids=None) -> torch.Tensor:
        """A({g_i(v_i)}) -> canonical ``[C, *S]``; uncovered elements keep the last value fused under ``key``."""
        previous = self.previous.get(key)
        # a canvas this engine's own fuse made (never a caller's latent) is written where the views touch
        # it instead of being copied whole every step; every user of the last fuse has read it by now
        mine = previous is not None and previous is self._own_fuses.get(key)
        fused = self.projector.aggregate(views, previous=previous, views=view_ids, in_place=mine)
        self.previous[key] = self._own_fuses[key] = fused
        return fused

    def fuse_rgb(self, x0_views: torch.Tensor, view_ids=None) -> torch.Tensor:
        """decode -> A in RGB -> project -> encode: x0 views made consistent in pixel space ``[n,C,h,w]``."""
        rgb_projector = self.rgb.projector
        rgb = self.chunked(self.rgb.decode, x0_views).to(self.dtype)  # a VAE in half precision
        canonical_rgb = rgb_projector.aggregate(rgb, previous=self.previous.get("rgb"), views=view_ids)
        self.previous["rgb"] = canonical_rgb
        return self.chunked(self.rgb.encode, rgb_projector.project(canonical_rgb, view_ids)).to(x0_views.dtype)

    # ---- noise ---------------------------------------------------------------------------------
    def randn(self, shape) -> torch.Tensor:
        """Standard normal noise from the run's generator, drawn on the generator's device (a CPU generator,
        as ComfyUI uses, gives the same numbers whatever the data's device) and moved to the data."""
        noise = torch.randn(tuple(shape), generator=self.generator, device=self.generator.device, dtype=self.dtype)
        return noise.to(self.device)

    def canonical_noise(self) -> torch.Tensor:
        return self.randn((self.channels, *self.projector.canonical_shape))

    def view_noise(self, canonical: torch.Tensor | None = None) -> torch.Tensor:
        """Noise for the views: one canonical draw projected with nearest taps (SyncTweedies A1), or, for
        n-to-1 projectors, independent per-view noise (averaging would shrink its variance, Sec. 3.4)."""
        if self.projector.n_to_one:
            h, w = self.projector.view_hw
            return self.randn((self.projector.n_views, self.channels, h, w))
        canonical = self.canonical_noise() if canonical is None else canonical
        return self.projector.project(canonical, nearest=True)

    # ---- results -------------------------------------------------------------------------------
    def result(self, canonical: torch.Tensor, views: torch.Tensor) -> SyncResult:
        """Fill uncovered canonical elements (Voronoi) and run the final RGB synchronization if asked."""
        canonical = self.projector.fill(canonical)
        canonical_rgb = views_rgb = None
        if self.rgb is not None:
            rgb_projector = self.rgb.projector
            rgb = self.chunked(self.rgb.decode, views).to(self.dtype)
            canonical_rgb = rgb_projector.fill(rgb_projector.aggregate(rgb, previous=self.previous.get("rgb")))
            views_rgb = rgb_projector.project(canonical_rgb)
        return SyncResult(canonical, views, canonical_rgb, views_rgb, self.model_evals)
