"""Input checks every Sync Canvas node gets at its boundary, from its own schema, before ``execute`` runs.

ComfyUI checks min/max and combo values only for widget values in a prompt: JSON ``NaN`` passes its
``val < min`` tests, a linked input (a primitive or string node feeding a combo) is not checked at all,
and an in-process call is checked by nothing. So each node re-checks here, with one message format:
choices outside the options (listing them), non-finite numbers, floats out of range, non-integer ints
and ints above their maximum (an int's minimum stays ComfyUI's check: tests run nodes at sizes below the UI
minimum), non-finite latents, images and masks. ``guard_node`` wraps a node's ``execute``; every node module
calls ``guard_nodes(NODES)`` (the one place), and ``collect_nodes`` refuses a node that was not guarded.
The schema is read once per node class; file lists (``files.FileChoices``) are resolved by the nodes.
"""

from __future__ import annotations

import functools
import inspect
import math
import traceback

import torch

import comfy.model_management
from comfy_api.latest import io

from ..projectors.cancel import cancellation

from .files import FileChoices
from .memory_check import NotEnoughMemory, release_after_failure

MAX_LISTED_OPTIONS = 30  # file lists can be long: name the count beyond this


class InputError(ValueError):
    """A node input that cannot be used; the message names the node, the input, the value, what is expected."""


def _node_name(schema) -> str:
    return schema.display_name or schema.node_id


def _options_text(options) -> str:
    shown = ", ".join(repr(o) for o in list(options)[:MAX_LISTED_OPTIONS])
    more = f", ... ({len(options)} in all)" if len(options) > MAX_LISTED_OPTIONS else ""
    return shown + more


def check_choice(node: str, name: str, value, options) -> None:
    options = list(options)
    if value not in options:
        if not options:
            raise InputError(f"{node}: {name}={value!r} but there is nothing to choose from (no options)")
        raise InputError(f"{node}: {name}={value!r} is not one of its options: {_options_text(options)}")


def check_number(node: str, name: str, value, minimum=None, maximum=None, integer: bool = False) -> None:
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and isinstance(value, float) and not value.is_integer()):
        raise InputError(f"{node}: {name}={value!r} is not {kind}")
    bounds = (f" in [{minimum}, {maximum}]" if minimum is not None and maximum is not None
              else f" <= {maximum}" if maximum is not None else f" >= {minimum}" if minimum is not None else "")
    if not math.isfinite(value):
        raise InputError(f"{node}: {name}={value} is not a finite number; give {kind}{bounds}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise InputError(f"{node}: {name}={value} is out of range; give {kind}{bounds}")


def check_finite_tensor(node: str, name: str, tensor) -> None:
    if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise InputError(
            f"{node}: {name} contains {bad} non-finite values (NaN or infinity) out of {tensor.numel()}; "
            "check the node that made it"
        )


def check_inputs(schema, kwargs: dict) -> None:
    """Every input of ``schema`` present in ``kwargs`` checked against its declared type, options and range."""
    node = _node_name(schema)
    for spec in schema.inputs:
        value = kwargs.get(spec.id)
        if value is None:
            continue
        if isinstance(spec, io.Combo.Input) and spec.options is not None and not isinstance(spec.options, FileChoices):
            aliases = getattr(spec.options, "aliases", {})  # names.ChoicesWithAliases: ids saved by older versions
            check_choice(node, spec.id, aliases.get(value, value) if isinstance(value, str) else value, spec.options)
        elif isinstance(spec, io.Float.Input):
            check_number(node, spec.id, value, spec.min, spec.max)
        elif isinstance(spec, io.Int.Input):
            # sizes are integers by type and at most their max; the minimum is ComfyUI's to check (unit
            # tests use sizes below the UI minimum)
            check_number(node, spec.id, value, maximum=spec.max, integer=True)
        elif isinstance(spec, io.Latent.Input) and isinstance(value, dict):
            check_finite_tensor(node, f"{spec.id} (latent samples)", value.get("samples"))
        elif isinstance(spec, (io.Image.Input, io.Mask.Input)):
            check_finite_tensor(node, spec.id, value)


@functools.cache
def schema_of(node: type[io.ComfyNode]) -> io.Schema:
    """``node``'s schema, built once per class (a subclass may inherit a guarded execute): what changes while
    the server runs (file lists) is ``FileChoices``, resolved by the nodes, not checked from this cache."""
    return node.define_schema()


def is_guarded(node: type[io.ComfyNode]) -> bool:
    execute = node.__dict__.get("execute")
    return execute is not None and bool(getattr(execute, "__func__", execute).__dict__.get("_sync_canvas_guarded"))


def guard_node(node: type[io.ComfyNode]) -> type[io.ComfyNode]:
    """Wrap ``node.execute`` so that :func:`check_inputs` runs first (idempotent; returns ``node``)."""
    execute = node.__dict__.get("execute")
    if execute is None or is_guarded(node):
        return node
    inner = execute.__func__
    signature = inspect.signature(inner)

    @functools.wraps(inner)
    def guarded(cls, *args, **kwargs):
        check_inputs(schema_of(cls), signature.bind_partial(cls, *args, **kwargs).arguments)
        try:
            # long loops in projectors/ (rasterising, splat weights, CG, fills) stop on ComfyUI's Cancel
            with cancellation(comfy.model_management.throw_exception_if_processing_interrupted):
                return inner(cls, *args, **kwargs)
        except (InputError, NotEnoughMemory):
            raise  # refused before allocating: nothing to release (and a full gc can take a second)
        except BaseException as err:
            # a failed run must not keep its tensors: drop the locals of the frames that raised
            # (the message and line numbers stay), then collect and return the allocator cache
            traceback.clear_frames(err.__traceback__.tb_next if err.__traceback__ else None)
            release_after_failure()
            raise

    guarded._sync_canvas_guarded = True
    node.execute = classmethod(guarded)
    return node


def guard_nodes(nodes: list[type[io.ComfyNode]]) -> list[type[io.ComfyNode]]:
    """:func:`guard_node` on each; node modules call it on their ``NODES`` so in-process calls are checked too."""
    for node in nodes:
        guard_node(node)
    return nodes


def fractional_int_marker(nodes: list[type[io.ComfyNode]]):
    """An ``on_prompt`` handler for ComfyUI's server: ComfyUI converts an INT widget value with ``int(val)``,
    so an API prompt's 128.5 would silently become 128 before any node sees it. For this pack's nodes the
    handler replaces such a value by the text ``"128.5 (not an integer)"``, which ComfyUI's conversion then
    refuses with HTTP 400 ("Failed to convert an input value to a INT value: width, 128.5 (not an integer)")."""
    by_name = {node.__name__: node for node in nodes}

    def handler(json_data: dict) -> dict:
        for item in (json_data.get("prompt") or {}).values():
            node = by_name.get(item.get("class_type")) if isinstance(item, dict) else None
            if node is None:
                continue
            int_inputs = {spec.id for spec in schema_of(node).inputs if isinstance(spec, io.Int.Input)}
            values = item.get("inputs") or {}
            for name in int_inputs & values.keys():
                value = values[name]
                if isinstance(value, float) and math.isfinite(value) and not value.is_integer():
                    values[name] = f"{value!r} (not an integer)"
        return json_data

    return handler
