"""``iort run``: bad input gives one clear line (exit 2) and leaves nothing behind; a short
scripted session runs and logs to the sessions folder."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from guidance.cli.main import main
from guidance.record.session_log import SessionLog
from models.base.errors import InputError


def test_needs_a_display(monkeypatch, capsys) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["run", "phantom"]) == 2
    assert "needs a display" in capsys.readouterr().err


@pytest.fixture
def data_home(monkeypatch, tmp_path: Path) -> Path:
    """HOME and XDG_DATA_HOME in tmp_path: where the sessions folder would be created."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data"


def test_bad_arguments_leave_no_sessions_folder(monkeypatch, capsys, tmp_path: Path,
                                                data_home: Path) -> None:
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "frames").mkdir()
    (tmp_path / "cam.json").write_text("{}")
    bad = [
        ([str(tmp_path / "nope")], "not 'phantom'"),
        (["phantom", "--igtl-port", "70000"], "--igtl-port"),
        (["phantom", "--plan", str(tmp_path / "missing.json")], "--plan"),
        (["phantom", "--source", "webcam:0"], "--calibration"),
        (["phantom", "--source", "nowhere.mp4", "--calibration", "cam.json"], "nowhere.mp4"),
        (["phantom", "--source", "frames", "--calibration", "cam.json"], "cam.json"),
        (["phantom", "--source", "sim", "--registration", str(tmp_path / "r.json")],
         "--registration"),
        (["phantom", "--tracker", "igtl", "--source", "sim"], "--tracker igtl"),
        (["phantom", "--mc-uncertainty", "0"], "--mc-uncertainty 0.0: must be 0.5-10 %"),
        (["phantom", "--mc-uncertainty", "nan"], "--mc-uncertainty"),
    ]
    for argv, message in bad:
        assert main(["run", *argv]) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not data_home.exists() and not (tmp_path / "home").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam.json", "frames"]  # no log here


