"""A PLY header read before any PLY reader sees the file, so malformed files get one short message.

plyfile and trimesh report a text file named ``.ply`` as ``IndexError: list index out of range`` and a
header claiming 10^12 vertices with a multi-kilobyte dump of the field layout. ``check_ply_header`` reads
at most ``MAX_HEADER_BYTES``, checks the magic line, the format and every element line, and compares the
smallest body the header implies with the file's size: ``"<file>: <what is wrong>; expected <what>"``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MAX_HEADER_BYTES = 1 << 16
FORMATS = ("ascii", "binary_little_endian", "binary_big_endian")
TYPE_BYTES = {
    "char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2, "uint16": 2,
    "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8,
}


class PlyHeaderError(ValueError):
    """A file whose PLY header is missing, garbled, or promises more data than the file holds."""


@dataclass
class PlyElement:
    name: str
    count: int
    min_row_bytes: int  # a list property counts its length prefix only


def check_ply_header(path: str | os.PathLike) -> list[PlyElement]:
    """The header's elements; a :class:`PlyHeaderError` naming the file, the problem and what was expected."""
    path = Path(path)
    name = path.name
    with open(path, "rb") as f:
        head = f.read(MAX_HEADER_BYTES)
    if not head.startswith(b"ply"):
        return _fail(name, f"does not start with 'ply' (starts with {head[:16]!r})", "a PLY file")
    end = head.find(b"end_header")
    if end < 0:
        return _fail(name, f"no 'end_header' in its first {MAX_HEADER_BYTES} bytes", "a PLY header ending in end_header")
    body_start = head.find(b"\n", end) + 1
    lines = head[:end].decode("ascii", errors="replace").splitlines()
    fmt, elements = None, []
    for number, line in enumerate(lines[1:], 2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            if len(words) < 2 or words[1] not in FORMATS:
                return _fail(name, f"header line {number}: unknown format {line.strip()[:60]!r}", f"one of {FORMATS}")
            fmt = words[1]
        elif words[0] == "element":
            if len(words) != 3 or not words[2].isdigit():
                return _fail(name, f"header line {number}: bad element line {line.strip()[:60]!r}", "'element <name> <count>'")
            elements.append(PlyElement(words[1], int(words[2]), 0))
        elif words[0] == "property":
            if not elements:
                return _fail(name, f"header line {number}: property before any element", "'element' lines first")
            size = _property_bytes(words)
            if size is None:
                return _fail(name, f"header line {number}: bad property {line.strip()[:60]!r}", f"types {sorted(TYPE_BYTES)}")
            elements[-1].min_row_bytes += size
        else:
            return _fail(name, f"header line {number}: unexpected {line.strip()[:60]!r}", "format/element/property/comment lines")
    if fmt is None:
        return _fail(name, "header has no 'format' line", f"one of {FORMATS}")
    body = path.stat().st_size - body_start
    # ascii rows take at least 2 bytes per value ("0 "); binary rows their declared sizes
    needed = sum(e.count * (e.min_row_bytes if fmt != "ascii" else 2) for e in elements)
    if needed > body:
        big = max(elements, key=lambda e: e.count)
        return _fail(
            name,
            f"header declares {big.count} {big.name} rows (at least {needed} bytes of data) but the file holds {body} bytes",
            "a complete file (truncated or a wrong count?)",
        )
    return elements


def _property_bytes(words: list[str]) -> int | None:
    if len(words) == 3 and words[1] in TYPE_BYTES:
        return TYPE_BYTES[words[1]]
    if len(words) == 5 and words[1] == "list" and words[2] in TYPE_BYTES and words[3] in TYPE_BYTES:
        return TYPE_BYTES[words[2]]
    return None


def _fail(name: str, problem: str, expected: str):
    raise PlyHeaderError(f"{name}: {problem}; expected {expected}")
