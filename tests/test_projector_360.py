"""360 panorama: views of a photograph-like equirect image against an independent analytic reference,
the wrap seam, the pixel-density-matched canvas, rigs, poles, depth renders, bad input."""

import math

import pytest
import torch
import torch.nn.functional as F

from sync_canvas.projectors import EquirectProjector
from sync_canvas.projectors.panorama360 import STOCHSYNC_GROUPS, default_canvas, focal_pixels, rig_view_count

VIEW = 48


def photo_like_equirect(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """[3, h, w] in [0, 1]: sky/ground gradients, periodic hills, hard-edged blocks and text-like glyphs.

    Built continuous at the middle column and then rolled by w/2, so a glyph block and an edge straddle
    the canvas seam (lon +-180) without the image itself having a jump there.
    """
    g = torch.Generator().manual_seed(seed)
    r = torch.linspace(0, 1, h)[:, None].expand(h, w)
    c = torch.linspace(0, 1, w + 1)[:-1][None, :].expand(h, w)
    img = torch.stack([0.3 + 0.5 * r, 0.5 + 0.2 * torch.sin(2 * math.pi * c), 0.8 - 0.6 * r])
    hills = 0.55 + 0.08 * torch.sin(6 * math.pi * c) + 0.04 * torch.cos(14 * math.pi * c)
    img = torch.where((r > hills).unsqueeze(0), img * torch.tensor([0.4, 0.8, 0.3])[:, None, None], img)
    # hard-edged blocks (windows of buildings) with text-like glyphs (random 5x3 bit patterns)
    for k in range(6):
        y0, x0 = int(h * (0.3 + 0.05 * (k % 3))), int(w * (0.3 + 0.07 * k))
        bh, bw = h // 6, w // 20
        img[:, y0 : y0 + bh, x0 : x0 + bw] = torch.rand(3, 1, 1, generator=g)
        glyphs = (torch.rand(5, 3 * 3, generator=g) > 0.5).float()
        glyphs = glyphs.repeat_interleave(2, 0).repeat_interleave(2, 1)[: bh - 2, : bw - 2]
        img[:, y0 + 1 : y0 + 1 + glyphs.shape[0], x0 + 1 : x0 + 1 + glyphs.shape[1]] *= 1 - 0.7 * glyphs
    return torch.roll(img, w // 2, dims=2)


def reference_rays(view: int, fov: float, yaw: float, pitch: float) -> torch.Tensor:
    """Independent ray computation: a look-at camera basis built from the viewing direction."""
    y, p = math.radians(yaw), math.radians(pitch)
    forward = torch.tensor([math.cos(p) * math.sin(y), math.sin(p), math.cos(p) * math.cos(y)], dtype=torch.float64)
    right = torch.linalg.cross(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), forward)
    right = right / right.norm()
    up = torch.linalg.cross(forward, right)
    f = (view / 2) / math.tan(math.radians(fov) / 2)
    t = (torch.arange(view, dtype=torch.float64) + 0.5 - view / 2) / f
    a, b = t[None, :].expand(view, view), -t[:, None].expand(view, view)
    rays = a[..., None] * right + b[..., None] * up + forward
    return rays / rays.norm(dim=-1, keepdim=True), (forward, right, up, f)


def reference_view(img: torch.Tensor, rays: torch.Tensor, mode: str) -> torch.Tensor:
    """grid_sample of the equirect at the rays' (lon, lat), with two wrapped columns on each side."""
    h, w = img.shape[-2:]
    lon = torch.atan2(rays[..., 0], rays[..., 2])
    lat = torch.asin(rays[..., 1])
    u = (lon / (2 * math.pi) + 0.5) * w + 2
    v = (0.5 - lat / math.pi) * h
    padded = torch.cat([img[..., -2:], img, img[..., :2]], -1).double()
    grid = torch.stack([2 * u / (w + 4) - 1, 2 * v / h - 1], -1)[None]
    return F.grid_sample(padded[None], grid, mode=mode, padding_mode="border", align_corners=False)[0]


def pixel_error(sampled_dirs: torch.Tensor, basis) -> torch.Tensor:
    """Distance in view pixels between where sampled directions land in the camera and pixel centres."""
    forward, right, up, f = basis
    n = sampled_dirs.shape[0]
    depth = sampled_dirs @ forward
    x = (sampled_dirs @ right) / depth * f + n / 2 - 0.5
    y = -(sampled_dirs @ up) / depth * f + n / 2 - 0.5
    jj, ii = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64), indexing="xy")
    return torch.sqrt((x - jj) ** 2 + (y - ii) ** 2)