def test_bad_source_options_name_the_option(monkeypatch, capsys, tmp_path: Path,
                                            data_home: Path) -> None:
    """Issue 13 item 15: one line naming the file or option, nothing silently ignored."""
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reg.json").write_text(json.dumps(
        {"patient_from_reference": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}))
    bad = [
        (["--source", "missing.mp4"], "--source missing.mp4: file or folder not found"),
        (["--source", "foo"], "--source 'foo': unknown source"),
        (["--source", "webcam:x"], "webcam number"),
        (["--registration", "reg.json"], "--registration reg.json: not used with --source sim"),
        (["--source", "scripted", "--registration", "reg.json"], "not used with --source "
                                                                 "scripted"),
        (["--tracker-devices", "pointer=Stylus"], "only used with --tracker igtl"),
        (["--tracker", "igtl", "--tracker-devices", "foo=bar"],
         "--tracker-devices: unknown tool 'foo'"),
    ]
    for argv, message in bad:
        assert main(["run", "phantom", *argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err and "calibration" not in err, (argv, err)
    assert not data_home.exists()


def test_bad_case_and_port(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setenv("DISPLAY", ":99")
    assert main(["run", str(tmp_path / "nope")]) == 2
    assert "not 'phantom'" in capsys.readouterr().err
    assert main(["run", "phantom", "--igtl-port", "70000"]) == 2
    assert "--igtl-port" in capsys.readouterr().err


@pytest.mark.gui
@pytest.mark.slow
def test_session_log_goes_to_the_sessions_folder_owner_only(qtbot, tmp_path: Path, capsys,
                                                            data_home: Path) -> None:
    code = main(["run", "phantom", "--source", "scripted", "--igtl-port", "0",
                 "--quit-after", "2"])
    assert code == 0
    folder = data_home / "iort" / "sessions"
    logs = list(folder.glob("session-*.sqlite"))
    assert len(logs) == 1
    assert f"session log: {logs[0]}" in capsys.readouterr().out
    assert SessionLog.open(logs[0], readonly=True).events()[0].kind == "session_start"
    assert logs[0].stat().st_mode & 0o777 == 0o600
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (data_home / "iort").stat().st_mode & 0o777 == 0o700


@pytest.mark.gui
@pytest.mark.slow
def test_scripted_session_writes_log(qtbot, tmp_path: Path, capsys, data_home: Path) -> None:
    log_path = tmp_path / "session.sqlite"
    code = main(["run", "phantom", "--source", "scripted", "--igtl-port", "0",
                 "--session-log", str(log_path), "--quit-after", "4"])
    assert code == 0
    assert "session log" in capsys.readouterr().out
    events = SessionLog.open(log_path, readonly=True).events()
    kinds = [e.kind for e in events]
    assert kinds[0] == "session_start" and "action" in kinds
    assert not data_home.exists()  # --session-log is honoured: nothing in the sessions folder
    # the log is never overwritten by a second session
    assert main(["run", "phantom", "--source", "scripted", "--session-log",
                 str(log_path), "--igtl-port", "0", "--quit-after", "1"]) == 2
    assert "never overwritten" in capsys.readouterr().err


@pytest.mark.gui
@pytest.mark.slow
def test_sigkill_of_a_running_monitor_loses_nothing(tmp_path: Path) -> None:
    """``iort run`` killed with SIGKILL mid-session: the log opens and holds what it had."""
    import os
    import signal
    import subprocess
    import sys
    import time

    log_path = tmp_path / "killed.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "guidance", "run", "phantom", "--source", "scripted",
         "--igtl-port", "0", "--session-log", str(log_path), "--quit-after", "60"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[3], env=dict(os.environ))
    try:
        deadline = time.monotonic() + 90.0
        before: list = []
        while time.monotonic() < deadline and proc.poll() is None:
            if log_path.exists():
                try:
                    before = SessionLog.open(log_path, readonly=True).events()
                except Exception:  # created but not yet initialised
                    before = []
                if any(e.kind == "dose" for e in before):
                    break
            time.sleep(0.2)
        assert any(e.kind == "dose" for e in before), "monitor did not record a dose"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    after = SessionLog.open(log_path, readonly=True).events()
    assert [(e.seq, e.kind) for e in after[:len(before)]] == [(e.seq, e.kind) for e in before]
    assert after[-1].kind != "session_end"   # it really died mid-session


def test_real_source_registers_on_screen_unless_a_file_is_given(tmp_path: Path) -> None:
    import argparse
    import json

    import cv2
    import numpy as np

    from calibration.io import save_calibration
    from guidance.cli.commands.run import _camera_frames, _feed, _guided_of, _read_option_files
    from guidance.registration.guided import GuidedRegistration
    from guidance.sim.scenario import default_camera
    from models.patient.phantom import make_phantom, planned_patient_from_applicator

    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "0000.png"), np.zeros((720, 1280, 3), np.uint8))
    save_calibration(default_camera(), tmp_path / "cam.json")
    (tmp_path / "reg.json").write_text(json.dumps(
        {"patient_from_reference": np.eye(4).tolist()}))
    case = make_phantom()
    plan = planned_patient_from_applicator(case)
    args = argparse.Namespace(source=str(folder), calibration=tmp_path / "cam.json",
                              registration=None, tracker="markers", tracker_devices="",
                              hand_eye=None)
    inputs = _read_option_files(args, case, plan)
    guided = _guided_of(_feed(args, inputs, _camera_frames(args, inputs, None), None, None))
    assert isinstance(guided, GuidedRegistration)
    assert guided.order == tuple(case.fiducials_lps) and len(guided.order) >= 3
    np.testing.assert_allclose(guided.target_lps, case.centroid_lps("CTV"))
    args.registration = tmp_path / "reg.json"
    inputs = _read_option_files(args, case, plan)
    assert _guided_of(_feed(args, inputs, _camera_frames(args, inputs, None), None, None)) \
        is None


