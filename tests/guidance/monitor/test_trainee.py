"""Trainee mode logic: wall-clock driving, hints, faults through the real loop, the score
of a scripted run against the script's truth."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from guidance.monitor.rehearsal import phantom_view
from guidance.monitor.trainee import TraineeSession
from guidance.monitor.trainee_scenario import (
    ANATOMICAL_DIRECTIONS_LPS,
    load_scenario,
    tilt_toward,
)
from guidance.monitor.trainee_script import ScriptFile, run_script
from guidance.record.score import trainee_history
from guidance.record.session_log import SessionLog
from guidance.treatment.dose_service import electron_dose_function, evaluate_dose
from guidance.treatment.plan_check import compare_to_plan
from models.evaluation.dvh import structure_bounds_mm


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def view():
    return phantom_view()


def _wait(session, condition, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        session.tick()
        snap = session.logic.poll()
        if condition(snap):
            return snap
        time.sleep(0.01)
    raise AssertionError("condition not reached")


# --------------------------------------------------------------- acceptance
#: Known paths: (scenario, translations (direction, hold s at 10 mm/s), tilt (direction,
#: hold s at 5 deg/s)); each ends off the plan by a known amount.
PATHS = {
    # start 8 mm left, 6 anterior, 7 caudal, 6 deg caudal: ends 4 mm caudal, 3 deg caudal
    "pancreas_bed_8mev": ((("right", 0.8), ("posterior", 0.6), ("cranial", 0.3)),
                          ("cranial", 0.6)),
    # start 6 mm right, 8 anterior, 9 cranial, 10 deg caudal: ends 4 mm cranial, 4.5 deg caudal
    "pelvic_sidewall_bevel30": ((("left", 0.6), ("posterior", 0.8), ("caudal", 0.5)),
                                ("cranial", 1.1)),
}


@pytest.fixture(scope="module", params=sorted(PATHS))
def scripted_run(request, view, tmp_path_factory):
    """A scenario driven along its known path, then confirmed."""
    name = request.param
    moves, (tilt_to, tilt_s) = PATHS[name]
    folder = tmp_path_factory.mktemp("rehearse")
    slog = SessionLog.create(folder / "session.sqlite", case_id="phantom")
    session = TraineeSession(name, trainee="Ana", session_log=slog, view=view,
                             scores_folder=folder / "scores").start()
    commands = [{"t_s": 0.1, "do": "hold", "motion": "translate", "toward": d, "for_s": t}
                for d, t in moves]
    commands += [{"t_s": 0.2, "do": "hold", "motion": "tilt", "toward": tilt_to,
                  "for_s": tilt_s}, {"t_s": 1.2, "do": "confirm"}]
    try:
        debrief = run_script(session, ScriptFile.model_validate({"commands": commands}))
    finally:
        session.close()
    confirmed = slog.last("confirmed_pose")
    slog.close()
    truth = tilt_toward(load_scenario(name).start_pose(),
                        np.array(ANATOMICAL_DIRECTIONS_LPS[tilt_to]), 5.0 * tilt_s)
    for direction, hold_s in moves:
        truth[:3, 3] += 10.0 * hold_s * np.array(ANATOMICAL_DIRECTIONS_LPS[direction])
    return session, debrief, confirmed, truth


def test_a_scripted_run_scores_the_scripts_truth(scripted_run) -> None:
    """Acceptance: pose error within 1 mm / 0.5 deg of the script's truth, V90 equal to a
    direct dose computation at the confirmed pose (same engine)."""
    session, debrief, confirmed, truth = scripted_run
    expected = compare_to_plan(truth, session.plan)
    assert expected.distance_mm == pytest.approx(4.0, abs=1e-6)   # the paths' own numbers
    assert expected.angle_deg == pytest.approx(
        {"pancreas_bed_8mev": 3.0, "pelvic_sidewall_bevel30": 4.5}[session.scenario.name],
        abs=1e-6)
    c = debrief.score.components
    assert c["position_error_mm"] == pytest.approx(expected.distance_mm, abs=1.0)
    assert c["angle_error_deg"] == pytest.approx(expected.angle_deg, abs=0.5)
    # the simulation's truth in the debrief is the scripted path, exactly
    np.testing.assert_allclose(debrief.truth.patient_from_applicator, truth, atol=1e-9)
    assert debrief.truth.position_error_mm == pytest.approx(4.0, abs=1e-6)
    # V90: the electron engine at the confirmed pose, evaluated like the monitor
    case = session.case
    done = np.asarray(confirmed.payload["patient_from_applicator"], float)
    beam = session.scenario.beam()
    dose = electron_dose_function()(case, done, beam).dose
    name = session.scenario.target_name
    bounds = {name: structure_bounds_mm(case.ct, case.structures[name].mask)}
    direct = evaluate_dose(case, dose, beam, bounds)[0][name].metrics
    assert c["target_v90_percent"] == pytest.approx(direct.v90_percent, abs=1e-9)
    assert c["target_d90_percent_of_rx"] == pytest.approx(
        100.0 * direct.d90_gy / beam.prescription_gy, abs=1e-9)
    assert c["repositionings"] == 0.0 and c["faults_noticed_percent"] is None


def test_the_debrief_judges_each_component_and_the_score_is_stored(scripted_run) -> None:
    session, debrief, _, _ = scripted_run
    rows = {r.name: r for r in debrief.rows}
    assert rows["position_error_mm"].passed is False    # 4 mm > 3 mm
    assert rows["angle_error_deg"].passed is True       # 3 and 4.5 deg <= 5 deg
    assert not debrief.passed
    assert rows["position_error_mm"].points < 25.0
    text = "\n".join(debrief.lines())
    assert "position error" in text and "FAIL" in text
    history = trainee_history("Ana", folder=session.scores_folder)
    assert history[-1]["total"] == debrief.score.total
    json.dumps(debrief.to_dict(), allow_nan=False)


# ------------------------------------------------------------------- faults
def _quiet_scenario(tmp_path, **changes):
    """The pancreas scenario without scripted faults (faults on demand only)."""
    data = load_scenario("pancreas_bed_8mev").spec.model_dump()
    data.update(faults=[], **changes)
    path = tmp_path / "quiet.json"
    path.write_text(json.dumps(data))
    return load_scenario(path)


@pytest.fixture()
def session(view, tmp_path):
    slog = SessionLog.create(tmp_path / "s.sqlite", case_id="phantom")
    s = TraineeSession(_quiet_scenario(tmp_path), trainee="Bo", session_log=slog, view=view,
                       scores_folder=tmp_path / "scores")
    s.start()
    yield s
    s.close()
    slog.close()


def _shown_minus_true_mm(session, snap) -> float:
    return float(np.linalg.norm(snap.applicator_pose[:3, 3] - session.driver.pose()[:3, 3]))


def test_faults_act_through_the_loop(session) -> None:
    tracked = _wait(session, lambda s: s.applicator_pose is not None)
    assert _shown_minus_true_mm(session, tracked) < 1.0
    # marker occlusion: the applicator is lost, then back
    session.inject("marker_occlusion", duration_s=0.5)
    _wait(session, lambda s: s.applicator_pose is None)
    _wait(session, lambda s: s.applicator_pose is not None)
    # plate slip: the shown pose leaves the truth by the slip; reporting re-registers
    session.inject("plate_slip", magnitude=5.0)
    snap = _wait(session, lambda s: s.applicator_pose is not None
                 and _shown_minus_true_mm(session, s) > 4.0)
    assert _shown_minus_true_mm(session, snap) == pytest.approx(5.0, abs=1.0)
    session.report_fault()
    _wait(session, lambda s: s.applicator_pose is not None
          and _shown_minus_true_mm(session, s) < 1.0)
    # patient motion: the applicator held still is now elsewhere on the patient
    before = session.driver.pose()
    session.inject("patient_motion", magnitude=4.0)
    assert np.linalg.norm(session.driver.pose()[:3, 3] - before[:3, 3]) == pytest.approx(4.0)
    _wait(session, lambda s: s.applicator_pose is not None
          and _shown_minus_true_mm(session, s) < 1.0)
    # camera bump: tracking drops, the pose on the patient does not change
    session.inject("camera_bump", magnitude=8.0)
    _wait(session, lambda s: s.applicator_pose is None)
    snap = _wait(session, lambda s: s.applicator_pose is not None)
    assert _shown_minus_true_mm(session, snap) < 1.0
    # a fiducial touched wrongly: FRE and the true target error grow
    fre_before = session.loop.registration_fre_mm
    session.inject("fiducial_wrong", magnitude=10.0)
    assert session.loop.registration_fre_mm > fre_before + 2.0
    assert session.true_tre_mm() > 1.0
    kinds = [e.payload["kind"] for e in session.session_log.events("action")
             if e.payload["action"] == "fault_injected"]
    assert kinds == ["marker_occlusion", "plate_slip", "patient_motion", "camera_bump",
                     "fiducial_wrong"]


def test_restart_on_another_scenario_scores_from_its_start(session) -> None:
    """The monitor's scenario picker: one session log, each rehearsal scored on its own."""
    _wait(session, lambda s: s.applicator_pose is not None and s.dose_check is not None)
    assert session.confirm().accepted
    camera_at_start = session.camera_from_patient.copy()
    session.inject("camera_bump")
    session.restart("shallow_bed_bolus")
    np.testing.assert_allclose(session.camera_from_patient, camera_at_start)
    assert session.faults == []
    assert session.logic.target == "CTV_6MM" and session.logic.beam.bolus_mm == 5.0
    np.testing.assert_allclose(session.logic.plan, session.scenario.plan(session.case))
    assert session.logic.snapshot().confirm is None
    snap = _wait(session, lambda s: s.applicator_pose is not None and s.dose_check is not None
                 and s.dose.beam.bolus_mm == 5.0)
    assert "CTV_6MM" in snap.dose.metrics
    assert session.confirm().accepted
    assert session.debrief.scenario == "shallow_bed_bolus"
    assert session.debrief.score.components["repositionings"] == 0.0
    first_confirm = session.session_log.events("confirmed_pose")[0]
    assert session.debrief.score.when_unix_s > first_confirm.t_unix_s


