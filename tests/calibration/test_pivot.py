"""Pivot calibration against a known tip, with tracking noise, outliers and degenerate motion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration.errors import CalibrationError
from calibration.pivot import pivot_calibration, rotation_spread_deg

TIP_MM = np.array([3.0, -2.0, 160.0])
PIVOT_MM = np.array([50.0, -20.0, 400.0])


def pivot_poses(rng: np.random.Generator, n: int, cone_deg: float, noise_mm: float,
                spin_deg: float = 180.0) -> np.ndarray:
    """Poses pivoting about PIVOT_MM with the tip at TIP_MM, plus isotropic position noise."""
    poses = np.tile(np.eye(4), (n, 1, 1))
    for pose in poses:
        tilt = np.radians(rng.uniform(-cone_deg, cone_deg, 2))
        spin = np.radians(rng.uniform(-spin_deg, spin_deg))
        rot = cv2.Rodrigues(np.array([tilt[0], tilt[1], 0.0]))[0] @ cv2.Rodrigues(
            np.array([0.0, 0.0, spin]))[0]
        pose[:3, :3] = rot
        pose[:3, 3] = PIVOT_MM - rot @ TIP_MM + rng.normal(0.0, noise_mm, 3)
    return poses


def test_noise_free_poses_give_the_exact_tip(rng):
    result = pivot_calibration(pivot_poses(rng, 12, 25, 0.0), rng=rng)
    np.testing.assert_allclose(result.tip_mm, TIP_MM, atol=1e-9)
    np.testing.assert_allclose(result.pivot_mm, PIVOT_MM, atol=1e-9)
    assert result.rms_mm < 1e-9


def test_tip_within_half_a_millimetre_at_quarter_millimetre_noise(rng):
    result = pivot_calibration(pivot_poses(rng, 60, 25, 0.25), rng=rng)
    assert np.linalg.norm(result.tip_mm - TIP_MM) < 0.5
    assert np.linalg.norm(result.pivot_mm - PIVOT_MM) < 0.5
    # RMS of a 3-D isotropic noise of 0.25 mm per axis is about 0.43 mm.
    assert 0.3 < result.rms_mm < 0.6
    assert result.inliers.all()
    assert np.all(result.tip_std_mm < 0.5)


def test_ransac_rejects_slipped_poses(rng):
    poses = pivot_poses(rng, 40, 25, 0.25)
    poses[:6, :3, 3] += rng.normal(0.0, 15.0, (6, 3))
    result = pivot_calibration(poses, rng=np.random.default_rng(0))
    assert not result.inliers[:6].any()
    assert result.inliers[6:].all()
    assert np.linalg.norm(result.tip_mm - TIP_MM) < 0.5


def test_ransac_is_repeatable_with_the_same_seed(rng):
    poses = pivot_poses(rng, 30, 20, 0.3)
    poses[:3, :3, 3] += 20.0
    a = pivot_calibration(poses, rng=np.random.default_rng(7))
    b = pivot_calibration(poses, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.tip_mm, b.tip_mm)


def test_near_pure_translation_is_refused(rng):
    poses = pivot_poses(rng, 40, 0.5, 0.25, spin_deg=0.5)
    poses[:, :3, 3] += rng.uniform(-30, 30, (40, 3))
    with pytest.raises(CalibrationError, match=r"rotate only 0\.\d deg.*pivot the tool"):
        pivot_calibration(poses, rng=rng)


def test_spin_about_the_tool_axis_only_is_refused(rng):
    # Rotation about one axis leaves the tip unobservable along that axis.
    poses = pivot_poses(rng, 40, 0.0, 0.1, spin_deg=90.0)
    assert rotation_spread_deg(poses[:, :3, :3]) < 0.1
    with pytest.raises(CalibrationError, match="weakest direction"):
        pivot_calibration(poses, rng=rng)


def test_too_few_poses_and_bad_transforms(rng):
    with pytest.raises(CalibrationError, match="at least 8 poses"):
        pivot_calibration(pivot_poses(rng, 5, 25, 0.0))
    poses = pivot_poses(rng, 10, 25, 0.0)
    poses[3, :3, :3] *= 2.0
    with pytest.raises(CalibrationError, match=r"tracker_from_tool\[3\]: rotation block"):
        pivot_calibration(poses)
