"""What reaches the picture: seams, 360 wrap, horizon continuity and anagram classes, per sampler mode, on the
demo model (scripts/train_demo_model.py).

For every mode (SyncTweedies Cases 0-6, StochSync) it samples, with classifier-free guidance and the
written-down CLIP's prompt embeddings, over the pack's own projectors and samplers:

* **wide panorama** (latent 32 x 128 = 256 x 1024 px, 32-wide windows, stride 16): *seam ratio* = mean
  horizontal colour step across window borders / mean step elsewhere (1 = no seams); *horizon jumps* =
  mean |change of the horizon row| between neighbouring columns, in latent rows (the horizon row of a
  column: the largest vertical luminance step in the middle band);
* **360 panorama** (8 perspective views, 72 degree FOV, 32x32 latent each, nearest taps = 1-to-n):
  *wrap ratio* = colour step across the 0/360 degree edge / mean step between neighbouring columns, over
  the equator band; *horizon jumps* around the whole circle, the wrap included;
* **anagrams** (1-to-1: identity + rotate_180; each view its own class prompt): *class accuracy* =
  share of views the scene classifier (trained by the same script) gives its prompt's class.

The model runs as its narrow self (scripts/demo_model.py): exactly what the padded SD1.5 checkpoint
computes in ComfyUI, 16x cheaper. Images are the decoder's 8x8 block colours (the decoder is exact).

    flock /tmp/cpu-heavy.lock .venv/bin/python benchmarks/bench_quality.py [--steps 12] [--seeds 2] [--modes case_0,case_2]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import sys
import time

import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import conftest  # noqa: E402,F401  (imports the pack as sync_canvas)

from sync_canvas.projectors import AnagramProjector, EquirectProjector, WidePanoramaProjector  # noqa: E402
from sync_canvas.samplers import DiscreteEpsSampling, sample_stochsync, sample_synchronized  # noqa: E402
from sync_canvas.samplers import stochsync_sigmas, timesteps_to_sigmas  # noqa: E402

MODES = tuple(f"case_{i}" for i in range(7)) + ("stochsync",)
WEIGHTS = ROOT / "assets" / "weights"


def _load(name, rel):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


dm = _load("sync_canvas_demo_model", "scripts/demo_model.py")
landscapes = _load("sync_canvas_landscapes", "assets/landscapes.py")


class DemoModel:
    """The narrow demo UNet + classifier, prompts encoded as ComfyUI's CLIP of the demo checkpoint does."""

    def __init__(self, weights: pathlib.Path = WEIGHTS, comfyui: str | None = None):
        from safetensors.torch import load_file

        self.net = dm.NarrowUNet(dm.WIDTH).eval()
        self.net.load_state_dict({k: v.float() for k, v in load_file(str(weights / "sync_canvas_demo_unet.safetensors")).items()})
        self.classifier = dm.SceneClassifier(len(landscapes.CLASSES)).eval()
        self.classifier.load_state_dict(load_file(str(weights / "sync_canvas_demo_classifier.safetensors")))
        train = _load("sync_canvas_train_demo_model", "scripts/train_demo_model.py")
        self.tokenize = train.tokenizer(pathlib.Path(comfyui or os.environ["COMFYUI_PATH"]))
        self.table = dm.clip_token_embeddings()
        self.ms = DiscreteEpsSampling()
        self.calls = 0

    def encode(self, prompts: list[str]) -> torch.Tensor:
        return dm.encode_token_ids(torch.tensor([self.tokenize(p) for p in prompts]), self.table)

    def denoiser(self, prompts: list[str], cfg: float = 5.0, negative: str = ""):
        """denoiser(x [n,4,h,w], sigma, view_ids) -> x0, with view i prompted by prompts[i % len(prompts)]."""
        cond, uncond = self.encode(prompts), self.encode([negative])

        @torch.no_grad()
        def run(x, sigma, view_ids):
            n = x.shape[0]
            sigma = sigma.reshape(())
            t = self.ms.timestep(sigma.reshape(1)).expand(2 * n)
            x_in = torch.cat([x, x]) / (sigma ** 2 + 1).sqrt()
            ctx = torch.cat([cond[view_ids % len(prompts)], uncond.expand(n, -1, -1)])
            eps_c, eps_u = self.net(x_in, t, ctx).chunk(2)
            self.calls += 2 * n
            return x - sigma * (eps_u + cfg * (eps_c - eps_u))

        return run

    def classify(self, latents: torch.Tensor) -> torch.Tensor:
        """(n, 4, h, w) model-space latents -> (n, classes) probabilities."""
        with torch.no_grad():
            return self.classifier(colours(latents)).softmax(-1)


