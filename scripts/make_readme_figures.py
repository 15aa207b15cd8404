"""Write the README's geometry figures into docs/figures/ (small PNGs, CPU, well under a minute).

Every picture is procedural test content pushed through the pack's own projectors and assets, so it
shows exactly which canvas texels each example workflow's views read. No diffusion model is involved
anywhere: none of these images is a generation result.

    .venv/bin/python scripts/make_readme_figures.py [--out docs/figures]
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from pack_import import import_pack  # scripts/ (this script's folder)

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAX_WIDTH = 768
BACKGROUND = (255, 255, 255)
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (128, 128, 0), (0, 0, 128)]


def font(size: int):
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        try:
            return ImageFont.load_default(size)
        except TypeError:  # Pillow < 10.1
            return ImageFont.load_default()


def to_pil(img: torch.Tensor) -> Image.Image:
    """``[3, H, W]`` float in [0, 1] -> RGB image."""
    arr = (img.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(arr)


def fit(im: Image.Image, width: int | None = None, height: int | None = None) -> Image.Image:
    w, h = im.size
    scale = (width / w) if width is not None else (height / h)
    return im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)


def titled(im: Image.Image, title: str, note: str = "procedural test content, no model involved") -> Image.Image:
    """Add a title line above and an honesty note below."""
    f, small = font(15), font(11)
    out = Image.new("RGB", (im.width, im.height + 44), BACKGROUND)
    out.paste(im, (0, 24))
    d = ImageDraw.Draw(out)
    d.text((6, 4), title, fill=(0, 0, 0), font=f)
    d.text((6, im.height + 28), note, fill=(90, 90, 90), font=small)
    return out


def label(im: Image.Image, text: str, colour=(0, 0, 0)) -> Image.Image:
    """Caption a tile underneath."""
    out = Image.new("RGB", (im.width, im.height + 18), BACKGROUND)
    out.paste(im, (0, 0))
    ImageDraw.Draw(out).text((2, im.height + 2), text, fill=colour, font=font(12))
    return out


def heading(im: Image.Image, text: str) -> Image.Image:
    """Caption a block above."""
    out = Image.new("RGB", (im.width, im.height + 18), BACKGROUND)
    out.paste(im, (0, 18))
    ImageDraw.Draw(out).text((2, 1), text, fill=(0, 0, 0), font=font(13))
    return out


def row(tiles: list[Image.Image], gap: int = 6) -> Image.Image:
    h = max(t.height for t in tiles)
    out = Image.new("RGB", (sum(t.width for t in tiles) + gap * (len(tiles) - 1), h), BACKGROUND)
    x = 0
    for t in tiles:
        out.paste(t, (x, 0))
        x += t.width + gap
    return out


def column(tiles: list[Image.Image], gap: int = 6) -> Image.Image:
    w = max(t.width for t in tiles)
    out = Image.new("RGB", (w, sum(t.height for t in tiles) + gap * (len(tiles) - 1)), BACKGROUND)
    y = 0
    for t in tiles:
        out.paste(t, (0, y))
        y += t.height + gap
    return out


def border(im: Image.Image, colour, width: int = 3) -> Image.Image:
    out = im.copy()
    ImageDraw.Draw(out).rectangle([0, 0, im.width - 1, im.height - 1], outline=colour, width=width)
    return out


def save(im: Image.Image, path: pathlib.Path) -> None:
    if im.width > MAX_WIDTH:
        im = fit(im, width=MAX_WIDTH)
    im = im.convert("RGB")
    im.save(path, optimize=True)
    if path.stat().st_size > 150_000:  # fall back to a palette image to stay small
        im.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {im.width}x{im.height}, "
          f"{path.stat().st_size // 1024} KB")


# ------------------------------------------------------------------------------------------------
def wide_canvas(h: int, w: int) -> torch.Tensor:
    """[3, h, w]: smooth colour gradients, rolling hills and a few hard shapes (a stand-in scene)."""
    r = torch.linspace(0, 1, h)[:, None].expand(h, w)
    c = torch.linspace(0, 1, w)[None, :].expand(h, w)
    img = torch.stack([0.55 + 0.35 * torch.sin(2 * math.pi * c), 0.6 + 0.25 * torch.cos(3 * math.pi * c) * (1 - r),
                       0.9 - 0.5 * r])
    hills = 0.6 + 0.1 * torch.sin(9 * math.pi * c) + 0.05 * torch.cos(23 * math.pi * c)
    img = torch.where((r > hills).unsqueeze(0), img * torch.tensor([0.35, 0.7, 0.3])[:, None, None], img)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    for k, (cx, cy, rad) in enumerate([(0.08, 0.25, 50), (0.3, 0.35, 35), (0.55, 0.2, 60), (0.78, 0.3, 40),
                                       (0.93, 0.22, 45)]):
        disc = (xx - cx * w) ** 2 + (yy - cy * h) ** 2 < rad ** 2
        img[:, disc] = torch.tensor([1.0, 0.85 - 0.15 * k, 0.2 + 0.15 * k])[:, None]
    for k in range(7):  # houses
        x0, bw, bh = int(w * (0.05 + 0.135 * k)), 90 + 20 * (k % 3), 70 + 30 * (k % 2)
        y0 = int(h * 0.78) - bh
        img[:, y0:y0 + bh, x0:x0 + bw] = torch.tensor([0.8 - 0.08 * k, 0.3 + 0.07 * k, 0.25])[:, None, None]
        img[:, y0 + 15:y0 + 35, x0 + 15:x0 + 35] = 0.95
    return img


def fig_wide_panorama(sc, out: pathlib.Path) -> None:
    from sync_canvas.projectors import WidePanoramaProjector

    proj = WidePanoramaProjector(512, 3072, window=512, stride=64)  # the wide_panorama workflow's settings
    canvas = wide_canvas(512, 3072)
    scale = MAX_WIDTH / 3072
    shown = list(range(0, proj.n_views, 8))
    # the canvas with every 8th window outlined, nested insets so neighbours stay distinguishable
    top = fit(to_pil(canvas), width=MAX_WIDTH)
    d = ImageDraw.Draw(top)
    for j, i in enumerate(shown):
        y0, x0 = proj.origins[i]
        inset = 2 + 4 * (j % 2)
        d.rectangle([x0 * scale + inset, y0 * scale + inset, (x0 + 512) * scale - 1 - inset,
                     (y0 + 512) * scale - 1 - inset], outline=PALETTE[j % len(PALETTE)], width=3)
    # a zoom on the first windows: starts every 64 px, so neighbours share 7/8 of their pixels
    zoom_w = 512 + 64 * 3
    zoom = fit(to_pil(canvas[:, :, :zoom_w]), height=150)
    zs = zoom.height / 512
    dz = ImageDraw.Draw(zoom)
    for i in range(4):
        y0, x0 = proj.origins[i]
        dz.rectangle([x0 * zs + 2 * i, y0 * zs + 2 * i, (x0 + 512) * zs - 1, (y0 + 512) * zs - 1 - 2 * i],
                     outline=PALETTE[(i + 3) % len(PALETTE)], width=2)
    zoom = label(zoom, "windows 0-3: stride 64 px")
    views = proj.project(canvas, shown[:4])
    tiles = [label(border(fit(to_pil(v), height=150), PALETTE[j % len(PALETTE)]), f"view {shown[j]}")
             for j, v in enumerate(views)]
    bottom = row([zoom] + tiles)
    fig = column([top, bottom], gap=10)
    save(titled(fig, f"Wide panorama: 512x3072 canvas, {proj.n_views} windows of 512 px, stride 64 "
                     f"(every 8th outlined)"), out)


# ------------------------------------------------------------------------------------------------
def outline(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a bool mask (4-neighbour), wrapping horizontally like the equirect canvas."""
    m = mask
    inner = m & np.roll(m, 1, 1) & np.roll(m, -1, 1)
    inner[1:] &= m[:-1]
    inner[:-1] &= m[1:]
    return m & ~inner


