"""Paired-point registration recovers known transforms, never returns a reflection."""

from __future__ import annotations

import numpy as np
import pytest

from guidance.registration import register_paired_points
from tests.conftest import random_rigid


def test_recovers_random_rigid_transforms(rng: np.random.Generator) -> None:
    for _ in range(20):
        truth = random_rigid(rng)
        moving = rng.uniform(-100, 100, size=(int(rng.integers(3, 12)), 3))
        fixed = moving @ truth[:3, :3].T + truth[:3, 3]
        result = register_paired_points(fixed, moving)
        np.testing.assert_allclose(result.fixed_from_moving, truth, atol=1e-9)
        assert result.fre_mm < 1e-9 and result.scale == 1.0


def test_reflection_trap_gives_proper_rotation(rng: np.random.Generator) -> None:
    """Mirrored point sets: plain Arun SVD returns det = -1; Umeyama's correction must not."""
    moving = rng.uniform(-50, 50, size=(6, 3))
    fixed = moving * np.array([1.0, 1.0, -1.0])  # a mirror image, no rotation fits exactly
    result = register_paired_points(fixed, moving)
    rot = result.fixed_from_moving[:3, :3]
    assert np.linalg.det(rot) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    assert result.fre_mm > 1.0  # and the misfit is reported, not hidden


def test_planar_noisy_points_never_reflect(rng: np.random.Generator) -> None:
    for _ in range(50):
        moving = np.c_[rng.uniform(-60, 60, size=(4, 2)), rng.normal(0, 0.01, size=4)]
        truth = random_rigid(rng)
        fixed = moving @ truth[:3, :3].T + truth[:3, 3] + rng.normal(0, 0.5, size=(4, 3))
        result = register_paired_points(fixed, moving)
        assert np.linalg.det(result.fixed_from_moving[:3, :3]) > 0


def test_residuals_and_fre_are_consistent(rng: np.random.Generator) -> None:
    moving = rng.uniform(-80, 80, size=(5, 3))
    fixed = moving + rng.normal(0, 1.0, size=(5, 3))
    result = register_paired_points(fixed, moving)
    mapped = moving @ result.fixed_from_moving[:3, :3].T + result.fixed_from_moving[:3, 3]
    np.testing.assert_allclose(result.residuals_mm, np.linalg.norm(mapped - fixed, axis=1),
                               rtol=1e-12)
    assert result.fre_mm == pytest.approx(np.sqrt(np.mean(result.residuals_mm**2)), rel=1e-12)
    fixed[2] += 30.0  # one bad fiducial stands out
    assert register_paired_points(fixed, moving).worst_index == 2


def test_optional_scaling(rng: np.random.Generator) -> None:
    truth = random_rigid(rng)
    moving = rng.uniform(-50, 50, size=(6, 3))
    fixed = 1.03 * moving @ truth[:3, :3].T + truth[:3, 3]
    scaled = register_paired_points(fixed, moving, allow_scaling=True)
    assert scaled.scale == pytest.approx(1.03, rel=1e-9)
    assert scaled.fre_mm < 1e-9
    assert register_paired_points(fixed, moving).fre_mm > 0.1  # rigid cannot absorb it


def test_weights_ignore_a_zero_weight_outlier(rng: np.random.Generator) -> None:
    truth = random_rigid(rng)
    moving = rng.uniform(-50, 50, size=(6, 3))
    fixed = moving @ truth[:3, :3].T + truth[:3, 3]
    fixed[0] += 40.0
    result = register_paired_points(fixed, moving, weights=np.array([0, 1, 1, 1, 1, 1.0]))
    np.testing.assert_allclose(result.fixed_from_moving, truth, atol=1e-9)


@pytest.mark.parametrize(("fixed", "moving", "message"), [
    (np.zeros((2, 3)), np.zeros((2, 3)), ">= 3"),
    (np.zeros((4, 3)), np.zeros((5, 3)), "pair up"),
    (np.c_[np.arange(4.0), np.zeros((4, 2))], np.c_[np.arange(4.0), np.zeros((4, 2))],
     "collinear"),
    (np.full((3, 3), np.nan), np.zeros((3, 3)), "NaN"),
])
def test_bad_inputs(fixed: np.ndarray, moving: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        register_paired_points(fixed, moving)
