"""Validators of calibration inputs: transform stacks, camera matrices, image sizes.

Public functions check their arguments with these on their first lines. Type problems
raise :class:`TypeError`; value problems raise :class:`~calibration.errors.CalibrationError`
(a :class:`ValueError`) whose message quotes the caller's name for the value (``name=``),
so a message read from a file can say ``calib.json: camera_matrix ...``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from calibration.errors import CalibrationError
from models.base import validation as _base


def as_array(value: Any, *, name: str, shape: tuple[int | None, ...] | None = None,
             finite: bool = True) -> np.ndarray:
    """:func:`models.base.validation.as_array` (float64) raising :class:`CalibrationError`."""
    return _base.as_array(value, name=name, shape=shape, finite=finite, error=CalibrationError)


def as_positive(value: Any, *, name: str, allow_zero: bool = False) -> float:
    """:func:`models.base.validation.as_positive` raising :class:`CalibrationError`."""
    return _base.as_positive(value, name=name, allow_zero=allow_zero, error=CalibrationError)


#: Largest translation (mm) of a tracked pose: 100 m is beyond any tracker's volume.
MAX_TRANSLATION_MM = 1e5


def as_transforms(value: Any, *, name: str, atol: float = 1e-4) -> np.ndarray:
    """Return an (N, 4, 4) float64 stack of rigid transforms (a single 4x4 becomes N=1).

    The rotation blocks must be orthonormal with determinant +1 within ``atol``, the
    last rows ``[0, 0, 0, 1]`` and the translations within :data:`MAX_TRANSLATION_MM`.
    """
    arr = as_array(value, name=name)
    if arr.shape == (4, 4):
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (4, 4):
        raise CalibrationError(f"{name} must be a stack of 4x4 transforms (Nx4x4), "
                               f"got shape {arr.shape}")
    if not np.allclose(arr[:, 3], [0.0, 0.0, 0.0, 1.0], atol=atol):
        raise CalibrationError(f"{name}: every transform needs the last row [0, 0, 0, 1]")
    rot = arr[:, :3, :3]
    gram = np.einsum("nij,nkj->nik", rot, rot)
    bad = np.flatnonzero(np.abs(gram - np.eye(3)).max(axis=(1, 2)) > atol)
    if bad.size:
        raise CalibrationError(f"{name}[{bad[0]}]: rotation block is not orthonormal "
                               f"(is it a rigid transform in mm?)")
    if np.any(np.linalg.det(rot) < 0):
        raise CalibrationError(f"{name}: a rotation block is a reflection (det < 0)")
    far = np.flatnonzero(np.abs(arr[:, :3, 3]).max(axis=1) > MAX_TRANSLATION_MM)
    if far.size:
        raise CalibrationError(f"{name}[{far[0]}]: translation {arr[far[0], :3, 3].tolist()} "
                               f"is beyond {MAX_TRANSLATION_MM:g} mm (are the units mm?)")
    return arr


def as_camera_matrix(value: Any, *, name: str = "camera_matrix") -> np.ndarray:
    """Return a 3x3 OpenCV intrinsic matrix ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``."""
    k = as_array(value, name=name, shape=(3, 3))
    if not np.allclose(k[2], [0.0, 0.0, 1.0]) or k[1, 0] != 0:
        raise CalibrationError(f"{name} must look like [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], "
                               f"got bottom rows {k[1].tolist()}, {k[2].tolist()}")
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise CalibrationError(f"{name}: focal lengths must be positive, "
                               f"got fx={k[0, 0]}, fy={k[1, 1]}")
    return k


#: Largest image side (px) a calibration may be for: far beyond any camera sensor.
MAX_IMAGE_SIDE_PX = 100_000


def as_image_size(value: Any, *, name: str = "image_size") -> tuple[int, int]:
    """Return ``(width, height)`` in pixels as two positive ints up to
    :data:`MAX_IMAGE_SIDE_PX`."""
    try:
        width, height = value
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"{name} must be [width, height] in pixels, got {value!r}") from exc
    out = []
    for v in (width, height):
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
            raise CalibrationError(f"{name} must be [width, height] in pixels, got {value!r}")
        if not np.isfinite(v) or v != int(v) or not 0 < int(v) <= MAX_IMAGE_SIDE_PX:
            raise CalibrationError(f"{name} must be two whole numbers from 1 to "
                                   f"{MAX_IMAGE_SIDE_PX} px, got {value!r}")
        out.append(int(v))
    return out[0], out[1]


