"""Cross-view self-attention (SyncMVD's modified self-attention), pure torch.

Each view's self-attention queries attend to the keys/values of the view itself *and* of its
neighbour views, plus (optionally) to a reference view in a second attention whose result is mixed in:

    a_i   = Attn(q_i, [k_i, k_j for j in N(i)], [v_i, v_j for j in N(i)])      keys concatenated on tokens
    r_i   = Attn(q_i, k_ref, v_ref)
    out_i = (a_i + w_ref * r_i) / (1 + w_ref)

This is exactly SyncMVD's ``SamplewiseAttnProcessor2_0`` (LIU-Yuxin/SyncMVD @04d7c4e,
``src/syncmvd/attention.py``; described in ../shared/notes/prior-art.md §1.1 "Modified self-attention"
and §1.3): there N(i) = {i-1, i+1} on the camera ring, the reference is the front view, and
``src/pipeline.py`` sets w_ref = 1 while t > T (1 - ref_attention_end), ref_attention_end = 0.2, and
w_ref = 0 afterwards. (prior-art.md's "ref_attn 0.2" is that schedule fraction, not a weight.)
SyncTweedies uses the same processor for its panorama, mesh and splat experiments (paper App. A1.2-A1.3).

Layout of one model call: ComfyUI concatenates ``n_chunks`` cond/uncond chunks along the batch axis,
each chunk holding the same ``n`` views in the same order, so row ``c * n + r`` is view ``view_ids[r]``
of chunk ``c``. Views only ever attend inside their own chunk: cond and uncond never mix.

Only the views present in a call can be attended to: neighbours that are not in the batch are
dropped (a StochSync subset of non-overlapping views therefore attends to itself only), and a reference
view that is not in the batch can be supplied as precomputed ``ref_kv`` (see ``cross_view_patch.py``,
which caches it from the chunk that contained it at the same sigma).
"""

from typing import Callable

import torch

Attention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


def plain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head softmax attention, ComfyUI's convention.

    q: [B, Tq, H*D], k/v: [B, Tk, H*D] -> [B, Tq, H*D]. Same math as ComfyUI's ``attention_pytorch``.
    """
    b, _, inner = q.shape
    if inner % heads != 0:
        raise ValueError(f"query width {inner} is not divisible by heads={heads}")
    d = inner // heads
    q, k, v = (t.reshape(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).reshape(b, -1, inner)


def ring_neighbours(n_views: int) -> torch.Tensor:
    """Bool ``[N, N]`` adjacency of SyncMVD's camera ring: view i sees views i-1 and i+1 (mod N)."""
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    i = torch.arange(n_views)
    adj = torch.zeros(n_views, n_views, dtype=torch.bool)
    adj[i, (i + 1) % n_views] = True
    adj[i, (i - 1) % n_views] = True
    adj.fill_diagonal_(False)
    return adj


def shared_elements(projector) -> torch.Tensor:
    """Float ``[N, N]``: how many canonical elements views i and j both read (``Projector.coverage``)."""
    masks = torch.stack([projector.coverage([i]).reshape(-1) for i in range(projector.n_views)]).float()
    return (masks @ masks.T).cpu()


def strongest_neighbours(shared: torch.Tensor, max_neighbours: int) -> torch.Tensor:
    """Bool ``[N, N]``: each view's ``max_neighbours`` views sharing the most canonical elements (> 0).

    shared: ``[N, N]`` counts (``shared_elements``); ties go to the lower view id; 0 keeps every
    overlapping view. SyncMVD's rig has 2 per view (i-1, i+1); on SyncTweedies' 360 rig this gives
    exactly that ring. Not symmetric in general (a top camera may pick the front view, not vice versa).
    """
    shared = torch.as_tensor(shared, dtype=torch.float64).clone()
    if shared.ndim != 2 or shared.shape[0] != shared.shape[1]:
        raise ValueError(f"shared must be a square [N, N] table, got shape {tuple(shared.shape)}")
    if max_neighbours < 0:
        raise ValueError(f"max_neighbours must be >= 0, got {max_neighbours}")
    shared.fill_diagonal_(0)
    overlapping = shared > 0
    if max_neighbours == 0 or max_neighbours >= shared.shape[0] - 1:
        return overlapping
    # stable descending sort: equal counts keep increasing view id
    order = torch.sort(-shared, dim=1, stable=True).indices[:, :max_neighbours]
    keep = torch.zeros_like(overlapping)
    keep.scatter_(1, order, True)
    return keep & overlapping


