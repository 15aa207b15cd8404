"""Wide panorama windows and the identity projector: geometry, wrap-around, bad input."""

import pytest
import torch

from sync_canvas.projectors import IdentityProjector, WidePanoramaProjector
from sync_canvas.projectors.panorama import window_starts


def test_paper_wide_panorama_rig():
    # SyncTweedies/MultiDiffusion: 512x3072, window 512, stride 64 -> (3072 - 512) / 64 + 1 windows
    proj = WidePanoramaProjector(512, 3072, window=512, stride=64).rescaled(8)
    assert proj.n_views == 41 and proj.view_hw == (64, 64) and proj.canonical_shape == (64, 384)
    assert proj.coverage_fraction() == 1.0


def test_windows_are_exact_crops():
    torch.manual_seed(0)
    z = torch.randn(4, 16, 50)
    proj = WidePanoramaProjector(16, 50, window=16, stride=12)
    assert [x for _, x in proj.origins] == [0, 12, 24, 34]  # last one flush with the edge
    views = proj.project(z)
    for i, (y, x) in enumerate(proj.origins):
        assert torch.equal(views[i], z[:, y : y + 16, x : x + 16])


def test_wrap_around_meets_the_two_ends():
    z = torch.arange(4 * 20, dtype=torch.float32).reshape(1, 4, 20)
    proj = WidePanoramaProjector(4, 20, window=(4, 8), stride=6, wrap=True)
    assert [x for _, x in proj.origins] == [0, 6, 12, 18]
    last = proj.project(z, views=[3])[0, 0]
    assert torch.equal(last, torch.cat([z[0, :, 18:], z[0, :, :6]], 1))
    # every seam-adjacent pair of columns is seen together by some window
    assert proj.overlap_matrix()[3, 0]


def test_without_wrap_the_ends_do_not_meet():
    proj = WidePanoramaProjector(4, 20, window=(4, 8), stride=6, wrap=False)
    assert not proj.overlap_matrix()[0, -1]


def test_average_of_overlapping_windows():
    proj = WidePanoramaProjector(2, 12, window=(2, 8), stride=4)
    w = torch.stack([torch.full((1, 2, 8), 1.0), torch.full((1, 2, 8), 3.0)])
    fused = proj.aggregate(w)[0, 0]
    assert torch.equal(fused, torch.tensor([1.0] * 4 + [2.0] * 4 + [3.0] * 4))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(window=16, stride=17), "stride 17 leaves gaps"),
        (dict(window=16, stride=0), "stride 0 leaves gaps"),
        (dict(window=(16, 40)), "window 40 does not fit the canvas width 32"),
        (dict(window=(20, 16)), "window 20 does not fit the canvas height 16"),
    ],
)
def test_bad_input_names_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WidePanoramaProjector(16, 32, **kwargs)


def test_rescaled_rejects_indivisible_sizes():
    with pytest.raises(ValueError, match="stride x=12 is not divisible by the rescale factor 8"):
        WidePanoramaProjector(64, 128, window=64, stride=12).rescaled(8)
    assert WidePanoramaProjector(64, 128, window=64, stride=16).rescaled(8).stride_hw == (8, 2)


def test_window_starts_cover_every_texel():
    for length, window, stride in [(37, 8, 8), (37, 8, 3), (8, 8, 1)]:
        starts = window_starts(length, window, stride, False, "width")
        seen = set()
        for s in starts:
            seen.update(range(s, s + window))
        assert seen == set(range(length))


def test_identity_views_are_copies():
    z = torch.randn(16, 4, 6)  # 16 channels (SD3/Flux latents)
    proj = IdentityProjector(4, 6, n_views=3)
    assert torch.equal(proj.project(z), z.expand(3, -1, -1, -1))
    assert proj.view_groups() == [[0], [1], [2]]
    with pytest.raises(ValueError, match="n_views must be >= 1, got 0"):
        IdentityProjector(4, 6, n_views=0)
