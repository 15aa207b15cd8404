"""3D Gaussian splat scenes in the standard 3DGS PLY layout (Kerbl et al. 2023), read with plyfile.

One ``vertex`` element, all properties float32, binary little-endian:

* ``x, y, z``                position
* ``nx, ny, nz``             optional (3DGS writes zeros)
* ``f_dc_0..2``              SH degree-0 coefficients; colour = 0.5 + SH_C0 * f_dc
* ``f_rest_0..3K-1``         optional higher-order SH, channel-major (f_rest[c * K + k]), K in {3, 8, 15}
* ``opacity``                logit of the opacity
* ``scale_0..2``             log of the per-axis standard deviations
* ``rot_0..3``               rotation quaternion (w, x, y, z), not necessarily normalised

The scene keeps the file's structured array, so writing new colours leaves every other field
byte-identical; only the SH coefficients are replaced.
"""

from __future__ import annotations

import math
import os
import pathlib
from dataclasses import dataclass

import numpy as np
import torch

from .ply_header import PlyHeaderError, check_ply_header

SH_C0 = 0.28209479177387814  # Y_0^0 = 1 / (2 sqrt(pi))
POSITION_FIELDS = ("x", "y", "z")
NORMAL_FIELDS = ("nx", "ny", "nz")
DC_FIELDS = ("f_dc_0", "f_dc_1", "f_dc_2")
SCALE_FIELDS = ("scale_0", "scale_1", "scale_2")
ROTATION_FIELDS = ("rot_0", "rot_1", "rot_2", "rot_3")
REQUIRED_FIELDS = POSITION_FIELDS + DC_FIELDS + ("opacity",) + SCALE_FIELDS + ROTATION_FIELDS


class SplatFormatError(ValueError):
    """A PLY file that is not a readable 3DGS scene (missing fields, NaNs, bad counts, truncation)."""


@dataclass
class SplatScene:
    """A Gaussian splat scene; G gaussians. All tensors float32 on the CPU.

    means ``[G, 3]``, quats ``[G, 4]`` (w, x, y, z; raw), log_scales ``[G, 3]``, opacity_logits ``[G]``,
    sh_dc ``[G, 3]``, sh_rest ``[G, 3, K]`` (K = 0 when absent). ``record`` is the file's structured
    array (None for generated scenes) and ``source`` the path it came from.
    """

    means: torch.Tensor
    quats: torch.Tensor
    log_scales: torch.Tensor
    opacity_logits: torch.Tensor
    sh_dc: torch.Tensor
    sh_rest: torch.Tensor
    record: np.ndarray | None = None
    source: pathlib.Path | None = None

    def __post_init__(self) -> None:
        g = self.means.shape[0]
        expected = {
            "means": (g, 3), "quats": (g, 4), "log_scales": (g, 3), "opacity_logits": (g,), "sh_dc": (g, 3),
        }
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"{name} has shape {tuple(getattr(self, name).shape)}, expected {shape}")
        if self.sh_rest.dim() != 3 or self.sh_rest.shape[:2] != (g, 3):
            raise ValueError(f"sh_rest has shape {tuple(self.sh_rest.shape)}, expected ({g}, 3, K)")

    @property
    def n_gaussians(self) -> int:
        return int(self.means.shape[0])

    @property
    def opacities(self) -> torch.Tensor:
        """``[G]`` in (0, 1)."""
        return torch.sigmoid(self.opacity_logits)

    @property
    def scales(self) -> torch.Tensor:
        """``[G, 3]`` standard deviations along the gaussian's own axes."""
        return torch.exp(self.log_scales)

    def colors(self) -> torch.Tensor:
        """View-independent RGB ``[3, G]`` from the DC term (about [0, 1]; not clamped)."""
        return (0.5 + SH_C0 * self.sh_dc).T.contiguous()

    def with_colors(self, rgb: torch.Tensor, keep_higher_sh: bool = False) -> "SplatScene":
        """A copy whose DC term encodes ``rgb`` ``[3, G]``; higher-order SH zeroed unless kept."""
        if rgb.dim() != 2 or tuple(rgb.shape) != (3, self.n_gaussians):
            raise ValueError(f"colours have shape {tuple(rgb.shape)}, expected (3, {self.n_gaussians})")
        if not torch.isfinite(rgb).all():
            raise ValueError("colours contain NaN or infinite values")
        dc = ((rgb.detach().float().cpu().T - 0.5) / SH_C0).contiguous()
        rest = self.sh_rest.clone() if keep_higher_sh else torch.zeros_like(self.sh_rest)
        return SplatScene(self.means, self.quats, self.log_scales, self.opacity_logits, dc, rest, self.record, self.source)


def sh_rest_count(n_rest_fields: int) -> int:
    """K (coefficients per channel) from the number of ``f_rest_*`` fields; ValueError if not 3K, K=(d+1)^2-1."""
    if n_rest_fields % 3:
        raise SplatFormatError(f"{n_rest_fields} f_rest fields is not a multiple of 3")
    k = n_rest_fields // 3
    degree = math.isqrt(k + 1) - 1
    if (degree + 1) ** 2 - 1 != k:
        raise SplatFormatError(f"{n_rest_fields} f_rest fields is not 3 * ((degree+1)^2 - 1) for any SH degree")
    return k


