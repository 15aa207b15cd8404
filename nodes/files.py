"""ComfyUI's input and output folders: what nodes may read and where they may write, never outside them."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path, PurePosixPath, PureWindowsPath

import folder_paths

DEMO_INPUTS = Path(__file__).resolve().parents[1] / "workflows" / "inputs"
"""The files the shipped workflows load (a 360 depth map, a mesh, a splat scene)."""


class FileChoices(list):
    """A combo's options that are files listed when the schema is made (they change while the server runs):
    the node resolves the chosen name itself (a missing file gets its own message), so the generic option
    check, which reads a schema cached per node class, skips them."""


class InputFileChoices(FileChoices):
    """Files in ComfyUI's input folder, checked by ``resolve_input_file`` (missing, or outside the folder)."""


def input_files(extensions: tuple[str, ...]) -> list[str]:
    """Files under ComfyUI's input folder (sub-folders included, e.g. Load3D's ``3d/``) whose suffix is one
    of ``extensions`` (lower case, with the dot), as sorted posix paths relative to the folder."""
    root = Path(folder_paths.get_input_directory())
    if not root.is_dir():
        return InputFileChoices()
    return InputFileChoices(sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix.lower() in extensions and p.is_file()))


def input_root() -> Path:
    """ComfyUI's input folder, resolved: the one folder a loaded file and everything it refers to may come from."""
    return Path(folder_paths.get_input_directory()).resolve()


def resolve_input_file(name: str, what: str = "file") -> Path:
    """``name`` inside the input folder; a ValueError naming ``what`` if it would leave it or does not exist."""
    root = input_root()
    path = (root / name).resolve()
    if root not in path.parents:
        raise ValueError(f"{what} {name!r} is not inside ComfyUI's input folder {root}")
    if not path.is_file():
        raise ValueError(f"{what} {name!r} not found in ComfyUI's input folder {root}")
    return path


def check_filename_prefix(prefix: str) -> str:
    """The prefix if it stays inside the output folder; else a ValueError naming it."""
    if not prefix or not prefix.strip():
        raise ValueError("filename_prefix is empty")
    for path in (PurePosixPath(prefix), PureWindowsPath(prefix)):
        if path.is_absolute() or path.drive or path.anchor:
            raise ValueError(f"filename_prefix {prefix!r} is an absolute path; give a path inside the output folder")
        if ".." in path.parts:
            raise ValueError(f"filename_prefix {prefix!r} contains '..'; it may not leave the output folder")
    return prefix


def save_target(filename_prefix: str, width: int = 0, height: int = 0) -> tuple[str, str, int, str]:
    """``(folder, name, counter, subfolder)`` for ``filename_prefix`` in the output folder, as ComfyUI's
    Save Image numbers its files (``%width%``-style tokens use ``width``/``height``); the prefix is checked
    first and the folder created."""
    check_filename_prefix(filename_prefix)
    folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
        filename_prefix, folder_paths.get_output_directory(), width, height)
    os.makedirs(folder, exist_ok=True)
    return folder, name, counter, subfolder


def output_file_name(path: str | os.PathLike) -> str:
    """``subfolder/name`` of a file in the output folder with '/' separators: what core Preview3D's
    ``model_file`` takes (the editor loads it from the output folder)."""
    return Path(path).resolve().relative_to(Path(folder_paths.get_output_directory()).resolve()).as_posix()


def install_demo_inputs(source: Path = DEMO_INPUTS, input_dir: str | None = None) -> list[Path]:
    """Copies each demo input the shipped workflows load into ComfyUI's input folder if no file of that name is
    there; a user's file of the same name is never replaced. Returns the files copied."""
    target = Path(input_dir or folder_paths.get_input_directory())
    copied = []
    if not source.is_dir():
        return copied
    for path in sorted(source.iterdir()):
        destination = target / path.name
        if not path.is_file() or destination.exists() or destination.is_symlink():
            continue
        try:
            target.mkdir(parents=True, exist_ok=True)
            with open(destination, "xb") as out, open(path, "rb") as src:  # "x": never over a file made meanwhile
                shutil.copyfileobj(src, out)
        except OSError as err:  # a read-only input folder must not stop the pack from loading
            logging.warning("Sync Canvas: could not copy demo input %s to %s: %s", path.name, target, err)
            continue
        copied.append(destination)
    if copied:
        logging.info("Sync Canvas: copied demo inputs into %s: %s", target, ", ".join(p.name for p in copied))
    return copied
