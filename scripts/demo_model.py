"""The demo model: a narrow SD1.5-layout UNet trained on procedural landscapes, padded to the width ComfyUI
detects, with a written-down autoencoder and a written-down text encoder.

Why each part is what it is:

- **UNet.** ComfyUI 0.3.64 calls a UNet "SD15" only with model_channels=320 and context_dim=768; at that
  width a CPU cannot train it in an hour. :class:`NarrowUNet` is the same network (same module names, same
  order of operations) with ``width`` channels instead of 320. :meth:`NarrowUNet.padded_state_dict` writes
  it into the 320-wide layout with zeros elsewhere, and the padded network computes exactly what the
  narrow one does: zero channels stay zero through convs, SiLU and attention (a zero head attends
  uniformly to zero values); GroupNorm groups line up because ``width`` is a multiple of 40 (groups of
  10 channels at 320, of 20 at 640); LayerNorm is the one place where the zeros count, so the narrow
  network's LayerNorm divides by 320 as the padded one does (:class:`PaddedLayerNorm`).
- **Autoencoder.** TAESD's layout (which the checkpoint loader accepts), with weights written down: the
  encoder takes 8x8 block means (three stride-2 2x2 averages) and maps RGB linearly to 4 latent channels;
  the decoder maps back and upsamples by nearest neighbour. Every ReLU in between sees non-negative
  values, so both are exact linear maps; a latent pixel *is* an 8x8 block's colour. Nothing to train.
- **Text encoder.** CLIP-L's layout (the SD15 loader builds exactly that), with every layer's residual
  branch zeroed, no position embedding and token embeddings drawn from numpy's frozen legacy generator:
  the output for each token is its (normalised) embedding, the same on every machine and version. The UNet
  learns which tokens name a scene class (see :data:`assets.landscapes.CLASS_WORDS`).

Pure torch and numpy; ComfyUI is imported only by the functions that build its modules (``comfy_*``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

WIDTH = 80  # narrow channel count; a multiple of 40 (see module docstring)
PADDED = 320  # SD1.5 model_channels
TIME_DIM = 320  # narrow time-embedding width (padded: 1280)
CONTEXT = 768
HEAD_DIM = 40  # SD1.5: num_heads 8 at 320 channels
LATENT_SCALE = 0.18215  # SD1.5 latent_format.scale_factor
RGB_TO_LATENT_GAIN = 22.0  # raw latent = gain * M @ (rgb - 0.5); model-space std about 1 on landscapes
VAE_SCALE = 0.01  # TAESD vae_scale: keeps the decoder's tanh clamp in its linear range
CLIP_SEED = 16
CLIP_VOCAB = 49408

# Rows: latent channels; columns: RGB. Orthonormal rows (luma, red-green, yellow-blue); channel 3 unused.
RGB_TO_LATENT = torch.tensor([[1 / math.sqrt(3)] * 3,
                              [1 / math.sqrt(2), -1 / math.sqrt(2), 0.0],
                              [1 / math.sqrt(6), 1 / math.sqrt(6), -2 / math.sqrt(6)],
                              [0.0, 0.0, 0.0]])


# ----------------------------------------------------------------------------------------------- latents
def rgb_to_latent(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] with H, W multiples of 8 -> (B, 4, H/8, W/8) raw latent (as the VAE encodes)."""
    blocks = F.avg_pool2d(rgb, 8) if rgb.shape[-1] % 8 == 0 and rgb.shape[-1] >= 8 else rgb
    return RGB_TO_LATENT_GAIN * torch.einsum("ci,...ihw->...chw", RGB_TO_LATENT, blocks - 0.5)


def block_colours_to_latent(blocks: torch.Tensor) -> torch.Tensor:
    """(B, 3, h, w) block-mean colours -> (B, 4, h, w) raw latent."""
    return RGB_TO_LATENT_GAIN * torch.einsum("ci,...ihw->...chw", RGB_TO_LATENT, blocks - 0.5)


