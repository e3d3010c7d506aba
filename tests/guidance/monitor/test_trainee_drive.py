"""The simulated applicator: wall-clock driving (translate, tilt, roll) and hints."""

from __future__ import annotations

import numpy as np
import pytest

from guidance.monitor.trainee_drive import ApplicatorDriver, hint_for
from guidance.monitor.trainee_scenario import load_scenario, tilt_toward
from guidance.treatment.plan_check import compare_to_plan
from models.base.transforms import transform_difference


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


# ------------------------------------------------------------------ driving
@pytest.mark.parametrize("update_every_s", [0.001, 0.013, 0.25])
def test_a_held_command_moves_by_speed_times_duration_whatever_the_update_rate(
        update_every_s) -> None:
    clock = FakeClock()
    driver = ApplicatorDriver(np.eye(4), clock=clock)
    driver.hold("translate", "cranial", for_s=0.8)
    driver.hold("tilt", "left", for_s=0.5)
    while clock.t < 101.5:
        clock.t += update_every_s
        driver.pose()
    pose = driver.pose()
    np.testing.assert_allclose(pose[:3, 3], [0.0, 0.0, 8.0], atol=1e-9)   # 10 mm/s x 0.8 s
    expected = tilt_toward(np.eye(4), np.array([1.0, 0.0, 0.0]), 2.5)    # 5 deg/s x 0.5 s
    np.testing.assert_allclose(pose[:3, :3], expected[:3, :3], atol=1e-9)
    assert not driver.moving


def test_release_stops_at_the_release_time() -> None:
    clock = FakeClock()
    driver = ApplicatorDriver(np.eye(4), clock=clock)
    driver.hold("translate", "left")
    clock.t += 0.3
    driver.release("translate", "left")
    clock.t += 5.0
    assert driver.pose()[0, 3] == pytest.approx(3.0, abs=1e-9)


# -------------------------------------------------------------------- hints
def test_the_hint_names_the_patient_directions_and_following_it_reaches_the_plan() -> None:
    plan = load_scenario("pancreas_bed_8mev").plan()
    pose = tilt_toward(plan, np.array([0.0, 0.0, -1.0]), 2.0)   # beam axis 2 deg caudal
    pose[:3, 3] += (-3.0, 0.0, -4.0)                              # 3 mm right, 4 mm caudal
    hint = hint_for(pose, plan)
    assert hint.text() == "move 4 mm cranial, 3 mm left; tilt 2° cranial"
    driver = ApplicatorDriver(pose)
    for direction, mm in hint.moves_mm:
        driver.step("translate", direction, mm)
    for direction, deg in hint.tilts_deg:
        driver.step("tilt", direction, deg)
    move, turn = transform_difference(driver.pose(), plan)
    assert move < 1e-9 and turn < 1e-6
    assert hint_for(plan, plan).on_plan


def test_a_bevel_hint_says_how_to_turn_it_and_the_turn_reaches_the_plan() -> None:
    plan = load_scenario("pelvic_sidewall_bevel30").plan()
    clock = FakeClock()
    driver = ApplicatorDriver(plan, clock=clock)
    driver.hold("roll", "clockwise", for_s=0.8)      # 10 deg/s looking down the beam
    clock.t += 1.0
    pose = driver.pose()
    np.testing.assert_allclose(pose[:3, 2], plan[:3, 2], atol=1e-12)   # axis unchanged
    assert compare_to_plan(pose, plan).roll_deg == pytest.approx(8.0)
    hint = hint_for(pose, plan, roll=True)
    assert hint.text() == "turn 8° counterclockwise"
    assert hint_for(pose, plan).on_plan                # a flat end: roll does not matter
    driver.step("roll", *hint.roll_deg)
    assert max(transform_difference(driver.pose(), plan)) < 1e-6
