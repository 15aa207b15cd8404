"""The ``attn1`` replacement that ComfyUI's UNet calls: schedule, view layout and reference cache.

Pure python/torch: it speaks ComfyUI's patch protocol (a callable ``patch(q, k, v, extra_options)``
registered with ``ModelPatcher.set_model_attn1_replace``) but imports nothing from ComfyUI; the node
hands it ComfyUI's ``optimized_attention`` as ``attention``.

How the patch learns which views are in a model call (the contract with the denoiser):

    model_options["transformer_options"]["sync_canvas_views"] = {
        "view_ids": LongTensor [n],     # canonical view id of each row of one cond/uncond chunk
        "n_views":  N,                  # optional; checked against the neighbour table
        "neighbours": BoolTensor [N, N] # optional; overrides the table the node was given
    }

ComfyUI merges ``model_options["transformer_options"]`` into every model call and adds
``cond_or_uncond`` (one entry per chunk) and ``sigmas``; the UNet adds ``block``/``block_index``.
Without ``sync_canvas_views`` a chunk of exactly N rows is taken as views 0..N-1 in order (a plain
KSampler over a batch of all views); any other batch is left to plain self-attention.
"""

from dataclasses import dataclass, field
from typing import Callable

import torch

from .cross_view_attention import (
    Attention,
    check_neighbours,
    cross_view_attention,
    joint_cross_view_attention,
    plain_attention,
    reference_kv,
)

VIEWS_KEY = "sync_canvas_views"


@dataclass
class CrossViewSettings:
    """What the node exposes. Sigma ranges are inclusive: active while ``sigma_end <= sigma <= sigma_start``.

    weight:     blend of cross-view attention into the model's own self-attention,
                ``out = (1 - weight) * self_attn + weight * cross_view``; 0 = unpatched (bit for bit),
                1 = SyncMVD exactly.
    ref_weight: w_ref of the reference attention (SyncMVD: 1 during its first ref_attention_end = 20%).
    """

    neighbours: torch.Tensor
    weight: float = 1.0
    ref_view: int | None = 0
    ref_weight: float = 1.0
    sigma_start: float = float("inf")
    sigma_end: float = 0.0
    ref_sigma_start: float = float("inf")
    ref_sigma_end: float = 0.0

    def __post_init__(self):
        self.neighbours = check_neighbours(self.neighbours)
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"weight must be in [0, 1], got {self.weight}")
        if self.ref_weight < 0:
            raise ValueError(f"ref_weight must be >= 0, got {self.ref_weight}")
        n = self.neighbours.shape[0]
        if self.ref_view is not None and not 0 <= self.ref_view < n:
            raise ValueError(f"ref_view {self.ref_view} is not one of the {n} views")


