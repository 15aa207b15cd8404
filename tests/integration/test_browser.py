"""The pack in a real browser: headless Chromium (Debian's package, driven by selenium) loads the ComfyUI
editor from the session's server, lists the pack's templates, opens every shipped workflow through the
app's own loader, runs one from the editor and looks around in its 360 viewer.

Screenshots go to $SYNC_SCREENSHOTS (e.g. docs/screenshots) or the test's temporary folder; each is
checked not to be blank. Without chromium, chromedriver or selenium every test here is skipped, and the
skip says so loudly (.ci/run installs them: apt-get install chromium chromium-driver; pip selenium).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import time
import warnings

import numpy as np
import pytest

from integration_helpers import REPO
from run_workflow import prepare_graph
from workflow_format import shipped_workflows

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
FILE_COMBOS = ("ckpt_name", "control_net_name", "unet_name", "clip_name", "clip_name1", "clip_name2", "vae_name", "lora_name")
WINDOW = (1600, 1000)


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install selenium)"
    if not CHROMIUM or not CHROMEDRIVER:
        return "chromium / chromedriver not found (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser(comfy):
    reason = _missing()
    if reason:
        message = f"BROWSER TESTS SKIPPED: {reason}; the editor, the templates browser and the 360 viewer are NOT tested"
        warnings.warn(message)
        print("\n" + "!" * 100 + "\n" + message + "\n" + "!" * 100)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                "--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(600)
    try:
        driver.get(comfy.url)
        _wait(driver, "return !!(window.app && window.app.graph && window.app.extensionManager && window.SyncCanvas360)", 120,
              "the editor did not start with the pack's extension (window.SyncCanvas360)")
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> pathlib.Path:
    folder = pathlib.Path(os.environ.get("SYNC_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _wait(driver, script: str, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s: {what}")


def _check_not_blank(path: pathlib.Path, min_std: float = 8.0) -> float:
    from PIL import Image

    with Image.open(path) as picture:
        pixels = np.asarray(picture.convert("L"), dtype=np.float32)
    assert pixels.size > 0 and pixels.std() > min_std, f"{path.name} looks blank (std {pixels.std():.1f})"
    return float(pixels.std())


def _module_name(browser) -> str:
    templates = browser.execute_async_script(
        "const done = arguments[0]; fetch('/api/workflow_templates').then(r => r.json()).then(done, e => done({error: String(e)}));")
    ours = [name for name, files in templates.items() if "Wide panorama (SyncTweedies)" in files]
    assert len(ours) == 1, templates
    return ours[0]


def _load_template(browser, module: str, title: str) -> dict:
    """Opens a template through the app's loader (as the templates browser does); returns what the editor has."""
    return browser.execute_async_script("""
        const [module, title, fileCombos, done] = arguments;
        (async () => {
          const url = '/api/workflow_templates/' + encodeURIComponent(module) + '/' + encodeURIComponent(title) + '.json';
          const data = await (await fetch(url)).json();
          await window.app.loadGraphData(data, true, true, title);
          const problems = [];
          const types = [];
          for (const node of window.app.graph._nodes) {
            types.push(node.type);
            if (!LiteGraph.registered_node_types[node.type]) problems.push(`node ${node.id}: missing node type ${node.type}`);
            for (const w of node.widgets ?? []) {
              const values = w.options?.values;
              if (Array.isArray(values) && !fileCombos.includes(w.name) && !values.includes(w.value))
                problems.push(`node ${node.id} (${node.type}).${w.name}: ${JSON.stringify(w.value)} is not one of its options`);
              if (w.type === 'number' && typeof w.value !== 'number')
                problems.push(`node ${node.id} (${node.type}).${w.name}: ${JSON.stringify(w.value)} is not a number`);
            }
          }
          done({problems, types, count: window.app.graph._nodes.length});
        })().catch(e => done({problems: ['load failed: ' + e], types: [], count: 0}));
    """, module, title, list(FILE_COMBOS))


