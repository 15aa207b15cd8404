"""Pure-torch tests of SyncMVD-style cross-view attention (no ComfyUI)."""

import pytest
import torch

from sync_canvas.samplers.cross_view_attention import (
    check_neighbours,
    cross_view_attention,
    key_views,
    plain_attention,
    ring_neighbours,
    shared_elements,
    strongest_neighbours,
)
from sync_canvas.samplers.cross_view_patch import CrossViewAttentionPatch, CrossViewSettings, with_views

HEADS, T, C = 2, 6, 8


def qkv(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, T, C, generator=g) for _ in range(3)]


def syncmvd_reference(q, k, v, heads, view_ids, neighbours, n_chunks, ref_view, ref_weight):
    """Loop written after SyncMVD's SamplewiseAttnProcessor2_0: one query view at a time."""
    n = len(view_ids)
    out = torch.empty_like(q)
    for c in range(n_chunks):
        for r, view in enumerate(view_ids):
            keys = [r] + [s for s, j in enumerate(view_ids) if j != view and neighbours[view, j]]
            rows = [c * n + s for s in keys]
            a = plain_attention(q[c * n + r][None], k[rows].reshape(1, -1, C), v[rows].reshape(1, -1, C), heads)
            if ref_view is None or ref_weight == 0:
                out[c * n + r] = a[0]
                continue
            ref_row = c * n + view_ids.index(ref_view)
            ref = plain_attention(q[c * n + r][None], k[ref_row][None], v[ref_row][None], heads)
            out[c * n + r] = ((a + ref_weight * ref) / (1 + ref_weight))[0]
    return out


def test_ring_neighbours_is_the_syncmvd_ring():
    adj = ring_neighbours(8)
    assert adj.sum(1).tolist() == [2] * 8
    assert adj[0, 7] and adj[0, 1] and not adj[0, 2] and not adj[0, 0]
    assert torch.equal(adj, adj.T)
    assert ring_neighbours(1).sum() == 0
    assert ring_neighbours(2).sum() == 2


def test_without_neighbours_or_reference_it_is_plain_self_attention_bit_for_bit():
    q, k, v = qkv(6)
    out = cross_view_attention(q, k, v, HEADS, torch.arange(3), torch.zeros(3, 3, dtype=torch.bool), n_chunks=2)
    assert torch.equal(out, plain_attention(q, k, v, HEADS))
    for ref_weight in (0.0, 0.3):           # one view that is also the reference: still plain
        one_view = cross_view_attention(q[:1], k[:1], v[:1], HEADS, [0], ring_neighbours(4), ref_view=0,
                                        ref_weight=ref_weight)
        assert torch.equal(one_view, plain_attention(q[:1], k[:1], v[:1], HEADS))


def test_matches_a_per_view_loop_after_syncmvd():
    torch.manual_seed(0)
    view_ids = [0, 1, 2, 3, 4]
    neighbours = ring_neighbours(5)
    neighbours[4, 1] = True                               # an asymmetric extra edge: 4 has three key views
    q, k, v = qkv(10)
    out = cross_view_attention(q, k, v, HEADS, view_ids, neighbours, n_chunks=2, ref_view=2, ref_weight=0.5)
    expected = syncmvd_reference(q, k, v, HEADS, view_ids, check_neighbours(neighbours), 2, 2, 0.5)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_output_of_view_i_depends_on_neighbours_only():
    neighbours = torch.zeros(4, 4, dtype=torch.bool)
    neighbours[0, 1] = neighbours[1, 0] = True
    q, k, v = qkv(4)
    base = cross_view_attention(q, k, v, HEADS, torch.arange(4), neighbours)
    for j, changes_view_0 in [(1, True), (2, False), (3, False)]:
        k2, v2 = k.clone(), v.clone()
        k2[j] += 1.0
        v2[j] -= 1.0
        out = cross_view_attention(q, k2, v2, HEADS, torch.arange(4), neighbours)
        assert (not torch.equal(out[0], base[0])) == changes_view_0, j


def test_reference_view_reaches_every_view():
    q, k, v = qkv(4)
    no_nb = torch.zeros(4, 4, dtype=torch.bool)
    base = cross_view_attention(q, k, v, HEADS, torch.arange(4), no_nb, ref_view=3, ref_weight=1.0)
    v2 = v.clone()
    v2[3] += 1.0
    out = cross_view_attention(q, k, v2, HEADS, torch.arange(4), no_nb, ref_view=3, ref_weight=1.0)
    assert all(not torch.equal(out[r], base[r]) for r in range(4))


