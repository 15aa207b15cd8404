"""Procedural landscapes: the training data of the demo model and the ground truth of the quality benchmark.

Each scene has the structure a synchronized sampler must carry across view borders: a horizon at one
height, a sky gradient, a sun (or moon), a silhouette (mountains, dunes, hills with trees) and a textured
ground. Five classes, picked by prompt words (:data:`CLASS_WORDS`), differ in palette and silhouette so a
tiny classifier (and a person) can tell them apart at 32x32.

Coordinates are in units of the image height (x = column / height), so a wide image is a wider window on
the same kind of scene: every horizontal position is statistically alike (nothing pins a scene to its left
edge), which is what a panorama made of windows needs.

Pure torch, seeded through a ``torch.Generator``: the same seed gives the same scenes.
"""

from __future__ import annotations

import math

import torch

CLASSES = ("mountains", "desert", "ocean", "night", "forest")

# Words that select each class in a prompt (lower case, as CLIP's tokenizer sees them).
CLASS_WORDS = {
    "mountains": ("mountains", "mountain", "alps", "peaks", "snowy"),
    "desert": ("desert", "dunes", "sand", "sahara"),
    "ocean": ("ocean", "sea", "beach", "coast", "water"),
    "night": ("night", "moon", "moonlit", "dark"),
    "forest": ("forest", "trees", "woods", "green"),
}

# (sky top, sky at horizon, silhouette, ground near, ground far, sun) in RGB [0, 1].
_PALETTES = {
    "mountains": ((0.20, 0.40, 0.85), (0.72, 0.85, 1.00), (0.42, 0.46, 0.58), (0.22, 0.45, 0.18), (0.35, 0.55, 0.30), (1.00, 0.98, 0.85)),
    "desert": ((0.50, 0.68, 0.95), (1.00, 0.88, 0.62), (0.88, 0.62, 0.30), (0.95, 0.75, 0.45), (0.85, 0.60, 0.32), (1.00, 0.95, 0.55)),
    "ocean": ((0.30, 0.52, 0.92), (0.85, 0.92, 1.00), (0.30, 0.52, 0.92), (0.02, 0.18, 0.45), (0.15, 0.40, 0.70), (1.00, 0.97, 0.75)),
    "night": ((0.01, 0.02, 0.10), (0.10, 0.13, 0.32), (0.03, 0.04, 0.07), (0.02, 0.03, 0.05), (0.05, 0.06, 0.10), (0.92, 0.92, 0.80)),
    "forest": ((0.38, 0.60, 0.90), (0.80, 0.90, 0.95), (0.08, 0.30, 0.10), (0.20, 0.50, 0.15), (0.30, 0.58, 0.22), (1.00, 0.98, 0.80)),
}


def _uniform(gen, n, lo, hi):
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _lerp(a, b, t):
    return a + (b - a) * t


