"""Calibration speed and accuracy on synthetic data with a known camera.

Keys
----
calibration.detect_ms         ChArUco detection per 1280x720 frame (best of repeats), ms
calibration.calibrate_s       calibrate_camera on 20 views (detections given), s
calibration.fx_error_percent  |fx - truth| / truth on those views, %
calibration.rms_px            calibration RMS reprojection error, px
calibration.pivot_tip_error_mm     tip error, 40 poses with 0.25 mm noise, mm
calibration.handeye_rotation_error_deg / handeye_translation_error_mm
                              Park–Martin on 20 poses, 0.1 deg / 0.3 mm noise
"""

from __future__ import annotations

import cv2
import numpy as np

from benchmarks import best_time_s
from calibration.boards import load_board
from calibration.charuco import detect_charuco, make_detector
from calibration.handeye import calibrate_hand_eye
from calibration.intrinsics import calibrate_camera
from calibration.pivot import pivot_calibration
from calibration.synthetic import default_camera, random_board_poses, render_view

GROUP = "calibration"


def _transform(rotvec_deg: np.ndarray, translation_mm: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = cv2.Rodrigues(np.radians(rotvec_deg))[0]
    out[:3, 3] = translation_mm
    return out


def _pivot_error_mm(rng: np.random.Generator) -> float:
    tip = np.array([3.0, -2.0, 160.0])
    pivot = np.array([50.0, -20.0, 400.0])
    poses = np.tile(np.eye(4), (40, 1, 1))
    for pose in poses:
        rot = cv2.Rodrigues(np.radians(rng.uniform(-25, 25, 3)))[0]
        pose[:3, :3] = rot
        pose[:3, 3] = pivot - rot @ tip + rng.normal(0, 0.25, 3)
    result = pivot_calibration(poses, rng=rng)
    return float(np.linalg.norm(result.tip_mm - tip))


def _hand_eye_errors(rng: np.random.Generator) -> tuple[float, float]:
    x = _transform(np.array([10.0, -25.0, 95.0]), np.array([40.0, -15.0, 80.0]))
    base_from_target = _transform(np.array([180.0, 0.0, 20.0]), np.array([500.0, 100.0, -50.0]))
    grip, cam = [], []
    for _ in range(20):
        g = _transform(rng.uniform(-40, 40, 3),
                       np.array([400.0, 0.0, 300.0]) + rng.uniform(-100, 100, 3))
        c = np.linalg.inv(x) @ np.linalg.inv(g) @ base_from_target
        grip.append(g @ _transform(rng.normal(0, 0.05, 3), rng.normal(0, 0.15, 3)))
        cam.append(_transform(rng.normal(0, 0.1, 3), rng.normal(0, 0.3, 3)) @ c)
    result = calibrate_hand_eye(np.array(grip), np.array(cam), method="park")
    diff = np.linalg.inv(x) @ result.gripper_from_camera
    angle = float(np.degrees(np.linalg.norm(cv2.Rodrigues(diff[:3, :3])[0])))
    return angle, float(np.linalg.norm(result.gripper_from_camera[:3, 3] - x[:3, 3]))


def run(*, quick: bool = False) -> dict[str, float]:
    """Time detection and calibration; measure accuracy against the synthetic truth."""
    rng = np.random.default_rng(20261123)
    board = load_board("charuco_7x5_30mm")
    camera = default_camera((1280, 720))
    n_views = 20
    poses = random_board_poses(board, camera, n_views, rng=rng)
    images = [render_view(board, camera, pose, rng=rng) for pose in poses]
    detector = make_detector(board)
    repeat = 1 if quick else 3
    sample = images[:3] if quick else images[:8]
    detect_s = best_time_s(lambda: [detect_charuco(im, board, detector) for im in sample],
                           repeat=repeat) / len(sample)
    detections = [detect_charuco(im, board, detector) for im in images]
    result = None

    def calibrate() -> None:
        nonlocal result
        result = calibrate_camera(detections, camera.image_size, board)

    calibrate_s = best_time_s(calibrate, repeat=repeat)
    fx_true = camera.camera_matrix[0, 0]
    rot_err, trans_err = _hand_eye_errors(rng)
    return {
        "calibration.detect_ms": 1000.0 * detect_s,
        "calibration.calibrate_s": calibrate_s,
        "calibration.fx_error_percent": 100.0 * abs(result.fx - fx_true) / fx_true,
        "calibration.rms_px": result.rms_px,
        "calibration.pivot_tip_error_mm": _pivot_error_mm(rng),
        "calibration.handeye_rotation_error_deg": rot_err,
        "calibration.handeye_translation_error_mm": trans_err,
    }
