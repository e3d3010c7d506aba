"""Surface ICP: recovers a 10 mm / 10 deg misalignment on 50k points; agreement checks."""

from __future__ import annotations

import numpy as np
import pytest
import pyvista as pv

from guidance.registration.surface import (
    register_surface,
    registration_disagreement_mm,
    surface_points,
)
from models.base.transforms import transform_from_rotvec


@pytest.fixture(scope="module")
def terrain() -> tuple[np.ndarray, np.ndarray]:
    """A bumpy 300 x 300 mm surface (no sliding symmetry), 160k points with normals."""
    hills = pv.ParametricRandomHills(random_seed=1, number_of_hills=30, u_res=400, v_res=400)
    return surface_points(hills.scale([15.0, 15.0, 15.0], inplace=False))


def _misaligned(rng: np.random.Generator, points: np.ndarray, n: int, noise_mm: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """Source points with target = truth @ source; truth is 10 mm / 10 deg away from I."""
    axis = rng.normal(size=3)
    direction = rng.normal(size=3)
    truth = transform_from_rotvec(axis / np.linalg.norm(axis) * np.radians(10.0),
                                  direction / np.linalg.norm(direction) * 10.0)
    picked = points[rng.choice(len(points), n, replace=False)]
    source = (picked - truth[:3, 3]) @ truth[:3, :3] + rng.normal(0, noise_mm, (n, 3))
    return source, truth


def _rms_error(estimate: np.ndarray, truth: np.ndarray, points: np.ndarray) -> float:
    diff = points @ (estimate[:3, :3] - truth[:3, :3]).T + (estimate[:3, 3] - truth[:3, 3])
    return float(np.sqrt(np.mean(np.sum(diff**2, axis=1))))


@pytest.mark.slow
def test_acceptance_icp_50k_points_from_10mm_10deg(terrain, rng: np.random.Generator) -> None:
    """Issue 7: ICP from a 10 mm / 10 deg misalignment converges to <= 1 mm on 50k points."""
    points, normals = terrain
    for _ in range(2):
        source, truth = _misaligned(rng, points, 50_000, noise_mm=0.3)
        result = register_surface(source, points, target_normals=normals,
                                  initial_target_from_source=np.eye(4))
        assert _rms_error(result.target_from_source, truth, source) <= 1.0
        assert result.fitness > 0.99 and result.inlier_rms_mm < 0.6
        assert result.n_points == 50_000


def test_small_sweep_with_estimated_normals(terrain, rng: np.random.Generator) -> None:
    points, _ = terrain
    source, truth = _misaligned(rng, points, 3000, noise_mm=0.2)
    result = register_surface(source, points[::4])  # normals estimated, centroid start
    assert _rms_error(result.target_from_source, truth, source) <= 1.0
    rot = result.target_from_source[:3, :3]
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-9)


def test_disagreement_is_max_point_distance() -> None:
    a = np.eye(4)
    b = transform_from_rotvec(np.zeros(3), [0.0, 0.0, 2.0])
    pts = np.array([[0.0, 0, 0], [10, 0, 0]])
    assert registration_disagreement_mm(a, b, pts) == pytest.approx(2.0)
    c = transform_from_rotvec(np.radians([0, 0, 90.0]), [0.0, 0.0, 0.0])
    assert registration_disagreement_mm(a, c, pts) == pytest.approx(np.sqrt(200.0))


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match=">= 6 points"):
        register_surface(np.zeros((3, 3)), np.zeros((100, 3)))
    with pytest.raises(ValueError, match="distances_mm"):
        register_surface(np.random.default_rng(0).normal(size=(10, 3)),
                         np.random.default_rng(1).normal(size=(10, 3)), distances_mm=())


def test_phantom_skin_sweep_checks_paired_point(rng: np.random.Generator,
                                               coarse_phantom) -> None:
    """Skin swept around the cavity (reference frame) onto the phantom BODY surface: ICP
    started from a slightly wrong paired-point result lands on the truth at the target, and
    the disagreement check refuses a paired-point result 4 mm off."""
    from guidance.registration.decision import assess_surface
    from models.base.transforms import invert_rigid

    case = coarse_phantom
    points, normals = surface_points(case.mesh("BODY"))
    target = case.centroid_lps("CTV")
    around = (points[:, 1] < -50) & (np.hypot(points[:, 0] - target[0],
                                              points[:, 2] - target[2]) < 120)
    sweep = points[around][rng.choice(int(around.sum()), 2000)]
    truth = transform_from_rotvec([0.3, -0.2, 0.5], [20.0, -300.0, 40.0])  # patient_from_ref
    sweep_ref = (sweep - truth[:3, 3]) @ truth[:3, :3] + rng.normal(0, 0.3, sweep.shape)
    # paired point off by 1 deg about the target and 1.5 mm (what a fair FLE gives)
    rot = transform_from_rotvec(np.radians([0.6, -0.6, 0.5]), np.zeros(3))[:3, :3]
    delta = np.eye(4)
    delta[:3, :3] = rot
    delta[:3, 3] = target - rot @ target + np.array([1.0, -1.0, 0.5])
    paired = delta @ truth
    result = register_surface(sweep_ref, points, target_normals=normals,
                              initial_target_from_source=paired)
    target_ref = invert_rigid(truth)[:3, :3] @ target + invert_rigid(truth)[:3, 3]
    assert registration_disagreement_mm(result.target_from_source, truth,
                                        target_ref[None]) < 0.5
    assert assess_surface(result, paired_point_target_from_source=paired,
                          check_points_mm=target_ref[None]).accepted
    wrong = transform_from_rotvec(np.zeros(3), [4.0, 0.0, 0.0]) @ truth
    decision = assess_surface(result, paired_point_target_from_source=wrong,
                              check_points_mm=target_ref[None])
    assert not decision.accepted and "differ" in decision.reasons[0]


def test_sweep_collector_thins_resting_pointer() -> None:
    from guidance.registration.surface import SweepCollector

    sweep = SweepCollector(min_spacing_mm=1.0, max_points=4)
    assert sweep.add(np.zeros(3))
    assert not sweep.add(np.array([0.3, 0.0, 0.0]))  # pointer resting: dropped
    assert sweep.add(np.array([1.5, 0.0, 0.0]))
    assert sweep.add(np.array([3.0, 0.0, 0.0])) and sweep.add(np.array([4.5, 0.0, 0.0]))
    assert not sweep.add(np.array([9.0, 0.0, 0.0]))  # full
    assert len(sweep) == 4 and sweep.points_mm.shape == (4, 3)
    sweep.clear()
    assert sweep.points_mm.shape == (0, 3)
    with pytest.raises(ValueError, match="NaN"):
        sweep.add(np.array([np.nan, 0.0, 0.0]))
