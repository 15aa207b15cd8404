"""Gaussian-splat colours <-> rendered views: the n-to-1 projector of SyncTweedies Sec. 5.3 / A1.4.

Canonical space: per-gaussian colours ``[C, G]`` (3 RGB channels at pixel resolution, 4 latent channels
at latent resolution; paper A1.4 "replace the SH coefficients with a 4-channel latent"), canonical_shape
``(G,)``. View i is the alpha-composited render ``w_i = F_i z`` with the scene's fixed geometry; F_i is
the sparse matrix of compositing weights alpha_k T_k (projectors/splat_render.py), precomputed once.

Each pixel mixes several gaussians, so the fuse A({w_i}) = argmin_z sum_i ||W_i^(1/2)(F_i z - w_i)||^2
(SyncTweedies Eq. 7 with an n-to-1 f_i; DDR's pulled-back least-squares fit of the same problem) has no
closed form: it is solved by conjugate gradients preconditioned by the blocks of F^T W F over 16
Morton-adjacent splats (``solve.BlockJacobi``), warm-started from the previous step's colours. W_i is the
pixel's accumulated opacity: a half-transparent pixel is half background.
"""

from __future__ import annotations

import torch

from ..assets.cameras import fit_distance
from ..assets.splat_cameras import SplatCameras, orbit_cameras, scene_frame
from .base import Projector, SparseViewMap, ViewSelection, greedy_disjoint_groups, working_dtype
from .cancel import check_cancel
from .fill import fill_from_nearest_points
from .solve import DEFAULT_CG_TOLERANCE, BlockJacobi, conjugate_gradient
from .splat_render import composite, compositing_weights, render
from .splat_weights import CompositingWeights


DEFAULT_LATENT_SUPERSAMPLE = 4  # sub-pixels per latent pixel side of the latent twins (see ``latent_supersample``)


