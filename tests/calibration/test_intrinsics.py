"""Camera intrinsics on synthetic ChArUco views with known intrinsics and distortion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration.boards import board_from_values
from calibration.charuco import detect_charuco, make_detector
from calibration.errors import CalibrationError
from calibration.intrinsics import IntrinsicsOptions, calibrate_camera, calibrate_from_images


@pytest.fixture(scope="module")
def calibrated(synthetic_views):
    return calibrate_from_images(synthetic_views.named(), synthetic_views.board)


def test_intrinsics_within_half_a_percent(calibrated, synthetic_views):
    truth = synthetic_views.camera.camera_matrix
    got = calibrated.camera_matrix
    for (r, c) in [(0, 0), (1, 1), (0, 2), (1, 2)]:
        np.testing.assert_allclose(got[r, c], truth[r, c], rtol=0.005)
    assert calibrated.rms_px <= 0.2
    assert calibrated.image_size == (1280, 720)
    assert len(calibrated.per_view_px) == len(synthetic_views.images)


def test_distortion_reproduces_the_true_lens(calibrated, synthetic_views):
    # Coefficients trade off against each other; compare what matters: where points land.
    cam = synthetic_views.camera
    grid = np.stack(np.meshgrid(np.linspace(-0.6, 0.6, 9), np.linspace(-0.35, 0.35, 7)),
                    axis=-1).reshape(-1, 2)
    pts = np.column_stack([grid, np.ones(len(grid))])
    zero = np.zeros(3)
    truth, _ = cv2.projectPoints(pts, zero, zero, cam.camera_matrix, cam.dist_coeffs)
    got, _ = cv2.projectPoints(pts, zero, zero, calibrated.camera_matrix, calibrated.dist_coeffs)
    assert np.abs(got - truth).max() < 1.5


def test_uncertainty_and_coverage_are_reported(calibrated, synthetic_views):
    std = calibrated.intrinsics_std_px
    assert std.shape == (4,)
    assert np.all((std > 0) & (std < 3))
    err = np.abs(calibrated.camera_matrix[[0, 1, 0, 1], [0, 1, 2, 2]]
                 - synthetic_views.camera.camera_matrix[[0, 1, 0, 1], [0, 1, 2, 2]])
    assert np.all(err < 5 * std)
    used_corners = sum(v.n_corners for v in calibrated.views if v.status == "used")
    assert calibrated.coverage_map.sum() == used_corners
    assert 30 < calibrated.coverage_percent <= 100
    assert "RMS" in calibrated.summary()


def test_too_few_views_is_a_clear_error(synthetic_views):
    with pytest.raises(CalibrationError, match="need at least 8"):
        calibrate_from_images(synthetic_views.named()[:4], synthetic_views.board)


def test_wrong_dictionary_is_a_clear_error(synthetic_views):
    wrong = board_from_values("7x5", 30, 22, "DICT_6X6_250")
    with pytest.raises(CalibrationError, match=r"no DICT_6X6_250 markers.*--dictionary"):
        calibrate_from_images(synthetic_views.named()[:8], wrong)


def test_wrong_squares_is_a_clear_error(synthetic_views):
    wrong = board_from_values("5x7", 30, 22, "DICT_5X5_100")
    with pytest.raises(CalibrationError, match=r"do not fit board 5x7.*--squares"):
        calibrate_from_images(synthetic_views.named()[:8], wrong)


def test_mixed_image_sizes_name_the_file(synthetic_views):
    images = synthetic_views.named()[:3]
    images.append(("small.png", cv2.resize(images[0][1], (640, 360))))
    with pytest.raises(CalibrationError, match=r"small.png: image is 640x360"):
        calibrate_from_images(images, synthetic_views.board)


def test_blurred_duplicate_and_outlier_views_are_dropped(synthetic_views):
    sv = synthetic_views
    detector = make_detector(sv.board)
    detections = [detect_charuco(im, sv.board, detector) for im in sv.images]
    names = [f"v{i}" for i in range(len(detections))]
    # A duplicate of view 0, a blurred copy of view 1, and view 2 with corrupted corners.
    detections.append(detections[0])
    names.append("duplicate")
    blurred = detect_charuco(cv2.GaussianBlur(sv.images[1], (0, 0), 1.5), sv.board, detector)
    assert blurred.n_corners > 6
    detections.append(blurred)
    names.append("blurred")
    bad = detections[2]
    shifted = bad.corners_px + np.where(np.arange(bad.n_corners)[:, None] % 2 == 0, 4.0, -4.0)
    detections[2] = type(bad)(shifted, bad.ids, bad.n_markers, bad.foreign_marker_ids,
                              bad.sharpness)
    result = calibrate_camera(detections, sv.camera.image_size, sv.board, names=names)
    status = {v.name: v.status for v in result.views}
    assert status["duplicate"] == "duplicate"
    assert status["blurred"] == "blurred"
    assert status["v2"] == "outlier"
    assert result.views[2].error_px > 1.0
    assert "v2" not in result.view_names
    np.testing.assert_allclose(result.camera_matrix[0, 0], sv.camera.camera_matrix[0, 0],
                               rtol=0.005)
    assert result.rms_px <= 0.2


def test_rms_limit_refuses_a_bad_calibration(synthetic_views):
    options = IntrinsicsOptions(max_rms_px=0.01)
    with pytest.raises(CalibrationError, match=r"exceeds 0.01 px: check the board spec"):
        calibrate_from_images(synthetic_views.named(), synthetic_views.board, options=options)


def _far_views(distance_mm, centre_fraction, seed=1, n=16):
    from calibration.boards import load_board
    from calibration.synthetic import default_camera, random_board_poses, render_view

    board = load_board("charuco_7x5_30mm")
    camera = default_camera((1280, 720))
    gen = np.random.default_rng(seed)
    poses = random_board_poses(board, camera, n, rng=gen, distance_mm=distance_mm,
                               centre_fraction=centre_fraction)
    images = [(f"far{i:02d}.png", render_view(board, camera, p, rng=gen, noise_grey=2.0,
                                              blur_sigma_px=0.7)) for i, p in enumerate(poses)]
    return board, camera, images


def _border_error_px(calibration, camera) -> float:
    """Largest distance at the image border between where the true lens and the model put
    the same ray."""
    from calibration.intrinsics import _border_pixels

    pixels = _border_pixels(camera.image_size)
    rays = cv2.undistortPoints(pixels.reshape(-1, 1, 2), camera.camera_matrix,
                               camera.dist_coeffs).reshape(-1, 2)
    points = np.column_stack([rays, np.ones(len(rays))])
    got, _ = cv2.projectPoints(points, np.zeros(3), np.zeros(3), calibration.camera_matrix,
                               calibration.dist_coeffs)
    return float(np.linalg.norm(got.reshape(-1, 2) - pixels, axis=1).max())


def test_boards_only_near_the_centre_fix_k3_and_say_how_uncertain_the_edges_are():
    """16 views held far away (31 % coverage): a free k3 fits 0.1 px RMS yet curls hundreds
    of px off at the corners; the calibration fixes k3, reports the edge uncertainty it
    really has and warns."""
    board, camera, images = _far_views((700, 950), 0.35)
    free = calibrate_from_images(images, board, options=IntrinsicsOptions(
        fix_k3_below_coverage_percent=0.0, bootstrap=0))
    got = calibrate_from_images(images, board)
    assert got.coverage_percent < 60 and got.dist_coeffs[4] == 0.0
    assert "k3 fixed" in got.distortion_model
    assert _border_error_px(free, camera) > 100.0      # today's defect
    err = _border_error_px(got, camera)
    assert err < 0.3 * _border_error_px(free, camera)
    # the reported uncertainty is of the size of the real error (not 0.1 px RMS)
    assert 0.3 * err < got.edge_uncertainty_px < 3.0 * err
    warnings = got.warnings()
    assert any("k3 fixed" in w for w in warnings) and any("uncertain" in w for w in warnings)
    assert "WARNING" in got.summary()


def test_well_spread_views_keep_the_full_model_and_a_small_edge_uncertainty(calibrated,
                                                                           synthetic_views):
    assert calibrated.distortion_model == "k1 k2 p1 p2 k3"
    assert calibrated.edge_uncertainty_px < 2.0
    assert _border_error_px(calibrated, synthetic_views.camera) < 3.0
    assert calibrated.warnings() == []


def test_a_board_seen_only_at_the_centre_is_refused():
    board, _, images = _far_views((1500, 1800), 0.05, n=10)
    with pytest.raises(CalibrationError, match=r"covered only \d+ % of the image"):
        calibrate_from_images(images, board)
