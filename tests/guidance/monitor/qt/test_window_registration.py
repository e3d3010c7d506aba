"""The OR monitor window drives the guided pointer registration with its keys (Xvfb)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PyQt5 import QtCore

from guidance.monitor.feed import LoopFeed
from guidance.monitor.logic import MonitorLogic
from guidance.monitor.qt.window import MonitorWindow
from guidance.monitor.rehearsal import phantom_view
from guidance.record.session_log import SessionLog
from guidance.registration.decision import RegistrationThresholds
from guidance.registration.guided import GuidedRegistration
from tests.guidance.monitor.qt.test_window import show_active
from tests.guidance.monitor.test_logic import _TouchingLoop
from tests.guidance.registration.test_guided import FIDS, TARGET, TRUTH

pytestmark = pytest.mark.gui


class _VideoLoop(_TouchingLoop):
    """Touching loop with frames of the camera's size (the AR view draws them)."""

    def step(self):
        result = super().step()
        return replace(result, frame=replace(result.frame,
                                             image=np.full((400, 640, 3), 60, np.uint8)))


def test_keys_register_with_the_pointer(qtbot, tmp_path) -> None:
    view = phantom_view()
    loop = _VideoLoop()
    slog = SessionLog.create(tmp_path / "s.sqlite")
    guided = GuidedRegistration(loop, FIDS, target_lps=TARGET, samples_per_fiducial=3,
                                thresholds=RegistrationThresholds(min_fiducials=3),
                                session_log=slog)
    logic = MonitorLogic(view.case, view.plan, LoopFeed(loop, view.camera_matrix,
                                                        on_result=guided),
                         session_log=slog, registration=guided)
    window = MonitorWindow(logic, with_3d=False)
    show_active(qtbot, window, (1200, 700))
    logic.start()
    try:
        qtbot.waitUntil(lambda: "touch FID1" in window.banner.text(), timeout=10000)
        assert window.banner.isVisible() and not window.registration_label.isVisible()
        qtbot.keyClick(window, QtCore.Qt.Key_Space)
        qtbot.waitUntil(lambda: "touch FID2" in window.banner.text(), timeout=10000)
        qtbot.keyClick(window, QtCore.Qt.Key_S)                 # skip FID2
        qtbot.waitUntil(lambda: "touch FID3" in window.banner.text(), timeout=5000)
        qtbot.keyClick(window, QtCore.Qt.Key_Backspace)         # ... changed my mind
        qtbot.waitUntil(lambda: "touch FID2" in window.banner.text(), timeout=5000)
        for name, nxt in (("FID2", "FID3"), ("FID3", "FID4")):
            loop.touching = name
            moved_at = loop.index   # a frame in flight may still carry the old tip
            qtbot.waitUntil(lambda m=moved_at: loop.index >= m + 2, timeout=5000)
            qtbot.keyClick(window, QtCore.Qt.Key_Space)
            qtbot.waitUntil(lambda n=nxt: f"touch {n}" in window.banner.text(), timeout=10000)
        assert "(3/5 collected) - Enter to register now" in window.banner.text()
        qtbot.keyClick(window, QtCore.Qt.Key_Return)
        qtbot.waitUntil(lambda: window.registration_label.isVisible(), timeout=5000)
        assert window.registration_label.text().startswith("registration accepted: FRE 0.00 mm")
        assert "FID3 0.00 mm" in window.registration_label.text()
        assert "REGISTRATION" not in window.banner.text()
        np.testing.assert_allclose(loop.patient_from_reference, TRUTH, atol=1e-6)
        assert not any(s.isEnabled() for s in window.registration_shortcuts)
    finally:
        window.close()
    actions = [e.payload["action"] for e in slog.events("action")]
    assert actions.count("registration_capture") == 3
    assert {"registration_skip", "registration_redo", "registration_accept"} <= set(actions)
    assert slog.last("registration").payload["accepted"] is True
    slog.close()
