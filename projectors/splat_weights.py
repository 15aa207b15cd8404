"""Compositing weights of a splat scene as CSR matrices over chunks of views (built by
``splat_render.compositing_weights``): every render ``F z``, spread ``F^T w`` and the fit's ``F^T W F z`` is a
sparse product over them.

Gaussians are numbered internally in a spatial (Morton) order of their centres (``order``): neighbouring
gaussians then share pixels, so a product's gathers of colour rows ``[G, C]`` and scatters into them hit
memory that is already in cache (real captures store splats in training order, not in space).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .base import working_dtype
from .cancel import check_cancel
from .sparse import csr, csr_from_entries

BLOCK_SAMPLES = 512  # entries per gaussian the preconditioner's pairs are summed over, about (``normal_blocks``)
MAX_BLOCK = 16  # gaussians per block of the fit's block-Jacobi preconditioner (``normal_blocks``), at most


@dataclass
class ViewChunk:
    """The compositing weights of views ``start:stop`` as two CSR matrices (int32 indices where they fit).

    forward ``[(stop-start)*P, G]`` (row ``(view - start) * P + pixel``) renders: ``F z``; transpose
    ``[G, (stop-start)*P]`` spreads back: ``F^T w``. Both are built once; every product is one
    ``torch.sparse.mm`` on the device the matrices live on (no per-call index copies).
    """

    start: int
    stop: int
    forward: torch.Tensor
    transpose: torch.Tensor
    _cast: dict = field(default_factory=dict, repr=False, compare=False)

    def matrix(self, transpose: bool, dtype: torch.dtype) -> torch.Tensor:
        """forward / transpose with values in ``dtype`` (float64 copies of the values cached on first use)."""
        base = self.transpose if transpose else self.forward
        if base.values().dtype == dtype:
            return base
        key = (transpose, dtype)
        if key not in self._cast:
            self._cast[key] = csr(base.crow_indices(), base.col_indices(), base.values().to(dtype), base.shape)
        return self._cast[key]

    def to(self, device) -> "ViewChunk":
        return ViewChunk(self.start, self.stop, self.forward.to(device), self.transpose.to(device))

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for m in (self.forward, self.transpose)
                   for t in (m.crow_indices(), m.col_indices(), m.values()))


@dataclass
class CompositingWeights:
    """Sparse compositing weights of N views, stored as CSR matrices over chunks of consecutive views.

    chunks: ``ViewChunk`` s covering views 0..N-1 in order (a chunk holds a bounded number of entries, so
    building and applying never holds more than a chunk's temporaries); per pixel: alpha ``[N, H*W]``
    (accumulated opacity) and depth ``[N, H*W]`` (expected camera z of the surface, sum w z / alpha;
    0 where alpha is 0). Entries are alpha_k T_k in (0, 1). order ``[G]`` (long, or None for the identity):
    the matrices' column j is gaussian ``order[j]`` (``spatial_order``); every method takes and returns
    gaussians in the caller's numbering.
    """

    chunks: list
    alpha: torch.Tensor
    depth: torch.Tensor
    height: int
    width: int
    n_gaussians: int
    order: torch.Tensor | None = None
    # geometry-only terms of the fit per view selection (SplatProjector._fixed_terms): a copy on the same
    # device starts with the original's entries and adds its own to a dict of its own
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    def _inward(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows ``[G, C]`` in the caller's numbering -> the matrices' column order."""
        return rows if self.order is None else rows.index_select(0, self.order)

    def _outward(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows ``[G, C]`` in the matrices' column order -> the caller's numbering."""
        if self.order is None:
            return rows
        return torch.empty_like(rows).index_copy_(0, self.order, rows)

    @property
    def n_views(self) -> int:
        return int(self.alpha.shape[0])

    @property
    def n_entries(self) -> int:
        return sum(int(c.forward.values().numel()) for c in self.chunks)

    @property
    def nbytes(self) -> int:
        """Bytes held: both CSR matrices of every chunk, alpha and depth."""
        return sum(c.nbytes for c in self.chunks) + sum(t.numel() * t.element_size() for t in (self.alpha, self.depth))

    @property
    def device(self) -> torch.device:
        return self.alpha.device

    def _chunk_of(self, i: int) -> ViewChunk:
        for c in self.chunks:
            if c.start <= i < c.stop:
                return c
        raise IndexError(f"view {i} out of range for {self.n_views} views")

    def view(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pixel, gaussian, weight) of view i as int64 / float, sorted by pixel."""
        c = self._chunk_of(i)
        p = self.height * self.width
        crow = c.forward.crow_indices()[(i - c.start) * p : (i - c.start + 1) * p + 1].long()
        s, e = int(crow[0]), int(crow[-1])
        pixel = torch.repeat_interleave(torch.arange(p, device=crow.device), crow.diff())
        gaussian = c.forward.col_indices()[s:e].long()
        return pixel, gaussian if self.order is None else self.order[gaussian], c.forward.values()[s:e]

    def to(self, device) -> "CompositingWeights":
        same = self.alpha.to(device).device == self.device
        return CompositingWeights([c.to(device) for c in self.chunks], self.alpha.to(device), self.depth.to(device),
                                  self.height, self.width, self.n_gaussians,
                                  None if self.order is None else self.order.to(device), dict(self.cache) if same else {})

    def _groups(self, views) -> list[tuple[ViewChunk, list[int], list[int]]]:
        """(chunk, positions in ``views``, views) for each chunk the selection touches."""
        ids = range(self.n_views) if views is None else [int(v) for v in views]
        out = []
        for c in self.chunks:
            pos = [k for k, v in enumerate(ids) if c.start <= v < c.stop]
            if pos:
                out.append((c, pos, [ids[k] for k in pos]))
        return out

    def render(self, colors: torch.Tensor, views=None) -> torch.Tensor:
        """F z: colours ``[C, G]`` -> ``[n, C, H, W]`` (background 0); float32 unless colours are float64."""
        n = self.n_views if views is None else len(views)
        work = working_dtype(colors.dtype)
        rows = self._inward(colors.to(work).T).contiguous()  # [G, C]
        p, ch = self.height * self.width, colors.shape[0]
        out = torch.empty(n, p, ch, dtype=work, device=colors.device)
        for c, pos, ids in self._groups(views):
            check_cancel()  # a product per chunk of views: the fit's setup and CG steps stop between them
            mat = c.matrix(False, work)
            if ids == list(range(c.start, c.stop)):  # the whole chunk: one product
                out[pos[0] : pos[0] + len(pos)] = (mat @ rows).reshape(len(pos), p, ch)
                continue
            crow, col, val = mat.crow_indices(), mat.col_indices(), mat.values()
            for k, v in zip(pos, ids):  # a row slice of the chunk: no copy but the row pointers
                r0 = (v - c.start) * p
                s, e = int(crow[r0]), int(crow[r0 + p])
                out[k] = csr(crow[r0 : r0 + p + 1] - s, col[s:e], val[s:e], (p, self.n_gaussians)) @ rows
        return out.permute(0, 2, 1).reshape(n, ch, self.height, self.width).to(colors.dtype)

    def spread(self, w: torch.Tensor, views=None, squared: bool = False) -> torch.Tensor:
        """F^T w: views ``[n, C, H, W]`` -> ``[C, G]``; ``squared`` uses the squared weights (diag(F^T W F)).

        A chunk only partly selected is multiplied with zero rows for its other views."""
        work = working_dtype(w.dtype)
        p, ch = self.height * self.width, w.shape[1]
        rows = w.to(work).reshape(w.shape[0], ch, p).transpose(1, 2)  # [n, P, C]
        out = torch.zeros(self.n_gaussians, ch, dtype=work, device=w.device)
        for c, pos, ids in self._groups(views):
            check_cancel()
            mat = c.matrix(True, work)
            if squared:
                mat = csr(mat.crow_indices(), mat.col_indices(), mat.values() ** 2, mat.shape)
            if ids == list(range(c.start, c.stop)):
                block = rows[pos[0] : pos[0] + len(pos)].reshape(-1, ch)
            else:
                block = torch.zeros(c.stop - c.start, p, ch, dtype=work, device=w.device)
                block.index_add_(0, torch.tensor(ids, device=w.device) - c.start, rows[pos])
                block = block.reshape(-1, ch)
            out += mat @ block
        return self._outward(out).T.to(w.dtype)

    def normal(self, colors: torch.Tensor, views=None) -> torch.Tensor:
        """F^T W F z: colours ``[C, G]`` -> ``[C, G]``, W the pixels' alpha (the splat fit's operator).

        Applied chunk by chunk in the CSR layout (pixel rows ``[chunk pixels, C]``, weighted in place), so
        a product holds one chunk's rendered pixels, never all views' images nor their ``[n, C, H, W]``
        copies. A chunk only partly selected is rendered with its other views' rows weighted 0."""
        work = working_dtype(colors.dtype)
        rows = self._inward(colors.to(work).T).contiguous()  # [G, C]
        out = torch.zeros_like(rows)
        for c, _, ids in self._groups(views):
            check_cancel()  # a CG iteration is one pass over the chunks: it stops between them
            pw = self.alpha[c.start : c.stop]
            if ids != list(range(c.start, c.stop)):
                pw = torch.zeros_like(pw).index_copy_(0, torch.tensor(ids, device=pw.device) - c.start,
                                                      pw[torch.tensor(ids, device=pw.device) - c.start])
            pixels = c.matrix(False, work) @ rows
            pixels *= pw.reshape(-1, 1).to(work)
            out += c.matrix(True, work) @ pixels
        return self._outward(out).T.to(colors.dtype)


    def block_size(self) -> int:
        """The preconditioner's block: the largest power of two up to ``MAX_BLOCK`` whose blocks (4 b^2 bytes
        per gaussian) take at most half the weights' bytes (16 for RGB views, 8 for a million splats' latent
        twin). Measured (100k splats, 16 views of 256^2, five warm steps): 30/13/17/14/3 CG iterations with
        8, 16/14/13/11/3 with 16, against 30/30/29/25/7 for plain Jacobi."""
        b = MAX_BLOCK
        while b > 1 and 4 * b * b * self.n_gaussians > self.nbytes // 2:
            b //= 2
        return b

    def normal_blocks(self, views=None, block: int | None = None, slice_entries: int = 1 << 22,
                      stride: int | None = None) -> torch.Tensor:
        """The diagonal blocks of F^T W F in the matrices' column order: ``[ceil(G/block), block, block]``
        float32 (a preconditioner's accuracy is plenty), block k coupling columns ``k*block .. k*block+block-1``
        (the block-Jacobi preconditioner of the splat fit, ``solve.BlockJacobi``; ``block=1`` is the Jacobi
        diagonal; ``None``: ``block_size()``).

        Entry (a, b) of a block sums W_p F_pa F_pb over the pixels p where both gaussians are composited:
        each pixel row's entries are grouped by block and every pair within a group is added. Columns are
        Morton-ordered, so a block holds gaussians close in 3-D, the ones that share pixels and whose
        colours the views tell apart worst. Rows are taken ``slice_entries`` entries at a time, which
        bounds the pair temporaries.

        stride: the pairs are summed over one pixel row in ``stride`` (hashed, so no image column is
        skipped throughout) and each block rescaled to the exact diagonal (S B S, S diagonal: still
        positive semi-definite); ``None``: enough rows for about ``BLOCK_SAMPLES`` entries per gaussian
        (1 for latent views; large splats at 512^2 have thousands of entries each, and a 6000-splat scene
        at 50 views of 512^2 spent 38 s on exact blocks, 4 s on the diagonal alone). Measured (CG to 1e-5,
        1000 splats, 8 views of 128^2, 1666 entries each): 41 iterations with exact blocks, 40 / 40 / 42
        with strides 2 / 4 / 8, 69 with the Jacobi diagonal; with only ~100 entries per gaussian sampled
        the blocks get worse than the diagonal, hence the target of 512."""
        block = self.block_size() if block is None else int(block)
        n_blocks = -(-self.n_gaussians // block)
        groups = self._groups(views)
        if stride is None:
            selected = sum(c.forward.values().numel() * len(ids) / (c.stop - c.start) for c, _, ids in groups)
            stride = max(1, int(selected // (BLOCK_SAMPLES * max(self.n_gaussians, 1)))) if block > 1 else 1
        out = torch.zeros(n_blocks * block * block, dtype=torch.float32, device=self.device)
        exact = torch.zeros(n_blocks * block, dtype=torch.float32, device=self.device) if stride > 1 else None
        p = self.height * self.width
        for c, _, ids in groups:
            pw = torch.zeros(c.stop - c.start, p, device=self.device)
            local = torch.tensor(ids, device=self.device) - c.start
            pw[local] = self.alpha[c.start : c.stop][local]
            pw = pw.reshape(-1)
            crow = c.forward.crow_indices()
            row0 = 0
            while row0 < len(crow) - 1:
                check_cancel()
                # the rows whose entries fit in one slice (at least one row)
                row1 = max(row0 + 1, int(torch.searchsorted(crow, crow[row0] + slice_entries, right=True)) - 1)
                row1 = min(row1, len(crow) - 1)
                s, e = int(crow[row0]), int(crow[row1])
                if e > s:
                    row = torch.repeat_interleave(torch.arange(row0, row1, device=self.device),
                                                  crow[row0 : row1 + 1].diff().long())
                    col, val = c.forward.col_indices()[s:e].long(), c.forward.values()[s:e].float()
                    if exact is not None:
                        exact.index_add_(0, col, val * val * pw.index_select(0, row))
                        keep = torch.nonzero(((row * 2654435761) % (1 << 32) >> 8) % stride == 0).squeeze(1)
                        row, col, val = row.index_select(0, keep), col.index_select(0, keep), val.index_select(0, keep)
                    _add_pairs(out, row, col, val, pw, n_blocks, block)
                row0 = row1
        blocks = out.reshape(n_blocks, block, block)
        if exact is not None:  # S B S with S = sqrt(exact / sampled diagonal); unsampled gaussians: exact diagonal
            sampled = blocks.diagonal(dim1=1, dim2=2)
            exact = exact.reshape(n_blocks, block)
            scale = torch.where(sampled > 0, (exact / sampled.clamp_min(1e-30)).sqrt(), torch.zeros_like(sampled))
            blocks *= scale.unsqueeze(2) * scale.unsqueeze(1)
            blocks.diagonal(dim1=1, dim2=2).copy_(exact)
        return blocks


def _add_pairs(out, row, col, val, row_weight, n_blocks: int, block: int) -> None:
    """Adds W_row * val_a * val_b into ``out`` (flat ``[n_blocks, block, block]``) for every pair (a, b) of
    entries (row ``[E]`` ascending, col ``[E]``, val ``[E]``) sharing a row and a column block.

    Sorted by (block, row), a group's entries are contiguous, so the pairs m apart are where the key
    equals the key m places on, for m up to the longest group (<= block); block-major, the scatter into
    ``out`` walks it in order instead of jumping between blocks."""
    val = val * row_weight.index_select(0, row).sqrt()  # rows ascending: a sequential read
    lane = col % block
    out.index_add_(0, (col - lane) * block + lane * (block + 1), val * val)  # the diagonal: a = b
    if block == 1:
        return
    key, order = torch.sort(col // block * int(row_weight.numel()) + row)
    col, val = col.index_select(0, order), val.index_select(0, order)
    first = torch.nonzero(key[1:] == key[:-1]).squeeze(1)
    for m in range(1, block):
        if m > 1:  # a pair m apart starts where one m - 1 apart does (the key is sorted): candidates shrink
            first = first[: int(torch.searchsorted(first, len(key) - m))]  # those with an entry m on
            first = first.index_select(0, torch.nonzero(key.index_select(0, first + m) == key.index_select(0, first)).squeeze(1))
        if len(first) == 0:
            break
        a, b = col.index_select(0, first), col.index_select(0, first + m)
        prod = val.index_select(0, first) * val.index_select(0, first + m)
        lane_a, lane_b = a % block, b % block
        at = (a - lane_a) * block
        out.index_add_(0, torch.cat([at + lane_a * block + lane_b, at + lane_b * block + lane_a]), torch.cat([prod, prod]))


def _build_chunk(start: int, parts: list, p: int, g: int) -> ViewChunk:
    """CSR forward and transpose of consecutive views' (pixel, gaussian, weight) lists (pixel-sorted)."""
    rows = torch.cat([pix + k * p for k, (pix, _, _) in enumerate(parts)])
    cols = torch.cat([gid for _, gid, _ in parts])
    vals = torch.cat([wt for _, _, wt in parts])
    n_rows = len(parts) * p
    forward = csr_from_entries(rows, cols, vals, (n_rows, g), rows_sorted=True)
    check_cancel()
    # the stable sort by gaussian keeps each gaussian's pixel rows ascending
    transpose = csr_from_entries(cols, rows, vals, (g, n_rows))
    check_cancel()
    return ViewChunk(start, start + len(parts), forward, transpose)


def spatial_order(means: torch.Tensor, bits: int = 10) -> torch.Tensor:
    """``[G]`` long: the gaussians sorted along a Morton (z-order) curve through their centres ``[G, 3]``
    on a ``2^bits``-cell grid per axis over the scene's bounding box (``CompositingWeights.order``)."""
    lo, hi = means.min(0).values, means.max(0).values
    cell = ((means - lo) / (hi - lo).clamp_min(1e-12) * (2**bits - 1)).round().long()
    code = torch.zeros(len(means), dtype=torch.long, device=means.device)
    for b in range(bits):  # interleave the bits: x_b y_b z_b at positions 3b, 3b+1, 3b+2
        for axis in range(3):
            code |= ((cell[:, axis] >> b) & 1) << (3 * b + axis)
    return torch.argsort(code, stable=True)
