#!/usr/bin/env python
"""Train a DDE coordinator on the CPU on procedural data and save it (never commit the checkpoint).

Data: stationary Gaussian random fields on a wide canvas, cut into overlapping windows; the frozen base
model is the exact per-window posterior mean (samplers/dde/training.py). Prints held-out MSE of plain
averaging, the trained coordinator and the exact whole-canvas oracle side by side.

    .venv/bin/python scripts/train_dde.py --out /tmp/dde_tiny.safetensors --steps 1500
    (wrap runs over ~20 s in `flock /tmp/cpu-heavy.lock ...` on shared machines)
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

from pack_import import import_pack  # scripts/ (this script's folder)

PACK_ROOT = pathlib.Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="checkpoint path (.safetensors)")
    parser.add_argument("--config", choices=["tiny", "paper"], default="tiny", help="coordinator size (paper: depth 6, 384 wide)")
    parser.add_argument("--channels", type=int, default=4, help="latent channels (4 = SD1.5/SDXL)")
    parser.add_argument("--patch", type=int, default=None, help="ViT token patch (paper: 2; tiny: 4)")
    parser.add_argument("--canvas", type=int, nargs=2, default=[8, 32], metavar=("H", "W"))
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--correlation", type=float, default=3.0, help="correlation length of the local texture (texels)")
    parser.add_argument("--global-variance", type=float, default=1.0, help="variance of the canvas-wide offset per channel")
    parser.add_argument("--p-mean", type=float, default=0.5, help="log-normal sigma mean (paper: -1 for sigma_data 0.2)")
    parser.add_argument("--p-std", type=float, default=1.6, help="log-normal sigma std (paper: 1.6)")
    parser.add_argument("--target", choices=["posterior", "clean"], default="posterior",
                        help="regress on E[X|X_t] (same minimiser, less gradient noise) or on X as in Eq. 5")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=None, help="stop training after this many seconds")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if not args.out.endswith(".safetensors"):
        parser.error(f"--out must end with .safetensors, got {args.out!r}")

    import torch

    torch.set_num_threads(args.threads)
    import_pack()
    from sync_canvas.projectors.panorama import WidePanoramaProjector
    from sync_canvas.samplers import DiscreteEpsSampling
    from sync_canvas.samplers.dde import CoordinatorConfig, save_coordinator
    from sync_canvas.samplers.dde.training import evaluate_fuse, procedural_spectrum, train_coordinator

    base = CoordinatorConfig.tiny(args.channels) if args.config == "tiny" else CoordinatorConfig.paper(args.channels)
    config = CoordinatorConfig(**{**base.to_dict(), "patch": args.patch or base.patch})
    height, width = args.canvas
    projector = WidePanoramaProjector(height, width, window=(height, args.window), stride=(1, args.stride))
    spectrum = procedural_spectrum((height, width), args.correlation, args.global_variance)
    ms = DiscreteEpsSampling()
    print(f"{projector.describe()}; coordinator {config}")
    start = time.time()
    coordinator, losses = train_coordinator(
        projector, spectrum, ms, config, steps=args.steps, batch=args.batch, lr=args.lr, p_mean=args.p_mean,
        p_std=args.p_std, seed=args.seed, log_every=max(args.steps // 10, 1), time_limit_s=args.time_limit,
        target=args.target,
    )
    seconds = time.time() - start
    report = evaluate_fuse(coordinator, projector, spectrum, ms, sigmas=(0.3, 1.0, 3.0, 10.0), channels=args.channels)
    print(f"trained {len(losses)} steps in {seconds:.1f} s; held-out MSE of x0 vs clean canvas:")
    print(f"{'sigma':>6} {'averaging':>10} {'coordinator':>12} {'oracle':>8} {'coord/avg':>10}")
    for sigma, row in report.items():
        print(f"{sigma:6.2f} {row['averaging']:10.5f} {row['coordinator']:12.5f} {row['oracle']:8.5f} {row['coordinator'] / row['averaging']:10.3f}")
    save_coordinator(coordinator, args.out, {"trained_steps": len(losses), "data": f"gaussian fields corr {args.correlation} global {args.global_variance}",
                                             "canvas": f"{height}x{width}", "window": args.window, "stride": args.stride})
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