def fig_panorama360(sc, out: pathlib.Path) -> None:
    from sync_canvas.projectors import EquirectProjector

    sys.path.insert(0, str(ROOT / "tests"))
    from test_projector_360 import photo_like_equirect  # the projector tests' photograph-like panorama

    # default canvas: texel density matched to the views (2:1, no holes in a view's footprint)
    proj = EquirectProjector(view_size=192, rig="synctweedies", fov=72.0)
    canvas_hw = proj.canvas_hw
    canvas = photo_like_equirect(*canvas_hw, seed=0)
    base = canvas.permute(1, 2, 0).numpy().copy()
    tint = base.copy()
    edges = []
    for i in range(proj.n_views):
        cov = proj.coverage([i]).numpy().astype(bool)
        colour = np.array(PALETTE[i % len(PALETTE)]) / 255
        tint[cov] = 0.82 * tint[cov] + 0.18 * colour  # overlapping footprints mix their tints
        edges.append((outline(cov), colour))
    for edge, colour in edges:
        thick = edge | np.roll(edge, 1, 1) | np.roll(edge, 1, 0)
        tint[thick] = colour
    top = Image.fromarray((tint.clip(0, 1) * 255 + 0.5).astype(np.uint8))
    d = ImageDraw.Draw(top)
    for i, yaw in enumerate(proj.yaws):
        lon = (yaw + 180) % 360 - 180
        x = (lon / 360 + 0.5) * canvas_hw[1]
        for shift in (-canvas_hw[1], 0, canvas_hw[1]):  # the 180° view straddles the seam
            d.text((x + shift - 14, canvas_hw[0] // 2 - 8), f"{yaw:g}°", fill=PALETTE[i % len(PALETTE)],
                   font=font(14), stroke_width=2, stroke_fill=(0, 0, 0))
    shown = [0, 1, 2, 3]
    views = proj.project(canvas, shown)
    tiles = [label(border(fit(to_pil(v), height=185), PALETTE[i]), f"view {i}: yaw {proj.yaws[i]:g}°")
             for i, v in zip(shown, views)]
    fig = column([top, row(tiles, gap=10)], gap=8)
    save(titled(fig, "360 panorama, SyncTweedies rig: footprints of 8 views (fov 72°, yaw step 45°)"), out)


def fig_cubemap(sc, out: pathlib.Path) -> None:
    from sync_canvas.projectors.cubemap import CubeMapProjector
    from sync_canvas.projectors.panorama360 import directions_to_canvas

    sys.path.insert(0, str(ROOT / "tests"))
    from test_projector_360 import photo_like_equirect

    face = 128
    proj = CubeMapProjector(face, 128)
    sky = photo_like_equirect(256, 512, seed=0)
    y, x = directions_to_canvas(proj.texel_directions(), (256, 512))  # each texel reads the panorama's nearest texel
    cube = sky.reshape(3, -1)[:, y.long().clamp(0, 255) * 512 + x.long() % 512].reshape(3, 6, face, face)
    tint = cube.clone()
    for i in range(proj.n_views):
        cov = proj.coverage([i])
        colour = torch.tensor(PALETTE[i % len(PALETTE)]).float().reshape(3, 1) / 255
        tint[:, cov] = 0.85 * tint[:, cov] + 0.15 * colour
    cross = Image.new("RGB", (4 * face, 3 * face), BACKGROUND)
    names = ("+X right", "-X left", "+Y top", "-Y bottom", "+Z front", "-Z back")
    places = {0: (2, 1), 1: (0, 1), 2: (1, 0), 3: (1, 2), 4: (1, 1), 5: (3, 1)}  # the horizontal-cross layout
    d = ImageDraw.Draw(cross)
    for k, (cx, cy) in places.items():
        cross.paste(to_pil(tint[:, k]), (cx * face, cy * face))
        d.rectangle([cx * face, cy * face, (cx + 1) * face - 1, (cy + 1) * face - 1], outline=(0, 0, 0))
        d.text((cx * face + 4, cy * face + 4), names[k], fill=(255, 255, 255), font=font(13), stroke_width=2, stroke_fill=(0, 0, 0))
    shown = [0, 2, 8, 12]
    views = proj.project(cube, shown)
    tiles = [label(border(fit(to_pil(v), height=150), PALETTE[i % len(PALETTE)]),
                   f"view {i}: {proj.yaws[i]:g}°, {proj.pitches[i]:g}°") for i, v in zip(shown, views)]
    fig = column([fit(cross, width=MAX_WIDTH), row(tiles, gap=8)], gap=8)
    save(titled(fig, "Cube-map skybox: 6 faces, 16 views (8 on the horizon, 4 up, 4 down; fov 72°)"), out)


# ------------------------------------------------------------------------------------------------
def anagram_canvas(size: int) -> torch.Tensor:
    """[3, size, size]: a gradient with an unmistakably oriented figure (arrow, letters, sun)."""
    im = Image.new("RGB", (size, size))
    y, x = np.mgrid[0:size, 0:size] / size
    im = Image.fromarray((np.stack([0.3 + 0.6 * x, 0.4 + 0.4 * y, 0.9 - 0.6 * x * y], -1) * 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    s = size / 256
    d.polygon([(128 * s, 30 * s), (190 * s, 110 * s), (150 * s, 110 * s), (150 * s, 200 * s), (106 * s, 200 * s),
               (106 * s, 110 * s), (66 * s, 110 * s)], fill=(250, 240, 60), outline=(0, 0, 0))
    d.ellipse([14 * s, 14 * s, 64 * s, 64 * s], fill=(230, 60, 40), outline=(0, 0, 0))
    d.rectangle([180 * s, 190 * s, 240 * s, 240 * s], fill=(40, 60, 160), outline=(0, 0, 0))
    d.text((20 * s, 200 * s), "UP", fill=(0, 0, 0), font=font(int(36 * s)))
    return torch.from_numpy(np.asarray(im).astype(np.float32) / 255).permute(2, 0, 1)


def fig_ambiguous(sc, out: pathlib.Path) -> None:
    from sync_canvas.projectors import AnagramProjector

    specs = ("identity", "rotate_cw")  # the ambiguous_image workflow's views
    proj = AnagramProjector(256, 256, views=specs)
    canvas = anagram_canvas(256)
    views = proj.project(canvas)
    tiles = [label(border(to_pil(canvas), (0, 0, 0), 2), "canvas (one image)")]
    tiles += [label(border(to_pil(v), PALETTE[i], 4), f"view {i}: {spec} -> prompt {i + 1}")
              for i, (spec, v) in enumerate(zip(specs, views))]
    save(titled(row(tiles, gap=12), "Ambiguous image (AnagramProjector): each view is a re-arrangement of the "
                                    "same pixels"), out)


# ------------------------------------------------------------------------------------------------
def fig_mesh(sc, out: pathlib.Path) -> None:
    from sync_canvas.assets import procedural
    from sync_canvas.assets.cameras import paper_rig
    from sync_canvas.projectors import MeshTextureProjector

    mesh = procedural.torus()
    rig = paper_rig(mesh.vertices)  # 8 views every 45° at elevation 0, plus azimuth 0 and 180 at 30°
    texture_np = procedural.checker_texture(256, 16)
    texture = torch.from_numpy(texture_np).permute(2, 0, 1).contiguous()
    proj = MeshTextureProjector(mesh, rig, view_size=150, texture_size=256, cos_exponent=3.0, unprojection="scatter")
    shown = [0, 1, 8, 9]
    renders = proj.render(texture, background=1.0, views=shown)
    tex_tile = label(border(fit(Image.fromarray((texture_np * 255 + 0.5).astype(np.uint8)), height=150), (0, 0, 0), 1),
                     "UV texture (256x256)")
    tiles = [tex_tile]
    for i, r in zip(shown, renders):
        cam = rig.cameras[i]
        tiles.append(label(border(to_pil(r), PALETTE[i % len(PALETTE)]),
                           f"view {i}: az {cam.azimuth:g}°, el {cam.elevation:g}°"))
    save(titled(row(tiles, gap=8), f"Mesh texturing: procedural torus, paper rig ({len(rig)} cameras), checker "
                                   f"UV texture"), out)


# ------------------------------------------------------------------------------------------------
def fig_splat(sc, out: pathlib.Path) -> None:
    from sync_canvas.assets.splat_cameras import fit_orbit
    from sync_canvas.assets.splat_procedural import procedural_splat_scene
    from sync_canvas.projectors import SplatProjector

    scene = procedural_splat_scene(2000, seed=0)
    # the splat_recolour workflow's orbit (50 views, fov 50, elevations -10..50), at a small size
    orbit = fit_orbit(scene.means, scene.opacities, n_views=50, fov_deg=50.0, width=150, height=150)
    shown = [0, 1, 2, 3]
    proj = SplatProjector.from_scene(scene, orbit.select(shown))
    own = scene.colors().clamp(0, 1)
    z = scene.means[:, 2]
    stripes = ((torch.floor((z - z.min()) * 6) % 2) == 0).float()
    recolour = torch.stack([0.9 * stripes + 0.1, 0.3 + 0.4 * (scene.means[:, 0] > 0).float(), 1 - 0.8 * stripes])
    rows = []
    for name, colours in (("colours: the scene's own (SH DC term)", own),
                          ("colours: procedural height stripes", recolour)):
        renders = proj.project(colours.float(), None)
        alpha = proj.alpha_maps()
        renders = renders + (1 - alpha) * 1.0  # white background
        tiles = [label(border(to_pil(r), PALETTE[j % len(PALETTE)]), f"orbit view {i}") for j, (i, r) in
                 enumerate(zip(shown, renders))]
        rows.append(heading(row(tiles), name))
    save(titled(column(rows, gap=4), "Splat recolour: procedural splat scene, 4 of the 50 orbit views"), out)


FIGURES = {
    "wide_panorama.png": fig_wide_panorama,
    "panorama360.png": fig_panorama360,
    "cubemap.png": fig_cubemap,
    "ambiguous_image.png": fig_ambiguous,
    "mesh_texturing.png": fig_mesh,
    "splat_recolour.png": fig_splat,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--only", nargs="*", help="figure names to write (default: all)")
    args = parser.parse_args()
    torch.manual_seed(0)
    sc = import_pack()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, make in FIGURES.items():
        if args.only and name not in args.only and name.removesuffix(".png") not in args.only:
            continue
        make(sc, args.out / name)


if __name__ == "__main__":
    main()
