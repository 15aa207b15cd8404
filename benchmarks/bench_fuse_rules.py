"""Per-step cost of the fuse rules against plain MultiDiffusion (case 6), same stand-in model, one run.

Stand-in model: a random-weight 4-layer conv net (64 channels) on SD-sized latents, 4 windows of 64x64
over a 64 x 160 latent panorama (stride 32). It is far cheaper than an SD UNet, so the ratios here are
an *upper bound* on the relative overhead of the fuse rules' own work (fits, coordinator, loss
gradients); the gradient-through-model variant (SyncDiffusion Eq. 14) scales with the model instead.
Paper anchor: SyncDiffusion's supp. Table S3, 339.5 s (every step) vs 46.1 s (MultiDiffusion) = 7.4x.

    flock /tmp/cpu-heavy.lock .venv/bin/python benchmarks/bench_fuse_rules.py [--steps 3]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import conftest  # noqa: E402,F401  (imports the pack as sync_canvas)

from sync_canvas.projectors.panorama import WidePanoramaProjector  # noqa: E402
from sync_canvas.samplers import DiscreteEpsSampling, sample_synchronized  # noqa: E402
from sync_canvas.samplers.dde import Coordinator, CoordinatorConfig, sample_dde  # noqa: E402
from sync_canvas.samplers.ddr import sample_ddr  # noqa: E402
from sync_canvas.samplers.ddr_representations import CanonicalRepresentation, SirenRepresentation  # noqa: E402
from sync_canvas.samplers.syncdiffusion import sample_syncdiffusion  # noqa: E402


def conv_model(channels: int = 4, width: int = 64):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(channels, width, 3, padding=1), torch.nn.SiLU(),
        torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.SiLU(),
        torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.SiLU(),
        torch.nn.Conv2d(width, channels, 3, padding=1),
    ).requires_grad_(False)

    def denoiser(x, sigma, ids):
        return x / (1 + sigma**2) + 0.01 * net(x)

    return denoiser


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ms = DiscreteEpsSampling()
    proj = WidePanoramaProjector(64, 160, window=64, stride=32)
    sigmas = torch.linspace(10.0, 0.0, args.steps + 1)
    noise = torch.randn(4, 64, 160, generator=torch.Generator().manual_seed(0))
    den = conv_model()
    runs = {
        "MultiDiffusion (case 6)": lambda: sample_synchronized(den, proj, sigmas, noise, ms, case=6),
        "SyncDiffusion x0 step (stats loss)": lambda: sample_syncdiffusion(den, proj, sigmas, noise, ms, through_model=False),
        "SyncDiffusion Eq. 14 (grad through model)": lambda: sample_syncdiffusion(den, proj, sigmas, noise, ms, through_model=True),
        "DDR canvas (closed form, eta 0.75)": lambda: sample_ddr(den, CanonicalRepresentation(proj, 4), sigmas, ms, noise=noise),
        "DDR canvas + RePaint (1 jump/step)": lambda: sample_ddr(den, CanonicalRepresentation(proj, 4), sigmas, ms, noise=noise,
                                                                 jump_length=1, jump_interval=1),
        "DDR SIREN (20 Adam steps/fit, width 64)": lambda: sample_ddr(den, SirenRepresentation(proj, 4, adam_steps=20, width=64), sigmas, ms, noise=noise),
        "DDE tiny coordinator": lambda: sample_dde(den, proj, sigmas, noise, ms, coordinator=Coordinator(CoordinatorConfig.tiny(4))),
        "DDE paper-size coordinator": lambda: sample_dde(den, proj, sigmas, noise, ms, coordinator=Coordinator(CoordinatorConfig.paper(4))),
    }
    runs["MultiDiffusion (case 6)"]()  # warm-up: first-call allocations would be charged to the baseline
    base = None
    print(f"{proj.describe()}; {args.steps} steps; threads {args.threads}")
    print(f"{'rule':45s} {'ms/step':>9s} {'x MultiDiffusion':>17s}")
    for name, run in runs.items():
        start = time.perf_counter()
        run()
        per_step = 1000 * (time.perf_counter() - start) / args.steps
        base = base or per_step
        print(f"{name:45s} {per_step:9.1f} {per_step / base:17.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