@dataclass
class CrossViewAttentionPatch:
    """Callable ``(q, k, v, extra_options) -> out`` for ``set_model_attn1_replace``.

    attention: ``attention(q, k, v, heads, extra_options)``, the model's own attention kernel (None:
    ``plain_attention``). Using the model's kernel is what makes "inactive" bit-for-bit unpatched.

    q, k, v: [B, T, H*D] after the block's to_q/to_k/to_v; returns [B, T, H*D] before to_out.
    The reference view's keys/values are cached per (block, cond/uncond chunk) at the current sigma,
    so a later chunk of the *same step* that lacks the reference view still attends to it; put the
    reference view in the first chunk of each step. The cache lives only while consecutive calls share
    one sigma, so it never leaks into another step or another sampling run.
    """

    settings: CrossViewSettings
    attention: Callable = None
    _ref_cache: dict = field(default_factory=dict, repr=False)
    _cache_sigma: float | None = field(default=None, repr=False)

    def __call__(self, q, k, v, extra_options):
        heads = extra_options["n_heads"]
        s = self.settings
        attention = self._bound_attention(extra_options)
        sigma = _current_sigma(extra_options)
        if sigma != self._cache_sigma:     # a new step (or a new run): the reference cache is stale
            self._ref_cache.clear()
            self._cache_sigma = sigma
        layout = self._layout(q.shape[0], extra_options)
        if s.weight == 0 or layout is None or sigma is None or not s.sigma_end <= sigma <= s.sigma_start:
            return attention(q, k, v, heads)

        view_ids, neighbours, chunk_keys = layout
        use_ref = s.ref_view is not None and s.ref_weight > 0 and s.ref_sigma_end <= sigma <= s.ref_sigma_start
        ref_kv = self._reference(k, v, view_ids, chunk_keys, sigma, extra_options) if use_ref else None
        cross = cross_view_attention(
            q, k, v, heads, view_ids, neighbours,
            n_chunks=len(chunk_keys),
            ref_view=s.ref_view if use_ref else None,
            ref_weight=s.ref_weight if use_ref else 0.0,
            ref_kv=ref_kv,
            attention=attention,
        )
        if s.weight == 1:
            return cross
        return (1.0 - s.weight) * attention(q, k, v, heads) + s.weight * cross

    def _bound_attention(self, extra_options) -> Attention:
        """``attention(q, k, v, heads)``; ``self.attention`` also receives the block's extra_options
        (ComfyUI's optimized_attention needs its attn_precision and transformer_options)."""
        if self.attention is None:
            return plain_attention
        return lambda q, k, v, heads: self.attention(q, k, v, heads, extra_options)

    def _layout(self, batch, extra_options):
        """(view_ids [n], neighbours [N, N], chunk keys) of this call, or None to stay plain."""
        return view_layout(batch, extra_options, self.settings.neighbours)

    def _reference(self, k, v, view_ids, chunk_keys, sigma, extra_options):
        """Stores the reference view's k/v when present; returns cached ones (same sigma) when absent."""
        block = (extra_options.get("block"), extra_options.get("block_index", 0))
        present = reference_kv(k, v, view_ids, len(chunk_keys), self.settings.ref_view)
        if present is not None:
            for c, key in enumerate(chunk_keys):
                self._ref_cache[(block, key)] = (sigma, present[0][c], present[1][c])
            return None
        cached = [self._ref_cache.get((block, key)) for key in chunk_keys]
        if any(e is None or e[1].shape != k.shape[1:] for e in cached):
            return None
        return torch.stack([e[1] for e in cached]), torch.stack([e[2] for e in cached])

    def clear_cache(self) -> None:
        self._ref_cache.clear()


def view_layout(batch: int, extra_options: dict, neighbours: torch.Tensor):
    """(view_ids [n], neighbours [N, N], chunk keys) of a model call with ``batch`` rows, or None to stay plain.

    Read from ``extra_options[VIEWS_KEY]`` (module docstring); without it a chunk of exactly N rows is
    views 0..N-1. Chunk keys are (cond or uncond, its occurrence) so caches line up across calls.
    """
    chunks = list(extra_options.get("cond_or_uncond") or [0])
    if batch % len(chunks) != 0:
        return None
    per_chunk = batch // len(chunks)
    info = extra_options.get(VIEWS_KEY)
    if info is None:
        if per_chunk != neighbours.shape[0]:
            return None
        view_ids = torch.arange(per_chunk)
    else:
        view_ids = torch.as_tensor(info["view_ids"]).reshape(-1).cpu()
        if info.get("neighbours") is not None:
            neighbours = check_neighbours(info["neighbours"])
        n_views = info.get("n_views")
        if n_views is not None and int(n_views) != neighbours.shape[0]:
            raise ValueError(
                f"{VIEWS_KEY}['n_views']={n_views} but the neighbour table has {neighbours.shape[0]} views"
            )
        if view_ids.numel() != per_chunk:
            raise ValueError(
                f"{VIEWS_KEY}['view_ids'] has {view_ids.numel()} views but each of the "
                f"{len(chunks)} cond/uncond chunks holds {per_chunk} rows"
            )
    seen: dict[int, int] = {}
    chunk_keys = []
    for flag in chunks:
        chunk_keys.append((int(flag), seen.get(int(flag), 0)))
        seen[int(flag)] = seen.get(int(flag), 0) + 1
    return view_ids, neighbours, chunk_keys


