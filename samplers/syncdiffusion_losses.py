"""Perceptual losses for SyncDiffusion's coherence guidance (Lee et al. 2023, Eq. 14; supp. S.4).

The paper uses LPIPS (VGG) and, as an alternative, Gatys' style loss. Their network weights cannot be
downloaded here, so:

* ``load_lpips_vgg(vgg_path, lin_path=None)`` builds LPIPS-VGG (Zhang et al. 2018) from files the
  user provides (torchvision VGG16 ``features.*`` keys; optional LPIPS ``lin{0..4}.model.1.weight``
  calibration; without it every layer weighs 1 = "VGG perceptual distance"). The files are validated.
* ``statistics_loss`` is weight-free: a style loss on the images themselves (Gram matrices, channel
  means and standard deviations at three scales). ``feature_fn`` can map latents to features first
  (e.g. a VAE decoder), as the paper does with the decoder D.

Every loss maps ``(views [n, C, h, w], anchor [1, C, h, w]) -> [n]`` and is differentiable in views.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .engine import module_on

# torchvision vgg16.features indices of LPIPS' five taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_VGG_TAPS = (3, 8, 15, 22, 29)
_VGG_CHANNELS = (64, 128, 256, 512, 512)
# LPIPS input normalisation (lpips.pretrained_networks ScalingLayer)
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)


@dataclass
class PerceptualLoss:
    """A named loss ``fn(views, anchor) -> [n]``; ``name`` is reported to the user."""

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def __call__(self, views: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        return self.fn(views, anchor)

    def to(self, device: torch.device | str) -> "PerceptualLoss":
        """This loss with its weights on ``device``: a moved copy of a network ``fn`` (the caller's loss is
        a node output, never moved in place), ``fn.to(device)`` for wrappers that have one, else self."""
        return PerceptualLoss(self.name, module_on(self.fn, device)) if hasattr(self.fn, "to") else self



def _gram(x: torch.Tensor) -> torch.Tensor:
    f = x.flatten(2)
    return f @ f.transpose(1, 2) / f.shape[-1]


def statistics_loss(views: torch.Tensor, anchor: torch.Tensor, scales: int = 3) -> torch.Tensor:
    """Weight-free style loss: per scale, ||Gram_i - Gram_a||^2 + ||mean_i - mean_a||^2 + ||std_i - std_a||^2.

    ``views [n, C, h, w]``, ``anchor [1, C, h, w]`` -> ``[n]``. Scales are 2x average-pool steps, so
    coarse layout statistics weigh as much as per-pixel colour statistics (Gatys et al. 2016, on the
    image instead of VGG features).
    """
    total = views.new_zeros(views.shape[0])
    v, a = views, anchor
    for k in range(scales):
        if k:
            if min(v.shape[-2:]) < 2:
                break
            v, a = F.avg_pool2d(v, 2), F.avg_pool2d(a, 2)
        total = total + (_gram(v) - _gram(a)).pow(2).flatten(1).sum(1)
        total = total + (v.mean((2, 3)) - a.mean((2, 3))).pow(2).sum(1)
        total = total + (v.std((2, 3)) - a.std((2, 3))).pow(2).sum(1)
    return total


def weight_free_loss(feature_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> PerceptualLoss:
    """``statistics_loss`` on ``feature_fn(x)`` (identity when None)."""
    if feature_fn is None:
        return PerceptualLoss("statistics (weight-free style loss on the latents)", statistics_loss)
    return PerceptualLoss(
        "statistics (weight-free style loss on decoded features)",
        lambda views, anchor: statistics_loss(feature_fn(views), feature_fn(anchor)),
    )


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"perceptual weights file not found: {path!r}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path!r} does not hold a state dict (got {type(state).__name__})")
    return state


class LpipsVgg(nn.Module):
    """LPIPS with a VGG16 trunk: images in [0, 1] ``[n, 3, H, W]`` -> distance ``[n]``."""

    def __init__(self, features: nn.Sequential, lins: list[torch.Tensor] | None) -> None:
        super().__init__()
        self.features = features.eval().requires_grad_(False)
        lins = lins or [torch.ones(1, c, 1, 1) for c in _VGG_CHANNELS]
        for k, w in enumerate(lins):
            self.register_buffer(f"lin{k}", w.reshape(1, -1, 1, 1).float())
        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).reshape(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).reshape(1, 3, 1, 1))

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((2 * x - 1) - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features[: _VGG_TAPS[-1] + 1]):
            x = layer(x)
            if i in _VGG_TAPS:
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, views: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        fa = self._taps(anchor.expand_as(views))
        fv = self._taps(views)
        return sum(((u - v).pow(2) * getattr(self, f"lin{k}")).sum(1).mean((1, 2)) for k, (u, v) in enumerate(zip(fv, fa)))


def load_lpips_vgg(vgg_path: str, lin_path: str | None = None) -> PerceptualLoss:
    """LPIPS-VGG from user files; raises ValueError naming the first missing or mis-shaped key.

    ``vgg_path``: torchvision VGG16 weights (``features.{0,2,...,28}.weight/bias``; the file may also
    hold the LPIPS ``lin*`` keys). ``lin_path``: LPIPS' ``vgg.pth`` (``lin{k}.model.1.weight``).
    """
    from torchvision.models.vgg import cfgs, make_layers  # VGG16's conv trunk only (no classifier)

    state = _read_state_dict(vgg_path)
    if lin_path is not None:
        state = {**state, **_read_state_dict(lin_path)}
    trunk = make_layers(cfgs["D"], batch_norm=False)
    expected = trunk.state_dict()
    features = {}
    for name, value in expected.items():
        key = f"features.{name}"
        got = state.get(key, state.get(f"net.slice{_slice_of(name)}.{name}"))
        if got is None:
            raise ValueError(f"{vgg_path!r} lacks VGG16 weight {key!r} (torchvision vgg16 naming expected)")
        if tuple(got.shape) != tuple(value.shape):
            raise ValueError(f"{vgg_path!r}: {key!r} has shape {tuple(got.shape)}, VGG16 needs {tuple(value.shape)}")
        features[name] = got.float()
    trunk.load_state_dict(features)
    lins = None
    if any(k.startswith("lin") for k in state):
        lins = []
        for k, c in enumerate(_VGG_CHANNELS):
            w = state.get(f"lin{k}.model.1.weight")
            if w is None or w.numel() != c:
                raise ValueError(f"LPIPS weights lack 'lin{k}.model.1.weight' with {c} entries")
            lins.append(w.float())
    name = "LPIPS-VGG" if lins else "VGG perceptual distance (no LPIPS calibration)"
    return PerceptualLoss(name, LpipsVgg(trunk, lins))


def _slice_of(name: str) -> int:
    """LPIPS' own checkpoints name VGG layers net.slice{1..5}.{idx}; map a torchvision index to its slice."""
    idx = int(name.split(".")[0])
    return 1 + sum(idx > t for t in _VGG_TAPS)
