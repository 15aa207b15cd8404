"""Anagram views: each transform against an independent torch reference, negation, bad input."""

import pytest
import torch

from sync_canvas.projectors import AnagramProjector, PatchPermute, PixelPermute
from sync_canvas.projectors.anagram import inner_rotation_index


@pytest.fixture
def z():
    torch.manual_seed(0)
    return torch.randn(3, 8, 8)


@pytest.mark.parametrize(
    "spec, reference",
    [
        ("identity", lambda z: z),
        ("flip_h", lambda z: torch.flip(z, (2,))),
        ("flip_v", lambda z: torch.flip(z, (1,))),
        ("rotate_ccw", lambda z: torch.rot90(z, 1, (1, 2))),
        ("rotate_cw", lambda z: torch.rot90(z, -1, (1, 2))),
        ("rotate_180", lambda z: torch.rot90(z, 2, (1, 2))),
        ("negate", lambda z: -z),
    ],
)
def test_views_match_torch_reference(z, spec, reference):
    view = AnagramProjector(8, 8, [spec]).project(z)[0]
    assert torch.equal(view, reference(z))


def test_negation_round_trip_and_weights_stay_positive(z):
    proj = AnagramProjector(8, 8, ["identity", "negate"])
    assert proj.view_sign.tolist() == [1.0, -1.0]
    assert (proj.taps.weight >= 0).all() and (proj.taps.pixel_weight >= 0).all()
    w = proj.project(z)
    # consistent views fuse back to z; a view that ignores the sign would average to 0 instead
    assert torch.allclose(proj.aggregate(w), z)
    num, den = proj.unproject(w)
    assert torch.allclose(num, 2 * z) and torch.equal(den, torch.full((1, 8, 8), 2.0))


def test_inner_rotation_by_90_is_rot90_inside_the_circle(z):
    proj = AnagramProjector(8, 8, ["inner_rotate:90"])
    view = proj.project(z)[0]
    yy, xx = torch.meshgrid(torch.arange(8) + 0.5 - 4, torch.arange(8) + 0.5 - 4, indexing="ij")
    inside = yy**2 + xx**2 < 16
    assert torch.allclose(view[:, inside], torch.rot90(z, 1, (1, 2))[:, inside])
    assert torch.equal(view[:, ~inside], z[:, ~inside])


def test_inner_rotation_at_odd_angle_is_one_to_n():
    idx = inner_rotation_index(32, 32, 37.0)
    counts = torch.bincount(idx, minlength=32 * 32)
    assert counts.max() >= 2 and (counts == 0).any()  # some texels read twice, some never
    proj = AnagramProjector(32, 32, ["inner_rotate:37"])
    assert 0.8 < proj.coverage_fraction() < 1.0
    # the union with the identity view covers everything
    assert AnagramProjector(32, 32, ["identity", "inner_rotate:37"]).coverage_fraction() == 1.0


def test_patch_permutation_moves_patches(z):
    view = AnagramProjector(8, 8, [PatchPermute((2, 2), (3, 2, 1, 0))]).project(z)[0]
    assert torch.equal(view[:, :4, :4], z[:, 4:, 4:])
    assert torch.equal(view[:, :4, 4:], z[:, 4:, :4])
    turned = AnagramProjector(8, 8, [PatchPermute((2, 2), (0, 1, 2, 3), (1, 0, 0, 0))]).project(z)[0]
    assert torch.equal(turned[:, :4, :4], torch.rot90(z[:, :4, :4], 1, (1, 2)))


def test_jigsaw_is_a_permutation_of_the_pixels(z):
    view = AnagramProjector(8, 8, ["jigsaw:4:3"]).project(z)[0]
    assert not torch.equal(view, z)
    assert torch.equal(torch.sort(view.reshape(3, -1), 1).values, torch.sort(z.reshape(3, -1), 1).values)


@pytest.mark.parametrize(
    "views, message",
    [
        ([PatchPermute((2, 2), (0, 1, 1, 3))], r"patch permutation \[0, 1, 1, 3\] is not a permutation of 0..3"),
        ([PixelPermute((0, 1, 2))], r"pixel permutation \[0, 1, 2\] is not a permutation of 0..63"),
        ([PatchPermute((3, 2), (0, 1, 2, 3, 4, 5))], r"patch grid \(3, 2\) does not divide the canvas 8x8"),
        (["inner_rotate:abc"], "inner_rotate angle 'abc'"),
        (["spin"], "unknown anagram view 'spin'"),
    ],
)
def test_bad_input_names_the_value(views, message):
    with pytest.raises(ValueError, match=message):
        AnagramProjector(8, 8, views)


def test_quarter_turn_needs_a_square_canvas():
    with pytest.raises(ValueError, match="view 'rotate_cw' needs a square canvas, got 8x6"):
        AnagramProjector(8, 6, ["rotate_cw"])


def test_rescaled_latent_anagram_matches_pixel_geometry():
    pixel = AnagramProjector(64, 64, ["identity", "flip_h", "jigsaw:4:0", "negate"])
    latent = pixel.rescaled(8)
    assert latent.view_hw == (8, 8) and latent.view_sign.tolist() == [1, 1, 1, -1]
    up = torch.arange(64.0).reshape(1, 8, 8).repeat_interleave(8, 1).repeat_interleave(8, 2)
    # nearest-upsampled latent views equal pixel views of the upsampled canvas
    lat_views = latent.project(torch.arange(64.0).reshape(1, 8, 8))
    assert torch.equal(lat_views.repeat_interleave(8, 2).repeat_interleave(8, 3), pixel.project(up))
    with pytest.raises(ValueError, match="pixel permutation has no counterpart"):
        AnagramProjector(8, 8, [PixelPermute(tuple(range(64)))]).rescaled(2)
