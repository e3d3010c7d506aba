"""Distance/angle to the planned applicator pose and the traffic light."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from guidance.treatment.plan_check import Light, PlanTolerance, compare_to_plan, traffic_light
from models.base.transforms import make_transform, transform_from_rotvec


def test_known_offsets_split_along_planned_axis(rng: np.random.Generator) -> None:
    plan = transform_from_rotvec(rng.normal(size=3), rng.normal(size=3) * 100)
    lateral_dir = plan[:3, 0] * 0.6 + plan[:3, 1] * 0.8
    tracked = plan.copy()
    tracked[:3, 3] += 3.0 * lateral_dir - 4.0 * plan[:3, 2]
    dev = compare_to_plan(tracked, plan)
    assert dev.lateral_mm == pytest.approx(3.0, abs=1e-9)
    assert dev.depth_mm == pytest.approx(-4.0, abs=1e-9)
    assert dev.distance_mm == pytest.approx(5.0, abs=1e-9)
    assert dev.angle_deg == pytest.approx(0.0, abs=1e-6)
    assert dev.light is Light.YELLOW
    text = dev.text().replace("\u00a0", " ")
    assert "5.0 mm" in text and "depth -4.0 mm" in text and "," not in text


@pytest.mark.parametrize("tilt_deg", [0.5, 7.0, 30.0, 179.0])
def test_tilt_angle_about_an_axis_in_the_end_face(rng, tilt_deg: float) -> None:
    plan = transform_from_rotvec(rng.normal(size=3), rng.normal(size=3) * 50)
    axis_in_face = np.array([math.cos(0.3), math.sin(0.3), 0.0])  # in applicator frame
    tilt = make_transform(Rotation.from_rotvec(np.radians(tilt_deg) * axis_in_face).as_matrix())
    dev = compare_to_plan(plan @ tilt, plan)
    assert dev.angle_deg == pytest.approx(tilt_deg, abs=1e-6)
    assert dev.distance_mm == pytest.approx(0.0, abs=1e-9)


def test_roll_about_beam_axis_only_counts_when_asked(rng) -> None:
    plan = transform_from_rotvec(rng.normal(size=3), np.zeros(3))
    roll = make_transform(Rotation.from_rotvec([0, 0, np.radians(25.0)]).as_matrix())
    dev = compare_to_plan(plan @ roll, plan)
    assert dev.roll_deg == pytest.approx(25.0, abs=1e-6)
    assert dev.angle_deg == pytest.approx(0.0, abs=1e-6)
    assert dev.light is Light.GREEN
    bevel = PlanTolerance(check_roll=True)
    assert compare_to_plan(plan @ roll, plan, bevel).light is Light.RED


@pytest.mark.parametrize(("distance", "angle", "ok", "light"), [
    (0.0, 0.0, True, Light.GREEN), (3.0, 5.0, True, Light.GREEN),
    (3.01, 0.0, True, Light.YELLOW), (0.0, 9.9, True, Light.YELLOW),
    (8.1, 0.0, True, Light.RED), (0.0, 10.5, True, Light.RED),
    (0.0, 0.0, False, Light.GREY), (None, 0.0, True, Light.GREY),
    (math.nan, 0.0, True, Light.GREY)])
def test_light_thresholds(distance, angle, ok, light) -> None:
    assert traffic_light(distance, angle, tracking_ok=ok) is light


def test_tolerance_validation() -> None:
    with pytest.raises(ValueError, match="green_distance_mm"):
        PlanTolerance(green_distance_mm=10.0, yellow_distance_mm=5.0)
    with pytest.raises(ValueError, match="green_angle_deg"):
        PlanTolerance(green_angle_deg=-1.0)
    with pytest.raises(ValueError, match="patient_from_applicator"):
        compare_to_plan(np.diag([1.0, 1.0, -1.0, 1.0]), np.eye(4))
