"""What a run could change in a projector: every reachable tensor (device, dtype, shape, storage), every
container's contents and each attribute's identity. Shared by the device-contract tests."""

from __future__ import annotations

import dataclasses

import torch

from sync_canvas.projectors.base import Projector


def tensors_in(obj, path: str = "", seen: set | None = None, skip: tuple[str, ...] = ()):
    """(path, tensor) for every tensor reachable from ``obj`` through attributes, dataclass fields,
    dicts, lists and tuples (each object once). Paths in ``skip`` are not entered."""
    seen = set() if seen is None else seen
    if path in skip:
        return
    if isinstance(obj, torch.Tensor):
        yield path, obj
        return
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, dict):
        items = [(f"{path}[{k!r}]", v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple)):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
    elif dataclasses.is_dataclass(obj) or isinstance(obj, Projector):
        items = [(f"{path}.{k}" if path else k, v) for k, v in vars(obj).items()]
    else:
        return
    for sub_path, value in items:
        yield from tensors_in(value, sub_path, seen, skip)


def snapshot(obj) -> dict:
    """path -> (device, dtype, shape, storage) of every tensor reachable from ``obj``."""
    return {path: (t.device, t.dtype, tuple(t.shape), _storage(t)) for path, t in tensors_in(obj)}


def _storage(t: torch.Tensor) -> int | None:
    if t.device.type == "meta":
        return None
    return (t.values() if t.layout == torch.sparse_csr else t).untyped_storage().data_ptr()


def state_of(projector: Projector) -> dict:
    """Everything a run could change in a projector: each attribute's identity, and every reachable
    container's contents and tensor (device, dtype, shape, storage)."""
    return {"attributes": {k: id(v) for k, v in vars(projector).items()},
            "tensors": snapshot(projector),
            "containers": {path: repr(sorted(map(repr, obj.keys())) if isinstance(obj, dict) else len(obj))
                           for path, obj in containers_in(projector)}}


def containers_in(obj, path: str = "", seen: set | None = None):
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, torch.Tensor):
        return
    seen.add(id(obj))
    if isinstance(obj, (dict, list)):
        yield path, obj
    if isinstance(obj, dict):
        items = [(f"{path}[{k!r}]", v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple)):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
    elif dataclasses.is_dataclass(obj) or isinstance(obj, Projector):
        items = [(f"{path}.{k}", v) for k, v in vars(obj).items()]
    else:
        return
    for sub_path, value in items:
        yield from containers_in(value, sub_path, seen)
