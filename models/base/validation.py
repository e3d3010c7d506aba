"""Validators shared by the ``models`` package (and usable by ``guidance``).

Public functions validate their arguments with these on their first lines, so that a
wrong argument gives a message naming the caller's variable (``name=``). Type problems
raise :class:`TypeError`; value problems raise :class:`~models.base.errors.InputError` (a
:class:`ValueError`), or the subclass a package passes as ``error=`` (``calibration`` passes
its ``CalibrationError``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from models.base.errors import InputError


def as_array(value: Any, *, name: str, shape: tuple[int | None, ...] | None = None,
             finite: bool = True, dtype: type = np.float64,
             error: type[InputError] = InputError) -> np.ndarray:
    """Return ``value`` as a numpy array of ``dtype``, checking shape and finiteness.

    Parameters
    ----------
    value : array_like
        The input.
    name : str
        The caller's variable name, quoted in error messages.
    shape : tuple of int or None, optional
        Required shape; ``None`` entries match any length.
    finite : bool, default True
        Reject NaN and infinity.
    dtype : type, default numpy.float64
        Output dtype.
    error : type, default InputError
        The exception raised for a wrong value.

    Examples
    --------
    >>> as_array([[1, 2, 3]], name="points", shape=(None, 3)).shape
    (1, 3)
    """
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be numeric array-like, got {type(value).__name__}") from exc
    if shape is not None:
        ok = arr.ndim == len(shape) and all(
            want is None or want == got for want, got in zip(shape, arr.shape, strict=False))
        if not ok:
            want_txt = "x".join("N" if s is None else str(s) for s in shape)
            raise error(f"{name} must have shape {want_txt}, got {arr.shape}")
    if finite and not np.all(np.isfinite(arr)):
        raise error(f"{name} contains NaN or infinite values")
    return arr


def as_points(value: Any, *, name: str, dim: int = 3) -> np.ndarray:
    """Return an (N, dim) float64 array of finite points; a single point becomes (1, dim)."""
    arr = as_array(value, name=name)
    if arr.ndim == 1 and arr.shape[0] == dim:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise InputError(f"{name} must have shape Nx{dim}, got {arr.shape}")
    return arr


#: Largest translation (mm) of a transform read from outside: 10 m, beyond any OR.
MAX_TRANSLATION_MM = 10_000.0


def as_transform(value: Any, *, name: str, rigid: bool = False, atol: float = 1e-6,
                 max_translation_mm: float | None = None) -> np.ndarray:
    """Return a 4x4 float64 homogeneous transform, checking its last row.

    With ``rigid=True`` the upper 3x3 block must be a proper rotation
    (orthonormal, determinant +1 within ``atol``); with ``max_translation_mm`` every
    translation component must lie within it (use :data:`MAX_TRANSLATION_MM` for files).

    Examples
    --------
    >>> float(as_transform(np.eye(4), name="patient_from_camera", rigid=True)[3, 3])
    1.0
    """
    arr = as_array(value, name=name, shape=(4, 4))
    if not np.allclose(arr[3], [0.0, 0.0, 0.0, 1.0], atol=atol):
        raise InputError(f"{name} must be homogeneous: last row [0, 0, 0, 1], got {arr[3]}")
    if rigid:
        rot = arr[:3, :3]
        if not np.allclose(rot @ rot.T, np.eye(3), atol=max(atol, 1e-6) * 100):
            raise InputError(f"{name} rotation block is not orthonormal")
        if np.linalg.det(rot) < 0:
            raise InputError(f"{name} rotation block is a reflection (det < 0)")
    if max_translation_mm is not None and np.any(np.abs(arr[:3, 3]) > max_translation_mm):
        raise InputError(f"{name} translation {arr[:3, 3].tolist()} mm is beyond "
                         f"{max_translation_mm:g} mm (wrong units?)")
    return arr


def as_positive(value: Any, *, name: str, allow_zero: bool = False,
                error: type[InputError] = InputError) -> float:
    """Return ``value`` as a finite positive float (or non-negative with ``allow_zero``)."""
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a number, got {value!r}") from exc
    if not np.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise error(f"{name} must be a finite {kind} number, got {value!r}")
    return number


def as_choice(value: Any, choices: Iterable[Any], *, name: str) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise naming the valid choices."""
    options = list(choices)
    if value not in options:
        listed = ", ".join(str(c) for c in options)
        raise InputError(f"{name} {value!r} is not available; choose one of: {listed}")
    return value
