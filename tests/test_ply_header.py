"""Malformed PLY files get one short message naming the file, the problem and what was expected."""

import struct

import pytest

from sync_canvas.assets.mesh_data import MeshError
from sync_canvas.assets.mesh_io import load_mesh
from sync_canvas.assets.ply_header import PlyHeaderError, check_ply_header
from sync_canvas.assets.splat_ply import SplatFormatError, read_splat_ply

HEADER = "ply\nformat binary_little_endian 1.0\nelement vertex {n}\nproperty float x\nproperty float y\nproperty float z\nend_header\n"


@pytest.mark.parametrize("content, match", [
    (b"hello, I am a text file\n", r"t.ply: does not start with 'ply'.*expected a PLY file"),
    (HEADER.format(n=10**12).encode() + b"\0" * 12, r"t.ply: header declares 1000000000000 vertex rows .* holds 12 bytes"),
    (b"ply\nformat ascii 1.0\nelement vertex 3\n", r"no 'end_header'"),
    (b"ply\nformat cobol 1.0\nend_header\n", r"unknown format"),
    (b"ply\nformat ascii 1.0\nelement vertex -3\nend_header\n", r"bad element line"),
    (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty quaternion q\nend_header\n0\n", r"bad property"),
])
def test_malformed_headers_short_messages(tmp_path, content, match):
    (tmp_path / "t.ply").write_bytes(content)
    for reader, error in ((check_ply_header, PlyHeaderError), (load_mesh, MeshError), (read_splat_ply, SplatFormatError)):
        with pytest.raises(error, match=match) as err:
            reader(tmp_path / "t.ply")
        assert len(str(err.value)) < 300


def test_a_complete_header_passes(tmp_path):
    (tmp_path / "ok.ply").write_bytes(HEADER.format(n=2).encode() + struct.pack("<6f", *range(6)))
    (element,) = check_ply_header(tmp_path / "ok.ply")
    assert (element.name, element.count, element.min_row_bytes) == ("vertex", 2, 12)
