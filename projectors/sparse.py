"""The one CSR builder of the pack: the prebuilt sparse products of the splat weights (splat_weights.py)
and the mesh texture's unprojection (mesh_pull.py)."""

from __future__ import annotations

import warnings

import torch


def csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape) -> torch.Tensor:
    """A CSR tensor from its parts, invariants not re-checked (the builders below make them)."""
    with warnings.catch_warnings():  # "CSR support is in beta": the products used here are long stable
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, tuple(shape), device=values.device, check_invariants=False)


def csr_from_entries(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape,
                     rows_sorted: bool = False) -> torch.Tensor:
    """CSR ``shape`` matrix of the entries (rows ``[E]``, cols ``[E]`` int64, values ``[E]``); entries sharing
    a row keep their given order (a stable sort by row unless ``rows_sorted``), duplicates are kept (the
    products sum them). Indices are int32 wherever rows, columns and entries fit, which halves the index
    memory and reads of every later product."""
    n_rows, n_cols = int(shape[0]), int(shape[1])
    if not rows_sorted:
        order = torch.sort(rows, stable=True).indices
        rows, cols, values = rows[order], cols[order], values[order]
    index = torch.int32 if max(n_rows, n_cols, len(values) + 1) < 2**31 else torch.int64
    crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=values.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n_rows), 0)
    return csr(crow.to(index), cols.to(index), values, (n_rows, n_cols))