def check_neighbours(neighbours: torch.Tensor) -> torch.Tensor:
    """Validates a neighbour table; returns it as bool ``[N, N]`` on the CPU with a False diagonal.

    ``neighbours[i, j]``: view i's queries also attend to view j's keys (need not be symmetric).
    ``Projector.overlap_matrix()`` is a valid table (views that share canonical elements).
    """
    neighbours = torch.as_tensor(neighbours)
    if neighbours.ndim != 2 or neighbours.shape[0] != neighbours.shape[1]:
        raise ValueError(f"neighbours must be a square [N, N] table, got shape {tuple(neighbours.shape)}")
    out = neighbours.detach().to("cpu", torch.bool).clone()
    out.fill_diagonal_(False)
    return out


def key_views(view_ids: torch.Tensor, neighbours: torch.Tensor) -> list[list[int]]:
    """For each batch row r (view ``view_ids[r]``), the rows whose keys it attends to.

    Own row first, then the neighbours present in the batch in increasing view id, so the result
    (and its floating-point bits) does not depend on how the caller ordered the views.
    """
    ids = [int(i) for i in view_ids]
    n_views = neighbours.shape[0]
    for i in ids:
        if not 0 <= i < n_views:
            raise ValueError(f"view id {i} is outside the neighbour table of {n_views} views")
    if len(set(ids)) != len(ids):
        raise ValueError(f"view ids repeat inside one model call: {ids}")
    row_of = {view: row for row, view in enumerate(ids)}
    rows = []
    for row, view in enumerate(ids):
        others = [row_of[j] for j in sorted(row_of) if j != view and bool(neighbours[view, j])]
        rows.append([row] + others)
    return rows


