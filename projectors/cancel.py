"""Cancellation points for long loops outside model calls (rasterisation, splat weights, CG, fills).

Projectors import no ComfyUI, so they cannot ask it whether the user pressed Cancel. A node passes the
question in: ``with cancellation(callback): build()``; inside, ``check_cancel()`` calls ``callback``,
which raises to stop (ComfyUI's ``throw_exception_if_processing_interrupted``). Outside such a block it
does nothing. The callback travels in a context variable rather than through every builder's
arguments, so a loop anywhere under a node's call can check it. Checks cost one lookup plus the
callback; loops call it once per chunk (a camera, a slice of rays, a CG iteration), well under a second apart.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator, TypeVar

import torch

T = TypeVar("T")
POLL_SECONDS = 0.05

_callback: ContextVar[Callable[[], None] | None] = ContextVar("sync_canvas_cancel", default=None)


@contextmanager
def cancellation(callback: Callable[[], None] | None) -> Iterator[None]:
    """Within the block, :func:`check_cancel` calls ``callback`` (which raises to cancel)."""
    token = _callback.set(callback)
    try:
        yield
    finally:
        _callback.reset(token)


def check_cancel() -> None:
    """Raise whatever the installed callback raises when the run was cancelled; no-op without one."""
    callback = _callback.get()
    if callback is not None:
        callback()


def run_checked(fn: Callable[..., T], *args, **kwargs) -> T:
    """``fn(*args, **kwargs)`` for a library call that cannot check itself (scipy's distance transform: one
    call of seconds on a large canvas) but releases the GIL: run in a worker thread while this thread checks
    for cancellation every ``POLL_SECONDS``. On cancel the exception is raised at once; the worker finishes
    its call in the background and its result is dropped. Without a callback installed: a plain call."""
    if _callback.get() is None:
        return fn(*args, **kwargs)
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as err:  # handed to the caller's thread
            outcome["error"] = err

    worker = threading.Thread(target=work, name="sync-canvas-checked-call", daemon=True)
    worker.start()
    while worker.is_alive():
        check_cancel()
        worker.join(POLL_SECONDS)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def write_piece(whole, piece, fields, dim: int, start: int, total: int, make):
    """Copy a piece of a result built slice by slice (``piece``: an object with tensor ``fields``) into the
    whole, at ``start`` along ``dim``; on the first piece (``whole`` None) allocate the whole, each field
    ``total`` long along ``dim``, with ``make(*tensors)``. Builders check for cancellation between pieces
    and never concatenate at the end (a copy of everything that cannot be interrupted). Returns the whole."""
    if whole is None:
        def empty(t):
            return torch.empty((*t.shape[:dim], total, *t.shape[dim + 1 :]), dtype=t.dtype, device=t.device)

        whole = make(*(empty(getattr(piece, f)) for f in fields))
    for f in fields:
        src = getattr(piece, f)
        getattr(whole, f).narrow(dim, start, src.shape[dim]).copy_(src)
    return whole
