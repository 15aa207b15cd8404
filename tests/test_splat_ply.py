"""3DGS PLY reading/writing: round trips, recolouring, and the errors bad files must raise."""

import numpy as np
from numpy.lib.recfunctions import repack_fields
import pytest
import torch
from plyfile import PlyData, PlyElement

from sync_canvas.assets.splat_ply import (
    SplatFormatError,
    read_splat_ply,
    scene_record,
    write_splat_ply,
)
from sync_canvas.assets.splat_procedural import procedural_splat_scene

GEOMETRY = ("x", "y", "z", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")


@pytest.fixture
def ply_path(tmp_path):
    scene = procedural_splat_scene(64, seed=1, sh_degree=1)
    return write_splat_ply(scene, tmp_path / "scene.ply")


def test_round_trip_keeps_every_field(ply_path, tmp_path):
    scene = read_splat_ply(ply_path)
    assert scene.n_gaussians == 64 and scene.sh_rest.shape == (64, 3, 3)
    out = write_splat_ply(scene, tmp_path / "copy.ply", keep_higher_sh=True)
    a, b = PlyData.read(str(ply_path))["vertex"].data, PlyData.read(str(out))["vertex"].data
    assert a.dtype == b.dtype
    assert a.tobytes() == b.tobytes()


def test_recolour_changes_only_colour_fields_and_geometry_is_byte_identical(ply_path, tmp_path):
    scene = read_splat_ply(ply_path)
    rgb = torch.rand(3, 64, generator=torch.Generator().manual_seed(0))
    out = write_splat_ply(scene, tmp_path / "recoloured.ply", colors=rgb)
    a, b = PlyData.read(str(ply_path))["vertex"].data, PlyData.read(str(out))["vertex"].data
    for name in GEOMETRY + ("nx", "ny", "nz"):
        assert a[name].tobytes() == b[name].tobytes(), name
    again = read_splat_ply(out)
    torch.testing.assert_close(again.colors(), rgb, atol=1e-6, rtol=0)
    assert (again.sh_rest == 0).all()  # higher-order SH zeroed by default
    kept = read_splat_ply(write_splat_ply(scene, tmp_path / "kept.ply", colors=rgb, keep_higher_sh=True))
    torch.testing.assert_close(kept.sh_rest, scene.sh_rest)


def test_colour_convention_is_the_dc_term_of_the_3dgs_reference():
    # Values fixed by the 3DGS reference code (utils/sh_utils.py RGB2SH / SH2RGB), not by our constant:
    # f_dc = 0 is mid grey, f_dc = 0.5 / Y_0^0 is white, Y_0^0 = 1 / (2 sqrt(pi)).
    y00 = 1.0 / (2.0 * float(np.sqrt(np.pi)))
    scene = procedural_splat_scene(8, seed=0)
    dc = torch.tensor([[0.0, 0.0, 0.0], [0.5 / y00, -0.5 / y00, 0.0], [0.25 / y00, 0.0, 0.0]], dtype=torch.float32)
    expected = torch.tensor([[0.5, 0.5, 0.5], [1.0, 0.0, 0.5], [0.75, 0.5, 0.5]]).T
    scene = scene.with_colors(torch.cat([expected, torch.full((3, 5), 0.5)], dim=1))
    torch.testing.assert_close(scene.sh_dc[:3], dc, atol=1e-5, rtol=0)
    torch.testing.assert_close(scene.colors()[:, :3], expected, atol=1e-6, rtol=0)


def test_never_overwrites_input(ply_path, tmp_path):
    scene = read_splat_ply(ply_path)
    before = ply_path.read_bytes()
    with pytest.raises(ValueError, match="input"):
        write_splat_ply(scene, ply_path, colors=torch.zeros(3, 64), overwrite=True)
    with pytest.raises(ValueError, match="input"):
        write_splat_ply(scene.with_colors(torch.zeros(3, 64)), ply_path, overwrite=True)
    assert ply_path.read_bytes() == before
    other = tmp_path / "other.ply"
    other.write_bytes(b"x")
    with pytest.raises(FileExistsError):
        write_splat_ply(scene, other)


def _write_record(path, record, text=False):
    PlyData([PlyElement.describe(record, "vertex")], text=text).write(str(path))
    return path


def test_missing_field_is_named(ply_path, tmp_path):
    record = scene_record(read_splat_ply(ply_path))
    names = [n for n in record.dtype.names if n != "scale_1"]
    path = _write_record(tmp_path / "bad.ply", repack_fields(record[names]))
    with pytest.raises(SplatFormatError, match="scale_1"):
        read_splat_ply(path)


def test_nan_is_named(ply_path, tmp_path):
    record = scene_record(read_splat_ply(ply_path))
    record["opacity"][3] = np.nan
    with pytest.raises(SplatFormatError, match="opacity.*1 NaN"):
        read_splat_ply(_write_record(tmp_path / "nan.ply", record))


def test_wrong_sh_count_and_empty_file(ply_path, tmp_path):
    record = scene_record(read_splat_ply(ply_path))
    names = [n for n in record.dtype.names if n != "f_rest_8"]  # 8 of 9 rest fields
    with pytest.raises(SplatFormatError, match="f_rest"):
        read_splat_ply(_write_record(tmp_path / "sh.ply", repack_fields(record[names])))
    with pytest.raises(SplatFormatError, match="0 gaussians"):
        read_splat_ply(_write_record(tmp_path / "empty.ply", record[:0].copy()))


def test_truncated_file(ply_path, tmp_path):
    data = ply_path.read_bytes()
    cut = tmp_path / "cut.ply"
    cut.write_bytes(data[: len(data) - 100])
    with pytest.raises(SplatFormatError, match="cut.ply"):
        read_splat_ply(cut)
    with pytest.raises(FileNotFoundError):
        read_splat_ply(tmp_path / "absent.ply")


def test_ascii_ply_is_read(ply_path, tmp_path):
    scene = read_splat_ply(ply_path)
    path = _write_record(tmp_path / "ascii.ply", scene_record(scene), text=True)
    torch.testing.assert_close(read_splat_ply(path).means, scene.means)


def test_bad_colour_shape_is_rejected():
    scene = procedural_splat_scene(8, seed=0)
    with pytest.raises(ValueError, match=r"\(3, 8\)"):
        scene.with_colors(torch.zeros(8, 3))
