"""Names a user understands: readable sampler modes, search aliases, rarely used widgets marked advanced.

The samplers keep their short ids (``case_2``, ``stochsync``, ``ddr``...); the nodes show the labels below
and accept either, so saved workflows and API prompts written with the ids keep working.

Search aliases and the ``advanced`` flag exist only in newer ComfyUI versions (0.33.0 has both, 0.3.64
neither); ``decorate`` adds them to a node's schema where the running ComfyUI supports them and leaves
the schema as it is elsewhere.
"""

from __future__ import annotations

import dataclasses
import functools

MODE_LABELS = {
    "case_0": "No sync: views alone, fused once at the end (case 0)",
    "case_1": "SyncTweedies: noise eps in views (case 1)",
    "case_2": "SyncTweedies: x0 in views (case 2)",
    "case_3": "SyncTweedies: x_prev in views (case 3)",
    "case_4": "SyncTweedies: noise eps in canvas (case 4)",
    "case_5": "SyncTweedies: x0 in canvas (case 5)",
    "case_6": "SyncTweedies: x_prev in canvas (case 6)",
    "stochsync": "StochSync: max stochasticity, alternating view groups",
    "ddr": "DDR: least-squares fit of the canvas",
    "dde": "DDE: learned coordinator (averages without one)",
    "syncdiffusion": "SyncDiffusion: coherence guidance",
}
"""Sampler mode id -> what the mode combo shows (SyncTweedies Table 1's cases; the other papers' names)."""

MODE_IDS = {label: mode for mode, label in MODE_LABELS.items()}


class ChoicesWithAliases(list):
    """A combo's options (what the editor lists) plus ``aliases``: other values that mean one of them (the
    short ids older versions saved). The generic option check (``guards.check_inputs``) maps an alias to
    its option before checking."""

    def __init__(self, options=(), aliases: dict | None = None):  # dataclasses.asdict rebuilds it from options alone
        super().__init__(options)
        self.aliases = dict(aliases or {})


def mode_choices(modes: tuple[str, ...]) -> ChoicesWithAliases:
    """The labels of ``modes``, each mode id accepted as an alias of its label."""
    return ChoicesWithAliases([MODE_LABELS[m] for m in modes], {m: MODE_LABELS[m] for m in modes})


def mode_label(mode: str) -> str:
    """The label shown for a mode id (a label is returned as it is)."""
    return MODE_LABELS.get(mode, mode)


def mode_of(value: str) -> str:
    """The mode id of a combo value already checked (the node guard checks it against the options and their
    aliases, ``validate_inputs`` on the server): a label's id, an id as it is."""
    return MODE_IDS.get(value, value)


def mode_id(value: str, allowed: tuple[str, ...] | None = None) -> str:
    """The mode id of a combo value: a label or, as saved by older versions, the id itself.

    Raises a ValueError naming the value and listing the labels when it is neither (or not in ``allowed``)."""
    mode = MODE_IDS.get(value, value)
    if mode not in MODE_LABELS or (allowed is not None and mode not in allowed):
        choices = [MODE_LABELS[m] for m in (allowed or MODE_LABELS)]
        raise ValueError(f"unknown sampler mode {value!r}; expected one of: {'; '.join(choices)} "
                         f"(or their short ids {', '.join(allowed or MODE_LABELS)})")
    return mode


def mode_error(value, allowed: tuple[str, ...]) -> bool | str:
    """For a node's ``validate_inputs``: True, or the message for an unknown mode."""
    try:
        mode_id(value, allowed)
    except ValueError as err:
        return str(err)
    return True


SEARCH_ALIASES = {
    "SyncCanvas360Panorama": ["360", "equirectangular", "skybox", "spherical panorama", "VR"],
    "SyncCanvasWidePanorama": ["panorama", "wide image", "MultiDiffusion", "outpaint"],
    "SyncCanvasAnagram": ["anagram", "illusion", "visual anagrams", "ambiguous image", "flip illusion"],
    "SyncCanvasMultiplane": ["illusion", "multiplane"],
    "SyncCanvasKSampler": ["SyncTweedies", "StochSync", "multi-view", "panorama sampler", "texture"],
    "SyncCanvasSamplerSelect": ["SyncTweedies", "StochSync", "custom sampler"],
    "SyncCanvasLoadMesh": ["texture", "texturing", "mesh", "3D model", "glb", "obj"],
    "SyncCanvasMeshProjector": ["texture", "texturing", "UV", "mesh", "3D"],
    "SyncCanvasSaveTexturedMesh": ["texture", "glb", "export mesh", "3D"],
    "SyncCanvasMeshTurntable": ["texture", "turntable", "3D preview"],
    "SyncCanvasLoadSplat": ["gaussian splat", "3DGS", "ply"],
    "SyncCanvasSplatProjector": ["gaussian splat", "3DGS", "recolour"],
    "SyncCanvasSaveSplat": ["gaussian splat", "3DGS", "ply"],
    "SyncCanvasSaveImage": ["360", "equirectangular", "skybox", "panorama"],
    "SyncCanvasView360": ["360", "equirectangular", "skybox", "panorama viewer", "VR"],
    "SyncCanvasCrossViewAttention": ["SyncMVD", "consistent views", "multi-view attention"],
}
"""Node id -> words the node search also finds it by (newer ComfyUI: Schema.search_aliases)."""

ADVANCED_INPUTS = {
    "SyncCanvasKSampler": ["eta", "max_views_per_batch", "inner_steps", "rgb_every_step"],
    "SyncCanvasSamplerSelect": ["eta", "max_views_per_batch", "inner_steps"],
    "SyncCanvas360Panorama": ["pitch", "pole_views", "interpolation"],
    "SyncCanvasCrossViewAttention": ["reference_view", "reference_end", "max_neighbours"],
}
"""Node id -> inputs hidden under the node's "advanced" fold (newer ComfyUI: Input.advanced)."""


def supports_search_aliases() -> bool:
    from comfy_api.latest import io

    return "search_aliases" in {f.name for f in dataclasses.fields(io.Schema)}


def decorate(node_cls):
    """Wraps ``node_cls.define_schema`` so its schema gets the search aliases and advanced flags above,
    where the running ComfyUI has them. Idempotent."""
    if "_sync_canvas_names" in vars(node_cls):
        return node_cls
    original = node_cls.define_schema.__func__

    @functools.wraps(original)
    def define_schema(cls):
        schema = original(cls)
        aliases = SEARCH_ALIASES.get(schema.node_id)
        if aliases and hasattr(schema, "search_aliases"):
            schema.search_aliases = list(dict.fromkeys([*(schema.search_aliases or []), *aliases]))
        advanced = set(ADVANCED_INPUTS.get(schema.node_id, ()))
        for spec in schema.inputs or []:
            if spec.id in advanced and hasattr(spec, "advanced"):
                spec.advanced = True
        return schema

    node_cls.define_schema = classmethod(define_schema)
    node_cls._sync_canvas_names = True
    return node_cls