def direction_canvas(h: int, w: int) -> torch.Tensor:
    """[3, h, w] unit direction of every texel centre (continuous across the seam)."""
    lon = ((torch.arange(w, dtype=torch.float64) + 0.5) / w - 0.5) * 2 * math.pi
    lat = (0.5 - (torch.arange(h, dtype=torch.float64) + 0.5) / h) * math.pi
    lat, lon = torch.meshgrid(lat, lon, indexing="ij")
    return torch.stack([torch.cos(lat) * torch.sin(lon), torch.sin(lat), torch.cos(lat) * torch.cos(lon)])


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_views_match_independent_reference_within_one_pixel(interpolation):
    yaws, pitches = [0, 45, 180, 300], [0, 20, -35, 60]
    proj = EquirectProjector(VIEW, yaws, pitches, interpolation=interpolation)
    h, w = proj.canvas_hw
    views_dir = proj.project(direction_canvas(h, w))
    img = photo_like_equirect(h, w)
    views = proj.project(img.double())
    for k, (yaw, pitch) in enumerate(zip(yaws, pitches)):
        rays, basis = reference_rays(VIEW, 72, yaw, pitch)
        sampled = views_dir[k].permute(1, 2, 0)
        sampled = sampled / sampled.norm(dim=-1, keepdim=True)
        ref = reference_view(img, rays, interpolation)
        if interpolation == "bilinear":
            # continuous sample positions: the ray geometry agrees to a small fraction of a pixel
            err = pixel_error(sampled, basis)
            assert err.max() < 0.25, (yaw, pitch, float(err.max()))
            assert (views[k] - ref).abs().max() < 1e-3
        else:
            # nearest: the same texel as the reference's nearest lookup, except at near-ties
            ref_dir = reference_view(direction_canvas(h, w), rays, "nearest")
            assert (views_dir[k] - ref_dir).abs().amax(0).le(1e-9).double().mean() > 0.99
            # nearest: equal to the reference up to the image's own variation within one pixel
            pad = F.pad(ref[None], (1, 1, 1, 1), mode="replicate")[0]
            shifts = [pad[:, 1 + dy : 1 + dy + VIEW, 1 + dx : 1 + dx + VIEW] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
            local = torch.stack([(s - ref).abs() for s in shifts]).amax(0)
            assert ((views[k] - ref).abs() <= local + 1e-6).all()
            assert (views[k] == ref).double().mean() > 0.9


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_wrap_seam_at_yaw_180_has_no_discontinuity(interpolation):
    proj = EquirectProjector(VIEW, [180, 0], interpolation=interpolation)
    h, w = proj.canvas_hw
    img = photo_like_equirect(h, w, seed=3).double()
    across_seam = proj.project(img, [0])[0]
    # the same content seen away from the seam: roll the canvas by half a turn, look at yaw 0
    away = proj.project(torch.roll(img, w // 2, dims=2), [1])[0]
    assert torch.allclose(across_seam, away, atol=1e-9)
    # and no jump in the middle column pair of the seam view beyond the image's own gradients
    dx = (across_seam[:, :, 1:] - across_seam[:, :, :-1]).abs()
    assert dx[:, :, VIEW // 2 - 2 : VIEW // 2 + 1].max() <= dx.max()
    rays, _ = reference_rays(VIEW, 72, 180, 0)
    ref = reference_view(img, rays, "bilinear")
    centre = slice(VIEW // 2 - 3, VIEW // 2 + 3)
    assert (across_seam[:, :, centre] - ref[:, :, centre]).abs().max() < 0.35  # a glyph edge at most


def test_default_canvas_matches_pixel_density_and_fuses_without_holes():
    view = 64
    proj = EquirectProjector(view)
    h, w = proj.canvas_hw
    limit = 2 * math.pi * focal_pixels(view, 72)
    assert (h, w) == default_canvas(view, 72) and w <= limit and h * 2 == w
    dirs = direction_canvas(h, w).permute(1, 2, 0)

    def inside_some_view(margin_px):
        inside = torch.zeros(h, w, dtype=torch.bool)
        for yaw in proj.yaws:
            _, (fwd, right, up, f) = reference_rays(view, 72, yaw, 0)
            depth = dirs @ fwd
            x, y = (dirs @ right) / depth * f, (dirs @ up) / depth * f
            lim = view / 2 - margin_px
            inside |= (depth > 0) & (x.abs() < lim) & (y.abs() < lim)
        return inside

    inside = inside_some_view(1.0)
    assert inside.sum() > 0.3 * h * w
    assert proj.coverage()[inside].all(), "default canvas leaves holes inside the views"
    assert not proj.coverage()[~inside_some_view(-1.0)].any()
    # a canvas twice as dense as the pixels does leave holes (the check above can fail)
    dense = EquirectProjector(view, canvas_hw=(2 * h, 2 * w))
    dirs = direction_canvas(2 * h, 2 * w).permute(1, 2, 0)
    h, w = 2 * h, 2 * w
    assert not dense.coverage()[inside_some_view(1.0)].all()


def test_paper_rigs():
    st = EquirectProjector(64)
    assert st.yaws == [float(a) for a in range(0, 360, 45)] and st.fov == 72 and set(st.pitches) == {0.0}
    assert st.view_groups() == [[0, 2, 4, 6], [1, 3, 5, 7]]
    # the latent twin of the 512-pixel StochSync rig (default canvas 1080x2160 / 8)
    latent = EquirectProjector(64, rig="stochsync", canvas_hw=(135, 270))
    assert latent.yaws == [float(a) for a in STOCHSYNC_GROUPS[0] + STOCHSYNC_GROUPS[1]]
    assert latent.view_groups() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    for group in latent.view_groups():
        assert int(sum(latent.coverage([i]).long() for i in group).max()) == 1
    # the two groups together tile the whole visible band: every texel of one is near the other
    assert latent.coverage_fraction() == pytest.approx(
        latent.coverage([0, 1, 2, 3, 4]).double().mean().item() + latent.coverage([5, 6, 7, 8, 9]).double().mean().item(),
        rel=0.6,
    )


@pytest.mark.slow
def test_stochsync_pixel_rig_and_its_latent_twin():
    ss = EquirectProjector(512, rig="stochsync")
    assert ss.canvas_hw == (1080, 2160)
    latent = ss.rescaled(8)
    assert latent.canvas_hw == (135, 270)
    for proj in (ss, latent):
        assert proj.view_groups() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
        for group in proj.view_groups():
            assert int(sum(proj.coverage([i]).long() for i in group).max()) == 1


def test_stochsync_groups_fall_back_when_borders_share_texels():
    proj = EquirectProjector(32, rig="stochsync", interpolation="bilinear")
    groups = proj.view_groups()
    assert groups != [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]] and "greedy" in proj.group_note
    for group in groups:
        assert int(sum(proj.coverage([i]).long() for i in group).max()) == 1


def test_paper_latent_canvas_is_reachable():
    proj = EquirectProjector(64, canvas_hw=(2048, 4096))
    assert proj.canonical_shape == (2048, 4096) and proj.view_hw == (64, 64)
    assert proj.coverage_fraction() < 0.01  # super-sampled: sparse scatter, Voronoi fill afterwards


def test_stochsync_rig_with_pole_views_keeps_its_groups():
    proj = EquirectProjector(32, rig="stochsync", pole_views=True, canvas_hw=(60, 120))
    assert proj.view_groups() == [[0, 1, 2, 3, 4, 10, 11], [5, 6, 7, 8, 9]]
    for group in proj.view_groups():
        assert int(sum(proj.coverage([i]).long() for i in group).max()) == 1


def test_pole_views_cover_the_poles():
    plain = EquirectProjector(32)
    poles = EquirectProjector(32, pole_views=True)
    assert poles.n_views == 10 and poles.pitches[-2:] == [90.0, -90.0]
    h = plain.canvas_hw[0]
    cap = h // 6  # latitudes beyond +-60 degrees
    assert not plain.coverage()[:cap].any() and not plain.coverage()[-cap:].any()
    # every row of both caps is now seen (nearest sampling leaves the tiny polar texels sparse)
    assert poles.coverage()[:cap].any(1).all() and poles.coverage()[-cap:].any(1).all()
    assert poles.coverage()[:cap].double().mean() > 0.3


def test_depth_views_convert_radial_distance_to_z_depth():
    proj = EquirectProjector(16, [0, 90])
    h, w = proj.canvas_hw
    depth = proj.depth_views(torch.full((h, w), 2.0))
    f = focal_pixels(16, 72)
    t = (torch.arange(16) + 0.5 - 8) / f
    expected = 2.0 / torch.sqrt(1 + t[None, :] ** 2 + t[:, None] ** 2)
    assert torch.allclose(depth[:, 0], expected.float().expand(2, -1, -1), atol=1e-6)
    assert torch.equal(proj.depth_views(torch.full((1, h, w), 2.0), radial=False), torch.full((2, 1, 16, 16), 2.0))
    with pytest.raises(ValueError, match="depth map has shape"):
        proj.depth_views(torch.zeros(h + 1, w))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(fov=0), "fov=0 must lie in"),
        (dict(fov=180), "fov=180 must lie in"),
        (dict(fov=-10.5), "fov=-10.5 must lie in"),
        (dict(canvas_hw=(16, 32)), "view size 32x32 is larger than the canvas 16x32"),
        (dict(pitches=95), "pitch=95.0 must lie in"),
        (dict(rig="mvd"), "rig='mvd'"),
        (dict(interpolation="cubic"), "interpolation='cubic'"),
    ],
)
def test_bad_input_names_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EquirectProjector(32, **kwargs)


def test_fill_wraps_around_the_seam():
    proj = EquirectProjector(16, [0])
    h, w = proj.canvas_hw
    covered = torch.zeros(h, w, dtype=torch.bool)
    covered[:, 0] = True  # first column (lon just past -180)
    covered[:, w // 2] = True  # a column at lon 0
    z = torch.zeros(1, h, w)
    z[0, :, 0], z[0, :, w // 2] = 1.0, 2.0
    filled = proj.fill(z, covered)
    assert (filled[0, :, w - 3 :] == 1.0).all()  # the last columns take the value across the seam
    assert (filled[0, :, w // 2 - 3 : w // 2 + 4] == 2.0).all()
    assert torch.equal(filled[:, covered], z[:, covered])


def test_voronoi_sources_match_the_full_index_map_fill():
    """Indices-only, uncovered-only Voronoi fill = the old whole-canvas gather through the EDT's full
    index map (wrapped for 360, plain otherwise; ties resolved by the same transform)."""
    import numpy as np
    from scipy.ndimage import distance_transform_edt

    from sync_canvas.projectors.fill import fill_from_sources, voronoi_sources

    rng = np.random.default_rng(0)
    covered = rng.random((24, 48)) < 0.05
    z = torch.randn(2, 24, 48, dtype=torch.float64)
    _, nearest = distance_transform_edt(~covered, return_indices=True)
    old = z.reshape(2, -1)[:, torch.as_tensor(np.ravel_multi_index(tuple(nearest), covered.shape))].reshape(z.shape)
    torch.testing.assert_close(fill_from_sources(z, *voronoi_sources(covered), chunk=7), old)
    wide = np.concatenate([covered[:, 24:], covered, covered[:, :24]], axis=1)
    _, (rows, cols) = distance_transform_edt(~wide, return_indices=True)
    flat = rows[:, 24:72] * 48 + (cols[:, 24:72] - 24) % 48
    old = z.reshape(2, -1)[:, torch.as_tensor(flat).reshape(-1)].reshape(z.shape)
    torch.testing.assert_close(fill_from_sources(z, *voronoi_sources(covered, wrap_columns=True)), old)


def test_fuse_writes_into_a_canvas_the_engine_owns_and_never_into_a_callers():
    """in_place: the same values, written into ``previous`` (no whole-canvas copy); the engine gives up
    only canvases its own fuse made, never the caller's latent it started from."""
    from sync_canvas.projectors.panorama360 import EquirectProjector
    from sync_canvas.samplers.engine import Engine

    proj = EquirectProjector(16, canvas_hw=(32, 64))
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(proj.n_views, 4, 16, 16, generator=gen)
    previous = torch.randn(4, 32, 64, generator=gen)
    copied = proj.aggregate(w, previous.clone())
    mine = previous.clone()
    fused = proj.aggregate(w, mine, in_place=True)
    assert fused.data_ptr() == mine.data_ptr()
    torch.testing.assert_close(fused, copied)

    latent = previous.clone()
    engine = Engine(lambda x, s, ids: x, proj, None, torch.zeros(4, 32, 64), None, None, None, None)
    engine.previous["x0"] = latent
    first = engine.fuse(w, "x0")
    assert torch.equal(latent, previous) and first.data_ptr() != latent.data_ptr()
    second = engine.fuse(2 * w, "x0")
    assert second.data_ptr() == first.data_ptr()  # its own canvas, updated where the views touch it
    torch.testing.assert_close(second, proj.aggregate(2 * w, copied))


@pytest.mark.parametrize("rig,pole_views,expected", [("synctweedies", False, 8), ("synctweedies", True, 10),
                                                     ("stochsync", False, 10), ("stochsync", True, 12)])
def test_rig_view_count_is_the_projectors_view_count(rig, pole_views, expected):
    """The 360 node's memory estimate counts views with rig_view_count: it must be what the projector builds."""
    assert rig_view_count(rig, pole_views) == expected
    assert EquirectProjector(16, rig=rig, pole_views=pole_views, canvas_hw=(64, 128)).n_views == expected
    with pytest.raises(ValueError, match="rig="):
        rig_view_count("paper", False)
