"""Save node for canvases: PNGs in the output folder, optionally tagged as 360 equirectangular panoramas.

The tag is Google's Photo Sphere XMP (GPano, ProjectionType "equirectangular") so 360 viewers open the
file as a sphere. ``filename_prefix`` is checked before anything touches the disk: absolute paths and
``..`` components are refused with a ValueError (ComfyUI's own check raises a bare Exception).
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from comfy.cli_args import args
from comfy_api.latest import io, ui

from .common import CATEGORY
from .files import save_target
from .guards import guard_nodes

GPANO_XMP = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:GPano="http://ns.google.com/photos/1.0/panorama/">'
    "<GPano:ProjectionType>equirectangular</GPano:ProjectionType><GPano:UsePanoramaViewer>True</GPano:UsePanoramaViewer>"
    "<GPano:FullPanoWidthPixels>{w}</GPano:FullPanoWidthPixels><GPano:FullPanoHeightPixels>{h}</GPano:FullPanoHeightPixels>"
    "<GPano:CroppedAreaImageWidthPixels>{w}</GPano:CroppedAreaImageWidthPixels>"
    "<GPano:CroppedAreaImageHeightPixels>{h}</GPano:CroppedAreaImageHeightPixels>"
    "<GPano:CroppedAreaLeftPixels>0</GPano:CroppedAreaLeftPixels><GPano:CroppedAreaTopPixels>0</GPano:CroppedAreaTopPixels>"
    "</rdf:Description></rdf:RDF></x:xmpmeta>"
)


class SyncCanvasSaveImage(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SyncCanvasSaveImage",
            display_name="SyncCanvas Save Canvas",
            category=CATEGORY,
            description="Saves canvas images as PNG in the output folder; 360 panoramas get the equirectangular (GPano) tag.",
            inputs=[
                io.Image.Input("images", tooltip="Canvas image(s) to save."),
                io.String.Input("filename_prefix", default="SyncCanvas/canvas", tooltip="File name prefix, may contain sub-folders of the output folder (no '..', no absolute paths); %date% style tokens work as in Save Image."),
                io.Combo.Input("projection", options=["flat", "equirectangular"], default="flat", tooltip="equirectangular adds Photo Sphere metadata so 360 viewers show the panorama as a sphere."),
            ],
            outputs=[],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images, filename_prefix, projection) -> io.NodeOutput:
        folder, filename, counter, subfolder = save_target(filename_prefix, images.shape[2], images.shape[1])
        results = []
        for number, image in enumerate(images):
            pixels = np.clip(255.0 * image.cpu().numpy(), 0, 255).astype(np.uint8)
            file = f"{filename.replace('%batch_num%', str(number))}_{counter:05}_.png"
            Image.fromarray(pixels).save(os.path.join(folder, file), pnginfo=cls._metadata(projection, pixels.shape), compress_level=4)
            results.append(ui.SavedResult(file, subfolder, io.FolderType.output))
            counter += 1
        return io.NodeOutput(ui=ui.SavedImages(results))

    @classmethod
    def _metadata(cls, projection: str, shape: tuple[int, ...]) -> PngInfo:
        info = PngInfo()
        if projection == "equirectangular":
            info.add_itxt("XML:com.adobe.xmp", GPANO_XMP.format(w=shape[1], h=shape[0]))
        hidden = getattr(cls, "hidden", None)
        if not args.disable_metadata and hidden is not None:
            if hidden.prompt is not None:
                info.add_text("prompt", json.dumps(hidden.prompt))
            for key, value in (hidden.extra_pnginfo or {}).items():
                info.add_text(key, json.dumps(value))
        return info


NODES = [SyncCanvasSaveImage]
guard_nodes(NODES)  # each node's inputs checked against its schema before execute (nodes/guards.py)
