"""Differentiable representations theta for DDR: render(theta, views) and the least-squares fit to views.

DDR (Savani et al., "Diffusing Differentiable Representations") pulls the reverse process back to the
parameters of a renderer f(theta, pi). Each step solves (Eq. 5 / Eq. 8, Algorithm 1 line 16)

    theta <- argmin_theta  sum_pi || W_pi^(1/2) (f(theta, pi) - y_pi) ||^2

For a projector's canonical tensor f is linear and the fit is the projector's ``aggregate`` (closed
form for 1-to-1 / 1-to-n maps, conjugate gradients for n-to-1 maps). For a SIREN (the paper's main
experiment: 128-dim sinusoidal embedding, depth 3, width 256, sin activations) it is Adam, warm-started
from the previous theta (paper: 200 Adam steps per sub-problem; learning rate not given).

A representation is any object with ``n_views``, ``projector``, ``render(views) -> [n, C, h, w]``,
``fit(targets [n, C, h, w], views)`` and ``canonical() -> [C, *S]``.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import nn

from ..projectors.base import Projector, ViewSelection


def fit_by_adam(
    render: Callable[[], torch.Tensor],
    parameters: Iterable[torch.Tensor],
    targets: torch.Tensor,
    pixel_weight: torch.Tensor,
    steps: int = 200,
    lr: float = 1e-2,
) -> float:
    """Minimise ``sum W (render() - targets)^2`` over ``parameters`` with Adam; returns the final loss.

    ``render()`` -> ``[n, C, h, w]``; ``pixel_weight`` ``[n, 1, h, w]`` (the projector's W_i). The
    learning rate follows a cosine decay to zero so the last iterate settles instead of oscillating
    with Adam's normalised step (the paper gives neither lr nor schedule).
    """
    if steps < 1:
        raise ValueError(f"Adam fit needs steps >= 1, got {steps}")
    params = [p for p in parameters]
    optimizer = torch.optim.Adam(params, lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 0.5 * (1 + math.cos(math.pi * k / steps)))
    targets = targets.detach()
    loss = torch.zeros(())
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss = (pixel_weight * (render() - targets) ** 2).sum()
            loss.backward()
            optimizer.step()
            scheduler.step()
    return float(loss.detach())


class CanonicalRepresentation:
    """theta = a projector's canonical tensor ``[C, *canonical_shape]``; f = ``projector.project``.

    Args:
        projector: the geometry (any Projector).
        channels: C.
        solver: "closed_form" (``projector.aggregate``, the exact least-squares fit; DDR note 1.10.4) or
            "adam" (the paper's generic solver, for comparison).
        adam_steps, adam_lr: Adam settings when ``solver="adam"``.
    """

    def __init__(
        self,
        projector: Projector,
        channels: int,
        solver: str = "closed_form",
        adam_steps: int = 200,
        adam_lr: float = 5e-2,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if solver not in ("closed_form", "adam"):
            raise ValueError(f"solver must be 'closed_form' or 'adam', got {solver!r}")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.projector = projector
        self.solver = solver
        self.adam_steps, self.adam_lr = adam_steps, adam_lr
        # Algorithm 1 init: theta = argmin ||f(theta)||, i.e. renders zeros (x0_hat(T) = 0).
        self.theta = torch.zeros(channels, *projector.canonical_shape, dtype=dtype, device=projector.device)

    @property
    def n_views(self) -> int:
        return self.projector.n_views

    def render(self, views: ViewSelection = None) -> torch.Tensor:
        return self.projector.project(self.theta, views)

    def fit(self, targets: torch.Tensor, views: ViewSelection = None) -> None:
        if self.solver == "closed_form":
            self.theta = self.projector.aggregate(targets, previous=self.theta, views=views)
            return
        ids = self.projector.view_ids(views)
        theta = self.theta.clone().requires_grad_(True)
        pw = self.projector.pixel_weights(ids).to(targets.dtype)
        fit_by_adam(lambda: self.projector.project(theta, ids), [theta], targets, pw, self.adam_steps, self.adam_lr)
        self.theta = theta.detach()

    def canonical(self) -> torch.Tensor:
        return self.theta


class Siren(nn.Module):
    """SIREN image: coordinates ``[P, 2]`` in [0, 1]^2 -> values ``[P, C]`` (Sitzmann et al. 2020).

    DDR's image experiment: a 128-dim sinusoidal embedding layer, then ``depth`` sin layers of
    ``width``, then a linear head. The head is zero-initialised so the untrained SIREN renders exactly
    zeros (Algorithm 1's theta init, x0_hat(T) = 0) while its gradients are not zero.
    """

    def __init__(self, channels: int, embed: int = 128, width: int = 256, depth: int = 3, omega: float = 30.0) -> None:
        super().__init__()
        self.omega = omega
        self.embed = nn.Linear(2, embed)
        self.hidden = nn.ModuleList([nn.Linear(embed if i == 0 else width, width) for i in range(depth)])
        self.head = nn.Linear(width, channels)
        with torch.no_grad():
            self.embed.weight.uniform_(-1 / 2, 1 / 2)
            for layer in self.hidden:
                bound = math.sqrt(6 / layer.in_features) / omega
                layer.weight.uniform_(-bound, bound)
            self.head.weight.zero_()
            self.head.bias.zero_()

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        h = torch.sin(self.omega * self.embed(coords))
        for layer in self.hidden:
            h = torch.sin(self.omega * layer(h))
        return self.head(h)


class SirenRepresentation:
    """theta = SIREN weights; f(theta, pi) = projector.project(SIREN evaluated on the canonical grid).

    The canonical space must offer a 2-D layout (``projector.grid_shape()`` / ``from_grid``); texel
    centres of that layout map to [0, 1]^2.

    Args:
        projector: views of the canonical grid (IdentityProjector for the paper's image experiment,
            WidePanoramaProjector for its panoramas).
        channels: C (4 for SD latents).
        adam_steps, adam_lr: per-step fit (paper: 200 steps; lr not given).
        seed: the SIREN's initial weights.
    """

    def __init__(
        self,
        projector: Projector,
        channels: int,
        adam_steps: int = 200,
        adam_lr: float = 1e-4,
        width: int = 256,
        depth: int = 3,
        seed: int = 0,
    ) -> None:
        h, w = projector.grid_shape()  # ValueError naming the canvas when it has no 2-D layout
        self.projector = projector
        self.channels = channels
        self.adam_steps, self.adam_lr = adam_steps, adam_lr
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = Siren(channels, width=width, depth=depth).to(projector.device)
        ys = (torch.arange(h, device=projector.device) + 0.5) / h
        xs = (torch.arange(w, device=projector.device) + 0.5) / w
        self.coords = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2)

    @property
    def n_views(self) -> int:
        return self.projector.n_views

    def _image(self) -> torch.Tensor:
        h, w = self.projector.grid_shape()
        return self.projector.from_grid(self.net(self.coords).T.reshape(self.channels, h, w))

    def render(self, views: ViewSelection = None) -> torch.Tensor:
        with torch.no_grad():
            return self.projector.project(self._image(), views)

    def fit(self, targets: torch.Tensor, views: ViewSelection = None) -> None:
        ids = self.projector.view_ids(views)
        pw = self.projector.pixel_weights(ids).to(targets.dtype)
        fit_by_adam(
            lambda: self.projector.project(self._image(), ids),
            self.net.parameters(),
            targets,
            pw,
            self.adam_steps,
            self.adam_lr,
        )

    def canonical(self) -> torch.Tensor:
        with torch.no_grad():
            return self._image()
