"""ChArUco detection against the exact projection of the synthetic views."""

from __future__ import annotations

import cv2
import numpy as np

from calibration.boards import board_from_values
from calibration.charuco import detect_charuco, make_detector, to_grey
from calibration.synthetic import project_corners


def test_detected_corners_match_the_true_projection(synthetic_views):
    sv = synthetic_views
    detector = make_detector(sv.board)
    errors = []
    for image, pose in zip(sv.images[:6], sv.poses[:6], strict=True):
        det = detect_charuco(image, sv.board, detector)
        assert det.n_corners >= 12
        assert det.corners_px.shape == (det.n_corners, 2)
        assert det.ids.dtype == np.int32
        truth = project_corners(sv.board, sv.camera, pose)[det.ids]
        errors.append(np.linalg.norm(det.corners_px - truth, axis=1))
    all_errors = np.concatenate(errors)
    assert np.sqrt(np.mean(all_errors ** 2)) < 0.2
    assert all_errors.max() < 0.6


def test_colour_input_gives_the_same_corners(synthetic_views):
    grey = synthetic_views.images[0]
    bgr = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    a = detect_charuco(grey, synthetic_views.board)
    b = detect_charuco(bgr, synthetic_views.board)
    np.testing.assert_allclose(a.corners_px, b.corners_px, atol=1e-9)
    assert to_grey(bgr).shape == grey.shape


def test_wrong_dictionary_finds_nothing(synthetic_views):
    wrong = board_from_values("7x5", 30, 22, "DICT_4X4_50")
    det = detect_charuco(synthetic_views.images[0], wrong)
    assert det.n_corners == 0 and det.n_markers == 0


def test_wrong_layout_reports_foreign_markers(synthetic_views):
    wrong = board_from_values("6x5", 30, 22, "DICT_5X5_100")
    det = detect_charuco(synthetic_views.images[0], wrong)
    assert det.n_corners == 0
    assert set(det.foreign_marker_ids.tolist()) <= {15, 16}
    assert det.foreign_marker_ids.size > 0


def test_blur_lowers_sharpness(synthetic_views):
    image = synthetic_views.images[1]
    sharp = detect_charuco(image, synthetic_views.board).sharpness
    blurred = detect_charuco(cv2.GaussianBlur(image, (0, 0), 1.5), synthetic_views.board)
    assert blurred.sharpness < 0.3 * sharp