def reference_kv(
    k: torch.Tensor, v: torch.Tensor, view_ids: torch.Tensor, n_chunks: int, ref_view: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Keys/values of ``ref_view`` in each chunk, ``([n_chunks, T, C], [n_chunks, T, C])``, or None if absent."""
    ids = [int(i) for i in view_ids]
    if ref_view not in ids:
        return None
    rows = [c * len(ids) + ids.index(ref_view) for c in range(n_chunks)]
    return k[rows], v[rows]


def cross_view_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    view_ids: torch.Tensor,
    neighbours: torch.Tensor,
    *,
    n_chunks: int = 1,
    ref_view: int | None = None,
    ref_weight: float = 0.0,
    ref_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    attention: Attention = plain_attention,
) -> torch.Tensor:
    """SyncMVD self-attention over neighbour views and a reference view (module docstring).

    q, k, v:    [n_chunks * n, T, H*D] projected self-attention inputs (ComfyUI's ``attn1`` layout).
    view_ids:   [n] canonical view id of each row of one chunk (the same for every chunk).
    neighbours: bool [N, N] table (``check_neighbours``); views not in ``view_ids`` are ignored.
    ref_view:   id of the reference view; used when ``ref_weight > 0`` and it is in the batch, or
                ``ref_kv`` = ([n_chunks, T, H*D], [n_chunks, T, H*D]) gives its keys/values per chunk.
    attention:  ``attention(q, k, v, heads)``; ComfyUI's ``optimized_attention`` in the patch.
    Returns [n_chunks * n, T, H*D].

    When no row has a neighbour in the batch and no reference applies (or the batch is the reference
    view alone), this is one call ``attention(q, k, v, heads)``: bit-for-bit the model's own
    self-attention. The reference row itself, when it has no neighbours, keeps its exact self-attention
    (mathematically (a + w a) / (1 + w) = a; this only removes the rounding).
    """
    view_ids = torch.as_tensor(view_ids).reshape(-1)
    n = view_ids.numel()
    if n_chunks < 1 or q.shape[0] != n_chunks * n:
        raise ValueError(
            f"batch of {q.shape[0]} rows does not split into n_chunks={n_chunks} chunks of {n} views"
        )
    if ref_weight < 0:
        raise ValueError(f"ref_weight must be >= 0, got {ref_weight}")
    rows = key_views(view_ids, neighbours)

    ref = None
    if ref_weight > 0 and ref_view is not None:
        ref = reference_kv(k, v, view_ids, n_chunks, ref_view) or ref_kv
        if ref is not None and ref[0].shape[0] != n_chunks:
            raise ValueError(f"ref_kv holds {ref[0].shape[0]} chunks, the batch has {n_chunks}")

    if all(len(r) == 1 for r in rows):
        out = attention(q, k, v, heads)
    else:
        out = _neighbour_attention(q, k, v, heads, rows, n_chunks, attention)
    if ref is None:
        return out
    ids = [int(i) for i in view_ids]
    ref_row = ids.index(ref_view) if ref_view in ids else None
    if n == 1 and ref_row == 0 and len(rows[0]) == 1:
        return out                      # the reference is the query's only key view: r == a exactly

    t, c = k.shape[1:]
    k_ref = ref[0].to(k.dtype)[:, None].expand(n_chunks, n, t, c).reshape(n_chunks * n, t, c)
    v_ref = ref[1].to(v.dtype)[:, None].expand(n_chunks, n, t, c).reshape(n_chunks * n, t, c)
    out_ref = attention(q, k_ref, v_ref, heads)
    mixed = (out + ref_weight * out_ref) / (1.0 + ref_weight)
    if ref_row is not None and len(rows[ref_row]) == 1:
        # The reference view without neighbours attends to itself twice; keep its exact self-attention.
        keep = [chunk * n + ref_row for chunk in range(n_chunks)]
        mixed[keep] = out[keep]
    return mixed


def _neighbour_attention(q, k, v, heads, rows, n_chunks, attention):
    """Rows grouped by key count so each group is one batched attention call over concatenated keys."""
    n = len(rows)
    out = torch.empty_like(q)
    by_count: dict[int, list[list[int]]] = {}
    for r in rows:
        by_count.setdefault(len(r), []).append(r)
    for m, group in by_count.items():
        local = torch.tensor(group, device=q.device)                                # [G, m]
        offsets = torch.arange(n_chunks, device=q.device)[:, None, None] * n       # [n_chunks, 1, 1]
        idx = (local[None] + offsets).reshape(-1, m)                                # [n_chunks*G, m]
        t, c = k.shape[1:]
        k_cat = k[idx].reshape(idx.shape[0], m * t, c)
        v_cat = v[idx].reshape(idx.shape[0], m * t, c)
        out[idx[:, 0]] = attention(q[idx[:, 0]], k_cat, v_cat, heads)
    return out


def joint_cross_view_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    view_ids: torch.Tensor,
    neighbours: torch.Tensor,
    n_text: int,
    *,
    n_chunks: int = 1,
    token_dim: int = 1,
    attention: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Cross-view attention for DiT joint attention (Flux double/single-stream, SD3 joint blocks).

    Each view's tokens are ``[text (n_text), image]``. A view's *image* queries attend to its own text
    and image keys plus the image keys of its neighbours present in the batch; its *text* queries
    attend to its own tokens only (text stays per view), as do views without a neighbour in the batch.

    q, k, v:   ``[n_chunks * n, T, H*D]`` (token_dim 1, SD3) or ``[n_chunks * n, H, T, D]`` (token_dim 2,
               Flux after RoPE); rows laid out as in :func:`cross_view_attention`.
    attention: ``attention(q, k, v) -> [B, Tq, H*D]``, the model's own kernel bound to its heads/options.
    Returns ``[n_chunks * n, T, H*D]``; with no neighbour present it is one ``attention(q, k, v)`` call,
    bit for bit the model's own joint attention.
    """
    view_ids = torch.as_tensor(view_ids).reshape(-1)
    n = view_ids.numel()
    if n_chunks < 1 or q.shape[0] != n_chunks * n:
        raise ValueError(f"batch of {q.shape[0]} rows does not split into n_chunks={n_chunks} chunks of {n} views")
    total = q.shape[token_dim]
    if not 0 <= n_text < total:
        raise ValueError(f"n_text={n_text} must leave image tokens in a sequence of {total}")
    rows = key_views(view_ids, neighbours)
    if all(len(r) == 1 for r in rows):
        return attention(q, k, v)
    out = None
    by_count: dict[int, list[list[int]]] = {}
    for r in rows:
        by_count.setdefault(len(r), []).append(r)
    offsets = torch.arange(n_chunks, device=q.device)[:, None, None] * n
    for m, group in by_count.items():
        idx = (torch.tensor(group, device=q.device)[None] + offsets).reshape(-1, m)   # [n_chunks*G, m]
        own = idx[:, 0]
        if m == 1:
            part = attention(q[own], k[own], v[own])
        else:
            k_cat = torch.cat([k[own]] + [k[idx[:, j]].narrow(token_dim, n_text, total - n_text) for j in range(1, m)], token_dim)
            v_cat = torch.cat([v[own]] + [v[idx[:, j]].narrow(token_dim, n_text, total - n_text) for j in range(1, m)], token_dim)
            image = attention(q[own].narrow(token_dim, n_text, total - n_text), k_cat, v_cat)
            if n_text > 0:
                text = attention(q[own].narrow(token_dim, 0, n_text), k[own], v[own])
                part = torch.cat([text, image], 1)
            else:
                part = image
        if out is None:
            out = part.new_empty((q.shape[0],) + tuple(part.shape[1:]))
        out[own] = part
    return out
