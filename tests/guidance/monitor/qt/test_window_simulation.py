"""The simulated procedure in the real window (issue 13 item 5): it runs on the wall
clock, says what it is doing, R plays it again, and it never ends in VIDEO ENDED."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PyQt5 import QtCore

from guidance.monitor.feed import ScriptedFeed
from guidance.monitor.logic import MonitorLogic
from guidance.monitor.qt.window import MonitorWindow
from guidance.monitor.rehearsal import phantom_view
from tests.guidance.monitor.qt.test_window import show_active

pytestmark = pytest.mark.gui


def _shot(window) -> int:
    match = re.search(r"shot (\d+)/", window.sim_label.text())
    return int(match.group(1)) if match else -1


def test_simulation_runs_in_real_time_and_restarts_on_r(qtbot) -> None:
    view = phantom_view()
    # 10 s of script at 30 shots/s (the applicator moving 0 -> 20 mm), read at <= 10/s
    offsets = [(20.0 * t, 0.0, 0.0) for t in np.linspace(0.0, 1.0, 300)]
    background = view.background()

    def slow(index, shot):
        time.sleep(0.1)
        return background

    feed = ScriptedFeed(view.shots(offsets), view.camera_matrix, slow, fps=30.0,
                        realtime=True, fre_mm=0.5)
    logic = MonitorLogic(view.case, view.plan, feed, stall_limit_s=1.0)
    window = MonitorWindow(logic, with_3d=False)
    show_active(qtbot, window, (1200, 700))
    start = time.monotonic()
    logic.start()
    try:
        assert window.sim_label.isVisible()
        qtbot.waitUntil(lambda: _shot(window) > 60, timeout=20000)
        elapsed = time.monotonic() - start
        frames = logic.capture.frames
        # shots follow the clock (30/s), not the frames read (<= 10/s)
        assert _shot(window) > 2 * frames and _shot(window) >= 0.6 * 30 * elapsed - 30
        assert "R restarts" in window.sim_label.text()
        assert window.sim_label.fontInfo().pixelSize() >= 20
        qtbot.keyClick(window, QtCore.Qt.Key_R)
        qtbot.waitUntil(lambda: 0 < _shot(window) < 30, timeout=10000)
        qtbot.waitUntil(lambda: window.snapshot.deviation is not None
                        and window.snapshot.deviation.distance_mm < 3.0, timeout=10000)
        # the simulation is still running: no VIDEO ENDED
        assert not window.banner.text().startswith("VIDEO ENDED")
    finally:
        window.close()
