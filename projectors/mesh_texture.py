"""Mesh UV texture ``[C, T, T]`` <-> rendered views ``[N, C, h, w]`` (SyncTweedies Sec. 3.3 / A1.3).

The projection f_i renders the textured mesh from camera i: every view pixel that sees the mesh reads
the texture at its interpolated UV (bilinear, or nearest as in the paper, A1.3). The unprojection g_i
scatters pixels back to the texels they read, weighted per pixel by ``W_i = cos(view ray, normal)^k``
(SyncMVD's view-angle weighting), so grazing pixels count little; background pixels have W = 0.
Texels no view sees keep their previous value during sampling and are Voronoi-filled at the end.
All geometry is rasterised once per view size and cached; per step only gathers and scatter-adds run.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import torch

from ..assets.cameras import CameraRig
from ..assets.mesh_data import MeshData
from .base import Projector, SparseViewMap, canvas_to_write, working_dtype
from .fill import fill_from_sources, voronoi_sources
from .cancel import check_cancel
from .grid import grid_taps, sliced_taps
from .mesh_pull import PullTaps, UnprojectionMatrix, pull_taps, unprojection_matrix
from .raster import RasterResult, preferred_device, rasterize

SAMPLING_MODES = ("bilinear", "nearest")
UNPROJECTION_MODES = ("pull", "scatter")


class MeshTextureProjector(Projector):
    """UV texture of ``mesh`` seen by the cameras of ``rig``.

    Args:
        mesh: a :class:`MeshData` with UVs.
        rig: the cameras (and optional StochSync groups).
        view_size: ``h`` or ``(h, w)`` of each view in pixels of *this* projector (latent or RGB).
        texture_size: ``T`` (texture is ``T x T``).
        latent_texture_size: texture size ``rescaled(factor)`` uses when none is given (the paper:
            1536 for the latent texture with a 1024 RGB one); None means ``T // factor``.
        cos_exponent: ``k`` in ``W = cos^k`` (0: plain visibility).
        sampling: "bilinear" or "nearest" texture lookup for ``project``; noise is always projected
            with nearest taps (see base class).
        backend: rasteriser back-end (see :func:`projectors.raster.rasterize`).
        unprojection: "scatter": g_i = F_i^T W_i (each pixel writes the texels it reads; exact adjoint,
            sparse when texels are much smaller than pixels). "pull" (default): additionally every texel
            a view sees reads that view (projectors/mesh_pull.py), so overlapping views meet on the
            same texels at any texture/view resolution ratio (SyncMVD's per-view Voronoi fill).
    """

    kind = "mesh texture"
    # the Voronoi-fill index maps are computed by scipy on the CPU and moved per call; the pull taps'
    # view offsets are read one by one on the host
    host_attributes = ("_fill_cache", "pull.starts")

    def __init__(
        self,
        mesh: MeshData,
        rig: CameraRig,
        view_size: int | tuple[int, int] = 96,
        texture_size: int = 1536,
        latent_texture_size: int | None = None,
        cos_exponent: float = 3.0,
        sampling: str = "bilinear",
        backend: str = "auto",
        raster: RasterResult | None = None,
        unprojection: str = "pull",
    ) -> None:
        if not mesh.has_uvs:
            raise ValueError(f"{mesh.source}: mesh has no UVs; load it with unwrap='auto' or call unwrap_uvs")
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
        if unprojection not in UNPROJECTION_MODES:
            raise ValueError(f"unprojection must be one of {UNPROJECTION_MODES}, got {unprojection!r}")
        if int(texture_size) < 1:
            raise ValueError(f"texture_size must be >= 1, got {texture_size}")
        if cos_exponent < 0:
            raise ValueError(f"cos_exponent must be >= 0, got {cos_exponent}")
        hw = (int(view_size), int(view_size)) if np.isscalar(view_size) else tuple(int(s) for s in view_size)
        self.mesh, self.rig = mesh, rig
        self.texture_size = int(texture_size)
        self.latent_texture_size = None if latent_texture_size is None else int(latent_texture_size)
        self.cos_exponent = float(cos_exponent)
        self.sampling = sampling
        self.backend = backend
        if raster is None:  # rasterise where it is fastest (nvdiffrast: CUDA), keep the result on the CPU
            raster = rasterize(mesh, rig, hw, backend, preferred_device(backend)).to("cpu")
        self.raster = raster
        check_cancel()
        if self.raster.hw != hw or self.raster.face_id.shape[0] != len(rig):
            raise ValueError(f"raster result is {self.raster.hw} x {self.raster.face_id.shape[0]} views, expected {hw} x {len(rig)}")
        bilinear, nearest = self._taps()
        check_cancel()
        super().__init__(nearest if sampling == "nearest" else bilinear, hw, (self.texture_size, self.texture_size), nearest)
        self._fill_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.unprojection = unprojection
        self.pull: PullTaps | None = None
        if unprojection == "pull":
            self.pull = pull_taps(mesh, list(rig), self.raster, self.texture_size, self.cos_exponent)

    def _taps(self) -> tuple[SparseViewMap, SparseViewMap]:
        r, t = self.raster, self.texture_size
        n = r.face_id.shape[0]
        uv, mask, cos = r.uv.reshape(n, -1, 2), r.mask.reshape(n, -1), r.view_cos.reshape(n, -1)

        def inputs(a: int, b: int):  # per slice of pixels, so a cancel is seen between slices
            u = uv[:, a:b].to(torch.float64)
            valid = mask[:, a:b]
            weight = cos[:, a:b].to(torch.float32) ** self.cos_exponent
            return (1 - u[..., 1]) * t, u[..., 0] * t, valid, weight * valid  # v points up, rows go down

        return sliced_taps(grid_taps, n, uv.shape[1], inputs, (t, t))

    # ----------------------------------------------------------------------------------------------
    # unprojection: the scatter of the base class, plus the texel pull
    def _pull(self, views) -> PullTaps:
        return self.pull.select(self._view_ids(views).cpu(), self.view_hw[0] * self.view_hw[1])

    def _unprojection(self, views) -> UnprojectionMatrix:
        """The scatter and the pull of a view selection as one prebuilt CSR matrix over the texels they
        touch (projectors/mesh_pull.py), cached per selection (the sampler fuses the same ones every step)."""
        ids = self._view_ids(views)
        cache = self.__dict__.setdefault("_unprojection_cache", {})
        key = (str(self.device), None if views is None else tuple(ids.tolist()))
        if key not in cache:
            if len(cache) >= 16:
                cache.clear()
            taps = self._select(self.taps, views, ids)
            cache[key] = unprojection_matrix(taps.index, taps.weight, taps.pixel_weight, self._pull(views),
                                             self.canonical_size)
        return cache[key]

    def unproject(self, w: torch.Tensor, views=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sum_i g_i(W_i w_i), sum_i g_i(W_i))`` with g_i the scatter F_i^T (+ the pull, see class doc)."""
        if self.pull is None:
            return super().unproject(w, views)
        self._check_views(w, self._view_ids(views))
        g = self._unprojection(views)
        num = torch.zeros(w.shape[1], self.canonical_size, dtype=w.dtype, device=w.device)
        den = torch.zeros(1, self.canonical_size, dtype=w.dtype, device=w.device)
        num[:, g.touched] = g.numerator(w)
        den[:, g.touched] = g.den.to(w.dtype)
        return num.reshape(w.shape[1], *self.canonical_shape), den.reshape(1, *self.canonical_shape)

    def aggregate(self, w: torch.Tensor, previous: torch.Tensor | None = None, views=None, iterations: int = 30,
                  **kwargs) -> torch.Tensor:
        """Weighted mean ``sum_i g_i(W_i w_i) / sum_i g_i(W_i)`` per texel; unseen texels keep ``previous``.

        One sparse product over the touched texels; the rest of the texture is ``previous`` (copied,
        or written into with ``in_place``, see base)."""
        if self.pull is None:
            return super().aggregate(w, previous, views, iterations, **kwargs)
        self._check_views(w, self._view_ids(views))
        out_dtype, w = w.dtype, w.to(working_dtype(w.dtype))
        g = self._unprojection(views)
        c = w.shape[1]
        out = canvas_to_write(previous, c, self.canonical_size, w, kwargs.get("in_place", False))
        out[:, g.touched] = g.numerator(w) / g.den.to(w.dtype)
        return out.reshape(c, *self.canonical_shape).to(out_dtype)

    def coverage(self, views=None) -> torch.Tensor:
        """Texels some selected view writes (scatter) or is seen from (pull)."""
        covered = super().coverage(views)
        if self.pull is None:
            return covered
        taps = self._pull(views)
        seen = torch.zeros(self.canonical_size, dtype=torch.bool, device=covered.device)
        seen[taps.texel[taps.trust > 0].to(covered.device)] = True
        return covered | seen.reshape(self.canonical_shape)

    def rescaled(self, factor: int, texture_size: int | None = None) -> "MeshTextureProjector":
        """Same mesh and cameras with views ``factor`` times smaller (8 for SD latents).

        ``texture_size`` defaults to ``latent_texture_size`` when set, else ``self.texture_size // factor``
        (the paper uses a *larger* latent texture, 1536, than RGB texture, 1024).
        """
        if factor < 1 or self.view_hw[0] % factor or self.view_hw[1] % factor:
            raise ValueError(f"factor {factor} must divide the view size {self.view_hw}")
        size = texture_size if texture_size is not None else self.latent_texture_size
        size = size if size is not None else max(1, self.texture_size // factor)
        hw = (self.view_hw[0] // factor, self.view_hw[1] // factor)
        return MeshTextureProjector(
            self.mesh, self.rig, hw, size, None, self.cos_exponent, self.sampling, self.backend, unprojection=self.unprojection
        ).to(self.device)

    def view_groups(self) -> list[list[int]]:
        """The rig's StochSync groups when it has them, else the base class's greedy colouring."""
        return [list(g) for g in self.rig.groups] if self.rig.groups else super().view_groups()

    def fill(self, z: torch.Tensor, covered: torch.Tensor | None = None) -> torch.Tensor:
        """Voronoi fill (see base), with the nearest-texel index map cached per coverage pattern."""
        covered = self.coverage() if covered is None else covered
        mask = covered.detach().cpu().numpy().astype(bool).reshape(self.canonical_shape)
        if mask.all() or not mask.any():
            return z
        key = hashlib.blake2b(np.packbits(mask).tobytes(), digest_size=16).hexdigest()
        pairs = self._fill_cache.get(key)
        if pairs is None:
            pairs = voronoi_sources(mask)
            self._fill_cache[key] = pairs
            if len(self._fill_cache) > 8:
                self._fill_cache.popitem(last=False)
        self._fill_cache.move_to_end(key)
        return fill_from_sources(z, *pairs)

    def bake(self, w: torch.Tensor, previous: torch.Tensor | None = None, views=None) -> torch.Tensor:
        """Fuse views ``[n, C, h, w]`` into a complete texture ``[C, T, T]``: aggregate, then fill."""
        return self.fill(self.aggregate(w, previous, views))

    # ----------------------------------------------------------------------------------------------
    # conditioning renders (same geometry, this projector's resolution)
    def depth_maps(self, near_value: float = 1.0, far_value: float = 0.2) -> torch.Tensor:
        """``[N, 1, h, w]`` in [0, 1]: per view, nearest surface ``near_value``, farthest ``far_value``,
        background 0 (the MiDaS-style "near is bright" convention depth ControlNets were trained on)."""
        d, m = self.raster.depth, self.raster.mask
        big = torch.finfo(d.dtype).max
        lo = torch.where(m, d, torch.full_like(d, big)).flatten(1).min(1).values
        hi = torch.where(m, d, torch.full_like(d, -big)).flatten(1).max(1).values
        lo, hi = lo.view(-1, 1, 1), hi.view(-1, 1, 1)
        t = (d - lo) / (hi - lo).clamp_min(1e-8)
        out = torch.where(m, near_value + (far_value - near_value) * t, torch.zeros_like(d))
        return out.unsqueeze(1)

    def normal_maps(self) -> torch.Tensor:
        """``[N, 3, h, w]`` in [0, 1]: camera-space normals (x right, y up, z towards the camera) as
        ``0.5 n + 0.5``, the normal-ControlNet colour convention; background 0."""
        rot = torch.as_tensor(np.stack([c.rotation for c in self.rig]), dtype=torch.float32, device=self.raster.normal.device)  # cam -> world
        n_cam = torch.einsum("nhwk,nkj->nhwj", self.raster.normal, rot)  # world -> camera: R^T n
        img = torch.where(self.raster.mask.unsqueeze(-1), 0.5 * n_cam + 0.5, torch.zeros_like(n_cam))
        return img.permute(0, 3, 1, 2).contiguous()

    def masks(self) -> torch.Tensor:
        """``[N, 1, h, w]`` float: 1 where the view sees the mesh."""
        return self.raster.mask.unsqueeze(1).float()

    def render(self, texture: torch.Tensor, background: float = 1.0, views=None) -> torch.Tensor:
        """Textured views ``[n, C, h, w]`` with ``background`` where the mesh is not seen (previews)."""
        ids = self._view_ids(views)
        out = self.project(texture, ids)
        mask = self.raster.mask[ids.cpu()].unsqueeze(1).to(out.device)
        return torch.where(mask, out, torch.full_like(out, background))

    def describe(self) -> str:
        return (
            f"{super().describe()}, {self.mesh.n_faces} faces, cos^{self.cos_exponent:g}, "
            f"{self.unprojection} unprojection, {self.raster.backend} raster"
        )


def render_turntable(
    mesh: MeshData,
    texture: torch.Tensor,
    n_frames: int = 24,
    size: int = 512,
    elevation: float = 15.0,
    fov: float = 50.0,
    background: float = 1.0,
    backend: str = "auto",
) -> torch.Tensor:
    """Frames ``[n_frames, C, size, size]`` of the textured mesh turning once around the y axis.

    ``texture`` is ``[C, T, T]``; the camera distance is fitted so the whole mesh stays in frame.
    """
    from ..assets.cameras import turntable_rig

    if texture.dim() != 3 or texture.shape[1] != texture.shape[2]:
        raise ValueError(f"texture must be square [C, T, T], got shape {tuple(texture.shape)}")
    rig = turntable_rig(n_frames, elevation, fov, vertices=mesh.vertices)
    proj = MeshTextureProjector(mesh, rig, size, texture.shape[-1], cos_exponent=0.0, backend=backend, unprojection="scatter")
    return proj.render(texture.to(torch.float32), background=background)