def test_cond_and_uncond_chunks_never_mix():
    q, k, v = qkv(8)
    kwargs = dict(n_chunks=2, ref_view=0, ref_weight=1.0)
    base = cross_view_attention(q, k, v, HEADS, torch.arange(4), ring_neighbours(4), **kwargs)
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    for t in (q2, k2, v2):
        t[4:] = torch.randn(4, T, C)                       # replace the whole uncond chunk
    out = cross_view_attention(q2, k2, v2, HEADS, torch.arange(4), ring_neighbours(4), **kwargs)
    assert torch.equal(out[:4], base[:4])
    assert not torch.equal(out[4:], base[4:])


def test_view_order_inside_a_call_does_not_matter():
    q, k, v = qkv(5)
    perm = torch.tensor([3, 0, 4, 2, 1])
    kwargs = dict(ref_view=2, ref_weight=0.7)
    base = cross_view_attention(q, k, v, HEADS, torch.arange(5), ring_neighbours(5), **kwargs)
    out = cross_view_attention(q[perm], k[perm], v[perm], HEADS, perm, ring_neighbours(5), **kwargs)
    assert torch.equal(out, base[perm])


def test_subsets_drop_absent_neighbours_and_chunks_match_the_full_batch():
    # two components {0,1} and {2,3}: chunking along components reproduces the full batch
    neighbours = torch.zeros(4, 4, dtype=torch.bool)
    neighbours[0, 1] = neighbours[1, 0] = neighbours[2, 3] = neighbours[3, 2] = True
    q, k, v = qkv(4)
    full = cross_view_attention(q, k, v, HEADS, torch.arange(4), neighbours)
    for part in ([0, 1], [2, 3]):
        out = cross_view_attention(q[part], k[part], v[part], HEADS, torch.tensor(part), neighbours)
        torch.testing.assert_close(out, full[part], rtol=1e-6, atol=1e-7)
    # a StochSync group of non-overlapping views attends to itself only
    assert key_views(torch.tensor([0, 2]), neighbours) == [[0], [1]]


def test_reference_keys_from_another_chunk_equal_the_full_batch():
    q, k, v = qkv(3)
    no_nb = torch.zeros(3, 3, dtype=torch.bool)
    full = cross_view_attention(q, k, v, HEADS, torch.arange(3), no_nb, ref_view=0, ref_weight=1.0)
    out = cross_view_attention(
        q[1:], k[1:], v[1:], HEADS, torch.tensor([1, 2]), no_nb, ref_view=0, ref_weight=1.0,
        ref_kv=(k[:1], v[:1]),
    )
    torch.testing.assert_close(out, full[1:], rtol=1e-6, atol=1e-7)
    alone = cross_view_attention(q[1:], k[1:], v[1:], HEADS, torch.tensor([1, 2]), no_nb, ref_view=0, ref_weight=1.0)
    assert torch.equal(alone, plain_attention(q[1:], k[1:], v[1:], HEADS))


@pytest.mark.parametrize(
    "view_ids, n_chunks, table, match",
    [
        ([0, 1, 2], 1, ring_neighbours(4), "does not split"),
        ([0, 0, 1, 2], 1, ring_neighbours(4), "repeat"),
        ([0, 1, 2, 7], 1, ring_neighbours(4), "view id 7"),
        ([0, 1, 2, 3], 1, torch.ones(4, 3, dtype=torch.bool), "square"),
    ],
)
def test_bad_layouts_raise_naming_the_value(view_ids, n_chunks, table, match):
    q, k, v = qkv(4)
    with pytest.raises(ValueError, match=match):
        cross_view_attention(q, k, v, HEADS, torch.tensor(view_ids), check_neighbours(table), n_chunks=n_chunks)


# ---- the ComfyUI-protocol patch (still pure) ----------------------------------------------------

def options(view_ids=None, sigma=1.0, chunks=(0,), block=("input", 1)):
    opts = {"n_heads": HEADS, "sigmas": torch.tensor([sigma]), "cond_or_uncond": list(chunks), "block": block,
            "block_index": 0}
    if view_ids is not None:
        opts["sync_canvas_views"] = {"view_ids": torch.tensor(view_ids), "n_views": 4}
    return opts


