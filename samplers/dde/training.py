"""Training DDE coordinators on procedural data with an exact frozen base model (Eq. 5, EDM loss).

Data: stationary Gaussian random fields on a periodic wide canvas (``analytic.gaussian_spectrum``).
Base model D: the *exact* posterior mean of one window given only that window (its covariance is the
canvas covariance restricted to the window's pixels), i.e. a perfectly trained model of the window
distribution that knows nothing outside its window -- the situation DDE's coordinator repairs. The
exact whole-canvas posterior mean (``analytic.GaussianDenoiser`` with the canvas spectrum) is the
oracle every fuse rule is measured against.
"""

from __future__ import annotations

import math
import time

import torch

from ...projectors.base import Projector
from ..model_sampling import scaling_coefficients
from .coordinator import Coordinator, CoordinatorConfig
from .fuse import view_positions


def procedural_spectrum(hw: tuple[int, int], correlation_length: float = 1.5, global_variance: float = 1.0) -> torch.Tensor:
    """FFT eigenvalues ``[H, W]`` of the training fields: a local texture (Gaussian kernel of
    ``correlation_length``, unit variance) plus a canvas-wide random offset per channel of variance
    ``global_variance`` (extra power at the DC frequency). One window sees too few pixels to pin the
    offset down; the whole canvas does -- the global coherence a coordinator can add and averaging
    overlapping windows cannot."""
    from ..analytic import gaussian_spectrum

    spectrum = gaussian_spectrum(hw, correlation_length).clone()
    spectrum[0, 0] += global_variance * hw[0] * hw[1]
    return spectrum


def canvas_covariance(spectrum: torch.Tensor) -> torch.Tensor:
    """Covariance kernel ``k[dy, dx]`` ``[H, W]`` of the periodic field with FFT eigenvalues ``spectrum``."""
    return torch.fft.ifft2(spectrum.to(torch.float64)).real