def render(classes: torch.Tensor, height: int, width: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Renders one landscape per entry of ``classes``.

    classes: (B,) int64 indices into :data:`CLASSES`. Returns (B, 3, height, width) RGB in [0, 1].
    """
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    classes = torch.as_tensor(classes, dtype=torch.int64)
    b = classes.shape[0]
    pal = torch.tensor([_PALETTES[name] for name in CLASSES])[classes]  # (B, 6, 3)
    pal = (pal * _uniform(gen, (b, 1, 3), 0.9, 1.1)).clamp(0, 1)  # colour jitter per scene
    y = (torch.arange(height, dtype=torch.float32) + 0.5) / height  # (H,), 0 top .. 1 bottom
    x = (torch.arange(width, dtype=torch.float32) + 0.5) / height  # (W,), in heights
    y, x = y.view(1, height, 1), x.view(1, 1, width)
    is_ = {name: (classes == i).view(b, 1, 1) for i, name in enumerate(CLASSES)}
    shift = _uniform(gen, (b, 1, 1), 0.0, 50.0)  # where along an endless scene this window lies
    xs = x + shift

    horizon = _uniform(gen, (b, 1, 1), 0.52, 0.70)
    # Silhouette height above the horizon at each column: class-dependent waves.
    phases = _uniform(gen, (b, 4), 0.0, 2 * math.pi)
    freqs = torch.tensor([1.3, 2.9, 6.1, 13.0]) * _uniform(gen, (b, 4), 0.8, 1.25)

    def wave(k):
        return torch.sin(freqs[:, k].view(b, 1, 1) * 2 * math.pi * xs / 2 + phases[:, k].view(b, 1, 1))

    def tri(k):  # triangle wave in [0, 1]: jagged peaks
        return torch.asin(wave(k)).abs() * (2 / math.pi)

    peaks = 0.55 * tri(0) + 0.30 * tri(1) + 0.15 * tri(2)
    dunes = 0.5 + 0.35 * wave(0) + 0.15 * wave(1)
    hills = 0.5 + 0.3 * wave(0) + 0.2 * wave(1)
    trees = (torch.sin(2 * math.pi * xs * 5 + phases[:, 3].view(b, 1, 1)).abs() ** 0.5)
    mountain_amp = _uniform(gen, (b, 1, 1), 0.28, 0.45)
    ridge = torch.zeros(b, 1, width)
    ridge = torch.where(is_["mountains"], mountain_amp * peaks, ridge)
    ridge = torch.where(is_["desert"], 0.10 * dunes, ridge)
    ridge = torch.where(is_["night"], 0.14 * hills, ridge)
    ridge = torch.where(is_["forest"], 0.10 * hills + 0.07 * trees, ridge)
    ridge_y = horizon - ridge  # (B, 1, W)

    # Sky: gradient from top colour to horizon colour.
    t_sky = (y / horizon).clamp(0, 1) ** 1.5
    img = _lerp(pal[:, 0].view(b, 3, 1, 1), pal[:, 1].view(b, 3, 1, 1), t_sky.unsqueeze(1))
    img = img.expand(b, 3, height, width).clone()

    # Stars at night: sparse bright points on a fixed lattice of the endless scene.
    star_field = torch.sin(xs * 211.0) * torch.sin(y * 173.0 + shift * 3.0)
    stars = ((star_field > 0.985) & (y < horizon - 0.1) & is_["night"]).unsqueeze(1)
    img = torch.where(stars, torch.full_like(img, 0.9), img)

    # Sun or moon: a disc with a soft glow, behind the silhouette.
    sun_x = _uniform(gen, (b, 1, 1), 0.0, max(width / height, 1.0)) + shift
    sun_y = horizon * _uniform(gen, (b, 1, 1), 0.25, 0.7)
    sun_r = torch.where(is_["desert"], 0.11, torch.where(is_["night"], 0.06, 0.075)) * _uniform(gen, (b, 1, 1), 0.85, 1.15)
    dist = ((xs - sun_x) ** 2 + (y - sun_y) ** 2).sqrt()
    glow = (0.45 * torch.exp(-((dist - sun_r).clamp(min=0) / (1.5 * sun_r)) ** 2)).unsqueeze(1)
    disc = (dist < sun_r).unsqueeze(1)
    sun = pal[:, 5].view(b, 3, 1, 1)
    img = torch.where(disc, sun.expand_as(img), _lerp(img, sun, glow))

    # Silhouette (above the horizon, below the ridge line).
    body = ((y >= ridge_y) & (y < horizon)).unsqueeze(1)
    shade = 1.0 - 0.25 * ((y - ridge_y) / (ridge + 1e-3)).clamp(0, 1).unsqueeze(1)
    sil = pal[:, 2].view(b, 3, 1, 1) * shade
    snow_line = ridge_y + 0.35 * ridge * (0.6 + 0.4 * tri(3))
    snow = (body & (y < snow_line).unsqueeze(1) & is_["mountains"].unsqueeze(1))
    sil = torch.where(snow, torch.tensor([0.95, 0.96, 1.0]).view(1, 3, 1, 1).expand_as(sil), sil)
    img = torch.where(body & ~is_["ocean"].unsqueeze(1), sil, img)

    # Ground: gradient from far (at the horizon) to near (bottom) with texture.
    depth = ((y - horizon) / (1 - horizon)).clamp(0, 1)
    ground = _lerp(pal[:, 4].view(b, 3, 1, 1), pal[:, 3].view(b, 3, 1, 1), depth.unsqueeze(1))
    tex_freq = _uniform(gen, (b, 1, 1), 20.0, 30.0)
    ripples = torch.sin(tex_freq * (y - horizon) / (depth + 0.15) + 3.0 * torch.sin(xs * 3.0))
    texture = torch.where(is_["ocean"], 0.06, torch.where(is_["night"], 0.02, 0.08)) * ripples
    ground = ground * (1 + texture.unsqueeze(1))
    # Sun glitter on water: a bright column under the sun.
    glitter = (torch.exp(-((xs - sun_x) / (1.2 * sun_r)) ** 2) * (ripples > 0.3) * is_["ocean"]).unsqueeze(1)
    ground = _lerp(ground, sun.expand_as(ground), 0.7 * glitter)
    below = (y >= horizon).unsqueeze(1).expand_as(img)
    img = torch.where(below, ground, img)
    return img.clamp(0, 1)


def sample_classes(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(len(CLASSES), (n,), generator=generator)


def class_of_prompt(prompt: str) -> int | None:
    """The class whose words occur in ``prompt`` (first match in CLASSES order), or None."""
    words = set("".join(c if c.isalnum() else " " for c in prompt.lower()).split())
    for i, name in enumerate(CLASSES):
        if words & set(CLASS_WORDS[name]):
            return i
    return None
