"""The simulated procedure on the wall clock (issue 13 item 5): a slow renderer skips
frames instead of slowing the procedure down; without an end it never ends the stream."""

from __future__ import annotations

import time

import numpy as np

from guidance.sim.scripted import ScriptedShot, ScriptedSource
from guidance.sim.source import ScenePose, SimulatedSource


class _SlowCamera:
    """Stands in for the renderer: 0.1 s per frame (10 frames/s)."""

    def render(self, camera_from_patient, patient_from_tool):
        time.sleep(0.1)

        class Shot:
            image = np.zeros((4, 4, 3), np.uint8)
            truth = None
        return Shot()

    def close(self) -> None:
        pass


def test_simulated_source_follows_the_wall_clock() -> None:
    calls: list[tuple[int, float]] = []

    def script(index: int, t_s: float) -> ScenePose:
        calls.append((index, t_s))
        return ScenePose(np.eye(4), {})

    source = SimulatedSource(_SlowCamera(), script, fps=30.0, realtime=True)
    source.open()
    start = time.monotonic()
    frames = [source.read() for _ in range(8)]
    wall_s = time.monotonic() - start
    indices = [f.index for f in frames]
    # 8 frames at 10 frames/s take ~0.8 s; the script is 30 frames/s: it advanced ~24
    # frames (frame count x fps would say 8)
    assert indices == sorted(set(indices))
    assert indices[-1] >= 0.7 * 30 * (wall_s - 0.1)
    for (index, t_s), frame in zip(calls, frames, strict=True):
        assert t_s == frame.timestamp_s == index / 30.0


def test_scripted_source_realtime_skips_and_restarts() -> None:
    shots = [ScriptedShot(np.eye(4), np.eye(4))] * 100

    def slow_background(index, shot):
        time.sleep(0.05)
        return np.zeros((4, 4, 3), np.uint8)

    source = ScriptedSource(shots, slow_background, fps=100.0, realtime=True)
    source.open()
    start = time.monotonic()
    while time.monotonic() - start < 0.5:
        frame = source.read()
    assert frame.index >= 35                    # ~50 shots due, ~10 frames read
    assert source.position() == frame.index
    source.restart()
    after = source.read()
    assert after.index % len(shots) == 0 and after.index > frame.index   # shot 0 again
    assert source.position() == 0
    # past the last shot a realtime script without loop ends
    while (frame := source.read()) is not None:
        pass


def test_scenario_without_end_holds_the_plan_and_restarts_the_approach(coarse_phantom) -> None:
    from guidance.sim.scenario import Scenario, ScenarioOptions, default_camera

    options = ScenarioOptions(frames=None, frames_per_fiducial=2, approach_frames=10)
    with Scenario(coarse_phantom, default_camera((320, 180)), options) as scenario:
        n_reg = scenario.registration_frames
        assert n_reg == 2 * len(scenario.fiducial_names)
        assert scenario.describe(0).startswith("registration: pointer on ")
        assert scenario.restart_approach() is False       # nothing scripted yet
        plan = scenario.planned_patient_from_applicator
        far = 100_000                                      # hours later: still there
        assert scenario(far, far / 15.0) is not None
        assert np.linalg.norm(scenario.patient_from_applicator_at(far)[:3, 3]
                              - plan[:3, 3]) < 2.0
        assert scenario.describe(far).startswith("placement:")
        assert scenario.restart_approach() is True
        start = scenario.patient_from_applicator_at(far + 1)
        offset = np.linalg.norm(options.approach_offset_mm)
        assert abs(np.linalg.norm(start[:3, 3] - plan[:3, 3]) - offset) < 2.0
        assert scenario.describe(far + 1).startswith("approach:")
        assert scenario.describe(far + 12).startswith("placement:")