def test_patch_with_weight_zero_or_outside_its_range_is_plain_bit_for_bit():
    q, k, v = qkv(4)
    plain = plain_attention(q, k, v, HEADS)
    off = CrossViewAttentionPatch(CrossViewSettings(ring_neighbours(4), weight=0.0))
    assert torch.equal(off(q, k, v, options([0, 1, 2, 3])), plain)
    late = CrossViewAttentionPatch(CrossViewSettings(ring_neighbours(4), sigma_start=5.0, sigma_end=2.0))
    assert torch.equal(late(q, k, v, options([0, 1, 2, 3], sigma=1.0)), plain)
    assert not torch.equal(late(q, k, v, options([0, 1, 2, 3], sigma=3.0)), plain)


def test_patch_without_view_info_assumes_all_views_in_order_else_stays_plain():
    q, k, v = qkv(8)
    patch = CrossViewAttentionPatch(CrossViewSettings(ring_neighbours(4), ref_weight=0.0))
    two_chunks = patch(q, k, v, options(None, chunks=(0, 1)))
    expected = cross_view_attention(q, k, v, HEADS, torch.arange(4), ring_neighbours(4), n_chunks=2)
    assert torch.equal(two_chunks, expected)
    assert torch.equal(patch(q[:3], k[:3], v[:3], options(None)), plain_attention(q[:3], k[:3], v[:3], HEADS))
    with pytest.raises(ValueError, match="view_ids"):
        patch(q[:3], k[:3], v[:3], options([0, 1]))


def test_patch_weight_blends_plain_and_cross_view():
    q, k, v = qkv(4)
    half = CrossViewAttentionPatch(CrossViewSettings(ring_neighbours(4), weight=0.5, ref_weight=0.0))
    full = CrossViewAttentionPatch(CrossViewSettings(ring_neighbours(4), weight=1.0, ref_weight=0.0))
    opts = options([0, 1, 2, 3])
    expected = 0.5 * plain_attention(q, k, v, HEADS) + 0.5 * full(q, k, v, opts)
    torch.testing.assert_close(half(q, k, v, opts), expected)


def test_patch_caches_the_reference_for_later_chunks_of_the_same_step_only():
    no_nb = torch.zeros(4, 4, dtype=torch.bool)
    patch = CrossViewAttentionPatch(CrossViewSettings(no_nb, ref_view=0, ref_weight=1.0))
    q, k, v = qkv(4)
    full = patch(q, k, v, options([0, 1, 2, 3], sigma=2.0))
    patch.clear_cache()
    first = patch(q[:2], k[:2], v[:2], options([0, 1], sigma=2.0))
    second = patch(q[2:], k[2:], v[2:], options([2, 3], sigma=2.0))
    torch.testing.assert_close(torch.cat([first, second]), full, rtol=1e-6, atol=1e-7)
    stale = patch(q[2:], k[2:], v[2:], options([2, 3], sigma=1.0))     # next step: the cache is not reused
    assert torch.equal(stale, plain_attention(q[2:], k[2:], v[2:], HEADS))
    again = patch(q[2:], k[2:], v[2:], options([2, 3], sigma=2.0))     # a new run at the old sigma: still not
    assert torch.equal(again, plain_attention(q[2:], k[2:], v[2:], HEADS))


def test_patch_reference_only_inside_its_sigma_range():
    no_nb = torch.zeros(4, 4, dtype=torch.bool)
    patch = CrossViewAttentionPatch(CrossViewSettings(no_nb, ref_view=0, ref_weight=1.0, ref_sigma_end=5.0))
    q, k, v = qkv(4)
    assert torch.equal(patch(q, k, v, options([0, 1, 2, 3], sigma=1.0)), plain_attention(q, k, v, HEADS))
    assert not torch.equal(patch(q, k, v, options([0, 1, 2, 3], sigma=6.0)), plain_attention(q, k, v, HEADS))


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(weight=1.5), "weight"), (dict(ref_weight=-1.0), "ref_weight"), (dict(ref_view=9), "ref_view 9")],
)
def test_settings_reject_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CrossViewSettings(ring_neighbours(4), **kwargs)


def test_with_views_sets_the_layout_without_touching_the_callers_dicts():
    shared = {"transformer_options": {"other": 1}}
    extra_args = {"model_options": shared, "seed": 3}
    out = with_views(extra_args, [2, 0], n_views=4)
    views = out["model_options"]["transformer_options"]["sync_canvas_views"]
    assert views["view_ids"].tolist() == [2, 0] and views["n_views"] == 4
    assert out["model_options"]["transformer_options"]["other"] == 1 and out["seed"] == 3
    assert "sync_canvas_views" not in shared["transformer_options"]