def latent_to_block_colours(latent: torch.Tensor) -> torch.Tensor:
    """(B, 4, h, w) raw latent -> (B, 3, h, w) colours (unclamped): what the decoder puts in each 8x8 block."""
    return 0.5 + torch.einsum("ci,...chw->...ihw", RGB_TO_LATENT, latent) / RGB_TO_LATENT_GAIN


# ------------------------------------------------------------------------------------------ narrow UNet
def _idx(kind: str, width: int) -> tuple[torch.Tensor, int]:
    """Where a narrow axis lies in the padded layout: (indices, padded size)."""
    ar = torch.arange
    return {
        "c": (ar(width), PADDED),
        "cc": (torch.cat([ar(width), PADDED + ar(width)]), 2 * PADDED),
        "e": (ar(TIME_DIM), 4 * PADDED),
        "t": (ar(PADDED), PADDED),
        "ctx": (ar(CONTEXT), CONTEXT),
        "lat": (ar(4), 4),
        "ff": (ar(4 * width), 4 * PADDED),
        "geglu": (torch.cat([ar(4 * width), 4 * PADDED + ar(4 * width)]), 8 * PADDED),
    }[kind]


class _Mapped:
    """Mixin: records which padded axes a layer's output and input channels map to."""

    out_kind: str
    in_kind: str | None


def _lin(n_in, n_out, kin, kout, bias=True):
    m = nn.Linear(n_in, n_out, bias=bias)
    m.kinds = (kout, kin)
    return m


def _conv(n_in, n_out, kin, kout, k=3, stride=1):
    m = nn.Conv2d(n_in, n_out, k, stride=stride, padding=k // 2)
    m.kinds = (kout, kin)
    return m


def _gn(channels, kind, eps):
    # groups of 10 channels at 320 (kind "c"), of 20 at 640 (kind "cc"): the same count of real channels
    m = nn.GroupNorm(channels // (10 if kind == "c" else 20), channels, eps=eps)
    m.kinds = (kind, None)
    return m


class PaddedLayerNorm(nn.Module):
    """LayerNorm over ``width`` channels computed as over ``padded`` channels of which the rest are zero."""

    def __init__(self, width: int, padded: int = PADDED, eps: float = 1e-5):
        super().__init__()
        self.width, self.padded, self.eps = width, padded, eps
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))
        self.kinds = ("c", None)

    def forward(self, x):
        mean = x.sum(-1, keepdim=True) / self.padded
        var = (((x - mean) ** 2).sum(-1, keepdim=True) + (self.padded - self.width) * mean ** 2) / self.padded
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class ResBlock(nn.Module):
    def __init__(self, c_in, c_out, kin, width):
        super().__init__()
        self.in_layers = nn.Sequential(_gn(c_in, kin, 1e-5), nn.SiLU(), _conv(c_in, c_out, kin, "c"))
        self.emb_layers = nn.Sequential(nn.SiLU(), _lin(TIME_DIM, c_out, "e", "c"))
        self.out_layers = nn.Sequential(_gn(c_out, "c", 1e-5), nn.SiLU(), nn.Dropout(0.0), _conv(c_out, c_out, "c", "c"))
        self.skip_connection = _conv(c_in, c_out, kin, "c", k=1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb, context):
        h = self.in_layers(x) + self.emb_layers(emb)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class Attention(nn.Module):
    def __init__(self, width, context_dim, context_kind):
        super().__init__()
        self.heads = width // HEAD_DIM
        self.to_q = _lin(width, width, "c", "c", bias=False)
        self.to_k = _lin(context_dim, width, context_kind, "c", bias=False)
        self.to_v = _lin(context_dim, width, context_kind, "c", bias=False)
        self.to_out = nn.Sequential(_lin(width, width, "c", "c"), nn.Dropout(0.0))

    def forward(self, x, context=None):
        context = x if context is None else context
        b = x.shape[0]
        q, k, v = (t.view(b, -1, self.heads, HEAD_DIM).transpose(1, 2)
                   for t in (self.to_q(x), self.to_k(context), self.to_v(context)))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, -1, self.heads * HEAD_DIM))