def test_a_fault_is_noticed_only_when_reported_in_time(view, tmp_path) -> None:
    slog = SessionLog.create(tmp_path / "s.sqlite")
    s = TraineeSession(_quiet_scenario(tmp_path, notice_within_s=0.3), trainee="Bo",
                       session_log=slog, view=view, scores_folder=tmp_path / "scores")
    try:
        s.start()
        _wait(s, lambda snap: snap.applicator_pose is not None)
        s.inject("camera_bump")          # reported too late
        time.sleep(0.6)
        s.inject("marker_occlusion", duration_s=0.2)
        s.report_fault()                 # in time for this one only
        _wait(s, lambda snap: snap.applicator_pose is not None
              and snap.dose_check is not None)
        assert s.confirm().accepted
        assert s.debrief.score.components["faults_noticed_percent"] == pytest.approx(50.0)
        assert not {r.name: r for r in s.debrief.rows}["faults_noticed_percent"].passed
    finally:
        s.close()
        slog.close()


def test_scripted_scenario_faults_fire_on_time(view, tmp_path) -> None:
    clock = FakeClock()
    slog = SessionLog.create(tmp_path / "s.sqlite")
    s = TraineeSession("shallow_bed_bolus", trainee="Cy", session_log=slog, view=view,
                       clock=clock)
    try:
        s.restart()
        clock.t += 19.9
        s.tick()
        assert s.faults == []
        clock.t += 0.2
        s.tick()
        assert [f.kind for f in s.faults] == ["camera_bump"]
        clock.t += 30.0
        s.tick()
        assert [f.kind for f in s.faults] == ["camera_bump", "fiducial_wrong"]
    finally:
        s.close()
        slog.close()
