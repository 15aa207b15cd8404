"""Without ComfyUI: the shipped workflow files are well formed, and the workflow tools used by the
integration tests and scripts/run_workflow.py catch what they claim to catch.

The node definitions below are a hand-written excerpt of ComfyUI 0.3.64's /object_info (same shapes).
"""

from __future__ import annotations

import copy
import json
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from run_workflow import default_models, demo_model_available, demo_prompts, prepare_graph  # noqa: E402
from workflow_format import (diff_api_graphs, estimated_node_size, is_api_graph, is_ui_workflow,  # noqa: E402
                             overlapping_nodes, shipped_workflows, ui_to_api, validate_ui_workflow, widget_layout)

OBJECT_INFO = {
    "CheckpointLoaderSimple": {
        "input": {"required": {"ckpt_name": [["a.safetensors"], {}]}}, "input_order": {"required": ["ckpt_name"]},
        "output": ["MODEL", "CLIP", "VAE"]},
    "CLIPTextEncode": {
        "input": {"required": {"text": ["STRING", {"multiline": True}], "clip": ["CLIP", {}]}},
        "input_order": {"required": ["text", "clip"]}, "output": ["CONDITIONING"]},
    "KSampler": {
        "input": {"required": {
            "model": ["MODEL", {}], "seed": ["INT", {"default": 0, "min": 0, "control_after_generate": True}],
            "steps": ["INT", {"default": 20, "min": 1}], "cfg": ["FLOAT", {"default": 8.0}],
            "sampler_name": [["euler", "ddim"], {}], "scheduler": ["COMBO", {"options": ["normal", "karras"]}],
            "positive": ["CONDITIONING", {}], "negative": ["CONDITIONING", {}], "latent_image": ["LATENT", {}],
            "denoise": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0}]}},
        "input_order": {"required": ["model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive",
                                     "negative", "latent_image", "denoise"]},
        "output": ["LATENT"]},
    "EmptyLatentImage": {
        "input": {"required": {"width": ["INT", {"default": 512}], "height": ["INT", {"default": 512}],
                               "batch_size": ["INT", {"default": 1}]}},
        "input_order": {"required": ["width", "height", "batch_size"]}, "output": ["LATENT"]},
}


def _ui_node(node_id, type_, order, inputs=(), outputs=(), widgets=None, mode=0):
    node = {"id": node_id, "type": type_, "pos": [0, 0], "size": [200, 100], "flags": {}, "order": order,
            "mode": mode, "properties": {}, "inputs": [dict(i) for i in inputs], "outputs": [dict(o) for o in outputs]}
    if widgets is not None:
        node["widgets_values"] = widgets
    return node


def small_ui_workflow() -> dict:
    """checkpoint -> 2 prompts, empty latent -> KSampler, as the graph editor saves it."""
    return {
        "last_node_id": 5, "last_link_id": 6, "version": 0.4, "groups": [], "config": {}, "extra": {},
        "nodes": [
            _ui_node(1, "CheckpointLoaderSimple", 0, outputs=[
                {"name": "MODEL", "type": "MODEL", "links": [1], "slot_index": 0},
                {"name": "CLIP", "type": "CLIP", "links": [2, 3], "slot_index": 1},
                {"name": "VAE", "type": "VAE", "links": None, "slot_index": 2}], widgets=["my.safetensors"]),
            _ui_node(2, "CLIPTextEncode", 1, inputs=[{"name": "clip", "type": "CLIP", "link": 2}],
                     outputs=[{"name": "CONDITIONING", "type": "CONDITIONING", "links": [4]}], widgets=["a lake"]),
            _ui_node(3, "CLIPTextEncode", 2, inputs=[{"name": "clip", "type": "CLIP", "link": 3}],
                     outputs=[{"name": "CONDITIONING", "type": "CONDITIONING", "links": [5]}], widgets=[""]),
            _ui_node(4, "EmptyLatentImage", 3, outputs=[{"name": "LATENT", "type": "LATENT", "links": [6]}],
                     widgets=[512, 256, 1]),
            _ui_node(5, "KSampler", 4, inputs=[
                {"name": "model", "type": "MODEL", "link": 1}, {"name": "positive", "type": "CONDITIONING", "link": 4},
                {"name": "negative", "type": "CONDITIONING", "link": 5}, {"name": "latent_image", "type": "LATENT", "link": 6},
            ], outputs=[{"name": "LATENT", "type": "LATENT", "links": []}],
                widgets=[42, "randomize", 30, 7.5, "ddim", "karras", 1.0]),
        ],
        "links": [[1, 1, 0, 5, 0, "MODEL"], [2, 1, 1, 2, 0, "CLIP"], [3, 1, 1, 3, 0, "CLIP"],
                  [4, 2, 0, 5, 1, "CONDITIONING"], [5, 3, 0, 5, 2, "CONDITIONING"], [6, 4, 0, 5, 3, "LATENT"]],
    }


