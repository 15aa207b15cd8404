"""Projectors as precomputed sparse linear maps between a canonical tensor and N views.

A projector maps a canonical tensor ``z`` of shape ``[C, *canonical_shape]`` to views ``w`` of shape
``[N, C, h, w]`` by a fixed sparse linear map F (per view i: ``w_i = F_i z``), precomputed once:

* ``index[i, p, t]``  flat canonical index of tap t of view pixel p (``[N, h*w, T]``, int64)
* ``weight[i, p, t]`` its interpolation weight (``[N, h*w, T]``, >= 0; padding taps have weight 0)
* ``pixel_weight[i, p]`` W_i: how much view pixel p is trusted when fusing (``[N, h*w]``, >= 0; 0 on
  background; e.g. cos(view ray, normal)^k for meshes)
* ``view_sign[i]`` (optional, ``[N]`` of +-1): a per-view value sign, ``w_i = s_i F_i z``, for sign-flipping
  views (anagram colour negation) that non-negative weights cannot express

Everything per step is a gather (``project``) or a scatter-add (``adjoint``/``unproject``): no geometry
is recomputed per step; the closed-form fuse touches only the texels the selected views read.
``aggregate`` is the least-squares fuse A({w_i}) of DESIGN.md: for 1-to-1 and 1-to-n maps (every pixel
reads one texel with weight 1) the closed form value/weight *is* the least-squares solution; for n-to-1 maps (multiplane images, splats, bilinear 360 taps) it is solved by
Jacobi-preconditioned conjugate gradients on the normal equations, warm-started from the previous
canonical value.
"""

from __future__ import annotations

import dataclasses
import math
from copy import copy as shallow_copy
from dataclasses import dataclass
from typing import Sequence

import torch

from .cancel import check_cancel
from .fill import fill_from_sources, voronoi_sources
from .solve import DEFAULT_CG_TOLERANCE, conjugate_gradient

ViewSelection = Sequence[int] | torch.Tensor | None

@dataclass
class SparseViewMap:
    """The precomputed taps of a projector (see module docstring for shapes)."""

    index: torch.Tensor  # [N, P, T] int64, flat canonical index
    weight: torch.Tensor  # [N, P, T] float, interpolation weights
    pixel_weight: torch.Tensor  # [N, P] float, fusion trust per view pixel (0 = background)

    def to(self, device: torch.device | str) -> "SparseViewMap":
        return SparseViewMap(self.index.to(device), self.weight.to(device), self.pixel_weight.to(device))

    def select(self, views: torch.Tensor) -> "SparseViewMap":
        return SparseViewMap(self.index[views], self.weight[views], self.pixel_weight[views])


COVERAGE_TAPS = 1 << 22  # taps scattered between two cancellation checks in ``coverage``


def _any_negative(values: torch.Tensor, step: int = 1 << 24) -> bool:
    """``(values < 0).any()`` slice by slice, a cancellation check before each (a billion taps take seconds)."""
    flat = values.reshape(-1)
    return any(check_cancel() or bool(flat[a : a + step].min() < 0) for a in range(0, flat.numel(), step))


