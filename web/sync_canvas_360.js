// Sync Canvas: a 360 viewer inside the graph editor.
//
// The "SyncCanvas 360 Viewer" node (nodes/viewer.py) saves the equirectangular panorama to ComfyUI's temp
// folder and reports it under the UI key "sync_canvas_360". This extension draws a perspective view of it
// in the node: drag to look around, wheel to zoom, double-click to reset. Plain canvas 2D, no WebGL, no
// network access beyond this ComfyUI server's own /view route.
//
// Convention (the pack's EquirectProjector): pixel column x is longitude ((x + 0.5) / W - 0.5) * 360 deg,
// row y is latitude (0.5 - (y + 0.5) / H) * 180 deg; longitude 0 (the image centre) looks along +z.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODE_TYPE = "SyncCanvasView360";
const UI_KEY = "sync_canvas_360";
const VIEW_WIDTH = 480;
const VIEW_HEIGHT = 300;

/** Fills `out` (ImageData) with the perspective view of the equirectangular `src` (ImageData).
 *  yaw: degrees to the right of the panorama's centre; pitch: degrees up; fov: horizontal, degrees. */
export function renderEquirect(src, out, yaw, pitch, fov) {
  const W = out.width, H = out.height, sw = src.width, sh = src.height;
  const f = (W / 2) / Math.tan((fov * Math.PI) / 360);
  const a = (yaw * Math.PI) / 180, b = (pitch * Math.PI) / 180;
  const ca = Math.cos(a), sa = Math.sin(a), cb = Math.cos(b), sb = Math.sin(b);
  const s = src.data, d = out.data;
  for (let y = 0; y < H; y++) {
    const dy = H / 2 - (y + 0.5);
    for (let x = 0; x < W; x++) {
      const dx = x + 0.5 - W / 2;
      // camera ray (dx, dy, f): pitch about x, then yaw about y
      const y1 = dy * cb + f * sb;
      const z1 = -dy * sb + f * cb;
      const x2 = dx * ca + z1 * sa;
      const z2 = -dx * sa + z1 * ca;
      const lon = Math.atan2(x2, z2);
      const lat = Math.atan2(y1, Math.hypot(x2, z2));
      let u = Math.floor((lon / (2 * Math.PI) + 0.5) * sw);
      let v = Math.floor((0.5 - lat / Math.PI) * sh);
      u = ((u % sw) + sw) % sw;
      v = Math.min(sh - 1, Math.max(0, v));
      const i = (v * sw + u) * 4, o = (y * W + x) * 4;
      d[o] = s[i]; d[o + 1] = s[i + 1]; d[o + 2] = s[i + 2]; d[o + 3] = 255;
    }
  }
  return out;
}

class Viewer {
  constructor(node) {
    this.node = node;
    this.yaw = 0; this.pitch = 0; this.fov = 90; this.start = { yaw: 0, fov: 90 };
    this.source = null; this.renders = 0; this.url = null;
    this.element = document.createElement("div");
    this.element.className = "sync-canvas-360";
    this.element.style.cssText = "display:flex;flex-direction:column;align-items:center;width:100%;";
    this.canvas = document.createElement("canvas");
    this.canvas.width = VIEW_WIDTH; this.canvas.height = VIEW_HEIGHT;
    this.canvas.style.cssText = "width:100%;max-width:" + VIEW_WIDTH + "px;aspect-ratio:" + VIEW_WIDTH + "/" + VIEW_HEIGHT +
      ";background:#222;cursor:grab;touch-action:none;border-radius:4px;";
    this.caption = document.createElement("div");
    this.caption.style.cssText = "font:11px sans-serif;color:#aaa;padding:2px;";
    this.element.append(this.canvas, this.caption);
    this.placeholder("Run the workflow to look around the panorama");
    this.listen();
  }

  placeholder(text) {
    const g = this.canvas.getContext("2d");
    g.fillStyle = "#222"; g.fillRect(0, 0, this.canvas.width, this.canvas.height);
    g.fillStyle = "#999"; g.font = "14px sans-serif"; g.textAlign = "center";
    g.fillText(text, this.canvas.width / 2, this.canvas.height / 2);
    this.caption.textContent = "360 viewer: drag to look around, wheel to zoom, double-click to reset";
  }

