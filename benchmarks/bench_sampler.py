"""Synchronization overhead vs model time: SyncTweedies cases and StochSync over a full-size SD1.5 UNet.

Setup (issue 2): diffusers' ``UNet2DConditionModel`` in SD1.5's configuration (the default config with
``cross_attention_dim=768``, 860 M parameters) with random weights, 8 views of 64x64 latents (512x512 px) cropped from a 64 x 288 latent
panorama (stride 32), one model call per step for all 8 views (no CFG: with CFG the model time doubles
and the ratio halves). Per step it measures, in the same run:

* model time: the UNet forward passes (timed inside the denoiser);
* sync time: everything else the sampler does in that step (projection, fuse, DDIM algebra, noise),
  i.e. step wall time minus model time;

and, for a stable estimate of the sync work, the same sampler over a zero-cost denoiser for many steps.
Target: sync <= 5 % of model time. Run it under the CPU lock:

    flock /tmp/cpu-heavy.lock .venv/bin/python benchmarks/bench_sampler.py [--steps 2] [--device cpu]
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

from sync_canvas.projectors import WidePanoramaProjector  # noqa: E402
from sync_canvas.samplers import DiscreteEpsSampling, sample_stochsync, sample_synchronized  # noqa: E402
from sync_canvas.samplers import stochsync_sigmas, timesteps_to_sigmas  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TimedUNet:
    """``denoiser(x, sigma, ids) -> x0`` over an SD1.5-architecture UNet (random weights), timing each call."""

    def __init__(self, device: torch.device, dtype: torch.dtype, views: int) -> None:
        from diffusers import UNet2DConditionModel

        torch.manual_seed(0)
        self.unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768).to(device=device, dtype=dtype).eval()
        self.n_parameters = sum(p.numel() for p in self.unet.parameters())
        self.context = torch.randn(views, 77, 768, device=device, dtype=dtype)
        self.ms = DiscreteEpsSampling()
        self.device, self.dtype = device, dtype
        self.seconds = 0.0
        self.calls = 0

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, view_ids: torch.Tensor) -> torch.Tensor:
        _sync(self.device)
        start = time.perf_counter()
        t = self.ms.timestep(sigma.float().cpu().reshape(1)).to(self.device)
        inp = self.ms.calculate_input(sigma, x).to(self.dtype)
        eps = self.unet(inp, t.expand(x.shape[0]), self.context[view_ids]).sample.to(x.dtype)
        x0 = self.ms.calculate_denoised(sigma, eps, x)
        _sync(self.device)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return x0


class FreeDenoiser:
    """A zero-cost stand-in (x0 = x / (1 + sigma^2)) to measure the sampler's own work alone."""

    def __call__(self, x, sigma, view_ids):
        return x / (1 + sigma**2)


def run_steps(sampler, denoiser, projector, sigmas, noise, ms, device, **kwargs) -> tuple[float, list[float]]:
    """Wall time of the whole run, and wall time per step (from the callback)."""
    marks = []
    _sync(device)
    start = time.perf_counter()

    def callback(i, total, x0):
        _sync(device)
        marks.append(time.perf_counter())

    sampler(denoiser, projector, sigmas, noise, ms, callback=callback, **kwargs)
    _sync(device)
    end = time.perf_counter()
    steps = [b - a for a, b in zip([start] + marks[:-1], marks)]
    return end - start, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="UNet steps to time (each = one 8-view forward)")
    parser.add_argument("--free-steps", type=int, default=20, help="steps of the zero-cost run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)

    projector = WidePanoramaProjector(64, 288, window=64, stride=32).to(device)
    ms = DiscreteEpsSampling()
    noise = torch.randn(4, *projector.canonical_shape, generator=torch.Generator().manual_seed(0)).to(device)
    print(f"device {device} ({torch.get_num_threads()} threads), {projector.describe()}")

    # the sampler's own work, alone (zero-cost denoiser), per step
    free_sigmas = timesteps_to_sigmas(ms, torch.linspace(981, 1, args.free_steps).round().tolist()).to(device)
    free = {}
    for case in (2, 5, 3):
        for _ in range(2):  # second run is the measured one (warm)
            _, per = run_steps(sample_synchronized, FreeDenoiser(), projector, free_sigmas, noise, ms, device,
                               case=case, eta=0.5)
        free[f"case {case}"] = sum(per) / len(per)
    ss_sigmas = stochsync_sigmas(ms, steps=4).to(device)
    ss_kwargs = dict(inner_steps=8, refine_steps=1)
    _, per = run_steps(sample_stochsync, FreeDenoiser(), projector, ss_sigmas, noise, ms, device, **ss_kwargs)
    free["stochsync"] = sum(per) / len(per)

    # the UNet run: model time and sync time measured side by side in the same steps
    unet = TimedUNet(device, dtype, projector.n_views)
    warm = torch.randn(projector.n_views, 4, 64, 64, device=device)
    unet(warm, torch.tensor(1.0, device=device), torch.arange(projector.n_views, device=device))  # warm-up
    unet.seconds, unet.calls = 0.0, 0
    sigmas = timesteps_to_sigmas(ms, torch.linspace(981, 1, args.steps).round().tolist()).to(device)
    total, per = run_steps(sample_synchronized, unet, projector, sigmas, noise, ms, device, case=2, eta=0.5)
    model_per_step = unet.seconds / len(per)
    sync_per_step = (total - unet.seconds) / len(per)

    print(f"\nSD1.5-architecture UNet ({unet.n_parameters / 1e6:.0f} M random weights, {args.dtype}), 8 views x 64x64, "
          f"case 2, eta 0.5, {len(per)} steps:")
    print(f"  model calls        {model_per_step * 1e3:10.1f} ms/step   ({unet.calls} calls of 8 views)")
    print(f"  sync work (same run){sync_per_step * 1e3:9.1f} ms/step   ratio {100 * sync_per_step / model_per_step:6.2f} %")
    print("\nsync work alone (zero-cost denoiser, eta 0.5; stochsync per outer step with K = 8 inner steps):")
    for name, seconds in free.items():
        inner = f" (of which {ss_kwargs['inner_steps']} inner steps)" if name == "stochsync" else ""
        scale = 1 if name != "stochsync" else 8  # per model call, to compare with one model call per step
        print(f"  {name:10s} {seconds * 1e3:8.2f} ms/step{inner}   ratio to one model call "
              f"{100 * seconds / scale / model_per_step:6.3f} %")
    verdict = "PASS" if sync_per_step <= 0.05 * model_per_step else "FAIL"
    print(f"\ntarget sync <= 5 % of model time: {verdict}")


if __name__ == "__main__":
    main()
