"""DDE's coordinator: a DiT-style ViT over all views' x0 patches that corrects them before averaging.

Lifar, Savkin, Garipov, Tong, Jaakkola, "Diffusion Domain Expansion: Learning to Coordinate Pre-Trained
Diffusion Models" (notes/paper-dde.md). The composite denoiser (Eq. 4) is

    D_L(X_t, sigma) = A( C( [D(x_i(t), sigma)]_i, sigma ) )

with D the frozen base model on each view, C the coordinator and A the overlap average. Here C is a
*residual*: ``C(x0) = x0 + Delta(x0)``, with Delta's output layer zero-initialised, so an untrained
coordinator returns its input bit for bit and D_L is exactly MultiDiffusion's average (the paper's
DiT init would output zeros instead; notes/paper-dde.md 6, "clean pass-through").

Architecture (paper 1.3 and B.3): x0 views are patchified (patch 2) into tokens; every token of every
view attends to every other (joint attention); positions enter only through 2-D rotary embeddings of
each token's *global* canvas coordinates (first half of each head: rows, second half: columns, B.3.4),
so overlapping tokens share positions; the noise level enters through adaLN-Zero modulation (DiT).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class CoordinatorConfig:
    """Sizes. ``paper()`` is the satellite-map coordinator (B.3.3: depth 6, 6 heads, hidden 384, MLP 4,
    patch 2; 26M parameters with its conditioning branch); ``tiny()`` trains on a CPU in minutes."""

    channels: int = 4
    patch: int = 2
    hidden: int = 384
    depth: int = 6
    heads: int = 6
    mlp_ratio: float = 4.0
    rope_base: float = 100.0  # not given by the paper; canvases are a few hundred tokens wide

    @staticmethod
    def paper(channels: int = 4) -> "CoordinatorConfig":
        return CoordinatorConfig(channels=channels)

    @staticmethod
    def tiny(channels: int = 4) -> "CoordinatorConfig":
        return CoordinatorConfig(channels=channels, patch=4, hidden=64, depth=2, heads=4)

    def to_dict(self) -> dict:
        return asdict(self)

    def __post_init__(self) -> None:
        if self.hidden % self.heads or (self.hidden // self.heads) % 4:
            raise ValueError(f"hidden {self.hidden} / heads {self.heads} must give a head size divisible by 4 (2-D RoPE)")
        if self.patch < 1 or self.channels < 1 or self.depth < 0:
            raise ValueError(f"bad coordinator sizes: {self}")


def noise_embedding(sigma: torch.Tensor, dim: int) -> torch.Tensor:
    """Fourier features of EDM's c_noise = log(sigma) / 4: ``[B] -> [B, dim]``."""
    c = torch.log(sigma.clamp_min(1e-5)) / 4
    freqs = torch.exp(torch.linspace(0.0, math.log(100.0), dim // 2, device=sigma.device, dtype=sigma.dtype))
    angles = c[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], -1)


def rope_2d(positions: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin ``[T, head_dim/2]`` for token positions ``[T, 2]`` (row, col) in token units (B.3.4)."""
    quarter = head_dim // 4
    freqs = base ** (-torch.arange(quarter, device=positions.device, dtype=positions.dtype) / quarter)
    angles = torch.cat([positions[:, :1] * freqs, positions[:, 1:] * freqs], -1)  # rows | cols
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of ``x [B, heads, T, head_dim]`` by the angles behind cos/sin ``[T, head_dim/2]``."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).flatten(-2)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class Block(nn.Module):
    """DiT block with adaLN-Zero (starts as the identity) and 2-D rotary self-attention."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(hidden, int(hidden * mlp_ratio)), nn.GELU(approximate="tanh"),
                                 nn.Linear(int(hidden * mlp_ratio), hidden))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))
        nn.init.zeros_(self.ada[-1].weight)
        nn.init.zeros_(self.ada[-1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(cond).chunk(6, -1)
        b, t, d = x.shape
        q, k, v = self.qkv(_modulate(self.norm1(x), shift1, scale1)).reshape(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v)
        x = x + gate1[:, None] * self.proj(attn.transpose(1, 2).reshape(b, t, d))
        return x + gate2[:, None] * self.mlp(_modulate(self.norm2(x), shift2, scale2))


class Coordinator(nn.Module):
    """``C(x0_views, positions, sigma) = x0_views + Delta``; Delta = 0 exactly until trained.

    forward:
        x0: ``[B, n, C, h, w]`` base-model x0 of the n views (h, w divisible by ``patch``).
        positions: ``[n, h, w, 2]`` global canvas (row, col) of every view pixel (``view_positions``).
        sigma: ``[B]`` (or 0-d) noise level.
        returns ``[B, n, C, h, w]``.
    """

    def __init__(self, config: CoordinatorConfig) -> None:
        super().__init__()
        self.config = config
        p, d = config.patch, config.hidden
        self.embed = nn.Linear(config.channels * p * p, d)
        self.noise_mlp = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList([Block(d, config.heads, config.mlp_ratio) for _ in range(config.depth)])
        # no LayerNorm before the output: the corrections a coordinator must learn are (close to) linear in
        # the views' x0, and a norm would divide each token's scale away (the DiT final layer has one)
        self.final_norm = nn.Identity()
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.out = nn.Linear(d, config.channels * p * p)
        for layer in (self.final_ada[-1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _tokens_positions(self, positions: torch.Tensor) -> torch.Tensor:
        """``[n, h, w, 2]`` pixel positions -> ``[n*(h/p)*(w/p), 2]`` token positions (top-left pixel / p)."""
        p = self.config.patch
        return (positions[:, ::p, ::p].reshape(-1, 2) / p).float()

    def forward(self, x0: torch.Tensor, positions: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if x0.dim() != 5 or x0.shape[2] != cfg.channels:
            raise ValueError(f"coordinator input must be [B, n, {cfg.channels}, h, w], got {tuple(x0.shape)}")
        b, n, c, h, w = x0.shape
        p = cfg.patch
        if h % p or w % p:
            raise ValueError(f"view size {h}x{w} is not divisible by the coordinator patch {p}")
        if tuple(positions.shape) != (n, h, w, 2):
            raise ValueError(f"positions must be [{n}, {h}, {w}, 2], got {tuple(positions.shape)}")
        sigma = torch.as_tensor(sigma, dtype=x0.dtype, device=x0.device).reshape(-1).expand(b)
        tokens = x0.reshape(b, n, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6).reshape(b, -1, c * p * p)
        hid = self.embed(tokens)
        cond = self.noise_mlp(noise_embedding(sigma, 256))
        cos, sin = rope_2d(self._tokens_positions(positions).to(x0.device, x0.dtype), cfg.hidden // cfg.heads, cfg.rope_base)
        for block in self.blocks:
            hid = block(hid, cond, cos, sin)
        shift, scale = self.final_ada(cond).chunk(2, -1)
        delta = self.out(_modulate(self.final_norm(hid), shift, scale))
        delta = delta.reshape(b, n, h // p, w // p, c, p, p).permute(0, 1, 4, 2, 5, 3, 6).reshape(b, n, c, h, w)
        return x0 + delta