SMALL_API = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "my.safetensors"}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lake", "clip": ["1", 1]}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
    "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 256, "batch_size": 1}},
    "5": {"class_type": "KSampler", "inputs": {
        "model": ["1", 0], "seed": 42, "steps": 30, "cfg": 7.5, "sampler_name": "ddim", "scheduler": "karras",
        "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0], "denoise": 1.0}},
}


def test_widget_layout_counts_the_seed_control_value():
    assert widget_layout(OBJECT_INFO["KSampler"]) == [
        ("seed", 2), ("steps", 1), ("cfg", 1), ("sampler_name", 1), ("scheduler", 1), ("denoise", 1)]


def test_valid_ui_workflow_has_no_problems_and_converts_to_its_api_twin():
    ui = small_ui_workflow()
    assert validate_ui_workflow(ui, OBJECT_INFO) == []
    assert diff_api_graphs(ui_to_api(ui, OBJECT_INFO), SMALL_API) == []


def test_widget_values_missing_the_seed_control_are_caught():
    ui = small_ui_workflow()
    ui["nodes"][4]["widgets_values"] = [42, 30, 7.5, "ddim", "karras", 1.0]  # no "randomize" after the seed
    problems = validate_ui_workflow(ui, OBJECT_INFO)
    assert any("widgets_values has 6 values, KSampler has 7" in p for p in problems), problems


def test_widget_values_in_the_wrong_order_are_caught():
    ui = small_ui_workflow()
    ui["nodes"][4]["widgets_values"] = [42, "randomize", 7.5, 30, "ddim", "karras", 1.0]  # cfg and steps swapped
    problems = validate_ui_workflow(ui, OBJECT_INFO)
    assert any("'steps' got 7.5" in p for p in problems), problems


@pytest.mark.parametrize("breakage, expected", [
    (lambda ui: ui["links"][0].__setitem__(4, 1), "inputs[1].link is not 1"),
    (lambda ui: ui["nodes"][0]["outputs"][1]["links"].remove(3), "not listed in node 1 outputs[1].links"),
    (lambda ui: ui["links"][5].__setitem__(5, "IMAGE"), "type IMAGE but node 4 output 0 is LATENT"),
    (lambda ui: ui.pop("last_link_id"), "missing required key 'last_link_id'"),
    (lambda ui: ui["nodes"][2].pop("order"), "field 'order' missing"),
    (lambda ui: ui["nodes"][3].__setitem__("type", "NoSuchNode"), "not registered in /object_info"),
    (lambda ui: ui["nodes"][4]["inputs"][3].__setitem__("link", None), "input 'latent_image' is not connected"),
])
def test_broken_ui_workflows_are_caught(breakage, expected):
    ui = small_ui_workflow()
    breakage(ui)
    problems = validate_ui_workflow(ui, OBJECT_INFO)
    assert any(expected in p for p in problems), problems


def test_converter_follows_reroutes_drops_muted_and_wires_through_bypassed_nodes():
    ui = small_ui_workflow()
    # Reroute between the positive prompt and the sampler.
    ui["nodes"].append(_ui_node(6, "Reroute", 5, inputs=[{"name": "", "type": "*", "link": 7}],
                                outputs=[{"name": "", "type": "CONDITIONING", "links": [4]}]))
    ui["links"][3] = [4, 6, 0, 5, 1, "CONDITIONING"]
    ui["links"].append([7, 2, 0, 6, 0, "CONDITIONING"])
    ui["nodes"][1]["outputs"][0]["links"] = [7]
    ui["last_node_id"], ui["last_link_id"] = 6, 7
    ui["nodes"][2]["mode"] = 4  # bypassed negative prompt: no CONDITIONING input to pass through
    api = ui_to_api(ui, OBJECT_INFO)
    assert api["5"]["inputs"]["positive"] == ["2", 0]
    assert "3" not in api and "negative" not in api["5"]["inputs"]
    assert validate_ui_workflow(ui, OBJECT_INFO) == []


def test_graph_diff_names_the_differing_input():
    other = copy.deepcopy(SMALL_API)
    other["5"]["inputs"]["cfg"] = 8.0
    other["2"]["inputs"]["clip"] = ["1", 0]
    assert sorted(diff_api_graphs(SMALL_API, other)) == [
        "node 2 (CLIPTextEncode).clip: ['1', 1] != ['1', 0]", "node 5 (KSampler).cfg: 7.5 != 8.0"]


def test_prepare_graph_retargets_models_and_fast_shrinks_with_a_change_list():
    graph = copy.deepcopy(SMALL_API)
    graph["6"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "depth.safetensors"}}
    graph["7"] = {"class_type": "SyncCanvasWidePanorama",
                  "inputs": {"width": 3072, "height": 512, "window": 512, "stride": 64, "wrap": False}}
    out, changes = prepare_graph(graph, fast=True)
    assert graph == {**SMALL_API, "6": graph["6"], "7": graph["7"]}, "the input graph must not change"
    assert out["1"]["inputs"]["ckpt_name"] == default_models()[0]
    assert out["6"]["inputs"]["control_net_name"] == default_models()[1]
    assert out["5"]["inputs"]["steps"] == 2 and out["5"]["inputs"]["seed"] == 42
    assert (out["4"]["inputs"]["width"], out["4"]["inputs"]["height"]) == (64, 64)
    pano = out["7"]["inputs"]
    assert (pano["width"], pano["height"], pano["window"], pano["stride"]) == (192, 64, 64, 32)
    assert (pano["width"] - pano["window"]) // pano["stride"] + 1 == 5  # a handful of views
    assert len(changes) == 9 + demo_model_available() and "node 7 (SyncCanvasWidePanorama).width: 3072 -> 192" in changes


