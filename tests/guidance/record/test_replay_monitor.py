"""A monitor session (worker-thread dose) replayed: every logged coverage number again."""

from __future__ import annotations

import time

import pytest

from guidance.monitor.feed import ScriptedFeed
from guidance.monitor.logic import MonitorLogic
from guidance.monitor.rehearsal import phantom_view
from guidance.record.replay import read_session, replay_session
from guidance.record.session_log import SessionLog
from guidance.record.tracking_record import record_tracking
from guidance.treatment.dose_service import electron_dose_function

pytestmark = pytest.mark.slow


def test_monitor_session_numbers_are_reproduced(tmp_path) -> None:
    view = phantom_view()
    # the applicator settles on the plan, slides 3 mm, settles again
    offsets = [(0.3, 0.0, 0.0)] * 40 + [(0.3 + 0.1 * i, 0.0, 0.0) for i in range(30)] + \
        [(3.3, 0.0, 0.0)] * 3600   # held (2 min at 30 fps): time to confirm under load
    feed = ScriptedFeed(view.shots(offsets), view.camera_matrix, view.background(),
                        fps=30.0, fre_mm=0.5, tre_mm=0.9)
    path = tmp_path / "monitor.sqlite"
    slog = SessionLog.create(path, case_id="phantom",
                             metadata={"ct_sha256": view.case.ct.digest_sha256(),
                                       "machine": "liac"})
    recorder = record_tracking(feed.loop, slog)
    logic = MonitorLogic(view.case, view.plan, feed, dose_fn=electron_dose_function("liac"),
                         session_log=slog).start()
    try:
        deadline = time.monotonic() + 110.0
        confirmed = None
        while time.monotonic() < deadline and confirmed is None:
            snap = logic.poll()
            if (logic.capture.frames > 90 and snap.dose is not None
                    and snap.dose.metrics_ready and snap.overlay_ok):
                result = logic.confirm(user="RO", override_reason="replay test")
                confirmed = result if result.accepted else None
            time.sleep(0.02)
        assert confirmed is not None, "no confirm within 110 s"
    finally:
        logic.close()
        recorder.flush()
        slog.close()
    read = read_session(path)
    assert read.of_kind("dose") and read.of_kind("frames")
    result = replay_session(read, view.case)
    assert result.pose_mismatches == [] and result.frames >= 90
    assert len(result.checks) > 20
    assert result.mismatches == [], result.summary()["differences"]
