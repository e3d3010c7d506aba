"""Hand-eye AX = XB with OpenCV 4 conventions, on synthetic robot/tracker motions."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.errors import CalibrationError
from calibration.handeye import METHODS, calibrate_hand_eye, motion_pairs


def transform(rotvec_deg, translation_mm) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = cv2.Rodrigues(np.radians(np.asarray(rotvec_deg, float)))[0]
    out[:3, 3] = translation_mm
    return out


GRIPPER_FROM_CAMERA = transform([10.0, -25.0, 95.0], [40.0, -15.0, 80.0])
BASE_FROM_TARGET = transform([180.0, 0.0, 20.0], [500.0, 100.0, -50.0])


def eye_in_hand(rng: np.random.Generator, n: int, *, rot_noise_deg: float = 0.0,
                trans_noise_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Robot poses base_from_gripper and observed camera_from_target (OpenCV's inputs)."""
    grip, cam = [], []
    for _ in range(n):
        base_from_gripper = transform(rng.uniform(-40, 40, 3),
                                      np.array([400.0, 0.0, 300.0]) + rng.uniform(-100, 100, 3))
        camera_from_target = (np.linalg.inv(GRIPPER_FROM_CAMERA)
                              @ np.linalg.inv(base_from_gripper) @ BASE_FROM_TARGET)
        # Noise on both the tracked gripper and the camera's view of the target.
        grip.append(base_from_gripper @ transform(rng.normal(0, rot_noise_deg / 2, 3),
                                                  rng.normal(0, trans_noise_mm / 2, 3)))
        cam.append(transform(rng.normal(0, rot_noise_deg, 3), rng.normal(0, trans_noise_mm, 3))
                   @ camera_from_target)
    return np.array(grip), np.array(cam)


def errors(x: np.ndarray) -> tuple[float, float]:
    diff = np.linalg.inv(GRIPPER_FROM_CAMERA) @ x
    angle = np.degrees(np.linalg.norm(cv2.Rodrigues(diff[:3, :3])[0]))
    return float(angle), float(np.linalg.norm(x[:3, 3] - GRIPPER_FROM_CAMERA[:3, 3]))


@pytest.mark.parametrize("method", METHODS)
def test_noise_free_motions_give_the_exact_x(rng, method):
    grip, cam = eye_in_hand(rng, 8)
    result = calibrate_hand_eye(grip, cam, method=method)
    np.testing.assert_allclose(result.gripper_from_camera, GRIPPER_FROM_CAMERA, atol=1e-8)
    assert result.rotation_rms_deg < 1e-6 and result.translation_rms_mm < 1e-6
    assert result.n_pairs == 28


@pytest.mark.parametrize("method", METHODS)
def test_noisy_motions_within_acceptance(rng, method):
    grip, cam = eye_in_hand(rng, 20, rot_noise_deg=0.1, trans_noise_mm=0.3)
    result = calibrate_hand_eye(grip, cam, method=method)
    rot_err, trans_err = errors(result.gripper_from_camera)
    assert rot_err <= 0.2
    assert trans_err <= 1.0
    assert 0.05 < result.rotation_rms_deg < 1.0


def test_eye_to_hand_via_inverted_gripper_poses(rng):
    # Camera fixed in the base frame, target carried by the gripper (OpenCV docs' recipe).
    base_from_camera = transform([120.0, 10.0, -30.0], [0.0, 600.0, 900.0])
    gripper_from_target = transform([5.0, 0.0, 0.0], [0.0, 0.0, 120.0])
    grip, cam = [], []
    for _ in range(12):
        base_from_gripper = transform(rng.uniform(-40, 40, 3), rng.uniform(-100, 100, 3))
        grip.append(np.linalg.inv(base_from_gripper))
        cam.append(np.linalg.inv(base_from_camera) @ base_from_gripper @ gripper_from_target)
    result = calibrate_hand_eye(np.array(grip), np.array(cam), method="park")
    np.testing.assert_allclose(result.gripper_from_camera, base_from_camera, atol=1e-8)


def test_pairs_follow_opencv_definitions(rng):
    grip, cam = eye_in_hand(rng, 3)
    a, b = motion_pairs(grip, cam)
    np.testing.assert_allclose(a[0], np.linalg.inv(grip[1]) @ grip[0], atol=1e-12)
    np.testing.assert_allclose(b[0], cam[1] @ np.linalg.inv(cam[0]), atol=1e-12)
    np.testing.assert_allclose(a @ GRIPPER_FROM_CAMERA, GRIPPER_FROM_CAMERA @ b, atol=1e-8)


def test_single_axis_rotation_is_refused():
    grip, cam = [], []
    for angle in np.linspace(-40, 40, 8):
        g = transform([0.0, 0.0, angle], [angle, 0.0, 0.0])
        grip.append(g)
        cam.append(np.linalg.inv(GRIPPER_FROM_CAMERA) @ np.linalg.inv(g) @ BASE_FROM_TARGET)
    with pytest.raises(CalibrationError, match="about \\(nearly\\) one axis"):
        calibrate_hand_eye(np.array(grip), np.array(cam))


def test_input_errors(rng):
    grip, cam = eye_in_hand(rng, 6)
    with pytest.raises(CalibrationError, match="same instants"):
        calibrate_hand_eye(grip, cam[:5])
    with pytest.raises(CalibrationError, match="method 'lm' unknown"):
        calibrate_hand_eye(grip, cam, method="lm")
    with pytest.raises(CalibrationError, match="at least 3 poses"):
        calibrate_hand_eye(grip[:2], cam[:2])
    still = np.tile(grip[:1], (5, 1, 1))
    with pytest.raises(CalibrationError, match=r"rotates at most 0.0 deg"):
        calibrate_hand_eye(still, np.tile(cam[:1], (5, 1, 1)))


def test_matches_opencv4_calibrate_hand_eye():
    # Reference produced by OpenCV 4.10's cv2.calibrateHandEye (data/make_handeye_opencv4.py).
    data = json.loads((Path(__file__).parent / "data" / "handeye_opencv4.json").read_text())
    grip = np.array(data["base_from_gripper"])
    cam = np.array(data["camera_from_target"])
    for method in ("park", "daniilidis"):
        got = calibrate_hand_eye(grip, cam, method=method).gripper_from_camera
        np.testing.assert_allclose(got, np.array(data["opencv"][method]), atol=1e-9)
    got = calibrate_hand_eye(grip, cam, method="tsai").gripper_from_camera
    want = np.array(data["opencv"]["tsai"])
    np.testing.assert_allclose(got[:3, :3], want[:3, :3], atol=1e-4)
    np.testing.assert_allclose(got[:3, 3], want[:3, 3], atol=0.01)
