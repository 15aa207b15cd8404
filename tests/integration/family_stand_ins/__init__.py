"""Test-only ComfyUI nodes: tiny in-memory models of a family that stand in for its loader nodes.

Loaded by the integration tests' ComfyUI server beside the pack (never shipped in a user's ComfyUI).
ComfyUI 0.3.64 detects Flux only at its full width (hidden size 3072) and builds T5-XXL and CLIP-G from
fixed configs, so a file-based tiny Flux or SDXL workflow cannot run on a CPU test machine. The tests
instead swap each loader node of a shipped workflow for the stand-in below with the same outputs
(slot for slot) and run everything else - the pack's nodes, CLIPTextEncode, FluxGuidance, ControlNet,
ModelSamplingFlux, the VAE decode and the savers - as shipped, through a real ComfyUI server.
"""

import importlib.util
import pathlib

_TINY = pathlib.Path(__file__).resolve().parents[2] / "comfy_tiny.py"
_spec = importlib.util.spec_from_file_location("sync_canvas_comfy_tiny_stand_ins", _TINY)
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)

FAMILIES = list(tiny.FAMILIES)
CATEGORY = "testing/sync_canvas"
_CACHE: dict = {}


def _cached(key, make):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def _model(family):
    return _cached(("model", family), lambda: tiny.family_model(family))


def _vae(family):
    return _cached(("vae", family), lambda: tiny.tiny_vae(tiny.FAMILY_LATENT_CHANNELS[family]))


class _StandIn:
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"family": (FAMILIES,)}}


class TinyFamilyCheckpoint(_StandIn):
    """Stands in for CheckpointLoaderSimple."""
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"

    def load(self, family):
        return _model(family), tiny.FamilyTextEncoder(family), _vae(family)


class TinyFamilyDiffusionModel(_StandIn):
    """Stands in for UNETLoader."""
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"

    def load(self, family):
        return (_model(family),)


class TinyFamilyTextEncoders(_StandIn):
    """Stands in for DualCLIPLoader / CLIPLoader."""
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"

    def load(self, family):
        return (tiny.FamilyTextEncoder(family),)


class TinyFamilyVAE(_StandIn):
    """Stands in for VAELoader."""
    RETURN_TYPES = ("VAE",)
    FUNCTION = "load"

    def load(self, family):
        return (_vae(family),)


class TinyFamilyControlNet(_StandIn):
    """Stands in for ControlNetLoader."""
    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "load"

    def load(self, family):
        return (_cached(("controlnet", family), lambda: tiny.family_controlnet(family)),)


NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in (TinyFamilyCheckpoint, TinyFamilyDiffusionModel,
                                                      TinyFamilyTextEncoders, TinyFamilyVAE, TinyFamilyControlNet)}
# which stand-in replaces which loader (outputs slot for slot)
STAND_INS = {"CheckpointLoaderSimple": "TinyFamilyCheckpoint", "UNETLoader": "TinyFamilyDiffusionModel",
             "DualCLIPLoader": "TinyFamilyTextEncoders", "CLIPLoader": "TinyFamilyTextEncoders",
             "VAELoader": "TinyFamilyVAE", "ControlNetLoader": "TinyFamilyControlNet"}
