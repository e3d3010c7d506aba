"""The one rotation-angle formula: against scipy, accurate near 0 and 180 deg."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from models.base.transforms import (
    angle_between_transforms_deg,
    angle_between_vectors_deg,
    make_transform,
    rotation_angle_deg,
    transform_difference,
)


def _rotations() -> Rotation:
    """Random rotations plus angles within 1e-3..1e-9 rad of 0 and of pi."""
    rng = np.random.default_rng(7)
    axes = rng.normal(size=(40, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    small = 10.0 ** -rng.uniform(3, 9, size=20)
    angles = np.concatenate([small, np.pi - small])
    special = Rotation.from_rotvec(axes * angles[:, None])
    return Rotation.concatenate([Rotation.random(200, random_state=3), special,
                                 Rotation.identity(), Rotation.from_rotvec([np.pi, 0, 0])])


def test_angle_of_a_rotation_matches_scipy_magnitude():
    rotations = _rotations()
    expected_deg = np.degrees(rotations.magnitude())
    matrices = rotations.as_matrix()
    ours = np.array([rotation_angle_deg(m) for m in matrices])
    np.testing.assert_allclose(ours, expected_deg, atol=1e-9, rtol=0)
    scipy_from_matrix = np.degrees(Rotation.from_matrix(matrices).magnitude())
    np.testing.assert_allclose(ours, scipy_from_matrix, atol=1e-9, rtol=0)
    # the 4x4 form reads the rotation part
    assert rotation_angle_deg(make_transform(matrices[0], [5.0, 6.0, 7.0])) == ours[0]


def test_small_angles_keep_their_precision():
    """Where arccos of the trace returns 0 or loses half the digits."""
    for angle_rad in (1e-9, 1e-7, 1e-5):
        matrix = Rotation.from_rotvec([0.0, angle_rad, 0.0]).as_matrix()
        assert rotation_angle_deg(matrix) == pytest.approx(np.degrees(angle_rad), rel=1e-6)
        near_half_turn = Rotation.from_rotvec([0.0, np.pi - angle_rad, 0.0]).as_matrix()
        assert 180.0 - rotation_angle_deg(near_half_turn) == pytest.approx(
            np.degrees(angle_rad), rel=1e-6)


def test_angle_between_transforms_is_the_relative_rotation():
    rotations = Rotation.random(50, random_state=11)
    others = Rotation.random(50, random_state=12)
    for r, s in zip(rotations, others, strict=True):
        a = make_transform(r.as_matrix(), [1.0, 2.0, 3.0])
        c = make_transform(s.as_matrix(), [-4.0, 0.0, 9.0])
        expected = np.degrees((r.inv() * s).magnitude())
        assert angle_between_transforms_deg(a, c) == pytest.approx(expected, abs=1e-9)
        assert angle_between_transforms_deg(c, a) == pytest.approx(expected, abs=1e-9)
        move_mm, turn_deg = transform_difference(c, a)
        assert move_mm == pytest.approx(np.linalg.norm([5.0, 2.0, 6.0]))
        assert turn_deg == pytest.approx(expected, abs=1e-9)


def test_angle_between_vectors():
    assert angle_between_vectors_deg([0, 0, 1], [0, 0, 2]) == 0.0
    assert angle_between_vectors_deg([0, 0, 1], [0, 1, 0]) == pytest.approx(90.0)
    assert angle_between_vectors_deg([0, 0, 1], [0, 0, -1]) == pytest.approx(180.0)
    tiny = 1e-9
    assert angle_between_vectors_deg([0, 0, 1], [np.sin(tiny), 0, np.cos(tiny)]) == \
        pytest.approx(np.degrees(tiny), rel=1e-6)