class Projector:
    """Base of every projector: canonical ``[C, *canonical_shape]`` <-> views ``[N, C, h, w]``.

    Subclasses compute the geometry and call ``super().__init__`` with the taps. ``nearest`` taps
    (one tap per pixel) are used to project noise, which bilinear taps would blur (lower variance).

    Attributes:
        n_views: N.
        view_hw: (h, w) of each view.
        canonical_shape: spatial shape of the canonical tensor (channels excluded), e.g. (H, W).
        n_to_one: True when a view pixel mixes several canonical elements by design (multiplane
            images, splats): then views start from independent noise and ``aggregate`` solves a
            least-squares problem iteratively (SyncTweedies A1).
    """

    n_to_one: bool = False
    kind: str = "projector"  # a name for messages only: nodes ask capabilities (CONTRACT.md), never the kind
    canvas_is_image: bool = True  # canvas_images() of a latent canvas are latents a VAE can decode
    host_attributes: tuple[str, ...] = ()
    """Tensors ``to()`` leaves on the CPU on purpose: ``"a"`` (an attribute it does not move) or ``"a.b"``
    (a field that ``a``'s own ``to`` keeps on the CPU); ``tests/test_device_contract.py`` checks that
    every other tensor moves."""

    def __init__(
        self,
        taps: SparseViewMap,
        view_hw: tuple[int, int],
        canonical_shape: tuple[int, ...],
        nearest: SparseViewMap | None = None,
        view_sign: torch.Tensor | None = None,
    ) -> None:
        n, p, _ = taps.index.shape
        if p != view_hw[0] * view_hw[1]:
            raise ValueError(f"taps cover {p} pixels per view but view_hw={view_hw} has {view_hw[0] * view_hw[1]}")
        if _any_negative(taps.weight) or _any_negative(taps.pixel_weight):
            raise ValueError("projector weights must be non-negative")
        self.n_views = n
        self.view_hw = (int(view_hw[0]), int(view_hw[1]))
        self.canonical_shape = tuple(int(s) for s in canonical_shape)
        self.taps = taps
        self.nearest_taps = nearest if nearest is not None else taps
        # Per-view value sign s_i in {+1, -1}: w_i = s_i F_i z. Sign flips (colour negation of anagrams)
        # are linear but not representable with non-negative tap weights, so they live here, applied in
        # project and (as s_i^T = s_i) in adjoint/unproject; fusion weights W_i stay >= 0.
        if view_sign is not None:
            view_sign = torch.as_tensor(view_sign, dtype=torch.float32, device=taps.index.device).reshape(-1)
            if view_sign.numel() != n or not bool(((view_sign == 1) | (view_sign == -1)).all()):
                raise ValueError(f"view_sign must hold {n} values in {{+1, -1}}, got {view_sign.tolist()}")
        self.view_sign = view_sign
        self._groups: list[list[int]] | None = None
        self._compact_cache: dict = {}

    # ----------------------------------------------------------------------------------------------
    # device / selection helpers
    @property
    def device(self) -> torch.device:
        return self.taps.index.device

    @property
    def canonical_size(self) -> int:
        return math.prod(self.canonical_shape)

    def to(self, device: torch.device | str, copy: bool = False) -> "Projector":
        """A copy of this projector with every tensor it uses on ``device``; ``self`` when already there,
        unless ``copy`` (what a sampling run asks for: an object of its own, whatever the device).

        Never moves in place: a projector is a node output that lives in ComfyUI's cache, and a run
        that moved it to the GPU would pin that memory after the run and hand GPU tensors to the next
        CPU-side node. The copy shares no container with the original (caches are rebuilt; tensors
        already on ``device`` are shared, never written), so a run cannot change the cached projector
        and its copy is freed with the run. Attributes named in ``host_attributes`` stay where they are
        (CPU-side inputs of scipy, caches of CPU twins); tensors shared between attributes stay shared.
        """
        device = torch.device(device)
        if self.device == device and not copy:
            return self
        moved = shallow_copy(self)
        memo: dict[int, object] = {}
        for name, value in vars(self).items():
            if name not in self.host_attributes:
                setattr(moved, name, moved_to(value, device, memo))
            elif isinstance(value, dict):  # a host-side cache: the copy fills its own
                setattr(moved, name, type(value)(value))
        return moved

    def _select(self, taps: SparseViewMap, views: ViewSelection, ids: torch.Tensor) -> SparseViewMap:
        """The taps of the selected views (no copy when all views are selected)."""
        return taps if views is None else taps.select(ids)

    def _compact(self, ids: torch.Tensor, views: ViewSelection) -> tuple[torch.Tensor, torch.Tensor]:
        """(touched ``[U]`` canonical indices the selected taps read, taps' index into touched
        ``[n, P, T]``), cached per selection. Lets ``aggregate`` work on the U touched texels only,
        which matters for sparse canvases (the papers' 2048x4096 latent panorama: U ~ 0.4% of it)."""
        key = None if views is None else tuple(ids.tolist())
        if key not in self._compact_cache:
            taps = self._select(self.taps, views, ids)
            touched, local = torch.unique(taps.index.reshape(-1), return_inverse=True)
            if len(self._compact_cache) >= 16:
                self._compact_cache.clear()
            self._compact_cache[key] = (touched, local.reshape(taps.index.shape))
        return self._compact_cache[key]

    def _signed(self, w: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """s_i w_i for the selected views (identity when the projector has no sign flips)."""
        if self.view_sign is None:
            return w
        return w * self.view_sign[ids].to(w.dtype).reshape(-1, *([1] * (w.dim() - 1)))

    def _view_ids(self, views: ViewSelection) -> torch.Tensor:
        if views is None:
            return torch.arange(self.n_views, device=self.device)
        ids = torch.as_tensor(views, dtype=torch.long, device=self.device).reshape(-1)
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.n_views):
            raise ValueError(f"view ids {ids.tolist()} out of range for a projector with {self.n_views} views")
        return ids

    def _flat(self, z: torch.Tensor) -> torch.Tensor:
        if tuple(z.shape[1:]) != self.canonical_shape:
            raise ValueError(
                f"canonical tensor has shape {tuple(z.shape)}, expected [C, {', '.join(map(str, self.canonical_shape))}]"
            )
        return z.reshape(z.shape[0], -1)

    # ----------------------------------------------------------------------------------------------
    # the linear map and its transpose
    def project(self, z: torch.Tensor, views: ViewSelection = None, nearest: bool = False) -> torch.Tensor:
        """F z: canonical ``[C, *canonical_shape]`` -> views ``[n, C, h, w]`` (n = len(views) or N)."""
        ids = self._view_ids(views)
        taps = self._select(self.nearest_taps if nearest else self.taps, views, ids)
        zf = self._flat(z)
        n, p, t = taps.index.shape
        # index_select is several times faster than advanced indexing on the CPU
        gathered = zf.index_select(1, taps.index.reshape(-1)).reshape(zf.shape[0], n, p, t)
        weight = taps.weight.to(zf.dtype).unsqueeze(0)
        out = gathered[..., 0] * weight[..., 0] if t == 1 else (gathered * weight).sum(-1)  # [C, n, P]
        return self._signed(out.permute(1, 0, 2).reshape(n, zf.shape[0], *self.view_hw), ids)

    def _scatter(
        self, values: torch.Tensor, taps: SparseViewMap, index: torch.Tensor | None = None, size: int | None = None
    ) -> torch.Tensor:
        """sum over views, pixels, taps of weight * values into canonical: values [n, C, P] -> [C, K].

        ``index``/``size`` redirect the scatter (e.g. into the compact touched-texel array)."""
        c = values.shape[1]
        contrib = values.unsqueeze(-1) * taps.weight.to(values.dtype).unsqueeze(1)  # [n, C, P, T]
        contrib = contrib.permute(1, 0, 2, 3).reshape(c, -1)
        index = taps.index if index is None else index
        out = torch.zeros(c, self.canonical_size if size is None else size, dtype=values.dtype, device=values.device)
        return out.index_add_(1, index.reshape(-1), contrib)

    def _check_views(self, w: torch.Tensor, ids: torch.Tensor) -> None:
        if w.dim() != 4 or w.shape[0] != ids.numel() or tuple(w.shape[2:]) != self.view_hw:
            raise ValueError(
                f"views have shape {tuple(w.shape)}, expected [{ids.numel()}, C, {self.view_hw[0]}, {self.view_hw[1]}]"
            )

    def adjoint(self, w: torch.Tensor, views: ViewSelection = None) -> torch.Tensor:
        """F^T w (no pixel weights): views ``[n, C, h, w]`` -> canonical ``[C, *canonical_shape]``."""
        ids = self._view_ids(views)
        self._check_views(w, ids)
        taps = self._select(self.taps, views, ids)
        out = self._scatter(self._signed(w, ids).reshape(w.shape[0], w.shape[1], -1), taps)
        return out.reshape(w.shape[1], *self.canonical_shape)

    def unproject(self, w: torch.Tensor, views: ViewSelection = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum_i F_i^T W_i w_i, sum_i F_i^T W_i 1): ``([C, *S], [1, *S])``."""
        ids = self._view_ids(views)
        self._check_views(w, ids)
        taps = self._select(self.taps, views, ids)
        pw = taps.pixel_weight.to(w.dtype).unsqueeze(1)  # [n, 1, P]
        wf = self._signed(w, ids).reshape(w.shape[0], w.shape[1], -1)
        num = self._scatter(wf * pw, taps)
        den = self._scatter(pw.expand(-1, 1, -1).contiguous(), taps)
        return num.reshape(w.shape[1], *self.canonical_shape), den.reshape(1, *self.canonical_shape)

    def coverage(self, views: ViewSelection = None) -> torch.Tensor:
        """Bool ``[*canonical_shape]``: canonical elements that some selected view pixel reads (with W > 0)."""
        ids = self._view_ids(views)
        covered = torch.zeros(self.canonical_size, dtype=torch.bool, device=self.device)
        _, p, t = self.taps.index.shape
        step = max(1, COVERAGE_TAPS // (p * t))
        for a in range(0, len(ids), step):  # slices of views (OR of their coverage), a cancellation check between
            check_cancel()
            taps = self.taps.select(ids[a : a + step]) if views is not None or step < len(ids) else self.taps
            ones = (taps.pixel_weight > 0).to(taps.weight.dtype).unsqueeze(1)
            covered |= self._scatter(ones, taps)[0] > 0
        return covered.reshape(self.canonical_shape)

    def coverage_fraction(self, views: ViewSelection = None) -> float:
        return float(self.coverage(views).float().mean())

    # ----------------------------------------------------------------------------------------------
    # fusing
    def aggregate(
        self,
        w: torch.Tensor,
        previous: torch.Tensor | None = None,
        views: ViewSelection = None,
        iterations: int = 30,
        tolerance: float = 1e-10,
        in_place: bool = False,
    ) -> torch.Tensor:
        """Least-squares fuse ``argmin_z sum_i ||W_i^(1/2) (F_i z - w_i)||^2`` -> ``[C, *S]``.

        ``in_place``: the caller owns ``previous`` and gives it up: the closed-form fuse then writes the
        touched elements into it and returns it, instead of copying the whole canvas (the papers' 360
        latent canvas is 2048x4096; its views touch ~1% of it). Ignored where it cannot apply.

        Uncovered canonical elements keep ``previous`` (zeros when None). For n-to-1 maps the solve
        runs conjugate gradients on the normal equations, warm-started from ``previous`` (or from the
        closed form when None), until the relative residual is below ``tolerance`` or after
        ``iterations``; ``self.last_solve`` reports what it took. (The small n-to-1 maps here default
        to a converged solve; splats, where it costs, stop at DEFAULT_CG_TOLERANCE.)
        """
        out_dtype, w = w.dtype, w.to(working_dtype(w.dtype))  # half views are fused in float32
        if not (self.n_to_one and iterations > 0):
            return self._closed_form_fuse(w, previous, views, in_place).to(out_dtype)
        num, den = self.unproject(w, views)
        covered = den > 0
        closed = torch.where(covered, num / den.clamp_min(1e-12), torch.zeros_like(num))
        if previous is not None:
            closed = torch.where(covered, closed, previous.to(closed.dtype))
        if self.n_to_one and iterations > 0:
            start = previous.to(closed.dtype) if previous is not None else closed
            closed = self._solve_normal_equations(w, num, covered, start, views, iterations, tolerance)
        return closed.to(out_dtype)

    def _closed_form_fuse(self, w: torch.Tensor, previous: torch.Tensor | None, views: ViewSelection,
                          in_place: bool = False) -> torch.Tensor:
        """value / weight on the touched texels only (the least-squares fuse of 1-to-1 / 1-to-n maps)."""
        ids = self._view_ids(views)
        self._check_views(w, ids)
        touched, local = self._compact(ids, views)
        taps = self._select(self.taps, views, ids)
        c = w.shape[1]
        pw = taps.pixel_weight.to(w.dtype).unsqueeze(1)  # [n, 1, P]
        wf = self._signed(w, ids).reshape(w.shape[0], c, -1)
        num = self._scatter(wf * pw, taps, local, touched.numel())  # [C, U]
        den = self._scatter(pw.expand(-1, 1, -1).contiguous(), taps, local, touched.numel())  # [1, U]
        out = canvas_to_write(previous, c, self.canonical_size, w, in_place)
        fused = torch.where(den > 0, num / den.clamp_min(1e-12), out.index_select(1, touched))
        out.index_copy_(1, touched, fused)
        return out.reshape(c, *self.canonical_shape)

    def _normal_operator(self, z: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """F^T W F z for the selected views."""
        fz = self.project(z, ids)
        pw = self.taps.pixel_weight[ids].reshape(len(ids), 1, *self.view_hw).to(fz.dtype)
        return self.adjoint(fz * pw, ids)

    def _normal_diagonal(self, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """diag(F^T W F) ``[1, K]``: sum over taps of W * weight^2 (the Jacobi preconditioner)."""
        taps = self.taps.select(ids)
        sq = (taps.weight.to(dtype) ** 2 * taps.pixel_weight.to(dtype).unsqueeze(-1)).reshape(1, -1)
        out = torch.zeros(1, self.canonical_size, dtype=dtype, device=sq.device)
        return out.index_add_(1, taps.index.reshape(-1), sq)

    def _solve_normal_equations(self, w, rhs, covered, start, views, iterations, tolerance) -> torch.Tensor:
        """Jacobi-preconditioned conjugate gradients for (F^T W F) z = F^T W w on the covered elements,
        from ``start`` (``conjugate_gradient``; its report is kept in ``self.last_solve``). The
        preconditioner matters: texels at the edge of a view's footprint are read with tiny bilinear
        weights, which makes plain CG crawl."""
        ids = self._view_ids(views)
        mask = covered.to(rhs.dtype)
        inv_diag = (1 / self._normal_diagonal(ids, rhs.dtype).clamp_min(1e-30)).reshape(1, *self.canonical_shape)
        z, self.last_solve = conjugate_gradient(lambda v: self._normal_operator(v, ids), rhs, start,
                                                inv_diag * mask, mask, tolerance, iterations)
        return z

    def fill(self, z: torch.Tensor, covered: torch.Tensor | None = None) -> torch.Tensor:
        """Voronoi fill: every uncovered canonical element takes the value of the nearest covered one.

        Uses scipy's exact Euclidean distance transform on the canonical grid; ``covered`` defaults to
        ``self.coverage()``. Returns ``z`` unchanged when everything (or nothing) is covered.
        """
        covered = self.coverage() if covered is None else covered
        covered_np = covered.detach().cpu().numpy().astype(bool).reshape(self.canonical_shape)
        if covered_np.all() or not covered_np.any():
            return z
        return fill_from_sources(z, *voronoi_sources(covered_np))

    # ----------------------------------------------------------------------------------------------
    # StochSync: groups of views that share no canonical element
    def view_groups(self) -> list[list[int]]:
        """Partition of the views into groups whose views share no canonical element.

        Default: greedy colouring of the overlap graph computed from the taps (subclasses with a
        paper-given rig override this). Each group's views can be denoised and fused without
        averaging (StochSync Sec. 5, "alternating non-overlapping views").
        """
        if self._groups is None:
            self._groups = greedy_disjoint_groups(self.overlap_matrix())
        return self._groups

    def overlap_matrix(self) -> torch.Tensor:
        """Bool ``[N, N]``: views i and j read at least one common canonical element (W > 0)."""
        masks = torch.stack([self.coverage([i]).reshape(-1) for i in range(self.n_views)]).float()
        return (masks @ masks.T) > 0

    # ----------------------------------------------------------------------------------------------
    # capabilities: what nodes and fuse rules ask of a canonical space (projectors/CONTRACT.md).
    # The defaults serve a canvas that is one 2-D grid [C, H, W]; other spaces override them.
    def view_ids(self, views: ViewSelection = None) -> torch.Tensor:
        """The selected view ids as a LongTensor ``[n]`` on the projector's device (all views for None)."""
        return self._view_ids(views)

    def pixel_weights(self, views: ViewSelection = None) -> torch.Tensor:
        """W_i, how much each view pixel is trusted when fusing: ``[n, 1, h, w]`` (>= 0, 0 on background)."""
        ids = self._view_ids(views)
        return self.taps.pixel_weight[ids].reshape(len(ids), 1, *self.view_hw)

    def view_masks(self) -> torch.Tensor:
        """Bool ``[N, h, w]``: view pixels that see the canvas."""
        return self.pixel_weights()[:, 0] > 0

    def canvas_images(self, z: torch.Tensor) -> torch.Tensor:
        """How the canvas is shown and saved: canonical ``[C, *S]`` -> images ``[B, C, H, W]``.

        Default: a 2-D canvas is one image. ValueError when the canvas has no image form."""
        if z.dim() != 3:
            raise ValueError(f"a {self.kind} canvas of shape {tuple(z.shape)} has no image form")
        return z.unsqueeze(0)

    def canvas_from_images(self, images: torch.Tensor) -> torch.Tensor:
        """The inverse of ``canvas_images``: images ``[B, C, H, W]`` -> canonical ``[C, *S]``, checked."""
        expected = self.canvas_images(torch.empty(1, *self.canonical_shape, device="meta")).shape  # shapes only
        if images.dim() != 4 or images.shape[0] != expected[0] or tuple(images.shape[2:]) != tuple(expected[2:]):
            raise ValueError(
                f"the {self.kind} canvas is {expected[0]} image(s) of {expected[3]}x{expected[2]} (WxH), got "
                f"{images.shape[0]} of {images.shape[-1]}x{images.shape[-2]}; resize it first"
            )
        return images.movedim(0, 1).reshape(images.shape[1], *self.canonical_shape)

    def preview_latent(self, z: torch.Tensor) -> torch.Tensor | None:
        """One image-shaped latent ``[C, h, w]`` for ComfyUI's live preview of the canvas latent ``z``, or None."""
        try:
            images = self.canvas_images(z)
        except ValueError:
            return None
        return images[0] if images.shape[0] == 1 else images.mean(0)

    def grid_positions(self) -> torch.Tensor:
        """``[N, P, 2]`` float (row, column) on a 2-D layout of the canvas of each view pixel's nearest tap:
        DDE's rotary positions and SIREN-like representations ask for it. ValueError without a 2-D layout."""
        if len(self.canonical_shape) != 2:
            raise ValueError(f"a {self.kind} canvas (shape {self.canonical_shape}) has no 2-D grid positions")
        index = self.nearest_taps.index[..., 0]
        width = self.canonical_shape[1]
        return torch.stack([torch.div(index, width, rounding_mode="floor"), index % width], -1).float()

    def grid_shape(self) -> tuple[int, int]:
        """(H, W) of the 2-D layout ``grid_positions`` index (a representation defined on a grid uses it)."""
        if len(self.canonical_shape) != 2:
            raise ValueError(f"a {self.kind} canvas (shape {self.canonical_shape}) has no 2-D grid")
        return self.canonical_shape

    def from_grid(self, grid: torch.Tensor) -> torch.Tensor:
        """A ``[C, *grid_shape()]`` image laid out as ``grid_positions`` -> canonical ``[C, *S]``."""
        return grid.reshape(grid.shape[0], *self.canonical_shape)

    # ----------------------------------------------------------------------------------------------
    # resolution: the same geometry at latent and at pixel resolution
    def rescaled(self, factor: int) -> "Projector":
        """The same geometry with every pixel size divided by ``factor`` (8 for SD latents).

        Subclasses implement it; the node builds the latent projector with it from the pixel one.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement rescaled()")

    def describe(self) -> str:
        return (
            f"{self.kind}: {self.n_views} views of {self.view_hw[0]}x{self.view_hw[1]}, canonical "
            f"{'x'.join(map(str, self.canonical_shape))}, coverage {100 * self.coverage_fraction():.1f}%"
        )


def canvas_to_write(previous: torch.Tensor | None, channels: int, size: int, like: torch.Tensor,
                    in_place: bool) -> torch.Tensor:
    """The ``[C, size]`` canvas a fuse writes its touched elements into: zeros without ``previous``;
    ``previous`` itself when the caller gave it up (``in_place``) and it already has the dtype, device
    and layout of the result; else a copy of it."""
    if previous is None:
        return torch.zeros(channels, size, dtype=like.dtype, device=like.device)
    if in_place and previous.dtype == like.dtype and previous.device == like.device and previous.is_contiguous():
        return previous.view(channels, size)
    return previous.to(like.dtype).reshape(channels, size).clone()


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """The precision sums, fuses and solves run in: float64 stays, everything else (float16 and bfloat16,
    what ComfyUI's models and VAEs return on GPUs) is lifted to float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def moved_to(value, device: torch.device, memo: dict[int, object] | None = None):
    """``value`` with its tensors on ``device``: tensors, projectors and dataclasses with a ``to`` are
    moved, dicts, lists and tuples are rebuilt around moved values (new containers, so a copy never
    writes into its original's caches), anything else is returned as is. ``memo`` keeps objects shared
    between attributes shared (a projector's nearest taps are often its taps)."""
    memo = {} if memo is None else memo
    key = id(value)
    if key in memo:
        return memo[key]
    if isinstance(value, (torch.Tensor, Projector)):
        out = value.to(device)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type) and callable(getattr(value, "to", None)):
        out = value.to(device)
    elif isinstance(value, dict):
        out = type(value)((k, moved_to(v, device, memo)) for k, v in value.items())
    elif type(value) in (list, tuple):
        out = type(value)(moved_to(v, device, memo) for v in value)
    else:
        return value
    memo[key] = out
    return out


def divide_size(value: int, factor: int, name: str) -> int:
    """``value / factor`` for ``rescaled``; ValueError naming ``name`` when it does not divide exactly."""
    if factor < 1 or int(factor) != factor:
        raise ValueError(f"rescale factor must be a positive integer, got {factor!r}")
    if value % factor:
        raise ValueError(f"{name}={value} is not divisible by the rescale factor {factor}")
    return value // factor


def greedy_disjoint_groups(overlap: torch.Tensor) -> list[list[int]]:
    """Greedy colouring: each view joins the first group none of whose views it overlaps."""
    groups: list[list[int]] = []
    for i in range(overlap.shape[0]):
        for g in groups:
            if not any(bool(overlap[i, j]) for j in g):
                g.append(i)
                break
        else:
            groups.append([i])
    return groups