def read_splat_ply(path: str | os.PathLike) -> SplatScene:
    """Read a 3DGS PLY file. Raises FileNotFoundError or SplatFormatError naming the problem."""
    from plyfile import PlyData

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"splat PLY not found: {path}")
    try:
        check_ply_header(path)
    except PlyHeaderError as err:
        raise SplatFormatError(str(err)) from None
    try:
        ply = PlyData.read(str(path), mmap=False)
    except Exception as err:  # plyfile raises several types for truncated/garbled files
        raise SplatFormatError(f"{path.name}: not a readable PLY file ({type(err).__name__}: {err})") from err
    names = [el.name for el in ply.elements]
    if "vertex" not in names:
        raise SplatFormatError(f"{path.name}: no 'vertex' element (elements: {names})")
    record = np.asarray(ply["vertex"].data)
    fields = record.dtype.names or ()
    missing = [f for f in REQUIRED_FIELDS if f not in fields]
    if missing:
        raise SplatFormatError(f"{path.name}: missing 3DGS fields {missing}")
    if len(record) == 0:
        raise SplatFormatError(f"{path.name}: the vertex element has 0 gaussians")
    rest_names = sorted((f for f in fields if f.startswith("f_rest_")), key=lambda f: int(f.split("_")[-1]))
    if [int(f.split("_")[-1]) for f in rest_names] != list(range(len(rest_names))):
        raise SplatFormatError(f"{path.name}: f_rest fields are not numbered 0..{len(rest_names) - 1}")
    k = sh_rest_count(len(rest_names))
    for name in REQUIRED_FIELDS + tuple(rest_names):
        bad = int((~np.isfinite(record[name].astype(np.float64))).sum())
        if bad:
            raise SplatFormatError(f"{path.name}: field '{name}' has {bad} NaN or infinite values")

    def stack(names: tuple[str, ...] | list[str]) -> torch.Tensor:
        return torch.from_numpy(np.stack([record[n].astype(np.float32) for n in names], -1))

    rest = stack(rest_names).reshape(-1, 3, k) if k else torch.zeros(len(record), 3, 0)
    return SplatScene(
        means=stack(POSITION_FIELDS),
        quats=stack(ROTATION_FIELDS),
        log_scales=stack(SCALE_FIELDS),
        opacity_logits=torch.from_numpy(record["opacity"].astype(np.float32)),
        sh_dc=stack(DC_FIELDS),
        sh_rest=rest,
        record=record.copy(),
        source=path.resolve(),
    )


def scene_record(scene: SplatScene) -> np.ndarray:
    """The scene as a 3DGS structured array (its own file's layout when it has one)."""
    g, k = scene.n_gaussians, scene.sh_rest.shape[2]
    if scene.record is not None and len(scene.record) == g:
        record = scene.record.copy()
    else:
        names = POSITION_FIELDS + NORMAL_FIELDS + DC_FIELDS + tuple(f"f_rest_{i}" for i in range(3 * k))
        names += ("opacity",) + SCALE_FIELDS + ROTATION_FIELDS
        record = np.zeros(g, dtype=[(n, "<f4") for n in names])
        for fields, values in (
            (POSITION_FIELDS, scene.means), (SCALE_FIELDS, scene.log_scales), (ROTATION_FIELDS, scene.quats),
        ):
            for i, name in enumerate(fields):
                record[name] = values[:, i].numpy()
        record["opacity"] = scene.opacity_logits.numpy()
    for i, name in enumerate(DC_FIELDS):
        record[name] = scene.sh_dc[:, i].numpy()
    rest_fields = [f for f in record.dtype.names if f.startswith("f_rest_")]
    if len(rest_fields) != 3 * k:
        raise ValueError(f"scene has {k} SH coefficients per channel but its record has {len(rest_fields)} f_rest fields")
    flat_rest = scene.sh_rest.reshape(g, -1).numpy()
    for i in range(3 * k):
        record[f"f_rest_{i}"] = flat_rest[:, i]
    return record


def write_splat_ply(
    scene: SplatScene,
    path: str | os.PathLike,
    colors: torch.Tensor | None = None,
    keep_higher_sh: bool = False,
    overwrite: bool = False,
) -> pathlib.Path:
    """Write ``scene`` (optionally recoloured with ``colors`` ``[3, G]`` RGB) as binary little-endian PLY.

    Never writes over the file the scene was read from; refuses an existing ``path`` unless
    ``overwrite``. Geometry fields are copied byte for byte from the source record.
    """
    from plyfile import PlyData, PlyElement

    path = pathlib.Path(path)
    if scene.source is not None and path.resolve() == scene.source:
        raise ValueError(f"refusing to overwrite the input splat file {path}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True or choose another name")
    if colors is not None:
        scene = scene.with_colors(colors, keep_higher_sh=keep_higher_sh)
    elif not keep_higher_sh:
        scene = SplatScene(scene.means, scene.quats, scene.log_scales, scene.opacity_logits, scene.sh_dc,
                           torch.zeros_like(scene.sh_rest), scene.record, scene.source)
    record = scene_record(scene)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    PlyData([PlyElement.describe(record, "vertex")], text=False, byte_order="<").write(str(tmp))
    os.replace(tmp, path)
    return path
