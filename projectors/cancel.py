"""Cancellation points for long loops outside model calls (rasterisation, splat weights, CG, fills).

Projectors import no ComfyUI, so they cannot ask it whether the user pressed Cancel. A node passes the
question in: ``with cancellation(callback): build()``; inside, ``check_cancel()`` calls ``callback``,
which raises to stop (ComfyUI's ``throw_exception_if_processing_interrupted``). Outside such a block it
does nothing. The callback travels in a context variable rather than through every builder's
arguments, so a loop anywhere under a node's call can check it. Checks cost one lookup plus the
callback; loops call it once per chunk (a camera, a slice of rays, a CG iteration), well under a second apart.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

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
