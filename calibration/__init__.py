"""Camera and tool calibration (numpy + OpenCV only; no ``models`` or ``guidance`` imports).

Modules
-------
boards       ChArUco board definitions (``assets/boards/*.json``) -> :class:`BoardSpec`
charuco      ChArUco detection with the OpenCV 5 API
intrinsics   camera calibration with view selection, outlier rejection, coverage, uncertainty
camera       :class:`CameraCalibration` and :func:`check_frame_size` for the live loop
io           JSON and OpenCV YAML/XML calibration files, strict validation
undistort    undistortion maps cached per calibration
pivot        pointer-tip pivot calibration (least squares + seeded RANSAC, spread check)
handeye      AX = XB (Tsai–Lenz, Park–Martin, Daniilidis) with OpenCV 4 conventions
pose_files   tracked pose files for pivot and hand-eye
printing     printable boards and tool marker sheets at true size
synthetic    rendered ChArUco views with a known lens (tests, benchmarks)
errors       :class:`CalibrationError` (a ``ValueError``)

The names most callers need are re-exported here.
"""

from calibration.camera import CameraCalibration, check_frame_size
from calibration.errors import CalibrationError
from calibration.io import load_calibration, load_calibration_for_frames, save_calibration
from calibration.undistort import Undistorter, undistorter_for

__all__ = [
    "CalibrationError",
    "CameraCalibration",
    "Undistorter",
    "check_frame_size",
    "load_calibration",
    "load_calibration_for_frames",
    "save_calibration",
    "undistorter_for",
]
