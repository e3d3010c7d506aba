"""Read and write camera calibrations: JSON (ours) and OpenCV YAML/XML.

OpenCV files are written with ``cv2.FileStorage`` and read with the pure-Python
:mod:`calibration.opencv_storage` (OpenCV's parser can abort the process on a bad file).

JSON layout (``"format": "iort-camera-calibration"``, ``"version": 1``)::

    {"image_size": [1280, 720],
     "camera_matrix": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],
     "dist_coeffs": [k1, k2, p1, p2, k3],
     "rms_px": 0.07, "per_view_px": [...],
     "intrinsics_std_px": [sfx, sfy, scx, scy] | null, "coverage_percent": 77.0 | null,
     "coverage_map": [[...]], "view_names": [...], "board": {...} | null,
     "created_utc": "2026-11-23T13:00:00Z"}

The YAML/XML file uses the key names of OpenCV's own calibration sample
(``camera_matrix``, ``distortion_coefficients``, ``image_width``, ``image_height``,
``avg_reprojection_error``, ``per_view_reprojection_errors``) so other tools (OpenCV
samples, ROS camera tools after renaming, scikit-surgery) read it directly.

Reading is strict: a missing key, a wrong shape, NaN/infinity, a principal point outside
``image_size`` or an implausible focal length raise
:class:`~calibration.errors.CalibrationError` naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import cv2
import numpy as np
from pydantic import Field

from calibration.camera import (
    MAX_ABS_DIST_COEFF,
    CameraCalibration,
    check_frame_size,
    validate_calibration,
)
from calibration.errors import CalibrationError
from calibration.opencv_storage import read_opencv_storage
from models.base.files import read_json_file
from models.base.schema import FileSchema, bounded, check_file

FORMAT_NAME = "iort-camera-calibration"
FORMAT_VERSION = 1
JSON_SUFFIXES = (".json",)
OPENCV_SUFFIXES = (".yaml", ".yml", ".xml")
_REQUIRED_JSON = ("camera_matrix", "dist_coeffs", "image_size", "rms_px", "per_view_px")
_REQUIRED_CV = ("camera_matrix", "distortion_coefficients", "image_width", "image_height",
                "avg_reprojection_error")


_Coefficient = Annotated[float, bounded(-MAX_ABS_DIST_COEFF, MAX_ABS_DIST_COEFF,
                                         "distortion coefficient", low_inclusive=True)]
_MatrixEntry = Annotated[float, bounded(-1e6, 1e6, "camera matrix entry (px)",
                                        low_inclusive=True)]
_ErrorPx = Annotated[float, bounded(0.0, 1e4, "reprojection error (px)", low_inclusive=True)]


class CalibrationFile(FileSchema):
    """Schema of the JSON calibration file: types, units and ranges of every field.

    Shapes and the consistency of the intrinsics with ``image_size`` are checked by
    :func:`calibration.camera.validate_calibration` (shared with the YAML/XML reader).
    """

    format: Literal["iort-camera-calibration"] = FORMAT_NAME
    version: int = Field(FORMAT_VERSION, ge=1, le=FORMAT_VERSION, strict=True)
    image_size: list[Any]
    camera_matrix: list[list[_MatrixEntry]]
    dist_coeffs: list[_Coefficient]
    rms_px: float = bounded(0.0, 1e3, "RMS reprojection error (px)", low_inclusive=True)
    per_view_px: list[_ErrorPx]
    intrinsics_std_px: list[float | None] | None = None
    coverage_percent: float | None = bounded(0.0, 100.0, "board coverage of the image (%)",
                                             low_inclusive=True, default=None)
    coverage_map: list[list[Annotated[int, Field(ge=0, le=10**6, strict=True)]]] | None = None
    view_names: list[str] = Field(default_factory=list)
    board: dict[str, Any] | None = None


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def to_json_dict(calibration: CameraCalibration) -> dict[str, Any]:
    """The JSON object written by :func:`save_calibration` (NaN becomes ``null``)."""
    std = [_finite_or_none(v) for v in calibration.intrinsics_std_px]
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "image_size": [int(v) for v in calibration.image_size],
        "camera_matrix": np.asarray(calibration.camera_matrix, float).tolist(),
        "dist_coeffs": np.asarray(calibration.dist_coeffs, float).ravel().tolist(),
        "rms_px": float(calibration.rms_px),
        "per_view_px": np.asarray(calibration.per_view_px, float).ravel().tolist(),
        "intrinsics_std_px": None if all(v is None for v in std) else std,
        "coverage_percent": _finite_or_none(calibration.coverage_percent),
        "coverage_map": np.asarray(calibration.coverage_map).astype(int).tolist(),
        "view_names": list(calibration.view_names),
        "board": calibration.board,
        "distortion_model": calibration.distortion_model,
        "edge_uncertainty_px": _finite_or_none(calibration.edge_uncertainty_px),
        "created_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def from_json_dict(data: Any, *, source: str = "calibration") -> CameraCalibration:
    """Build and validate a calibration from a parsed JSON object."""
    if not isinstance(data, dict):
        raise CalibrationError(f"{source}: expected a JSON object with camera_matrix, "
                               f"dist_coeffs, image_size, rms_px, per_view_px")
    missing = [k for k in _REQUIRED_JSON if k not in data]
    if missing:
        raise CalibrationError(f"{source}: missing field(s) {', '.join(missing)}; is this a "
                               f"camera calibration written by 'iort calibrate camera'?")
    if data.get("format", FORMAT_NAME) != FORMAT_NAME:
        raise CalibrationError(f"{source}: format {data['format']!r} is not {FORMAT_NAME!r}")
    version = data.get("version", FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CalibrationError(f"{source}: field version must be a whole number (the file "
                               f"format version, {FORMAT_VERSION}), got {version!r}")
    if version > FORMAT_VERSION:
        raise CalibrationError(f"{source}: version {data['version']} is newer than this program "
                               f"reads ({FORMAT_VERSION}); update iort-guidance")
    fields: dict[str, Any] = {}
    for key in ("camera_matrix", "dist_coeffs", "per_view_px"):
        value = data[key]
        if value is None or isinstance(value, str | dict):
            raise CalibrationError(f"{source}: field {key} must be a list of numbers, "
                                   f"got {value!r}")
        try:
            fields[key] = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise CalibrationError(f"{source}: field {key} must hold numbers ({exc})") from exc
    if isinstance(data["rms_px"], bool) or not isinstance(data["rms_px"], int | float):
        raise CalibrationError(f"{source}: field rms_px must be a number, got {data['rms_px']!r}")
    check_file(CalibrationFile, data, source=source, error=CalibrationError,
               hint="re-run 'iort calibrate camera' or fix the file")
    if len({len(row) for row in data.get("coverage_map") or []}) > 1:
        raise CalibrationError(f"{source}: field coverage_map rows differ in length; re-run "
                               "'iort calibrate camera' or fix the file")
    std = data.get("intrinsics_std_px")
    coverage = data.get("coverage_percent")
    calibration = CameraCalibration(
        camera_matrix=fields["camera_matrix"], dist_coeffs=fields["dist_coeffs"].ravel(),
        image_size=data["image_size"], rms_px=float(data["rms_px"]),
        per_view_px=fields["per_view_px"].ravel(),
        intrinsics_std_px=(np.full(4, np.nan) if std is None else
                           np.array([np.nan if v is None else v for v in std], float)),
        coverage_percent=float("nan") if coverage is None else float(coverage),
        coverage_map=np.asarray(data.get("coverage_map") or np.zeros((0, 0)), np.int64),
        view_names=tuple(str(v) for v in data.get("view_names", ())),
        board=data.get("board"),
        distortion_model=str(data.get("distortion_model") or ""),
        edge_uncertainty_px=_optional_number(data, "edge_uncertainty_px", source),
    )
    validate_calibration(calibration, source=source)
    return _normalised(calibration)


def _optional_number(data: dict[str, Any], key: str, source: str) -> float:
    """A finite number >= 0 or null/absent (NaN)."""
    value = data.get(key)
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or not 0 <= value < 1e6:
        raise CalibrationError(f"{source}: field {key} must be a number >= 0 or null, "
                               f"got {value!r}")
    return float(value)


def _normalised(calibration: CameraCalibration) -> CameraCalibration:
    """Copy with canonical types (tuple image size of ints)."""
    width, height = calibration.image_size
    return dataclasses.replace(
        calibration, camera_matrix=np.asarray(calibration.camera_matrix, float),
        dist_coeffs=np.asarray(calibration.dist_coeffs, float).ravel(),
        image_size=(int(width), int(height)), rms_px=float(calibration.rms_px),
        per_view_px=np.asarray(calibration.per_view_px, float).ravel(),
        intrinsics_std_px=np.asarray(calibration.intrinsics_std_px, float))


def _write_opencv(calibration: CameraCalibration, path: Path) -> None:
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    if not fs.isOpened():
        raise CalibrationError(f"{path}: cannot open for writing")
    try:
        width, height = calibration.image_size
        fs.write("image_width", int(width))
        fs.write("image_height", int(height))
        fs.write("camera_matrix", np.asarray(calibration.camera_matrix, np.float64))
        fs.write("distortion_coefficients",
                 np.asarray(calibration.dist_coeffs, np.float64).reshape(1, -1))
        fs.write("avg_reprojection_error", float(calibration.rms_px))
        fs.write("per_view_reprojection_errors",
                 np.asarray(calibration.per_view_px, np.float64).reshape(-1, 1))
        if np.all(np.isfinite(calibration.intrinsics_std_px)):
            fs.write("intrinsics_std_px",
                     np.asarray(calibration.intrinsics_std_px, np.float64).reshape(1, -1))
        if math.isfinite(calibration.coverage_percent):
            fs.write("coverage_percent", float(calibration.coverage_percent))
    finally:
        fs.release()


def _read_opencv(path: Path) -> CameraCalibration:
    """Read an OpenCV YAML/XML calibration with the pure-Python reader (OpenCV's own
    parser can abort the process on a malformed file)."""
    nodes = read_opencv_storage(path)
    missing = [k for k in _REQUIRED_CV if k not in nodes]
    if missing:
        raise CalibrationError(f"{path}: missing field(s) {', '.join(missing)}; expected "
                               f"OpenCV calibration keys {', '.join(_REQUIRED_CV)}")

    def mat(key: str) -> np.ndarray:
        value = nodes[key]
        if not isinstance(value, np.ndarray):
            raise CalibrationError(f"{path}: field {key} is not a readable OpenCV matrix "
                                   "(needs !!opencv-matrix with rows, cols, dt and data); "
                                   "re-run 'iort calibrate camera' or fix the file")
        return value

    def real(key: str) -> float:
        value = nodes[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CalibrationError(f"{path}: field {key} must be a number")
        return float(value)

    calibration = CameraCalibration(
        camera_matrix=mat("camera_matrix"),
        dist_coeffs=mat("distortion_coefficients").ravel(),
        image_size=(real("image_width"), real("image_height")),
        rms_px=real("avg_reprojection_error"),
        per_view_px=(np.zeros(0) if "per_view_reprojection_errors" not in nodes
                     else mat("per_view_reprojection_errors").ravel()),
        intrinsics_std_px=(np.full(4, np.nan) if "intrinsics_std_px" not in nodes
                           else mat("intrinsics_std_px").ravel()[:4]),
        coverage_percent=(float("nan") if "coverage_percent" not in nodes
                          else real("coverage_percent")),
    )
    validate_calibration(calibration, source=str(path))
    return _normalised(calibration)


def save_calibration(calibration: CameraCalibration, path: str | Path) -> Path:
    """Write ``calibration`` as JSON (``.json``) or OpenCV YAML/XML (``.yaml``/``.yml``/``.xml``).

    The calibration is validated first, so a bad one is never written.
    """
    path = Path(path)
    validate_calibration(calibration, source="calibration to save")
    suffix = path.suffix.lower()
    if suffix in JSON_SUFFIXES:
        text = json.dumps(to_json_dict(calibration), indent=2, allow_nan=False)
        path.write_text(text + "\n", encoding="utf-8")
    elif suffix in OPENCV_SUFFIXES:
        _write_opencv(calibration, path)
    else:
        raise CalibrationError(f"{path}: unknown calibration file type {suffix!r}; use .json, "
                               f".yaml, .yml or .xml")
    return path


def load_calibration(path: str | Path) -> CameraCalibration:
    """Read and validate a calibration from JSON or OpenCV YAML/XML.

    Raises
    ------
    CalibrationError
        File missing or unreadable, unknown type, missing keys, NaN, wrong shapes or an
        ``image_size`` inconsistent with the intrinsics; the message names the file and field.
    """
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"calibration file {path} not found; create one with "
                               f"'iort calibrate camera'")
    suffix = path.suffix.lower()
    if suffix in OPENCV_SUFFIXES:
        return _read_opencv(path)
    if suffix not in JSON_SUFFIXES:
        raise CalibrationError(f"{path}: unknown calibration file type {suffix!r}; use .json, "
                               f".yaml, .yml or .xml")
    data = read_json_file(path, what="calibration file", error=CalibrationError,
                          hint="re-run 'iort calibrate camera'")
    return from_json_dict(data, source=str(path))


def load_calibration_for_frames(path: str | Path,
                                frame_or_size: np.ndarray | tuple[int, int]) -> CameraCalibration:
    """Load a calibration and refuse it unless it was made for frames of this size.

    The live loop calls this with the first frame of its source.

    Raises
    ------
    CalibrationError
        Anything :func:`load_calibration` raises, or an ``image_size`` that differs from the
        frames (message names the file, both sizes and what to do).
    """
    calibration = load_calibration(path)
    check_frame_size(calibration, frame_or_size, source=str(path))
    return calibration