def colours(latents: torch.Tensor) -> torch.Tensor:
    """Model-space latents (..., 4, h, w) -> block colours (..., 3, h, w) in [0, 1] (the decoded image at 1/8)."""
    return dm.latent_to_block_colours(latents / dm.LATENT_SCALE).clamp(0, 1)


def sample(model: DemoModel, mode: str, projector, prompts: list[str], steps: int, seed: int, cfg: float = 5.0,
           eta: float = 0.0):
    """One run; returns the canonical latent [4, *S] (model space)."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((4,) + tuple(projector.canonical_shape), generator=gen)
    denoiser = model.denoiser(prompts, cfg)
    if mode == "stochsync":
        sigmas = stochsync_sigmas(model.ms, steps=steps)
        result = sample_stochsync(denoiser, projector, sigmas, noise, model.ms, generator=gen,
                                  inner_steps=max(4, steps // 2), inner_steps_last=2)
    else:
        timesteps = torch.linspace(999, 0, steps).round()
        sigmas = timesteps_to_sigmas(model.ms, timesteps)
        result = sample_synchronized(denoiser, projector, sigmas, noise, model.ms, case=int(mode.split("_")[1]),
                                     generator=gen, eta=eta)
    return result.canonical


# ----------------------------------------------------------------------------------------------- metrics
def column_steps(img: torch.Tensor) -> torch.Tensor:
    """(3, H, W) -> (W-1,) mean |colour step| between neighbouring columns."""
    return (img[:, :, 1:] - img[:, :, :-1]).abs().mean((0, 1))


def seam_ratio(img: torch.Tensor, borders: list[int]) -> float:
    """Mean step across the given column borders (a border b lies between columns b-1 and b) / mean elsewhere."""
    steps = column_steps(img)
    at = torch.zeros_like(steps, dtype=torch.bool)
    for b in borders:
        if 0 < b < img.shape[-1]:
            at[b - 1] = True
    return float(steps[at].mean() / steps[~at].mean().clamp(min=1e-6))


def horizon_rows(img: torch.Tensor, band: tuple[float, float] = (0.3, 0.95)) -> torch.Tensor:
    """(3, H, W) -> (W,) row of the largest vertical luminance step within the band (fractions of H)."""
    lum = img.mean(0)
    step = (lum[1:] - lum[:-1]).abs()
    lo, hi = int(band[0] * img.shape[1]), int(band[1] * img.shape[1])
    return step[lo:hi].argmax(0).float() + lo


def horizon_jumps(img: torch.Tensor, wrap: bool = False) -> float:
    rows = horizon_rows(img)
    if wrap:
        rows = torch.cat([rows, rows[:1]])
    return float((rows[1:] - rows[:-1]).abs().mean())


def wrap_ratio(img: torch.Tensor) -> float:
    """Colour step across the 360 edge (last column -> first) / mean step between neighbouring columns."""
    steps = column_steps(img)
    return float((img[:, :, 0] - img[:, :, -1]).abs().mean() / steps.mean().clamp(min=1e-6))


# --------------------------------------------------------------------------------------------- scenarios
def wide_projector():
    return WidePanoramaProjector(height=32, width=128, window=32, stride=16)


def wide_panorama(model, mode, steps, seed, klass, eta=0.0):
    projector = wide_projector()
    canvas = sample(model, mode, projector, [f"a wide panorama of {landscapes.CLASS_WORDS[landscapes.CLASSES[klass]][0]}"], steps, seed,
                    eta=eta)
    img = colours(canvas)
    borders = sorted({x for _, x0 in projector.origins for x in (x0, x0 + projector.window_hw[1])})
    return {"seam": seam_ratio(img, borders), "horizon": horizon_jumps(img)}, img


def panorama_360(model, mode, steps, seed, klass, eta=0.0):
    projector = EquirectProjector(view_size=32, rig="stochsync" if mode == "stochsync" else "synctweedies")
    canvas = sample(model, mode, projector, [f"a 360 panorama of {landscapes.CLASS_WORDS[landscapes.CLASSES[klass]][0]}"], steps, seed,
                    eta=eta)
    img = colours(canvas)
    h = img.shape[1]
    band = img[:, h // 4: 3 * h // 4]
    return {"wrap": wrap_ratio(band), "horizon360": horizon_jumps(img, wrap=True)}, img


def anagram(model, mode, steps, seed, pair, eta=0.0):
    projector = AnagramProjector(32, 32, ("identity", "rotate_180"))
    prompts = [f"a {landscapes.CLASS_WORDS[landscapes.CLASSES[k]][0]}" for k in pair]
    canvas = sample(model, mode, projector, prompts, steps, seed, eta=eta)
    probs = model.classify(projector.project(canvas))
    hits = [float(probs[i].argmax() == k) for i, k in enumerate(pair)]
    return {"anagram": sum(hits) / len(hits)}, colours(projector.project(canvas))


ANAGRAM_PAIRS = ((0, 2), (1, 3), (4, 1), (2, 3), (3, 0))


def measure(model, modes, steps, seeds, scenarios=("wide", "360", "anagram"), log=print, eta=0.0):
    """{mode: {metric: mean over seeds}} and {mode: seconds}."""
    table, seconds = {}, {}
    for mode in modes:
        start = time.perf_counter()
        rows = []
        for seed in range(seeds):
            row = {}
            if "wide" in scenarios:
                row.update(wide_panorama(model, mode, steps, seed, seed % 5, eta)[0])
            if "360" in scenarios:
                row.update(panorama_360(model, mode, steps, seed, (seed + 2) % 5, eta)[0])
            if "anagram" in scenarios:
                row.update(anagram(model, mode, steps, seed, ANAGRAM_PAIRS[seed % len(ANAGRAM_PAIRS)], eta)[0])
            rows.append(row)
        table[mode] = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
        seconds[mode] = time.perf_counter() - start
        log(f"{mode}: " + ", ".join(f"{k} {v:.3f}" for k, v in table[mode].items()) + f" ({seconds[mode]:.0f} s)")
    return table, seconds


def format_table(table, seconds) -> str:
    metrics = list(next(iter(table.values())))
    head = {"seam": "wide seam ratio", "horizon": "wide horizon jumps", "wrap": "360 wrap ratio",
            "horizon360": "360 horizon jumps", "anagram": "anagram class acc."}
    lines = ["| mode | " + " | ".join(head.get(m, m) for m in metrics) + " | seconds |",
             "|---" * (len(metrics) + 2) + "|"]
    for mode, row in table.items():
        lines.append(f"| {mode} | " + " | ".join(f"{row[m]:.3f}" for m in metrics) + f" | {seconds[mode]:.0f} |")
    if "case_0" in table and "case_2" in table:
        lines.append("| case_0 / case_2 | " + " | ".join(
            f"{table['case_0'][m] / max(table['case_2'][m], 1e-6):.2f}" for m in metrics) + " | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--scenarios", default="wide,360,anagram")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM eta for Cases 0-6 (StochSync has its own)")
    parser.add_argument("--weights", type=pathlib.Path, default=WEIGHTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    model = DemoModel(args.weights)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    print(f"demo model quality: {args.steps} steps, {args.seeds} seeds, cfg 5, eta {args.eta}, modes {', '.join(modes)}")
    table, seconds = measure(model, modes, args.steps, args.seeds, tuple(args.scenarios.split(",")), eta=args.eta)
    print(format_table(table, seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