def test_default_model_is_the_demo_model_when_its_weights_ship():
    assert demo_model_available(), "assets/weights/sync_canvas_demo_unet.safetensors is missing"
    assert default_models() == ("sync_canvas_demo_landscapes.safetensors", "sync_canvas_demo_controlnet.safetensors")


def test_demo_prompts_point_positive_prompts_at_the_demo_classes_and_leave_negatives():
    graph = copy.deepcopy(SMALL_API)
    graph["3"]["inputs"]["text"] = "blurry, lowres"
    graph["8"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "snowy alps at dawn", "clip": ["1", 1]}}
    graph["9"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "an oil painting of a duck", "clip": ["1", 1]}}
    changes = demo_prompts(graph)
    assert graph["2"]["inputs"]["text"] == "a snowy mountain landscape, wide panorama"
    assert graph["9"]["inputs"]["text"] == "an ocean coast at noon"  # the next class: anagram prompts differ
    assert graph["3"]["inputs"]["text"] == "blurry, lowres" and graph["8"]["inputs"]["text"] == "snowy alps at dawn"
    assert len(changes) == 2 and "'a lake' -> 'a snowy mountain landscape, wide panorama'" in changes[0]


def test_demo_size_runs_the_demo_model_at_its_training_size():
    graph = {"1": {"class_type": "SyncCanvasWidePanorama", "inputs": {"width": 3072, "height": 512, "window": 512, "stride": 64, "wrap": False}},
             "2": {"class_type": "SyncCanvasKSampler", "inputs": {"steps": 50, "seed": 0}},
             "3": {"class_type": "SyncCanvas360Panorama", "inputs": {"view_size": 512, "width": 2048}}}
    out, _ = prepare_graph(graph, checkpoint="x.safetensors", demo_size=True)
    pano = out["1"]["inputs"]
    assert (pano["width"], pano["height"], pano["window"], pano["stride"]) == (768, 256, 256, 128)
    assert out["2"]["inputs"]["steps"] == 12 and out["3"]["inputs"] == {"view_size": 256, "width": 1024}


