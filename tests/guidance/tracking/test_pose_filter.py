"""Pose filter: smoothing with bounded lag, and tracking states on the frame clock."""

from __future__ import annotations

import numpy as np
import pytest

from guidance.tracking.pose_filter import FilterOptions, PoseFilter, TrackingState
from models.base.transforms import rotation_angle_deg, transform_from_rotvec


def _pose(x_mm: float, angle_deg: float = 0.0) -> np.ndarray:
    return transform_from_rotvec(np.radians([0.0, 0.0, angle_deg]), [x_mm, 0.0, 400.0])


def test_states_stale_then_untracked_within_one_frame() -> None:
    f = PoseFilter(FilterOptions(staleness_limit_s=0.2))
    assert f.state is TrackingState.UNTRACKED
    assert f.update(0.0, _pose(0)).state is TrackingState.TRACKING
    out = f.update(1 / 24, None)  # first frame without the tool: stale at once
    assert out.state is TrackingState.STALE and out.pose is not None
    np.testing.assert_allclose(out.pose, _pose(0), atol=1e-12)  # held, not extrapolated
    assert out.age_s == pytest.approx(1 / 24)
    assert f.update(4 / 24, None).state is TrackingState.STALE      # 0.167 s
    lost = f.update(5 / 24, None)                                    # 0.208 s > 0.2 s
    assert lost.state is TrackingState.UNTRACKED and lost.pose is None
    assert f.state is TrackingState.UNTRACKED
    assert f.update(6 / 24, _pose(50)).state is TrackingState.TRACKING  # re-acquired afresh
    np.testing.assert_allclose(f.update(7 / 24, None).pose, _pose(50), atol=1e-12)


def test_smoothing_reduces_jitter(rng: np.random.Generator) -> None:
    f = PoseFilter()
    raw, smooth = [], []
    for i in range(300):
        noisy = _pose(rng.normal(0, 0.3), rng.normal(0, 0.2))
        raw.append(noisy[0, 3])
        smooth.append(f.update(i / 30, noisy).pose[0, 3])
    assert np.std(smooth[30:]) < 0.6 * np.std(raw[30:])


def test_lag_is_bounded_for_a_moving_tool() -> None:
    """Constant 100 mm/s: the steady-state lag (mm) is at most speed * max_lag_s."""
    opts = FilterOptions(min_cutoff_hz=0.2, beta_s_per_mm=0.0, max_lag_s=0.05)
    f = PoseFilter(opts)
    for i in range(120):
        t = i / 30
        out = f.update(t, _pose(100.0 * t, 10.0 * t))
    lag_mm = 100.0 * t - out.pose[0, 3]
    assert 0 < lag_mm <= 100.0 * opts.max_lag_s * 1.05
    assert rotation_angle_deg(np.linalg.inv(_pose(0, 10.0 * t)) @ out.pose) <= 10.0 * 0.05 * 1.1
    # without the bound the same cutoff would lag far more
    slow = PoseFilter(FilterOptions(min_cutoff_hz=0.2, beta_s_per_mm=0.0, max_lag_s=10.0))
    for i in range(120):
        out_slow = slow.update(i / 30, _pose(100.0 * i / 30))
    assert 100.0 * t - out_slow.pose[0, 3] > 5 * lag_mm


def test_big_jump_restarts_instead_of_smoothing() -> None:
    f = PoseFilter(FilterOptions(reset_jump_mm=20.0))
    f.update(0.0, _pose(0))
    np.testing.assert_allclose(f.update(1 / 30, _pose(100)).pose, _pose(100), atol=1e-12)


def test_disabled_filter_passes_measurements_through() -> None:
    f = PoseFilter(FilterOptions(enabled=False))
    f.update(0.0, _pose(0))
    np.testing.assert_allclose(f.update(1 / 30, _pose(3, 2)).pose, _pose(3, 2), atol=1e-12)


def test_bad_input() -> None:
    f = PoseFilter()
    f.update(1.0, _pose(0))
    with pytest.raises(ValueError, match="backwards"):
        f.update(0.5, _pose(0))
    with pytest.raises(ValueError, match="reflection"):
        f.update(2.0, np.diag([1.0, 1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="staleness_limit_s"):
        FilterOptions(staleness_limit_s=0.0)


def test_hand_held_camera_motion_is_not_made_worse(rng: np.random.Generator) -> None:
    """Camera swaying (30 mm/s, 8 deg/s): with the default tuning the filtered reference pose
    puts an anatomy point 150 mm from the plate closer to the truth than the raw poses."""
    from guidance.sim.camera import CameraPath, facing_pose
    from models.base.transforms import invert_rigid

    path = CameraPath(target_mm=np.zeros(3), distance_mm=450.0, sway_mm=40.0)
    eye = invert_rigid(path.camera_from_frame(0.0))[:3, 3]
    reference = facing_pose(np.array([-120.0, -30.0, -40.0]), eye)
    probe = np.array([150.0, 50.0, 0.0])
    f = PoseFilter()
    raw, filtered = [], []
    for i in range(240):
        truth = path.camera_from_frame(i / 30) @ reference
        noisy = truth @ transform_from_rotvec(rng.normal(0, np.radians(0.05), 3),
                                              rng.normal(0, 0.2, 3))
        out = f.update(i / 30, noisy).pose
        at = truth[:3, :3] @ probe + truth[:3, 3]
        raw.append(np.linalg.norm(noisy[:3, :3] @ probe + noisy[:3, 3] - at))
        filtered.append(np.linalg.norm(out[:3, :3] @ probe + out[:3, 3] - at))
    def rms(errors: list) -> float:
        return float(np.sqrt(np.mean(np.square(errors[30:]))))

    assert rms(filtered) < rms(raw)
    assert max(filtered[30:]) < 1.0