class SplatProjector(Projector):
    """Colours ``[C, G]`` of a fixed splat scene <-> renders ``[N, C, H, W]`` from ``cameras``.

    Args:
        means ``[G, 3]``, quats ``[G, 4]`` (w, x, y, z), log_scales ``[G, 3]``, opacities ``[G]`` in (0, 1).
        cameras: the views (assets/splat_cameras.py; ``fit_orbit`` gives the paper's 50-view orbit).
        min_visibility: a gaussian counts as seen when its summed compositing weight over the selected
            views' pixels is at least this (in pixels): its colour is solved for. Gaussians seen less
            but not at all (small or mostly hidden ones: a third of a 1M-splat scene at 64^2) get the
            alpha-weighted mean of the pixels they touch, a fitted colour that cannot blow up; only
            gaussians no selected view touches keep their previous colour, and are filled from the
            nearest seen gaussian in 3-D at the end.
        supersample: weights rasterised on s x s sub-pixels per pixel and averaged (splat_render).
        latent_supersample: ``supersample`` of the latent twins ``rescaled`` builds (at most the
            factor): area-averaged latent pixels see the small splats a 64^2 point sample misses.
        device: where the compositing weights are built and kept (default: where ``means`` is).
        overlap_tolerance: two views overlap (for StochSync's groups) when they share more than this
            fraction of the gaussians the smaller view shows with at least half a pixel of weight.

    ``project(..., nearest=True)`` renders each pixel with its dominant gaussian only (the base's
    one-tap map); everything else uses the exact compositing weights.
    """

    n_to_one = True
    kind = "splat"
    canvas_is_image = False  # per-splat colours: shown as a strip, never VAE-decoded

    def canvas_images(self, z: torch.Tensor) -> torch.Tensor:
        """Per-splat colours ``[C, G]`` shown as a one-pixel-high strip ``[1, C, 1, G]``."""
        return z.unsqueeze(1).unsqueeze(0)

    def preview_latent(self, z: torch.Tensor) -> None:
        return None  # a strip of per-splat latents is no picture

    # geometry and cameras feed scipy's cKDTree and the CPU turntable; the rescaled twins are built on the
    # CPU and moved when asked for
    host_attributes = ("geometry", "cameras", "_rescaled_cache")

    def __init__(
        self,
        means: torch.Tensor,
        quats: torch.Tensor,
        log_scales: torch.Tensor,
        opacities: torch.Tensor,
        cameras: SplatCameras,
        min_visibility: float = 0.05,
        overlap_tolerance: float = 0.1,
        weights: CompositingWeights | None = None,
        supersample: int = 1,
        latent_supersample: int = DEFAULT_LATENT_SUPERSAMPLE,
        device: torch.device | str | None = None,
    ) -> None:
        if min_visibility <= 0:
            raise ValueError(f"min_visibility must be > 0, got {min_visibility}")
        self.geometry = tuple(t.detach().float().cpu() for t in (means, quats, log_scales, opacities))
        self.cameras = cameras
        self.min_visibility = float(min_visibility)
        self.overlap_tolerance = float(overlap_tolerance)
        self.latent_supersample = int(latent_supersample)
        # built where the data is (``device``: default the means' device; the geometry itself stays on the
        # CPU for the 3-D nearest fill), so a CUDA run never builds 10^8 weights on the CPU
        build_on = torch.device(device) if device is not None else means.device
        wts = weights if weights is not None else compositing_weights(
            *(t.to(build_on) for t in self.geometry), cameras, supersample=supersample)
        if wts.n_views != len(cameras) or (wts.height, wts.width) != (cameras.height, cameras.width):
            raise ValueError("precomputed weights do not match the cameras")
        self.weights = wts
        dominant = _dominant_taps(wts)
        super().__init__(dominant, (cameras.height, cameras.width), (wts.n_gaussians,), nearest=dominant)
        # every run fits over all views (at least the final colour fit): its fixed terms are part of the build
        self._fixed_terms(torch.arange(len(cameras), device=wts.device), all_views=True)

    @classmethod
    def from_scene(cls, scene, cameras: SplatCameras, **kwargs) -> "SplatProjector":
        """From an assets.splat_ply.SplatScene."""
        return cls(scene.means, scene.quats, scene.log_scales, scene.opacities, cameras, **kwargs)

    # ----------------------------------------------------------------------------------------------
    def project(self, z: torch.Tensor, views: ViewSelection = None, nearest: bool = False) -> torch.Tensor:
        """Render colours ``[C, G]`` -> ``[n, C, H, W]`` (background 0)."""
        if nearest:
            return super().project(z, views, nearest=True)
        ids = self._view_ids(views)
        return composite(self.weights, self._flat(z), None if views is None else ids.tolist())

    def adjoint(self, w: torch.Tensor, views: ViewSelection = None) -> torch.Tensor:
        """F^T w: ``[n, C, H, W]`` -> ``[C, G]`` (each pixel's value spread back by its weights)."""
        ids = self._view_ids(views)
        self._check_views(w, ids)
        return self.weights.spread(w, None if views is None else ids.tolist())

    def _pixel_weights(self, ids: torch.Tensor, dtype) -> torch.Tensor:
        return self.weights.alpha[ids].reshape(len(ids), 1, *self.view_hw).to(dtype)

    def unproject(self, w: torch.Tensor, views: ViewSelection = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(F^T W w ``[C, G]``, F^T W 1 ``[1, G]``)."""
        ids = self._view_ids(views)
        self._check_views(w, ids)
        pw = self._pixel_weights(ids, w.dtype)
        return self.adjoint(w * pw, ids), self.adjoint(pw, ids)

    def visibility(self, views: ViewSelection = None) -> torch.Tensor:
        """``[G]`` summed compositing weight of each gaussian over the selected views (pixels)."""
        ids = self._view_ids(views)
        ones = torch.ones(len(ids), 1, *self.view_hw, device=self.device)
        return self.weights.spread(ones, None if views is None else ids.tolist())[0]

    def coverage(self, views: ViewSelection = None) -> torch.Tensor:
        """Bool ``[G]``: gaussians seen by the selected views (visibility >= min_visibility)."""
        return self.visibility(views) >= self.min_visibility

    def fitted(self, views: ViewSelection = None) -> torch.Tensor:
        """Bool ``[G]``: gaussians ``aggregate`` gives a colour from these views (visibility > 0):
        solved where covered, the weighted mean of their pixels where seen less."""
        return self.visibility(views) > 0

    # ----------------------------------------------------------------------------------------------
    def _normal_operator(self, z: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """F^T W F z ``[C, G]`` (one fused product per chunk of views, see CompositingWeights.normal)."""
        return self.weights.normal(z, ids.tolist())

    def _fixed_terms(self, ids: torch.Tensor, all_views: bool) -> tuple[torch.Tensor, BlockJacobi, torch.Tensor]:
        """(coverage ``[G]``, the preconditioner of F^T W F on the covered gaussians, F^T W 1 ``[G]``) of a
        view selection: geometry only, so cached on the weights. All views: blocks of
        ``weights.block_size()`` gaussians, built with the projector (every run fits over all views, at
        least for its final colours); a run's copy on the same device starts from them and adds its own
        selections to its own cache. Other selections (StochSync's view groups, a cycle of up to dozens):
        the Jacobi diagonal, one pass over their weights instead of a block build each (tens of seconds
        at 512^2), up to 32 of them kept."""
        cache = self.weights.cache
        key = None if all_views else tuple(ids.tolist())
        if key not in cache:
            subsets = [k for k in cache if k is not None]
            if len(subsets) >= 32:
                for k in subsets:
                    del cache[k]
            seen = self.weights.spread(self._pixel_weights(ids, torch.float32), ids.tolist())[0]
            covered = self.coverage(ids)
            blocks = self.weights.normal_blocks(ids.tolist(), block=None if all_views else 1)
            cache[key] = (covered, BlockJacobi(blocks, covered, self.weights.order), seen)
        return cache[key]

    def aggregate(
        self,
        w: torch.Tensor,
        previous: torch.Tensor | None = None,
        views: ViewSelection = None,
        iterations: int = 30,
        tolerance: float = DEFAULT_CG_TOLERANCE,
        in_place: bool = False,  # accepted for the engine; the solve makes a new [C, G] anyway
    ) -> torch.Tensor:
        """Least-squares colours ``[C, G]`` for views ``w`` ``[n, C, H, W]`` (preconditioned CG).

        Starts from ``previous`` (warm start: in sampling, the last step's fit, a few iterations from
        this one's) or, when None, from F^T W w / F^T W F 1 (exact for single-colour views). Gaussians
        the selected views do not see keep ``previous`` (0 when None). Stops when every channel's
        relative residual ||F^T W (w - F z)|| / ||F^T W w|| is below ``tolerance``, or after
        ``iterations``; ``self.last_solve`` (solve.SolveReport) says how many it took.
        """
        ids = self._view_ids(views)
        self._check_views(w, ids)
        work = working_dtype(w.dtype)
        wv = w.to(work)
        rhs = self.adjoint(wv * self._pixel_weights(ids, work), ids)
        covered, precondition, seen = self._fixed_terms(ids, views is None)
        mask = covered.to(work).unsqueeze(0)
        if previous is None:
            row_sum = self._normal_operator(torch.ones(1, self.canonical_size, dtype=work, device=w.device), ids)
            z = rhs / row_sum.clamp_min(1e-12) * mask
        else:
            z = previous.to(work).reshape(rhs.shape)
        # seen, but too little to solve for: the W-weighted mean of the pixels they touch (held fixed
        # in the solve, which then explains the rest of those pixels with the covered gaussians)
        weak = ((seen > 0) & ~covered).unsqueeze(0)
        if bool(weak.any()):
            z = torch.where(weak, rhs / seen.to(work).clamp_min(1e-30), z)
        z, self.last_solve = conjugate_gradient(lambda v: self._normal_operator(v, ids), rhs, z, precondition, mask,
                                                tolerance, iterations)
        return z.to(w.dtype)

    def fill(self, z: torch.Tensor, covered: torch.Tensor | None = None) -> torch.Tensor:
        """Gaussians without a fitted colour (``fitted()``: no view touches them) take the colour of the
        nearest fitted gaussian in 3-D."""
        covered = self.fitted() if covered is None else covered
        return fill_from_nearest_points(z, covered, self.fill_points())

    def fill_points(self) -> torch.Tensor:
        """Where "nearest" is measured by ``fill``: the gaussians' centres ``[G, 3]``."""
        return self.geometry[0]

    def overlap_matrix(self) -> torch.Tensor:
        """Bool ``[N, N]``: views sharing more than ``overlap_tolerance`` of their visible gaussians."""
        # "seen" here means a visible share of at least half a pixel: every gaussian leaks a tiny
        # weight into most views through silhouettes and residual transmittance
        seen = torch.stack([self.visibility([i]) >= 0.5 for i in range(self.n_views)]).float()
        shared = seen @ seen.T
        count = seen.sum(1)
        smaller = torch.minimum(count[:, None], count[None, :]).clamp_min(1)
        return (shared / smaller > self.overlap_tolerance) | torch.eye(self.n_views, dtype=torch.bool, device=shared.device)

    def view_groups(self) -> list[list[int]]:
        if self._groups is None:
            self._groups = greedy_disjoint_groups(self.overlap_matrix().cpu())
        return self._groups

    def fit_colors(self, views: torch.Tensor, iterations: int = 100, tolerance: float = 1e-4) -> torch.Tensor:
        """Colours ``[C, G]`` that best explain the view images ``[N, C, H, W]``; unseen splats filled."""
        return self.fill(self.aggregate(views, iterations=iterations, tolerance=tolerance))

    def turntable(self, colors: torch.Tensor, frames: int = 24, size: int = 512, elevation: float = 15.0,
                  fov_deg: float = 50.0, background: float = 1.0, backend: str = "torch",
                  device: torch.device | str | None = None) -> torch.Tensor:
        """Renders ``[frames, C, size, size]`` of colours ``[C, G]`` turning once around the scene (on the
        colours' device). ``backend="gsplat"`` renders with gsplat on ``device`` (default ``cuda``; opt-in,
        unverified, see ``splat_render.render``); "torch" computes compositing weights on the CPU."""
        means, quats, log_scales, opacities = self.geometry
        cams = self.turntable_cameras(frames, size, elevation, fov_deg)
        if backend == "gsplat":
            where = torch.device(device if device is not None else "cuda")
            scene = [t.to(where) for t in (means, quats, log_scales, opacities, colors.detach().float())]
            image, alpha, _ = render(*scene, cams, backend="gsplat")
        else:
            image, alpha, _ = render(means, quats, log_scales, opacities, colors.detach().float().cpu(), cams, backend)
        return (image + (1 - alpha) * background).to(colors.device)

    def turntable_cameras(self, frames: int = 24, size: int = 512, elevation: float = 15.0,
                          fov_deg: float = 50.0) -> SplatCameras:
        """The ``turntable`` 's cameras: ``frames`` views of ``size`` pixels around the scene's centre."""
        if frames < 1 or size < 1:
            raise ValueError(f"frames and size must be >= 1, got {frames} and {size}")
        centre, radius = scene_frame(self.geometry[0], self.geometry[3])
        distance = fit_distance(torch.tensor([[radius, 0.0, 0.0]]).numpy(), fov_deg)
        views = [(360.0 * k / frames, elevation) for k in range(frames)]
        return orbit_cameras(views, centre, distance, fov_deg, size, size, self.cameras.up)

    # ----------------------------------------------------------------------------------------------
    def rescaled(self, factor: int) -> "SplatProjector":
        """Same scene and cameras at ``H/factor x W/factor`` (e.g. 512 RGB -> 64 latent with factor 8).

        Cached per factor: several nodes ask for the latent twin and each build rasterises every view.
        """
        cache = self.__dict__.setdefault("_rescaled_cache", {})
        if factor not in cache:
            cache[factor] = SplatProjector(*self.geometry, self.cameras.rescaled(factor), self.min_visibility,
                                           self.overlap_tolerance, supersample=min(self.latent_supersample, factor),
                                           latent_supersample=self.latent_supersample, device=self.device)
        return cache[factor].to(self.device)

    def alpha_maps(self) -> torch.Tensor:
        """``[N, 1, H, W]`` accumulated opacity of each view."""
        return self.weights.alpha.reshape(self.n_views, 1, *self.view_hw)

    def depth_maps(self, normalize: bool = True) -> torch.Tensor:
        """``[N, 1, H, W]`` depth renders for depth ControlNet.

        normalize=True: inverse depth scaled per view to [0.1, 1] over pixels with alpha > 0.5 (near
        is bright, as MiDaS-style depth hints), times alpha, so the background is 0. False: expected
        camera z (0 on the background).
        """
        depth = self.weights.depth.reshape(self.n_views, 1, *self.view_hw)
        if not normalize:
            return depth
        alpha = self.alpha_maps()
        inv = torch.where(depth > 0, 1.0 / depth.clamp_min(1e-12), torch.zeros_like(depth))
        out = torch.zeros_like(depth)
        for i in range(self.n_views):
            fg = alpha[i] > 0.5
            if not bool(fg.any()):
                continue
            lo, hi = inv[i][fg].min(), inv[i][fg].max()
            out[i] = (0.1 + 0.9 * (inv[i] - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1) * alpha[i]
        return out


def _dominant_taps(wts: CompositingWeights) -> SparseViewMap:
    """One tap per pixel: the gaussian with the largest compositing weight (weight 1 where alpha > 0)."""
    n, p = wts.n_views, wts.height * wts.width
    index = torch.zeros(n, p, dtype=torch.long)
    for i in range(n):
        check_cancel()
        pix, gid, wt = (t.cpu() for t in wts.view(i))
        best = torch.zeros(p).scatter_reduce_(0, pix.long(), wt, "amax", include_self=True)
        top = wt == best[pix.long()]
        index[i, pix[top].long()] = gid[top].long()
    weight = (wts.alpha.cpu() > 0).float().unsqueeze(-1)
    return SparseViewMap(index.unsqueeze(-1).to(wts.alpha.device), weight.to(wts.alpha.device), wts.alpha)