@pytest.mark.gui
@pytest.mark.slow
def test_ctrl_c_closes_the_monitor_cleanly(tmp_path: Path) -> None:
    """Issue 13 item 11: SIGINT during ``iort run`` (Ctrl+C in its terminal): no traceback,
    no SIGABRT, 'iort: interrupted', and the session log ends with session_end."""
    import os
    import signal
    import subprocess
    import sys
    import time

    log_path = tmp_path / "interrupted.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "guidance", "run", "phantom", "--source", "scripted",
         "--igtl-port", "0", "--session-log", str(log_path), "--quit-after", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[3], env=dict(os.environ))
    try:
        deadline = time.monotonic() + 90.0
        while time.monotonic() < deadline and proc.poll() is None:
            if log_path.exists():
                try:
                    events = SessionLog.open(log_path, readonly=True).events()
                except Exception:  # created but not yet initialised
                    events = []
                if any(e.kind == "dose" for e in events):
                    break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        try:
            _out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate()
            pytest.fail(f"iort run did not exit after SIGINT; stderr:\n{err[-3000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "iort: interrupted" in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    events = SessionLog.open(log_path, readonly=True).events()
    assert events[-1].kind == "session_end"
    assert events[-1].payload["exit_code"] == 130


def test_one_default_machine_and_run_starts_on_the_plans_beam(tmp_path: Path) -> None:
    """Issue 13 item 3: run, demo, dose and export default to the same machine; the
    phantom's plan carries it and run starts on the plan's beam."""
    from guidance.cli.commands.run import _planned_beam
    from guidance.cli.main import build_parser
    from guidance.treatment.dose_service import DEFAULT_MACHINE
    from models.dicom.rt_export import resolve_plan
    from models.patient.phantom import make_phantom, planned_patient_from_applicator

    parser = build_parser()
    case = make_phantom(spacing_mm=(3.0, 3.0, 4.0))
    pose = planned_patient_from_applicator(case)
    planned = _planned_beam(parser.parse_args(["run", "phantom"]), case, pose)
    assert planned.machine == DEFAULT_MACHINE
    assert (planned.beam.energy_mev, planned.beam.applicator_diameter_mm) == (8.0, 70.0)
    assert resolve_plan(case).machine == DEFAULT_MACHINE          # export's default
    demo = parser.parse_args(["demo"])
    assert (demo.machine or DEFAULT_MACHINE) == DEFAULT_MACHINE
    dose = parser.parse_args(["dose", "case", "phantom", "--energy", "8", "--applicator", "70"])
    assert dose.machine == DEFAULT_MACHINE
    # a plan file carries its machine and beam; --machine overrides it
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps({"patient_from_applicator": pose.tolist(),
                                     "machine": "mobetron", "energy_mev": 9,
                                     "applicator_diameter_mm": 60, "bevel_deg": 15,
                                     "prescription_gy": 12, "isodose_percent": 90,
                                     "limits": {"organs": {"PANCREAS": {"dmax_gy": 11}}}}))
    args = parser.parse_args(["run", "phantom", "--plan", str(plan_file)])
    planned = _planned_beam(args, case, pose)
    assert planned.machine == "mobetron" and planned.beam.bevel_deg == 15.0
    assert planned.beam.prescription_gy == 12.0 and planned.limits["organs"]["PANCREAS"]
    bare = tmp_path / "pose.json"
    bare.write_text(json.dumps({"patient_from_applicator": pose.tolist()}))
    other = tmp_path / "case"
    other.mkdir()
    with pytest.raises(InputError, match="must carry its beam"):
        _planned_beam(parser.parse_args(["run", str(other), "--plan", str(bare)]),
                      replace(case, patient_id="SOMEONE"), pose)


@pytest.mark.gui
@pytest.mark.slow
def test_session_log_holds_no_patient_identifier_unless_asked(qtbot, tmp_path: Path,
                                                              data_home: Path) -> None:
    """The log names the case by a keyed pseudonym: neither the patient's name nor ID (nor
    the CASE argument) is in its bytes; --log-identifiers records them."""
    quiet = tmp_path / "quiet.sqlite"
    assert main(["run", "phantom", "--source", "scripted", "--igtl-port", "0",
                 "--session-log", str(quiet), "--quit-after", "2"]) == 0
    data = b"".join(p.read_bytes() for p in tmp_path.glob("quiet.sqlite*"))
    for secret in (b"IORT-PHANTOM", b"Phantom", b"phantom"):
        assert secret not in data, secret
    case_id = SessionLog.open(quiet, readonly=True).meta()["case_id"]
    assert case_id.startswith("case-") and len(case_id) == 21
    named = tmp_path / "named.sqlite"
    assert main(["run", "phantom", "--source", "scripted", "--igtl-port", "0",
                 "--session-log", str(named), "--quit-after", "1", "--log-identifiers"]) == 0
    assert SessionLog.open(named, readonly=True).meta()["case_id"] == "IORT-PHANTOM (phantom)"


def test_mc_check_option(monkeypatch) -> None:
    """--no-mc-check: none; --mc-check without ompmc: refused by name; default: on, or
    'not installed' shown at each confirm."""
    import argparse

    import models.dose.montecarlo.engine as engine
    from guidance.cli.commands.run import mc_check_monitor

    def args(flag):
        return argparse.Namespace(mc_check=flag, mc_uncertainty=1.5)

    assert mc_check_monitor(args(False), None) is None
    monkeypatch.setattr(engine, "ompmc_available", lambda: True)
    on = mc_check_monitor(args(None), None)
    assert on.unavailable == "" and on.options == {"uncertainty_percent": 1.5}
    monkeypatch.setattr(engine, "ompmc_available", lambda: False)
    with pytest.raises(InputError, match="--mc-check: ompmc is not installed"):
        mc_check_monitor(args(True), None)
    assert "iort-guidance[mc]" in mc_check_monitor(args(None), None).unavailable
