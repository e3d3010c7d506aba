"""``iort replay`` in the OR monitor: recorded frames through a new loop into the window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from guidance.cli.commands.replay import replay_monitor_logic
from guidance.cli.main import main
from guidance.loop.guidance_loop import GuidanceLoop, LoopOptions
from guidance.monitor.qt.window import MonitorWindow
from guidance.monitor.rehearsal import phantom_view
from guidance.record.replay import read_session
from guidance.record.session_log import SessionLog
from guidance.record.tracking_record import record_tracking
from guidance.sim.scripted import ScriptedSource, ScriptedTrackerDevice
from models.patient.case_store import save_case

pytestmark = [pytest.mark.gui, pytest.mark.slow]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A 4 s session of the applicator held near the plan (tracking stream only)."""
    folder = tmp_path_factory.mktemp("replay_window")
    view = phantom_view(image_size=(640, 400))
    shots = view.shots([(0.4, 0.0, 0.0)] * 120)
    device = ScriptedTrackerDevice(shots)
    loop = GuidanceLoop(ScriptedSource(shots, view.background(), fps=30.0), (),
                        view.camera_matrix, device=device, options=LoopOptions(),
                        patient_from_reference=device.patient_from_reference)
    path = folder / "session.sqlite"
    with SessionLog.create(path, case_id="phantom",
                           metadata={"ct_sha256": view.case.ct.digest_sha256(),
                                     "plan_patient_from_applicator": view.plan,
                                     "machine": "liac"}) as slog:
        record_tracking(loop, slog)
        loop.run()
    case_dir = save_case(view.case, folder / "case")
    return path, case_dir, view


def test_replay_shows_the_recorded_applicator_and_its_live_dose(qtbot, recorded) -> None:
    path, _, view = recorded
    logic = replay_monitor_logic(read_session(path), view.case, speed=1.0)
    window = MonitorWindow(logic)
    qtbot.addWidget(window)
    window.resize(1280, 720)
    window.show()
    logic.start()
    try:
        qtbot.waitUntil(lambda: window.snapshot is not None and window.snapshot.applicator_ok
                        and window.snapshot.dose is not None, timeout=30000)
        pose = window.snapshot.applicator_pose
        # the recorded pose: 0.4 mm from the plan
        assert np.linalg.norm(pose[:3, 3] - view.plan[:3, 3]) == pytest.approx(0.4, abs=0.05)
        qtbot.waitUntil(lambda: window.ar_view.image is not None
                        and window.ar_view.image.max() > 100, timeout=10000)
        # the overlay over the (black) replayed video: target and organs drawn
        assert (window.ar_view.image.max(axis=2) > 100).sum() > 500
        assert window.logic.confirm().accepted is False   # nothing is recorded by a replay
    finally:
        window.close()
        logic.close()


def test_replay_command_opens_the_monitor(qtbot, recorded, capsys) -> None:
    path, case_dir, _ = recorded
    code = main(["replay", str(path), "--case", str(case_dir), "--speed", "4",
                 "--quit-after", "2"])
    assert code == 0
    assert "replaying session.sqlite at 4x in the monitor" in capsys.readouterr().out


def test_replay_without_a_tracking_stream_says_so(tmp_path: Path, recorded, capsys) -> None:
    _, case_dir, view = recorded
    old = tmp_path / "old.sqlite"
    SessionLog.create(old, metadata={"ct_sha256": view.case.ct.digest_sha256()}).close()
    code = main(["replay", str(old), "--case", str(case_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no tracking stream" in err[0]