class GEGLU(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.proj = _lin(width, 8 * width, "c", "geglu")

    def forward(self, x):
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class TransformerBlock(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.attn1 = Attention(width, width, "c")
        self.ff = nn.Module()
        self.ff.net = nn.Sequential(GEGLU(width), nn.Dropout(0.0), _lin(4 * width, width, "ff", "c"))
        self.attn2 = Attention(width, CONTEXT, "ctx")
        self.norm1, self.norm2, self.norm3 = (PaddedLayerNorm(width) for _ in range(3))

    def forward(self, x, context):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff.net(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.norm = _gn(width, "c", 1e-6)
        self.proj_in = _conv(width, width, "c", "c", k=1)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(width)])
        self.proj_out = _conv(width, width, "c", "c", k=1)

    def forward(self, x, emb, context):
        b, c, h, w = x.shape
        y = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
        y = self.transformer_blocks[0](y, context)
        return self.proj_out(y.transpose(1, 2).reshape(b, c, h, w)) + x


class _Down(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.op = _conv(width, width, "c", "c", stride=2)

    def forward(self, x, emb, context):
        return self.op(x)


class _Up(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.conv = _conv(width, width, "c", "c")

    def forward(self, x, emb, context):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Seq(nn.ModuleList):
    def forward(self, x, emb, context):
        for layer in self:
            x = layer(x, emb, context) if not isinstance(layer, nn.Conv2d) else layer(x)
        return x


def timestep_embedding(t: torch.Tensor, dim: int = PADDED, max_period: float = 10000.0) -> torch.Tensor:
    """ComfyUI's sinusoidal embedding (cos first): (B,) timesteps in [0, 1000) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class NarrowUNet(nn.Module):
    """SD1.5-layout UNet, ``width`` channels: two levels (channel_mult [1, 1]), one res block each,
    a transformer at the 1/2 level, in the middle and in the 1/2-level output blocks.

    forward(x (B, 4, h, w) model-space latent, t (B,) timesteps, context (B, 77, 768)) -> eps (B, 4, h, w);
    h and w even.
    """

    def __init__(self, width: int = WIDTH):
        super().__init__()
        if width % 40:
            raise ValueError(f"width must be a multiple of 40 to pad exactly into 320, got {width}")
        self.width = width
        self.time_embed = nn.Sequential(_lin(PADDED, TIME_DIM, "t", "e"), nn.SiLU(), _lin(TIME_DIM, TIME_DIM, "e", "e"))
        c = width
        self.input_blocks = nn.ModuleList([
            _Seq([_conv(4, c, "lat", "c")]),
            _Seq([ResBlock(c, c, "c", c)]),
            _Seq([_Down(c)]),
            _Seq([ResBlock(c, c, "c", c), SpatialTransformer(c)]),
        ])
        self.middle_block = _Seq([ResBlock(c, c, "c", c), SpatialTransformer(c), ResBlock(c, c, "c", c)])
        self.output_blocks = nn.ModuleList([
            _Seq([ResBlock(2 * c, c, "cc", c), SpatialTransformer(c)]),
            _Seq([ResBlock(2 * c, c, "cc", c), SpatialTransformer(c), _Up(c)]),
            _Seq([ResBlock(2 * c, c, "cc", c)]),
            _Seq([ResBlock(2 * c, c, "cc", c)]),
        ])
        self.out = nn.Sequential(_gn(c, "c", 1e-5), nn.SiLU(), _conv(c, 4, "c", "lat"))

    def forward(self, x, t, context):
        emb = self.time_embed(timestep_embedding(t).to(x.dtype))
        hs = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb, context)
        return self.out(h)

    def padded_state_dict(self) -> dict[str, torch.Tensor]:
        """The 320-wide SD1.5 state dict (keys without the ``model.diffusion_model.`` prefix), float32."""
        out = {}
        modules = dict(self.named_modules())
        for name, param in self.state_dict().items():
            mod_name, _, leaf = name.rpartition(".")
            kout, kin = modules[mod_name].kinds
            oi, on = _idx(kout, self.width)
            if param.ndim == 1:
                full = torch.zeros(on)
                full[oi] = param.float()
            else:
                ii, inn = _idx(kin, self.width)
                full = torch.zeros((on, inn) + tuple(param.shape[2:]))
                full[oi[:, None], ii[None, :]] = param.float()
            out[name] = full
        return out


# ----------------------------------------------------------------------------------------- text encoder
def clip_token_embeddings() -> torch.Tensor:
    """(49408, 768) float16 token embeddings, each row mean 0 and variance 1 (so CLIP's LayerNorm keeps it).

    From numpy's legacy RandomState, whose stream numpy keeps frozen: identical on every machine.
    """
    rows = np.random.RandomState(CLIP_SEED).standard_normal((CLIP_VOCAB, CONTEXT)).astype(np.float32)
    rows = (rows - rows.mean(1, keepdims=True)) / rows.std(1, keepdims=True)
    return torch.from_numpy(rows).to(torch.float16)


def encode_token_ids(token_ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """What the written-down CLIP returns: (N, 77) ids -> (N, 77, 768) = LayerNorm(embedding)."""
    return F.layer_norm(table[token_ids].float(), (CONTEXT,), eps=1e-5)


# -------------------------------------------------------------------------------------- scene classifier
class SceneClassifier(nn.Module):
    """Tiny CNN: (B, 3, h, w) RGB in [0, 1] (any size; pooled to 32x32 block colours) -> (B, classes) logits."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(64, classes))

    def forward(self, rgb):
        return self.net(F.adaptive_avg_pool2d(rgb, 32) * 2 - 1)


# ------------------------------------------------------------------------------- ComfyUI module builders
def comfy_taesd_state() -> dict[str, torch.Tensor]:
    """The written-down TAESD (keys without ``first_stage_model.``), float32. Needs ComfyUI importable."""
    from comfy.taesd.taesd import TAESD

    taesd = TAESD(latent_channels=4)
    with torch.no_grad():
        for p in taesd.parameters():
            p.zero_()  # every Block's convs zero -> Block(x) = ReLU(x) = x on non-negative inputs
        enc, dec = taesd.taesd_encoder, taesd.taesd_decoder
        m = RGB_TO_LATENT
        for i in range(3):
            enc[0].weight[i, i, 1, 1] = 1.0  # RGB into channels 0-2
            for stride_conv in (enc[2], enc[6], enc[10]):  # 2x2 mean: taps at offsets 0 and +1 of 2i
                stride_conv.weight[i, i, 1:, 1:] = 0.25
        enc[14].weight[:, :3, 1, 1] = VAE_SCALE * RGB_TO_LATENT_GAIN * m
        enc[14].bias[:] = -0.5 * VAE_SCALE * RGB_TO_LATENT_GAIN * m.sum(1)
        # decoder input u = VAE_SCALE * latent; colour = 0.5 + M^T u / (VAE_SCALE * gain)
        dec[1].weight[:3, :, 1, 1] = m.t() / (VAE_SCALE * RGB_TO_LATENT_GAIN)
        dec[1].bias[:3] = 0.5
        for i in range(3):
            for up_conv in (dec[7], dec[12], dec[17]):
                up_conv.weight[i, i, 1, 1] = 1.0
            dec[19].weight[i, i, 1, 1] = 1.0
        taesd.vae_scale.fill_(VAE_SCALE)
    return {k: v.float() for k, v in taesd.state_dict().items()}


def comfy_clip_state() -> dict[str, torch.Tensor]:
    """The written-down CLIP-L (keys as ComfyUI's SDClipModel names them), float32. Needs ComfyUI importable."""
    from comfy.sd1_clip import SDClipModel

    clip = SDClipModel(device="cpu", dtype=torch.float32)
    with torch.no_grad():
        for name, p in clip.transformer.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            elif "text_projection" in name:
                p.copy_(torch.eye(p.shape[0], p.shape[1]))
            else:
                p.zero_()
        clip.transformer.get_input_embeddings().weight.copy_(clip_token_embeddings().float())
    return {k: v.float() if v.is_floating_point() else v for k, v in clip.state_dict().items()}
