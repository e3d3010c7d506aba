"""Trainee score: a scripted rehearsal's components match the script's truth."""

from __future__ import annotations

import time

import numpy as np
import pytest

from guidance.cli.main import main
from guidance.monitor.feed import ScriptedFeed
from guidance.monitor.logic import MonitorLogic
from guidance.monitor.rehearsal import phantom_view
from guidance.record.score import record_score, score_session, trainee_history
from guidance.record.session_log import SessionLog
from guidance.treatment.dose_check import load_plan_limits
from guidance.treatment.dose_service import (
    HIDDEN_ROI_TYPES,
    BeamChoice,
    electron_dose_function,
    evaluate_dose,
)
from models.evaluation.dvh import structure_bounds_mm


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    """The applicator held 2.5 mm lateral and 3 deg tilted from the plan, then confirmed."""
    view = phantom_view()
    tilt = np.radians(3.0)
    offset = np.eye(4)
    offset[:3, :3] = [[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt),
                                                                     np.cos(tilt)]]
    offset[:3, 3] = (2.5, 0.0, 0.0)
    pose = view.plan @ offset
    shots = [s.__class__(s.camera_from_patient, pose, s.visible)
             for s in view.shots([(0.0, 0.0, 0.0)])]
    feed = ScriptedFeed(shots, view.camera_matrix, view.background(), fps=30.0, loop=True,
                        fre_mm=0.45, tre_mm=0.8)
    path = tmp_path_factory.mktemp("rehearsal") / "session.sqlite"
    slog = SessionLog.create(path, case_id="phantom")
    slog.log_registration(method="paired_point", fre_mm=0.45, accepted=True,
                          patient_from_reference=np.eye(4), tre_predicted_mm=0.8)
    beam = BeamChoice(energy_mev=8.0, applicator_diameter_mm=70.0)
    logic = MonitorLogic(view.case, view.plan, feed, dose_fn=electron_dose_function("liac"),
                         session_log=slog, beam=beam).start()
    try:
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            snap = logic.poll()
            if snap.dose is not None and snap.dose.metrics_ready and snap.overlay_ok:
                break
            time.sleep(0.02)
        logic.confirm(user="trainee", override_reason="rehearsal: scored off plan")
    finally:
        logic.close()
    confirmed = slog.last("confirmed_pose")
    slog.close()
    assert confirmed is not None, "the scripted rehearsal was not confirmed"
    return view, path, pose, beam, confirmed


def test_score_components_match_the_script(rehearsal) -> None:
    view, path, pose, beam, confirmed = rehearsal
    score = score_session(path, view.plan, trainee="Ana", limits=load_plan_limits())
    c = score.components
    assert c["position_error_mm"] == pytest.approx(2.5, abs=1.0)
    assert c["angle_error_deg"] == pytest.approx(3.0, abs=0.5)
    # V90 equals a direct dose computation at the confirmed pose
    case = view.case
    done = np.asarray(confirmed.payload["patient_from_applicator"], float)
    np.testing.assert_allclose(done, pose, atol=1e-6)    # the script's pose, via the loop
    dose = electron_dose_function("liac")(case, done, beam).dose
    bounds = {n: structure_bounds_mm(case.ct, s.mask) for n, s in case.structures.items()
              if s.roi_type not in HIDDEN_ROI_TYPES}
    direct = evaluate_dose(case, dose, beam, bounds)[0]["CTV"].metrics.v90_percent
    assert c["target_v90_percent"] == pytest.approx(direct, abs=1e-9)
    assert c["registration_fre_mm"] == 0.45 and c["repositionings"] >= 1
    assert 0.0 < score.total < 100.0 and score.confirmed
    # off plan by 2.5 mm / 3 deg: not full marks for pose, full for registration
    assert score.points["position_error_mm"] < 25.0
    assert score.points["registration_fre_mm"] == 5.0
    assert any("score" in line for line in score.lines())


def test_history_and_progress_command(rehearsal, tmp_path, capsys) -> None:
    path = rehearsal[1]
    folder = tmp_path / "scores"
    for _ in range(2):
        assert main(["trainee", "score", str(path), "--trainee", "Ana Ruiz",
                     "--scores", str(folder)]) == 0
    assert "score" in capsys.readouterr().out
    history = trainee_history("Ana Ruiz", folder=folder)
    assert len(history) == 2 and history[0]["total"] == history[1]["total"]
    assert (folder / "Ana_Ruiz.jsonl").stat().st_mode & 0o777 == 0o600
    png = tmp_path / "progress.png"
    assert main(["trainee", "progress", "Ana Ruiz", "--scores", str(folder),
                 "--png", str(png)]) == 0
    assert png.stat().st_size > 2000
    assert main(["trainee", "score", str(path), "--trainee", "../etc", "--scores",
                 str(folder)]) == 2
    assert "trainee name" in capsys.readouterr().err


def test_a_session_without_confirm_scores_only_the_registration(tmp_path) -> None:
    path = tmp_path / "s.sqlite"
    with SessionLog.create(path) as slog:
        slog.log_registration(method="paired_point", fre_mm=2.0, accepted=True,
                              patient_from_reference=np.eye(4))
    score = score_session(path, np.eye(4), trainee="Bo")
    assert not score.confirmed and score.total == pytest.approx(2.5)
    assert record_score(score, folder=tmp_path / "t").is_file()


def test_faults_are_noticed_by_a_report_or_a_pause_in_time(tmp_path) -> None:
    from guidance.record.score import faults_noticed

    path = tmp_path / "f.sqlite"
    with SessionLog.create(path) as slog:
        slog.log_action("fault_injected", kind="camera_bump", notice_within_s=60.0)
        slog.log_action("paused", on=False)          # resuming is not noticing
        slog.log_action("fault_injected", kind="plate_slip", notice_within_s=60.0)
        events = slog.events()
        assert faults_noticed(events) == (0, 2)
        slog.log_action("paused", on=True)
        assert faults_noticed(slog.events()) == (2, 2)
        slog.log_action("fault_injected", kind="patient_motion", notice_within_s=0.0)
        assert faults_noticed(slog.events()) == (2, 3)
