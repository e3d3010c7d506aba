"""Tracked pose files for ``iort calibrate pivot`` and ``iort calibrate hand-eye``.

Accepted layouts (poses are rigid 4x4 transforms, translations in mm):

* JSON: a list of 4x4 matrices, or an object whose field (e.g. ``"tracker_from_tool"``)
  holds such a list;
* CSV / TXT: one pose per row, 16 numbers (row-major 4x4) or 12 (row-major top 3x4),
  separated by commas or whitespace; ``#`` starts a comment, a non-numeric first row is a
  header;
* NPY: an ``(N, 4, 4)`` array.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calibration.errors import CalibrationError
from calibration.validation import as_transforms
from models.base.files import read_json_file


def _rows_to_poses(rows: np.ndarray, source: str) -> np.ndarray:
    if rows.ndim != 2 or rows.shape[1] not in (12, 16):
        raise CalibrationError(f"{source}: each row must hold 16 (4x4) or 12 (3x4) numbers, "
                               f"got {rows.shape[-1] if rows.ndim == 2 else rows.shape}")
    n = rows.shape[0]
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, : rows.shape[1] // 4, :] = rows.reshape(n, -1, 4)
    return poses


def _read_text_rows(path: Path) -> np.ndarray:
    rows = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.replace(",", " ").split()
        try:
            rows.append([float(v) for v in fields])
        except ValueError as exc:
            if not rows:  # header row
                continue
            raise CalibrationError(f"{path}:{line_no}: not a row of numbers ({exc})") from exc
    if not rows:
        raise CalibrationError(f"{path}: no poses found")
    if len({len(r) for r in rows}) != 1:
        raise CalibrationError(f"{path}: rows have different numbers of values")
    return np.asarray(rows)


def load_poses(path: str | Path, *, field: str | None = None) -> np.ndarray:
    """Read an ``(N, 4, 4)`` stack of rigid poses from JSON, CSV/TXT or NPY.

    Parameters
    ----------
    path : str or Path
        The file.
    field : str, optional
        For a JSON object: the field holding the list of poses.

    Raises
    ------
    CalibrationError
        Unreadable file, wrong layout, NaN, or non-rigid matrices; names file and field.
    """
    path = Path(path)
    source = f"{path}" + (f" field {field}" if field else "")
    if not path.is_file():
        raise CalibrationError(f"pose file {path} not found")
    suffix = path.suffix.lower()
    if suffix == ".json":
        data = read_json_file(path, what="pose file", error=CalibrationError)
        if isinstance(data, dict):
            if field is None or field not in data:
                raise CalibrationError(f"{path}: expected field {field!r} holding a list of "
                                       f"4x4 poses; found {', '.join(map(str, data)) or 'none'}")
            data = data[field]
        try:
            poses = np.asarray(data, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise CalibrationError(f"{source}: poses must be lists of numbers ({exc})") from exc
        if poses.ndim == 2:
            poses = _rows_to_poses(poses, source)
    elif suffix in (".csv", ".txt"):
        poses = _rows_to_poses(_read_text_rows(path), source)
    elif suffix == ".npy":
        try:
            poses = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise CalibrationError(f"{path}: not a plain numeric .npy array ({exc})") from exc
    else:
        raise CalibrationError(f"{path}: unknown pose file type {suffix!r}; use .json, .csv, "
                               f".txt or .npy")
    try:
        return as_transforms(poses, name=source)
    except TypeError as exc:
        raise CalibrationError(str(exc)) from exc
