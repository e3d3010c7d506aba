"""Cached undistortion maps: correctness against OpenCV and reuse per calibration."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration.camera import CameraCalibration
from calibration.errors import CalibrationError
from calibration.undistort import undistorter_for


@pytest.fixture
def calibration() -> CameraCalibration:
    k = np.array([[700.0, 0.0, 322.0], [0.0, 698.0, 238.0], [0.0, 0.0, 1.0]])
    return CameraCalibration(k, np.array([-0.2, 0.1, 0.001, -0.001, 0.0]), (640, 480), 0.1,
                             np.array([0.1]))


def test_maps_are_cached_per_calibration(calibration):
    a = undistorter_for(calibration)
    assert undistorter_for(calibration) is a
    assert undistorter_for(calibration, alpha=0.0) is not a
    other = CameraCalibration(calibration.camera_matrix * [[1.01], [1.01], [1]],
                              calibration.dist_coeffs, (640, 480), 0.1, np.array([0.1]))
    assert undistorter_for(other) is not a


def test_undistorted_image_matches_cv2_undistort(calibration, rng):
    frame = cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (0, 0), 3)
    got = undistorter_for(calibration).undistort(frame)
    want = cv2.undistort(frame, calibration.camera_matrix, calibration.dist_coeffs)
    diff = np.abs(got.astype(int) - want.astype(int))[20:-20, 20:-20]
    assert diff.mean() < 0.5


def test_points_follow_the_pinhole_model(calibration):
    undistorter = undistorter_for(calibration)
    rays = np.array([[0.1, -0.2, 1.0], [-0.3, 0.25, 1.0], [0.0, 0.0, 1.0]])
    zero = np.zeros(3)
    distorted, _ = cv2.projectPoints(rays, zero, zero, calibration.camera_matrix,
                                     calibration.dist_coeffs)
    ideal, _ = cv2.projectPoints(rays, zero, zero, undistorter.camera_matrix, None)
    np.testing.assert_allclose(undistorter.undistort_points(distorted.reshape(-1, 2)),
                               ideal.reshape(-1, 2), atol=1e-3)


def test_wrong_frame_size_is_refused(calibration):
    with pytest.raises(CalibrationError, match="calibrated for 640x480"):
        undistorter_for(calibration).undistort(np.zeros((720, 1280), np.uint8))