  listen() {
    let drag = null;
    const c = this.canvas;
    c.addEventListener("pointerdown", (e) => {
      drag = { x: e.clientX, y: e.clientY, yaw: this.yaw, pitch: this.pitch };
      c.setPointerCapture(e.pointerId); c.style.cursor = "grabbing"; e.stopPropagation();
    });
    c.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const degreesPerPixel = this.fov / c.clientWidth;
      this.yaw = drag.yaw - (e.clientX - drag.x) * degreesPerPixel;
      this.pitch = Math.max(-89, Math.min(89, drag.pitch + (e.clientY - drag.y) * degreesPerPixel));
      this.draw(); e.stopPropagation();
    });
    const end = (e) => { drag = null; c.style.cursor = "grab"; e.stopPropagation(); };
    c.addEventListener("pointerup", end);
    c.addEventListener("pointercancel", end);
    c.addEventListener("wheel", (e) => {
      this.fov = Math.max(20, Math.min(150, this.fov * (e.deltaY > 0 ? 1.08 : 1 / 1.08)));
      this.draw(); e.preventDefault(); e.stopPropagation();
    }, { passive: false });
    c.addEventListener("dblclick", (e) => {
      this.yaw = this.start.yaw; this.pitch = 0; this.fov = this.start.fov; this.draw(); e.stopPropagation();
    });
  }

  async show(item) {
    const params = new URLSearchParams({ filename: item.filename, subfolder: item.subfolder ?? "", type: item.type ?? "temp" });
    const url = api.apiURL("/view?" + params.toString());
    const image = new Image();
    await new Promise((resolve, reject) => { image.onload = resolve; image.onerror = reject; image.src = url; });
    const scratch = document.createElement("canvas");
    scratch.width = image.naturalWidth; scratch.height = image.naturalHeight;
    const g = scratch.getContext("2d");
    g.drawImage(image, 0, 0);
    this.source = g.getImageData(0, 0, scratch.width, scratch.height);
    this.url = url;
    this.start = { yaw: item.yaw ?? 0, fov: item.fov ?? 90 };
    this.yaw = this.start.yaw; this.pitch = 0; this.fov = this.start.fov;
    this.draw();
  }

  draw() {
    if (!this.source) return;
    const g = this.canvas.getContext("2d");
    const out = g.createImageData(this.canvas.width, this.canvas.height);
    renderEquirect(this.source, out, this.yaw, this.pitch, this.fov);
    g.putImageData(out, 0, 0);
    this.renders += 1;
    this.caption.textContent = `yaw ${this.yaw.toFixed(0)}°, pitch ${this.pitch.toFixed(0)}°, fov ${this.fov.toFixed(0)}° - ` +
      `${this.source.width}x${this.source.height} panorama (drag, wheel, double-click)`;
  }

  /** For tests: how much the drawn view varies (0 = blank). */
  stats() {
    const data = this.canvas.getContext("2d").getImageData(0, 0, this.canvas.width, this.canvas.height).data;
    let sum = 0, sum2 = 0, n = 0;
    for (let i = 0; i < data.length; i += 16) { const v = (data[i] + data[i + 1] + data[i + 2]) / 3; sum += v; sum2 += v * v; n += 1; }
    const mean = sum / n;
    return { renders: this.renders, source: this.source ? [this.source.width, this.source.height] : null,
             mean, std: Math.sqrt(Math.max(0, sum2 / n - mean * mean)), node: this.node.id };
  }
}

const viewers = [];
window.SyncCanvas360 = { renderEquirect, viewers };

app.registerExtension({
  name: "SyncCanvas.View360",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE_TYPE) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      const viewer = new Viewer(this);
      const widget = this.addDOMWidget("sync_canvas_360_view", "sync_canvas_360", viewer.element, {
        serialize: false, hideOnZoom: false, getMinHeight: () => VIEW_HEIGHT + 24,
      });
      widget.serialize = false; // not a value: kept out of widgets_values and of the prompt
      this.syncCanvas360 = viewer;
      viewers.push(viewer);
      this.setSize([Math.max(this.size[0], VIEW_WIDTH + 20), Math.max(this.size[1], VIEW_HEIGHT + 120)]);
      return result;
    };
    const onRemoved = nodeType.prototype.onRemoved;
    nodeType.prototype.onRemoved = function () {
      const i = viewers.indexOf(this.syncCanvas360);
      if (i >= 0) viewers.splice(i, 1);
      return onRemoved?.apply(this, arguments);
    };
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      const result = onExecuted?.apply(this, arguments);
      const item = message?.[UI_KEY]?.[0];
      if (item && this.syncCanvas360) {
        this.syncCanvas360.show(item).catch((err) => this.syncCanvas360.placeholder("Could not load the panorama: " + err));
      }
      return result;
    };
  },
});