@dataclass
class CrossViewBlockPatch:
    """Callable ``(args, extra) -> out`` for ComfyUI's DiT block replacement (``set_model_patch_replace(patch,
    "dit", "double_block" | "single_block", i)``): Flux double/single-stream blocks, SD3 joint blocks.

    It runs the original block with an ``optimized_attention_override`` in its transformer_options that
    turns the block's joint [text, image] attention into :func:`joint_cross_view_attention`: image tokens
    also attend to the neighbour views' image tokens, text tokens stay per view. Other attention calls
    (e.g. SD3.5's image-only second attention) and inactive calls (weight 0, outside the sigma range, a
    batch that is not views) run the model's own kernel: the block is then bit for bit the unpatched one.
    Double blocks see the text length (``args["txt"]``); Flux's single blocks, which get [text, image]
    already joined, reuse the one the double blocks of the same forward pass saw.
    The reference view of the UNet patch has no DiT counterpart here (settings.ref_* are ignored).
    """

    settings: CrossViewSettings
    _n_text: int | None = field(default=None, repr=False)

    def __call__(self, args, extra):
        original = extra["original_block"]
        options = args.get("transformer_options") or {}
        s = self.settings
        if args.get("txt") is not None:
            self._n_text = n_text = int(args["txt"].shape[1])
            n_image = int(args["img"].shape[1])
        elif self._n_text is None:
            raise ValueError("cross-view attention: a single-stream block ran before any double-stream block, "
                             "so the number of text tokens is unknown")
        else:
            n_text = self._n_text
            n_image = int(args["img"].shape[1]) - n_text
        sigma = _current_sigma(options)
        layout = view_layout(int(args["img"].shape[0]), options, s.neighbours)
        if s.weight == 0 or layout is None or sigma is None or not s.sigma_end <= sigma <= s.sigma_start:
            return original(args)
        view_ids, neighbours, chunk_keys = layout
        previous = options.get("optimized_attention_override")

        def override(func, *a, **kw):
            names = ("q", "k", "v", "heads")
            values = list(a[:4]) + [kw[name] for name in names[len(a[:4]):]]
            q, k, v, heads = values
            rest = {key: val for key, val in kw.items() if key not in names}
            extra_positional = a[4:]

            def kernel(q_, k_, v_):
                if previous is not None:
                    return previous(func, q_, k_, v_, heads, *extra_positional, **rest)
                return func(q_, k_, v_, heads, *extra_positional, **rest)

            token_dim = 2 if rest.get("skip_reshape") else 1
            if q.shape[token_dim] != n_text + n_image or rest.get("skip_output_reshape") or extra_positional:
                return kernel(q, k, v)
            if rest.get("mask") is not None:
                raise ValueError("cross-view attention does not support attention masks in DiT blocks; "
                                 "remove the node that sets the mask or set the cross-view weight to 0")
            cross = joint_cross_view_attention(q, k, v, view_ids, neighbours, n_text, n_chunks=len(chunk_keys),
                                               token_dim=token_dim, attention=kernel)
            if s.weight == 1:
                return cross
            return (1.0 - s.weight) * kernel(q, k, v) + s.weight * cross

        return original({**args, "transformer_options": {**options, "optimized_attention_override": override}})


def _current_sigma(extra_options) -> float | None:
    sigmas = extra_options.get("sigmas")
    if sigmas is None:
        return None
    return float(torch.as_tensor(sigmas).reshape(-1)[0])


def with_views(extra_args: dict, view_ids: torch.Tensor, n_views: int) -> dict:
    """A copy of a sampler's ``extra_args`` whose model_options tell the patch which views are in the call.

    extra_args: what ComfyUI hands a KSAMPLER function (``{"model_options": ..., "seed": ...}``).
    view_ids:   LongTensor [n], the canonical view of each row of ``x`` passed to ``model(x, sigma, ...)``.
    Nothing is mutated: the model_options and transformer_options dicts are copied one level deep.
    """
    model_options = dict(extra_args.get("model_options") or {})
    transformer_options = dict(model_options.get("transformer_options") or {})
    transformer_options[VIEWS_KEY] = {"view_ids": torch.as_tensor(view_ids).long().reshape(-1), "n_views": int(n_views)}
    model_options["transformer_options"] = transformer_options
    return {**extra_args, "model_options": model_options}
