"""Every node's inputs are checked against its schema before it runs (nodes/guards.py): junk choices are
refused with the options listed, NaN numbers and NaN latents/images are refused. Needs ComfyUI."""

import math
import os

import pytest
import torch

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH not set: ComfyUI node tests skipped"),
]


@pytest.fixture(scope="module")
def nodes(tiny):
    from sync_canvas.nodes import collect_nodes

    return {n.__name__: n for n in collect_nodes()}


def test_every_registered_node_is_guarded(nodes):
    for node in nodes.values():
        assert node.execute.__func__._sync_canvas_guarded, node.__name__


def test_guard_is_idempotent_and_keeps_positional_calls(nodes):
    from sync_canvas.nodes.guards import guard_node

    node = nodes["SyncCanvasWidePanorama"]
    assert guard_node(node) is node and node.execute.__func__.__wrapped__.__name__ == "execute"
    assert node.execute(1024, 512, 512, 256, False).args[0].n_views == 3


def test_junk_choice_lists_the_options(nodes):
    from sync_canvas.nodes.guards import InputError

    with pytest.raises(InputError, match=r"SyncCanvas 360 Panorama: rig='junk' is not one of its options: 'synctweedies', 'stochsync'"):
        nodes["SyncCanvas360Panorama"].execute(rig="junk", view_size=64, fov=72.0, pitch=0.0, pole_views=False, width=0, interpolation="nearest")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_float_is_refused(nodes, value):
    from sync_canvas.nodes.guards import InputError

    with pytest.raises(InputError, match=r"pitch=.* is not a finite number; give a number in \[-90.0, 90.0\]"):
        nodes["SyncCanvas360Panorama"].execute(rig="stochsync", view_size=64, fov=72.0, pitch=value, pole_views=False, width=0, interpolation="nearest")


def test_nan_latent_is_refused_before_sampling(nodes):
    from sync_canvas.nodes.guards import InputError

    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    latent["samples"][0, 0, 0, 0] = math.nan
    with pytest.raises(InputError, match=r"latent \(latent samples\) contains 1 non-finite values"):
        nodes["SyncCanvasProjectLatent"].execute(projector=None, latent=latent)


def test_a_failed_run_releases_what_it_allocated(tiny):
    """The exception keeps its traceback (ComfyUI formats it), but not the tensors of the frames that raised."""
    import weakref

    from comfy_api.latest import io

    from sync_canvas.nodes.guards import guard_node

    refs = []

    class Allocates(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="SyncCanvasTestAllocates", inputs=[io.Int.Input("n", default=1)], outputs=[])

        @classmethod
        def execute(cls, n):
            big = torch.zeros(n, 1024)
            refs.append(weakref.ref(big))
            raise RuntimeError("failed half-way")

    guard_node(Allocates)
    with pytest.raises(RuntimeError, match="failed half-way") as err:
        Allocates.execute(n=4096)
    assert err.value.__traceback__ is not None and refs[0]() is None
