"""The live loop's check that a calibration matches the camera's frames."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.camera import CameraCalibration, check_frame_size, validate_calibration
from calibration.errors import CalibrationError


@pytest.fixture
def calibration() -> CameraCalibration:
    k = np.array([[900.0, 0.0, 640.0], [0.0, 900.0, 360.0], [0.0, 0.0, 1.0]])
    return CameraCalibration(k, np.zeros(5), (1280, 720), 0.1, np.array([0.1]))


def test_matching_frames_pass(calibration):
    check_frame_size(calibration, np.zeros((720, 1280, 3), np.uint8))
    check_frame_size(calibration, np.zeros((720, 1280), np.uint8))
    check_frame_size(calibration, (1280, 720))


@pytest.mark.parametrize("frame_shape", [(1080, 1920, 3), (1280, 720, 3), (360, 640)])
def test_other_frame_sizes_are_refused(calibration, frame_shape):
    with pytest.raises(CalibrationError, match=r"cam.json: calibrated for 1280x720 px frames "
                                               r"but the camera delivers"):
        check_frame_size(calibration, np.zeros(frame_shape, np.uint8), source="cam.json")


def test_validate_rejects_nan_distortion(calibration):
    bad = CameraCalibration(calibration.camera_matrix, np.array([0.1, np.nan, 0, 0, 0]),
                            (1280, 720), 0.1, np.array([0.1]))
    with pytest.raises(CalibrationError, match="dist_coeffs contains NaN"):
        validate_calibration(bad)
    assert validate_calibration(calibration) is calibration


def test_summary_without_per_view_errors(calibration):
    bare = CameraCalibration(calibration.camera_matrix, np.zeros(5), (1280, 720), 0.1,
                             np.zeros(0))
    text = bare.summary()
    assert "fx, fy       900.00" in text and "worst view" not in text