def sample_canvases(spectrum: torch.Tensor, batch: int, channels: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[B, C, H, W]`` draws of the stationary field (channels independent)."""
    white = torch.randn((batch, channels, *spectrum.shape), generator=generator, dtype=torch.float64)
    return torch.fft.ifft2(spectrum.sqrt() * torch.fft.fft2(white, norm="ortho"), norm="ortho").real.float()


class WindowGaussianDenoiser:
    """Exact E[x0_view | x_view] for each view of ``projector`` (exact crops) under the canvas prior.

    Call as a Denoiser ``(x [n,C,h,w], sigma, view_ids) -> x0``, or batched with ``batched``.
    """

    def __init__(self, spectrum: torch.Tensor, projector: Projector, model_sampling) -> None:
        h, w = spectrum.shape
        if tuple(projector.grid_shape()) != (h, w):
            raise ValueError(f"spectrum is {h}x{w} but the projector's canvas grid is {projector.grid_shape()}")
        kernel = canvas_covariance(spectrum)
        pos = projector.grid_positions().long().cpu()  # [N, P, 2]
        rows, cols = pos[..., 0], pos[..., 1]
        cov = kernel[(rows[:, :, None] - rows[:, None, :]) % h, (cols[:, :, None] - cols[:, None, :]) % w]
        self.eigval, self.eigvec = torch.linalg.eigh(cov)  # [N, P], [N, P, P] float64
        self.eigval = self.eigval.clamp_min(0)
        self.ms = model_sampling
        self.view_hw = projector.view_hw

    def batched(self, x: torch.Tensor, sigma: torch.Tensor, view_ids: torch.Tensor) -> torch.Tensor:
        """``x [B, n, C, h, w]``, ``sigma [B]`` -> x0 of the same shape."""
        b, n, c = x.shape[:3]
        coef = torch.tensor([scaling_coefficients(self.ms, s) for s in sigma.reshape(-1).tolist()], dtype=torch.float64)
        a, bb = coef[:, 0].reshape(b, 1, 1), coef[:, 1].reshape(b, 1, 1)
        lam = self.eigval[view_ids.cpu()][None]  # [1, n, P]
        gain = a * lam / (a * a * lam + bb * bb)  # [B, n, P]
        u = self.eigvec[view_ids.cpu()]  # [n, P, P]
        flat = x.reshape(b, n, c, -1).to(torch.float64).cpu()
        coeffs = torch.einsum("nqp,bncq->bncp", u, flat) * gain[:, :, None]
        out = torch.einsum("nqp,bncp->bncq", u, coeffs)
        return out.to(x.dtype).to(x.device).reshape(x.shape)

    def __call__(self, x: torch.Tensor, sigma, view_ids: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma).reshape(1)
        return self.batched(x[None], sigma, view_ids)[0]


def edm_weight(sigma: torch.Tensor, sigma_data: float = 1.0) -> torch.Tensor:
    """EDM's lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 (Karras et al. 2022)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def composite_x0(coordinator: Coordinator | None, base: WindowGaussianDenoiser, projector: Projector,
                 canvases_t: torch.Tensor, sigma: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``A(C([D(x_i)]))`` for a batch of noisy canvases ``[B, C, H, W]`` (Eq. 4) -> ``[B, C, H, W]``."""
    ids = torch.arange(projector.n_views)
    views = torch.stack([projector.project(z) for z in canvases_t])  # [B, n, C, h, w]
    x0 = base.batched(views, sigma, ids)
    if coordinator is not None:
        x0 = coordinator(x0, positions, sigma)
    return torch.stack([projector.aggregate(v) for v in x0])


def train_coordinator(
    projector: Projector,
    spectrum: torch.Tensor,
    model_sampling,
    config: CoordinatorConfig,
    steps: int = 1000,
    batch: int = 16,
    lr: float = 1e-3,
    p_mean: float = -1.0,
    p_std: float = 1.6,
    seed: int = 0,
    log_every: int = 0,
    time_limit_s: float | None = None,
    target: str = "posterior",
) -> tuple[Coordinator, list[float]]:
    """Adam on Eq. 5 with EDM's log-normal sigma (paper B.3.5: mean -1, std 1.6) and lambda(sigma).

    The base model is frozen (it has no parameters); only the coordinator learns. Returns the
    coordinator and its per-step losses. ``time_limit_s`` stops early (CPU budgets).

    ``target="clean"`` regresses on the clean canvas X as in Eq. 5. ``target="posterior"`` regresses
    on E[X | X_t] instead, known exactly for this procedural prior: since
    E||D - X||^2 = E||D - E[X|X_t]||^2 + const, it is the same objective with the same minimiser, minus
    the irreducible noise in the gradient (Rao-Blackwellisation), so a CPU run converges in minutes.
    """
    if target not in ("clean", "posterior"):
        raise ValueError(f"target must be 'clean' or 'posterior', got {target!r}")
    from ..analytic import GaussianDenoiser

    oracle = GaussianDenoiser(model_sampling, spectrum=spectrum)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    coordinator = Coordinator(config)
    base = WindowGaussianDenoiser(spectrum, projector, model_sampling)
    positions = view_positions(projector)
    optimizer = torch.optim.Adam(coordinator.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 0.5 * (1 + math.cos(math.pi * k / steps)))
    losses: list[float] = []
    start = time.time()
    for step in range(steps):
        clean = sample_canvases(spectrum, batch, config.channels, gen)
        sigma = torch.exp(p_mean + p_std * torch.randn(batch, generator=gen))
        noisy = clean + sigma.reshape(-1, 1, 1, 1) * torch.randn(clean.shape, generator=gen)
        pred = composite_x0(coordinator, base, projector, noisy, sigma, positions)
        goal = clean if target == "clean" else torch.stack([oracle(z[None], s)[0] for z, s in zip(noisy, sigma)])
        loss = (edm_weight(sigma).reshape(-1, 1, 1, 1) * (pred - goal) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(coordinator.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:5d}  loss {sum(losses[-log_every:]) / len(losses[-log_every:]):.4f}  ({time.time() - start:.0f} s)")
        if time_limit_s is not None and time.time() - start > time_limit_s:
            break
    return coordinator.eval(), losses


@torch.no_grad()
def evaluate_fuse(
    coordinator: Coordinator | None,
    projector: Projector,
    spectrum: torch.Tensor,
    model_sampling,
    sigmas=(0.3, 1.0, 3.0),
    count: int = 64,
    channels: int = 4,
    seed: int = 12345,
) -> dict[float, dict[str, float]]:
    """Held-out MSE of the composite x0 against the clean canvas, per sigma: averaging, coordinator
    (when given) and the exact whole-canvas oracle. Held-out = a generator seed training never uses."""
    from ..analytic import GaussianDenoiser

    gen = torch.Generator().manual_seed(seed)
    base = WindowGaussianDenoiser(spectrum, projector, model_sampling)
    oracle = GaussianDenoiser(model_sampling, spectrum=spectrum)
    positions = view_positions(projector)
    clean = sample_canvases(spectrum, count, channels, gen)
    report = {}
    for s in sigmas:
        sigma = torch.full((count,), float(s))
        noisy = clean + s * torch.randn(clean.shape, generator=gen)
        row = {"averaging": float(((composite_x0(None, base, projector, noisy, sigma, positions) - clean) ** 2).mean())}
        if coordinator is not None:
            row["coordinator"] = float(((composite_x0(coordinator, base, projector, noisy, sigma, positions) - clean) ** 2).mean())
        row["oracle"] = float(((oracle(noisy, torch.tensor(float(s))) - clean) ** 2).mean())
        report[float(s)] = row
    return report