def test_the_360_rig_overlap_is_syncmvds_ring():
    """SyncTweedies' 360 rig (8 views, fov 72, 45 deg apart): "overlap" neighbours are exactly SyncMVD's i-1, i+1."""
    from sync_canvas.projectors import EquirectProjector

    rig = EquirectProjector(64, None, 0.0, 72.0, (128, 256), "synctweedies", False, "nearest")
    assert torch.equal(check_neighbours(rig.overlap_matrix()), ring_neighbours(8))
    assert torch.equal(strongest_neighbours(shared_elements(rig), 2), ring_neighbours(8))
    assert torch.equal(strongest_neighbours(shared_elements(rig), 0), ring_neighbours(8))


def test_strongest_neighbours_keeps_the_largest_overlaps():
    shared = torch.tensor([[9, 5, 1, 0],
                           [5, 9, 5, 2],
                           [1, 5, 9, 2],
                           [0, 2, 2, 9]])
    one = strongest_neighbours(shared, 1)
    assert one.nonzero().tolist() == [[0, 1], [1, 0], [2, 1], [3, 1]]     # tie 1-vs-2 for view 3: lower id
    assert not one[1, 2]                                                  # not symmetric
    every = strongest_neighbours(shared, 0)
    assert every.sum(1).tolist() == [2, 3, 3, 2] and not every.diagonal().any()
    with pytest.raises(ValueError, match="max_neighbours"):
        strongest_neighbours(shared, -1)


# --- DiT joint attention ([text, image] tokens per view) ---------------------------------------------------

def _joint_qkv(rows, heads=2, tokens=7, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, heads, tokens, d, generator=g) for _ in range(3)]


def _kernel(q, k, v):
    """Flux's layout: [B, H, T, D] in, [B, T, H*D] out."""
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def test_joint_attention_without_neighbours_is_one_plain_call_bit_for_bit():
    from sync_canvas.samplers.cross_view_attention import joint_cross_view_attention

    q, k, v = _joint_qkv(3)
    out = joint_cross_view_attention(q, k, v, torch.arange(3), torch.zeros(3, 3, dtype=torch.bool), 3,
                                     token_dim=2, attention=_kernel)
    assert torch.equal(out, _kernel(q, k, v))


def test_joint_attention_image_queries_see_neighbour_images_and_text_stays_per_view():
    from sync_canvas.samplers.cross_view_attention import joint_cross_view_attention

    n_text = 3
    q, k, v = _joint_qkv(2)
    table = torch.tensor([[False, True], [True, False]])
    out = joint_cross_view_attention(q, k, v, torch.arange(2), table, n_text, token_dim=2, attention=_kernel)
    plain = _kernel(q, k, v)
    torch.testing.assert_close(out[:, :n_text], plain[:, :n_text])          # text: own view only
    keys = torch.cat([k[0], k[1, :, n_text:]], 1)[None]                      # own [text, image] + neighbour image
    values = torch.cat([v[0], v[1, :, n_text:]], 1)[None]
    torch.testing.assert_close(out[:1, n_text:], _kernel(q[:1, :, n_text:], keys, values))
    k2, v2 = k.clone(), v.clone()
    k2[1, :, :n_text] += 1.0                                                 # neighbour's text keys never reach view 0
    v2[1, :, :n_text] += 1.0
    again = joint_cross_view_attention(q, k2, v2, torch.arange(2), table, n_text, token_dim=2, attention=_kernel)
    assert torch.equal(again[0], out[0])


def test_joint_attention_chunks_never_mix_and_the_token_layout_of_sd3_works():
    from sync_canvas.samplers.cross_view_attention import joint_cross_view_attention

    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(4, 7, 8, generator=g) for _ in range(3))          # SD3: [B, T, H*D], 2 chunks x 2 views
    table = torch.tensor([[False, True], [True, False]])

    def kernel(q_, k_, v_):
        return plain_attention(q_, k_, v_, 2)

    out = joint_cross_view_attention(q, k, v, torch.arange(2), table, 2, n_chunks=2, attention=kernel)
    k2 = k.clone()
    k2[2:] += 1.0
    again = joint_cross_view_attention(q, k2, v, torch.arange(2), table, 2, n_chunks=2, attention=kernel)
    assert torch.equal(again[:2], out[:2]) and not torch.equal(again[2:], out[2:])