def test_prepare_graph_keeps_user_models_and_sizes_without_fast():
    out, changes = prepare_graph(SMALL_API, checkpoint="mine.safetensors")
    assert out["1"]["inputs"]["ckpt_name"] == "mine.safetensors"
    assert changes == ["node 1 (CheckpointLoaderSimple).ckpt_name: my.safetensors -> mine.safetensors"]


# -- the shipped files: templates in example_workflows/, API twins in workflows/api/ ---------------------
SHIPPED = shipped_workflows(REPO)
_ids = [e["id"] for e in SHIPPED] or None
_no_shipped = pytest.mark.skipif(not SHIPPED, reason="workflows/meta/catalog.json lists no workflows yet")


@_no_shipped
@pytest.mark.parametrize("entry", SHIPPED, ids=_ids)
def test_shipped_workflow_is_a_ui_template_with_an_api_twin(entry):
    ui, api = json.loads(entry["ui"].read_text()), json.loads(entry["api"].read_text())
    assert entry["ui"].parent == REPO / "example_workflows" and entry["ui"].stem == entry["title"]
    assert entry["api"].parent == REPO / "workflows" / "api"
    assert is_ui_workflow(ui) and is_api_graph(api)
    link_problems = [p for p in validate_ui_workflow(ui, object_info={}) if "not registered in /object_info" not in p]
    assert not link_problems, link_problems
    assert {n["type"] for n in ui["nodes"]} == {n["class_type"] for n in api.values()}


def test_comfyui_lists_only_ui_templates_each_with_a_thumbnail():
    """ComfyUI's /workflow_templates lists every <pack>/{example_workflows,example,examples,workflow,workflows}/*.json;
    the frontend shows the file name as the title and <name>.jpg as the thumbnail."""
    listed = [p for folder in ("example_workflows", "example", "examples", "workflow", "workflows")
              for p in (REPO / folder).glob("*.json")]
    assert listed and all(p.parent.name == "example_workflows" for p in listed), listed
    assert sorted(listed) == sorted(e["ui"] for e in SHIPPED), "every template is in the catalog and vice versa"
    from PIL import Image

    for path in listed:
        assert is_ui_workflow(json.loads(path.read_text())), f"{path.name} is listed as a template but is not a UI workflow"
        assert "_" not in path.stem, f"{path.name}: the title is the file name; make it readable"
        thumbnail = path.with_suffix(".jpg")
        assert thumbnail.is_file(), f"{path.name} has no thumbnail {thumbnail.name}"
        with Image.open(thumbnail) as picture:
            assert picture.format == "JPEG" and picture.width >= 256 and picture.height >= 192
            grey = picture.convert("L")
            assert max(grey.getextrema()) - min(grey.getextrema()) > 64, f"{thumbnail.name} is blank"
    strays = sorted(p.name for p in (REPO / "example_workflows").iterdir() if p.suffix not in (".json", ".jpg"))
    assert not strays, strays


