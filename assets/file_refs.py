"""Files a mesh refers to (OBJ ``mtllib``, MTL ``map_Kd``, glTF buffer and image ``uri``), confined by the
pack itself to one folder, whatever the installed trimesh would allow.

trimesh reads such references through a *resolver*. Before trimesh 5 its default file resolver followed
any path (``mtllib /etc/passwd``, ``"uri": "../../secret.bin"``), so the pack never lets trimesh see a path:
it hands trimesh the file's bytes and a :class:`ConfinedResolver`, which refuses every reference that is
absolute, a URL, or resolves (links followed) outside ``root``, and records refusals and missing files so
the loader can report them instead of loading a grey placeholder in silence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.parse import unquote, urlsplit

log = logging.getLogger("sync_canvas")

MAX_REFERENCE_BYTES = 1 << 30  # a texture or buffer larger than 1 GiB is refused rather than read


@dataclass
class ConfinedResolver:
    """trimesh resolver (``get``/``__getitem__``/``namespaced``/``keys``/``write``) over ``folder``, refusing
    anything outside ``root``. ``problems`` collects one readable line per refused or missing reference."""

    folder: Path
    root: Path
    source: str = ""
    problems: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.folder, self.root = Path(self.folder).resolve(), Path(self.root).resolve()

    # -- the part trimesh calls ----------------------------------------------------------------------
    def get(self, name: str) -> bytes:
        path = self.confine(name)
        try:
            size = path.stat().st_size
        except OSError:
            self._problem(f"references {name!r}, which does not exist (looked for {path})")
            raise FileNotFoundError(f"{name!r} not found") from None
        if not path.is_file():
            self._problem(f"references {name!r}, which is not a file")
            raise FileNotFoundError(f"{name!r} is not a file")
        if size > MAX_REFERENCE_BYTES:
            self._problem(f"references {name!r} of {size} bytes (more than {MAX_REFERENCE_BYTES}); refused")
            raise OSError(f"{name!r} too large")
        return path.read_bytes()

    def __getitem__(self, name: str) -> bytes:
        return self.get(name)

    def __contains__(self, name: str) -> bool:
        try:
            return self.confine(name, record=False).is_file()
        except OSError:
            return False

    def namespaced(self, namespace: str) -> "ConfinedResolver":
        sub = ConfinedResolver(self.folder / namespace, self.root, self.source)
        sub.problems = self.problems  # one report for the whole file
        return sub

    def keys(self):
        return []

    def write(self, name, data):
        raise OSError("reading a mesh never writes files")

    # -- the confinement -----------------------------------------------------------------------------
    def confine(self, name: str, record: bool = True) -> Path:
        """``folder/name`` resolved, or a PermissionError (recorded) when it would leave ``root``."""
        reason = _refusal_reason(name)
        path = None
        if reason is None:
            path = (self.folder / unquote(name.strip())).resolve()
            if path != self.root and self.root not in path.parents:
                reason = f"resolves to {path}, outside the input folder {self.root}"
        if reason is not None:
            if record:
                self._problem(f"references {name!r}: refused, {reason}")
            raise PermissionError(f"reference {name!r} refused: {reason}")
        return path

    def _problem(self, text: str) -> None:
        line = f"{self.source}: {text}" if self.source else text
        if line not in self.problems:
            self.problems.append(line)
            log.warning("Sync Canvas mesh loader: %s", line)


def _refusal_reason(name) -> str | None:
    if not isinstance(name, str) or not name.strip():
        return "empty file name"
    text = unquote(name.strip())
    if "\x00" in text:
        return "contains a NUL byte"
    scheme = urlsplit(text).scheme
    if scheme and len(scheme) > 1:  # "C:" is a drive, not a scheme
        return f"a {scheme}: URL (only files next to the mesh are read)"
    for path in (PurePosixPath(text), PureWindowsPath(text)):
        if path.is_absolute() or path.drive or path.anchor:
            return "an absolute path"
    if text.startswith("~"):
        return "a home-folder path"
    return None


def describe(problems: list[str]) -> str:
    """One warning paragraph for a node's report."""
    return "WARNING: " + "; ".join(problems)