def _close_dialogs(browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    browser.execute_script("document.querySelectorAll('.p-dialog-close-button').forEach(b => b.click());")
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    time.sleep(0.5)


LEAF_WITH_TEXT = "return [...document.querySelectorAll('body *')].filter(e => e.children.length === 0 && e.textContent.trim() === arguments[0]).pop()"


def test_templates_browser_lists_the_pack_with_thumbnails_and_opens_a_template(browser, shots):
    """Both editors (frontend 1.27 on ComfyUI 0.3.64, 1.49 on 0.33.0): the pack is a category of the templates
    browser, its cards show their thumbnails, and clicking one opens the workflow."""
    module = _module_name(browser)
    browser.execute_script("window.app.extensionManager.command.execute('Comfy.BrowseTemplates')")
    end = time.time() + 30
    category = None
    while category is None and time.time() < end:
        category = browser.execute_script(LEAF_WITH_TEXT, module)
        time.sleep(0.5)
    assert category is not None, f"the templates browser has no '{module}' category"
    browser.execute_script("arguments[0].scrollIntoView(); arguments[0].click();", category)
    # thumbnails load lazily (as blob: URLs) for the cards in view
    _wait(browser, "return [...document.querySelectorAll('img')].filter(i => i.src && i.complete && i.naturalWidth >= 256).length >= 3",
          30, "the pack's thumbnails did not load")
    time.sleep(1.0)
    browser.save_screenshot(str(shots / "templates_browser.png"))
    _check_not_blank(shots / "templates_browser.png")
    broken = browser.execute_script("return [...document.querySelectorAll('img')].filter(i => i.src && i.complete && i.naturalWidth === 0).map(i => i.src)")
    assert not broken, f"thumbnails that did not load: {broken}"
    card = browser.execute_script(LEAF_WITH_TEXT, "Wide panorama (SyncTweedies)")
    assert card is not None, "no 'Wide panorama (SyncTweedies)' card in the pack's category"
    browser.execute_script("arguments[0].scrollIntoView(); arguments[0].click();", card)
    _wait(browser, "return window.app.graph._nodes.some(n => n.type === 'SyncCanvasWidePanorama')",
          30, "clicking the template did not open the wide panorama workflow")
    _close_dialogs(browser)
    browser.execute_script("window.app.canvas.ds.scale = 0.8; window.app.canvas.ds.offset = [10, 30]; window.app.canvas.setDirty(true, true);")
    time.sleep(1.0)
    browser.save_screenshot(str(shots / "template_opened.png"))
    _check_not_blank(shots / "template_opened.png")


def test_every_shipped_workflow_opens_in_the_editor_without_missing_nodes_or_invalid_values(browser):
    _close_dialogs(browser)
    module = _module_name(browser)
    report = {}
    for entry in shipped_workflows(REPO):
        result = _load_template(browser, module, entry["title"])
        expected = json.loads(entry["ui"].read_text())
        assert result["count"] == len(expected["nodes"]), (entry["title"], result)
        report[entry["title"]] = result["problems"]
    assert not {k: v for k, v in report.items() if v}, json.dumps(report, indent=1)


def test_a_360_workflow_runs_from_the_editor_and_its_viewer_renders(browser, shots):
    _close_dialogs(browser)
    module = _module_name(browser)
    entry = next(e for e in shipped_workflows(REPO) if e["id"] == "panorama360_stochsync")
    result = _load_template(browser, module, entry["title"])
    assert not result["problems"], result["problems"]
    api, changes = prepare_graph(json.loads(entry["api"].read_text()), fast=True)  # tiny model, small sizes
    values = {node_id: node["inputs"] for node_id, node in api.items()}
    browser.execute_script("""
        const values = arguments[0];
        for (const node of window.app.graph._nodes) {
          for (const w of node.widgets ?? []) {
            const v = values[String(node.id)]?.[w.name];
            if (v !== undefined && !Array.isArray(v)) w.value = v;
          }
        }
        window.app.graph.setDirtyCanvas(true, true);
    """, values)
    browser.execute_script("window.app.queuePrompt(0, 1)")
    stats = _wait(browser, "const v = window.SyncCanvas360.viewers.find(v => v.renders > 0); return v ? v.stats() : null;", 600,
                  "the 360 viewer never drew the panorama (did the run fail? see the server log)")
    assert stats["std"] > 3.0, f"the viewer drew a flat picture: {stats}"
    viewer_node = stats["node"]
    # Look around: a drag turns the view, and the drawing changes.
    moved = browser.execute_script("""
        const viewer = window.SyncCanvas360.viewers.find(v => v.node.id === arguments[0]);
        const before = viewer.stats(), c = viewer.canvas, r = c.getBoundingClientRect();
        const at = (type, x) => c.dispatchEvent(new PointerEvent(type, {clientX: r.left + x, clientY: r.top + 50, pointerId: 1, bubbles: true}));
        at('pointerdown', 200); at('pointermove', 40); at('pointerup', 40);
        return [before, viewer.stats(), viewer.yaw];
    """, viewer_node)
    assert moved[1]["renders"] > moved[0]["renders"] and moved[2] != 0, moved
    browser.execute_script("""
        const node = window.app.graph.getNodeById(arguments[0]);
        const ds = window.app.canvas.ds; ds.scale = 1.0;
        ds.offset = [-node.pos[0] + 60, -node.pos[1] + 80];
        window.app.canvas.setDirty(true, true);
    """, viewer_node)
    time.sleep(1.5)
    browser.save_screenshot(str(shots / "viewer_360_editor.png"))
    _check_not_blank(shots / "viewer_360_editor.png")
    canvas = browser.execute_script("return window.SyncCanvas360.viewers.find(v => v.node.id === arguments[0]).canvas", viewer_node)
    (shots / "viewer_360.png").write_bytes(canvas.screenshot_as_png)
    _check_not_blank(shots / "viewer_360.png", min_std=3.0)


def test_node_help_pages_and_their_pictures_are_served_to_the_editor(browser):
    """The editor's node help panel fetches /extensions/<pack>/docs/<node>.md; pictures resolve beside it."""
    module = _module_name(browser)
    found = browser.execute_async_script("""
        const [module, done] = arguments;
        (async () => {
          const base = '/extensions/' + encodeURIComponent(module) + '/docs/';
          const page = await fetch(base + 'SyncCanvasKSampler.md');
          const text = page.ok ? await page.text() : '';
          const picture = text.match(/!\\[[^\\]]*\\]\\(([^)]+)\\)/);
          const image = picture ? await fetch(base + picture[1]) : null;
          done({status: page.status, title: text.split('\\n')[0], image: image ? image.status : null,
                type: image ? image.headers.get('content-type') : null});
        })().catch(e => done({error: String(e)}));
    """, module)
    assert found.get("status") == 200 and found["title"] == "# SyncCanvas KSampler", found
    assert found["image"] == 200 and found["type"].startswith("image/"), found


def _fast_values(browser, entry) -> None:
    """Sets every widget of the open workflow to the --fast values of its API twin (tiny model, small sizes)."""
    api, _ = prepare_graph(json.loads(entry["api"].read_text()), fast=True)
    browser.execute_script("""
        const values = arguments[0];
        for (const node of window.app.graph._nodes) {
          for (const w of node.widgets ?? []) {
            const v = values[String(node.id)]?.[w.name];
            if (v !== undefined && !Array.isArray(v)) w.value = v;
          }
        }
    """, {node_id: node["inputs"] for node_id, node in api.items()})


def _colourful_fraction(picture) -> float:
    """Share of pixels with a hue: max - min of R, G, B above 40 of 255 (white, greys and the viewer's
    dark background have none)."""
    pixels = np.asarray(picture.convert("RGB"), dtype=np.int16)
    return float(((pixels.max(axis=2) - pixels.min(axis=2)) > 40).mean())


def _run_into_core_3d_preview(browser, shots, comfy, workflow_id: str, node_id: int, name: str):
    """Opens a shipped workflow, runs it from the editor (--fast values) with its core Preview 3D node on
    screen, screenshots the node once the viewer has drawn the saved file; returns (the node's model_file,
    the node's picture, the middle of its viewer) and saves ``name``.png (whole editor) and ``name``_node.png.

    The node is on screen before the run ends, as for a user watching it: frontend 1.27 (0.3.64) mounts a
    node's 3D viewer, and with it the handler that loads the run's file, only once the node is visible, and
    redraws it only under the mouse."""
    from PIL import Image
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    _close_dialogs(browser)
    module = _module_name(browser)
    entry = next(e for e in shipped_workflows(REPO) if e["id"] == workflow_id)
    result = _load_template(browser, module, entry["title"])
    assert not result["problems"], result["problems"]
    _fast_values(browser, entry)
    rect = browser.execute_script("""
        const node = window.app.graph.getNodeById(arguments[0]), ds = window.app.canvas.ds;
        ds.scale = 1.0; ds.offset = [-node.pos[0] + 80, -node.pos[1] + 90];
        window.app.canvas.setDirty(true, true);
        const box = window.app.canvas.canvas.getBoundingClientRect();
        return [box.left + 80, box.top + 90 - 30, node.size[0], node.size[1] + 30];
    """, node_id)
    time.sleep(2.0)
    before = set(comfy.get("/history") or {})  # parsed here: other tests' prompts may hold NaN (not JSON for a browser)
    browser.execute_script("window.app.queuePrompt(0, 1)")
    end, latest = time.time() + 600, None
    while latest is None and time.time() < end:
        new = [entry for key, entry in (comfy.get("/history") or {}).items() if key not in before]
        if new and (new[-1].get("status") or {}).get("status_str") in ("success", "error"):
            latest = new[-1]
        time.sleep(1.0)
    assert latest is not None, f"{workflow_id} did not finish within 600 s"
    assert latest["status"]["status_str"] == "success", latest["status"]
    model_file = (latest["outputs"].get(str(node_id), {}).get("result") or [None])[0]
    assert isinstance(model_file, str) and (comfy.output_dir / model_file).is_file(), latest["outputs"].get(str(node_id))
    time.sleep(8.0)  # the viewer loads the file and renders (software WebGL)
    hover = ActionBuilder(browser)
    for step in range(5):
        hover.pointer_action.move_to_location(round(rect[0] + rect[2] / 2 + step), round(rect[1] + rect[3] * 0.6))
        hover.pointer_action.pause(0.3)
    hover.perform()
    time.sleep(2.0)
    path = shots / f"{name}.png"
    browser.save_screenshot(str(path))
    _check_not_blank(path)
    with Image.open(path) as picture:
        scale = picture.width / browser.execute_script("return window.innerWidth")
        left, top, width, height = (round(v * scale) for v in rect)
        crop = picture.crop((left, top, left + width, top + height))
    crop.save(shots / f"{name}_node.png")
    middle = crop.crop((round(0.25 * width), round(0.45 * height), round(0.75 * width), round(0.75 * height)))
    return model_file, crop, middle


def test_a_textured_mesh_shows_textured_in_comfyuis_own_3d_preview(browser, shots, comfy):
    """Mesh texturing run from the editor; core Preview 3D (node 17) shows the GLB the pack saved, WITH its
    texture: the server runs with --disable-api-nodes, whose Content-Security-Policy blocks the blob: URL
    three.js reads a buffer-view texture through (such a mesh is drawn white); the pack's GLB carries the
    texture as a data: URI. Checked on the pixels in the middle of the viewer, where the mesh is."""
    model_file, _, middle = _run_into_core_3d_preview(browser, shots, comfy, "mesh_texturing_depth", 17, "mesh_core_3d_preview")
    assert model_file.endswith(".glb"), model_file
    import trimesh

    mesh = trimesh.load(comfy.output_dir / model_file, force="mesh")
    texture = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"), dtype=np.float32)
    print(f"{model_file}: texture {texture.shape}, mean {texture.mean(axis=(0, 1)).round(1)}, std {texture.std():.1f}")
    coloured = _colourful_fraction(middle)
    print(f"core Preview 3D: {coloured:.1%} of the viewer's middle is coloured")
    assert coloured > 0.05, f"the mesh in core Preview 3D is drawn without its texture (white/grey): {coloured:.1%} coloured pixels"


def test_a_recoloured_splat_shows_in_comfyuis_own_3d_preview(browser, shots, comfy):
    """Splat recolouring run from the editor; core Preview 3D (node 22) gets the .ply the pack saved. Editors
    with a Gaussian-splat renderer (frontend 1.49, ComfyUI 0.33.0) draw the recoloured splats in the middle
    of the viewer (the grey grid alone has no coloured pixels); frontend 1.27 (0.3.64) has none and shows
    an empty scene, which is only reported."""
    model_file, _, middle = _run_into_core_3d_preview(browser, shots, comfy, "splat_recolour", 22, "splat_core_3d_preview")
    assert model_file.endswith(".ply"), model_file
    coloured = _colourful_fraction(middle)
    draws_splats = browser.execute_script("return !!window.comfyAPI?.SplatModelAdapter")
    print(f"core Preview 3D of {model_file}: {coloured:.1%} of the viewer's middle coloured "
          f"({'editor with' if draws_splats else 'editor WITHOUT'} a Gaussian-splat renderer)")
    if draws_splats:
        assert coloured > 0.01, f"core Preview 3D draws no splats ({coloured:.1%} coloured pixels)"