@_no_shipped
@pytest.mark.parametrize("entry", SHIPPED, ids=_ids)
def test_no_two_nodes_overlap_in_the_editor(entry):
    ui = json.loads(entry["ui"].read_text())
    assert overlapping_nodes(ui) == []


@_no_shipped
@pytest.mark.parametrize("entry", SHIPPED, ids=_ids)
def test_reports_and_pictures_reach_a_display_node(entry):
    """A STRING or IMAGE output left unconnected is a report or picture the user never sees."""
    ui = json.loads(entry["ui"].read_text())
    lost = [f"node {n['id']} ({n['type']}).{o['name']}" for n in ui["nodes"] for o in n["outputs"]
            if o["type"] == "STRING" and not o.get("links")]
    assert not lost, lost


@_no_shipped
@pytest.mark.parametrize("entry", SHIPPED, ids=_ids)
def test_every_equirectangular_result_can_be_looked_around_in(entry):
    """An image saved tagged equirectangular is a 360 result: the same image also feeds the 360 viewer."""
    ui = json.loads(entry["ui"].read_text())
    source = {link[0]: (link[1], link[2]) for link in ui["links"]}
    def sources(node_type, **widgets):
        return {source[i["link"]] for n in ui["nodes"] if n["type"] == node_type
                and all(v in n["widgets_values"] for v in widgets.values()) for i in n["inputs"] if i["name"] == "images"}
    equirect = sources("SyncCanvasSaveImage", projection="equirectangular")
    assert equirect <= sources("SyncCanvasView360"), f"no 360 viewer on {equirect - sources('SyncCanvasView360')}"


def test_overlap_check_catches_what_the_editor_would_draw_on_top():
    ui = small_ui_workflow()
    for i, node in enumerate(ui["nodes"]):
        node["pos"] = [400 * i, 100]
    assert overlapping_nodes(ui) == []
    ui["nodes"][2]["pos"] = [ui["nodes"][1]["pos"][0], 100 + 120]  # second prompt under the first, too close
    problems = overlapping_nodes(ui)
    assert len(problems) == 1 and "node 2" in problems[0] and "node 3" in problems[0], problems
    width, height = estimated_node_size({"type": "SaveImage", "inputs": [{"name": "images", "link": 1}], "outputs": [],
                                         "widgets_values": ["x"]})
    assert width >= 400 and height >= 300, "an image node is sized for the picture it shows after a run"


def test_fast_caps_view_and_frame_counts_but_not_string_view_lists():
    graph = {"1": {"class_type": "Orbit", "inputs": {"views": 50, "view_size": 512, "fov": 50.0}},
             "2": {"class_type": "Turntable", "inputs": {"frames": 24, "size": 512}},
             "3": {"class_type": "SyncCanvasAnagram", "inputs": {"size": 512, "views": "identity, rotate_cw"}}}
    out, changes = prepare_graph(graph, fast=True)
    assert out["1"]["inputs"] == {"views": 4, "view_size": 64, "fov": 50.0}
    assert out["2"]["inputs"] == {"frames": 4, "size": 64}
    assert out["3"]["inputs"] == {"size": 64, "views": "identity, rotate_cw"}
    assert len(changes) == 5


def test_a_model_given_as_a_path_is_linked_into_the_models_folder(tmp_path):
    from run_workflow import link_model_file

    weights = tmp_path / "elsewhere" / "my_model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"not really weights")
    models = tmp_path / "models"
    assert link_model_file(str(weights), models, "checkpoints") == "my_model.safetensors"
    assert (models / "checkpoints" / "my_model.safetensors").resolve() == weights.resolve()
    assert link_model_file("plain_name.safetensors", models, "checkpoints") == "plain_name.safetensors"
    with pytest.raises(SystemExit, match="does not exist"):
        link_model_file(str(tmp_path / "missing" / "x.safetensors"), models, "checkpoints")


