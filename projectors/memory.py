"""What a projector build or a sampling run will allocate, computed from its settings before allocating.

Arithmetic on settings (no tensors, no ComfyUI), so a node can refuse a 16384x16384 panorama with stride 8
(about 4 million windows) in microseconds instead of growing the server by gigabytes first. The numbers
are peak estimates: the bytes per view pixel count the taps a projector keeps (``SparseViewMap``: int64
index + float32 weight per tap, float32 pixel weight) plus the temporaries of building them, calibrated
against peak RSS of small builds (``benchmarks/bench_memory_estimates.py``). They err high rather than low.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .panorama import window_starts  # the projector's own window rule (a list of a few thousand ints at most)

GIB = 1 << 30

# peak bytes per view pixel while building taps (kept taps + temporaries), per projector family
WIDE_BYTES_PER_PIXEL = 24  # taps written in place: int64 index + float32 weight + float32 pixel weight, + headroom
EQUIRECT_BYTES_PER_PIXEL = {"nearest": 96, "bilinear": 288}  # directions (float64), positions, taps
MESH_BYTES_PER_PIXEL = 160  # raster buffers (face id, barycentrics, uv, normals, depth) + taps
# splat compositing weights (projectors/splat_render.py), per (gaussian, pixel) candidate pair a view's
# footprints cover (an upper bound on the entries kept): CSR forward + transpose (int32 column + float32
# value each) with int64 headroom; the temporaries of rasterising one view (candidate attributes, sort
# keys, float64 transmittance); per view pixel: alpha, depth, row pointers and the dominant-tap map
SPLAT_KEPT_BYTES_PER_PAIR = 20
SPLAT_VIEW_BYTES_PER_PAIR = 200
SPLAT_CHUNK_BYTES_PER_ENTRY = 60  # a chunk's pending lists (20) + building its transpose (40)
SPLAT_BYTES_PER_PIXEL = 32
# the fit's block-Jacobi preconditioner (splat_weights.normal_blocks, solve.BlockJacobi), built with the
# projector: 4 b^2 bytes per gaussian, b the largest power of two <= 16 keeping it within half the weights;
# while building, a slice of <= 2^22 entries' pair temporaries and a batch of <= 2^14 float64 Choleskys
SPLAT_BLOCK_BYTES_PER_ENTRY = 100
SPLAT_BLOCK_SLICE = 1 << 22
SPLAT_CHOLESKY_BYTES_PER_ELEMENT = 40
SPLAT_CHOLESKY_BATCH = 1 << 14
FILL_BYTES_PER_TEXEL = 56  # Voronoi fill: EDT distances (float64) + two int64 index planes + mask
STATE_COPIES = 8  # sampler buffers per view element: x, x0, eps, noise, fused, previous, ... (float32)


@dataclass(frozen=True)
class MemoryEstimate:
    """``bytes`` needed, ``detail`` saying where the number comes from, ``setting`` naming what to lower."""

    bytes: int
    detail: str
    setting: str

    def __add__(self, other: "MemoryEstimate") -> "MemoryEstimate":
        return MemoryEstimate(self.bytes + other.bytes, f"{self.detail} + {other.detail}", self.setting)


def format_bytes(n: float) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", GIB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def wide_panorama(height: int, width: int, window: int, stride: int, wrap: bool) -> MemoryEstimate:
    """Pixel projector plus its latent twin (1/64 of it) for a wide panorama."""
    rows = 1 if window == height else len(window_starts(height, window, stride, False, "height"))
    windows = rows * len(window_starts(width, window, stride, wrap, "width"))
    pixels = windows * window * window
    total = pixels * WIDE_BYTES_PER_PIXEL * (1 + 1 / 64)
    return MemoryEstimate(
        int(total),
        f"{windows} windows of {window}x{window} pixels x {WIDE_BYTES_PER_PIXEL} B per pixel",
        "raise stride (fewer windows) or lower width/height",
    )


def equirect(view_size: int, n_views: int, canvas_hw: tuple[int, int], interpolation: str) -> MemoryEstimate:
    pixels = n_views * view_size * view_size
    per_pixel = EQUIRECT_BYTES_PER_PIXEL.get(interpolation, max(EQUIRECT_BYTES_PER_PIXEL.values()))
    texels = canvas_hw[0] * canvas_hw[1]
    total = (pixels * per_pixel + texels * FILL_BYTES_PER_TEXEL) * (1 + 1 / 64)
    return MemoryEstimate(
        int(total),
        f"{n_views} views of {view_size}x{view_size} x {per_pixel} B per pixel + a {canvas_hw[1]}x{canvas_hw[0]} canvas "
        f"x {FILL_BYTES_PER_TEXEL} B per texel",
        "lower view_size or width",
    )


def mesh_texture(n_views: int, view_size: int, texture_size: int, latent_texture_size: int) -> MemoryEstimate:
    pixels = n_views * view_size * view_size
    texels = texture_size * texture_size + latent_texture_size * latent_texture_size
    # the pull unprojection keeps, per texel and view, a tap (index + weight)
    total = pixels * MESH_BYTES_PER_PIXEL + texels * (FILL_BYTES_PER_TEXEL + 12 * n_views)
    return MemoryEstimate(
        int(total),
        f"{n_views} views of {view_size}x{view_size} x {MESH_BYTES_PER_PIXEL} B per pixel + textures "
        f"{texture_size}^2 and {latent_texture_size}^2 x ({FILL_BYTES_PER_TEXEL} + 12 x {n_views} views) B per texel",
        "lower view_size, texture_size or latent_texture_ratio",
    )


def splat_preconditioner(n_gaussians: int, weight_bytes: int, entries: int) -> tuple[int, int]:
    """(kept, temporary) bytes of a splat projector's block-Jacobi preconditioner, for weights of
    ``weight_bytes`` holding ``entries`` (``CompositingWeights.block_size``'s rule)."""
    b = 16
    while b > 1 and 4 * b * b * n_gaussians > weight_bytes // 2:
        b //= 2
    kept = 4 * b * b * n_gaussians
    batch = min(-(-n_gaussians // b), SPLAT_CHOLESKY_BATCH) * b * b * SPLAT_CHOLESKY_BYTES_PER_ELEMENT
    return kept, min(entries, SPLAT_BLOCK_SLICE) * SPLAT_BLOCK_BYTES_PER_ENTRY + batch


def splat(n_views: int, view_hw: tuple[int, int], chunk_entries: int, pairs: tuple[int, int],
          twin_pairs: tuple[int, int] | None = None, twin_hw: tuple[int, int] = (0, 0),
          n_gaussians: int = 0) -> MemoryEstimate:
    """A splat projector build: ``pairs`` = (pairs kept over all views, candidates of the largest view) from
    ``splat_render.footprint_pairs``; ``twin_pairs`` / ``twin_hw`` the same for its latent twin (built by the
    sampler later, kept with it); ``chunk_entries`` the build's (``splat_render.default_chunk_entries``).
    Kept weights and preconditioners + the largest of: the largest view's temporaries with one chunk's
    build, a preconditioner's build."""
    total, largest = pairs
    chunk = min(chunk_entries, total)
    weights = total * SPLAT_KEPT_BYTES_PER_PAIR + n_views * view_hw[0] * view_hw[1] * SPLAT_BYTES_PER_PIXEL
    blocks, block_build = splat_preconditioner(n_gaussians, weights, total)
    kept = weights + blocks
    temporaries = max(largest * SPLAT_VIEW_BYTES_PER_PAIR + chunk * SPLAT_CHUNK_BYTES_PER_ENTRY, block_build)
    detail = (f"{n_views} views of {view_hw[1]}x{view_hw[0]}: {total} splat-pixel pairs x {SPLAT_KEPT_BYTES_PER_PAIR} B "
              f"+ {SPLAT_VIEW_BYTES_PER_PAIR} B x {largest} pairs of the largest view while building"
              f" + the fit's preconditioner ({blocks / 2**20:.0f} MiB)")
    if twin_pairs is not None:
        twin = twin_pairs[0] * SPLAT_KEPT_BYTES_PER_PAIR + n_views * twin_hw[0] * twin_hw[1] * SPLAT_BYTES_PER_PIXEL
        twin_blocks, twin_block_build = splat_preconditioner(n_gaussians, twin, twin_pairs[0])
        kept += twin + twin_blocks
        temporaries = max(temporaries, twin_pairs[1] * SPLAT_VIEW_BYTES_PER_PAIR, twin_block_build)
        detail += f" + the latent twin's {twin_pairs[0]} pairs and preconditioner"
    return MemoryEstimate(int(kept + temporaries), detail,
                          "lower view_size or views (SyncCanvas Splat Camera Orbit), or use a smaller scene")


def cube_map(face_size: int, view_size: int, n_views: int) -> MemoryEstimate:
    """A cube-map projector: nearest taps of ``n_views`` views (as an equirect's) + six faces' fill."""
    pixels = n_views * view_size * view_size
    per_pixel = EQUIRECT_BYTES_PER_PIXEL["nearest"]
    texels = 6 * face_size * face_size
    total = (pixels * per_pixel + texels * FILL_BYTES_PER_TEXEL) * (1 + 1 / 64)
    return MemoryEstimate(
        int(total),
        f"{n_views} views of {view_size}x{view_size} x {per_pixel} B per pixel + 6 faces of {face_size}x{face_size} "
        f"x {FILL_BYTES_PER_TEXEL} B per texel",
        "lower face size or view_size",
    )


EQUIRECT_EXPORT_BYTES_PER_PIXEL = 160  # directions (float64), face/row/col, 4 bilinear corners (int64 + weight)


def equirect_image(height: int, channels: int) -> MemoryEstimate:
    """A cube map resampled to an equirectangular ``[C, H, 2H]`` image (``CubeMapProjector.equirect``)."""
    pixels = 2 * height * height
    per_pixel = EQUIRECT_EXPORT_BYTES_PER_PIXEL + 4 * channels * 6  # + taps [C, ..., 4], output, IMAGE copy
    return MemoryEstimate(pixels * per_pixel, f"a {2 * height}x{height} equirectangular image x {per_pixel} B per pixel",
                          "lower equirect_height")


def image_batch(count: int, channels: int, shape: tuple[int, ...], copies: int, what: str, setting: str) -> MemoryEstimate:
    """``copies`` float32 buffers of ``count`` items ``[channels, *shape]``: a node's view batch, renders, canvas
    latents (the copies: the result, its IMAGE layout, the temporaries of making it)."""
    elements = count * channels * math.prod(shape)
    return MemoryEstimate(elements * 4 * copies,
                          f"{count} {what} of {channels}x{'x'.join(map(str, shape))} x {copies} float32 copies", setting)


def sampling_run(
    n_views: int, channels: int, view_hw: tuple[int, int], canonical_elements: int,
    vae_factor: int = 8, decode: bool = False, views_per_batch: int | None = None,
) -> MemoryEstimate:
    """A synchronized run at latent resolution: per-view state and canonical state (float32, ``STATE_COPIES``
    buffers each) plus, with ``decode``, the RGB views and canvas (and a fill) at ``vae_factor`` times the size."""
    view_elems = n_views * channels * view_hw[0] * view_hw[1]
    state = (view_elems + canonical_elements * channels) * 4 * STATE_COPIES
    detail = f"{n_views} views x {channels}x{view_hw[0]}x{view_hw[1]} latents x {STATE_COPIES} float32 buffers"
    if decode:
        f2 = vae_factor * vae_factor
        rgb = (n_views * 3 * view_hw[0] * view_hw[1] * f2 + canonical_elements * f2 * 3) * 4 * 3
        rgb += canonical_elements * f2 * FILL_BYTES_PER_TEXEL
        state += rgb
        detail += " + RGB views and canvas at full resolution"
    return MemoryEstimate(int(state), detail, "lower the canvas size or use fewer views")


def fits(estimate: MemoryEstimate, available: int, headroom: float = 0.8) -> bool:
    """True when ``estimate`` fits in ``headroom`` of ``available`` bytes (leave room for the model, the OS)."""
    return estimate.bytes <= headroom * max(0, available) and math.isfinite(estimate.bytes)