def test_workflows_beyond_sd15_ship_with_their_familys_loaders():
    """Issue 11: SDXL and Flux have workflows of their own, loaded the way those families are."""
    entries = shipped_workflows(REPO)
    by_family: dict = {}
    for entry in entries:
        by_family.setdefault(entry.get("family", "sd15"), []).append(entry)
    assert {"sd15", "sdxl", "flux"} <= set(by_family)
    for entry in by_family["flux"]:
        types = {node["class_type"] for node in json.loads(entry["api"].read_text()).values()}
        assert {"UNETLoader", "DualCLIPLoader", "VAELoader", "FluxGuidance"} <= types, entry["id"]
        assert "CheckpointLoaderSimple" not in types
    sdxl_types = set().union(*({node["class_type"] for node in json.loads(e["api"].read_text()).values()}
                               for e in by_family["sdxl"]))
    assert {"CheckpointLoaderSimple", "ControlNetLoader", "SyncCanvasMeshProjector"} <= sdxl_types
    ids = {e["id"] for e in entries}
    assert {"sdxl_mesh_texturing_depth", "sdxl_panorama360_stochsync", "flux_wide_panorama",
            "flux_panorama360_stochsync"} <= ids


def test_a_link_into_a_multi_type_input_is_accepted_like_the_editor_does():
    info = {"SaveGLB": {"input": {"required": {"mesh": ["MESH,FILE_3D_GLB", {}], "filename_prefix": ["STRING", {}]}},
                        "input_order": {"required": ["mesh", "filename_prefix"]}, "output": []},
            "Src": {"input": {}, "output": ["MESH"]}}
    ui = {"last_node_id": 2, "last_link_id": 1, "version": 0.4, "links": [[1, 1, 0, 2, 0, "MESH"]], "nodes": [
        _ui_node(1, "Src", 0, outputs=[{"name": "MESH", "type": "MESH", "links": [1]}], widgets=[]),
        _ui_node(2, "SaveGLB", 1, inputs=[{"name": "mesh", "type": "MESH", "link": 1}], widgets=["x"])]}
    assert validate_ui_workflow(ui, info) == []
    ui["links"][0][5] = ui["nodes"][0]["outputs"][0]["type"] = ui["nodes"][1]["inputs"][0]["type"] = "IMAGE"
    info["Src"]["output"] = ["IMAGE"]
    assert any("SaveGLB takes MESH,FILE_3D_GLB" in p for p in validate_ui_workflow(ui, info))


def test_a_multi_type_input_with_a_widget_keeps_its_widget_value_like_the_editor_does():
    """0.33.0's Preview3D model_file is "STRING,FILE_3D_GLB,..." with widgetType STRING: one widgets_values
    slot, whether the widget is typed in or fed by a link (the mesh and splat workflows link it)."""
    info = {"Preview3D": {"input": {"required": {"model_file": ["STRING,FILE_3D_GLB", {"default": "", "widgetType": "STRING"}]}},
                          "output": []},
            "Src": {"input": {}, "output": ["STRING"]}}
    ui = {"last_node_id": 2, "last_link_id": 1, "version": 0.4, "links": [[1, 1, 0, 2, 0, "STRING"]], "nodes": [
        _ui_node(1, "Src", 0, outputs=[{"name": "STRING", "type": "STRING", "links": [1]}], widgets=[]),
        _ui_node(2, "Preview3D", 1, inputs=[{"name": "model_file", "type": "STRING", "link": 1, "widget": {"name": "model_file"}}],
                 widgets=[""])]}
    assert validate_ui_workflow(ui, info) == []
    del info["Preview3D"]["input"]["required"]["model_file"][1]["widgetType"]  # a socket only: no widget value to store
    assert any("widgets_values has 1 values" in p for p in validate_ui_workflow(ui, info))
