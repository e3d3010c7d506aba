"""The real window after Confirm: the Monte Carlo check's progress, then its verdict, in
large coloured text while the UI keeps running (the check is a stand-in runner here; the
real ompmc child is tested headless in tests/guidance/monitor/test_mc_monitor.py)."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PyQt5 import QtCore

from guidance.monitor.feed import ScriptedFeed
from guidance.monitor.logic import MonitorLogic
from guidance.monitor.mc_monitor import McCheckMonitor
from guidance.monitor.qt.window import MonitorWindow
from guidance.monitor.rehearsal import phantom_view, slab_dose
from guidance.record.session_log import SessionLog
from guidance.treatment.mc_runner import McProgress
from tests.guidance.monitor.qt.test_window import _qimage_to_numpy, _save, show_active
from tests.guidance.monitor.test_mc_monitor import PHANTOM_RESULT, FakeRunner

pytestmark = pytest.mark.gui


def test_confirm_shows_mc_progress_then_verdict(qtbot, tmp_path) -> None:
    view = phantom_view()
    feed = ScriptedFeed(view.shots([(0.5, 0.0, 0.0)]), view.camera_matrix, view.background(),
                        fps=30.0, fre_mm=0.5, loop=True)
    slog = SessionLog.create(tmp_path / "s.sqlite", case_id="phantom")
    FakeRunner.made.clear()
    logic = MonitorLogic(view.case, view.plan, feed, dose_fn=slab_dose, session_log=slog,
                         mc_check=McCheckMonitor(FakeRunner, session_log=slog))
    window = MonitorWindow(logic, with_3d=False)
    show_active(qtbot, window, (1920, 1080))
    logic.start()
    try:
        qtbot.keyClick(window, QtCore.Qt.Key_F2)
        qtbot.waitUntil(lambda: window.snapshot is not None and window.snapshot.dose is not None
                        and window.snapshot.dose.metrics_ready, timeout=30000)
        assert not window.mc_label.isVisible()            # nothing before a confirm
        window.override_edit.setText("rehearsal")
        qtbot.mouseClick(window.confirm_button, QtCore.Qt.LeftButton)
        assert window.ack_label.text().startswith("Confirmed #1")
        runner = FakeRunner.made[-1]
        qtbot.waitUntil(runner.started.is_set, timeout=5000)
        runner.progress = McProgress(0.37)
        qtbot.waitUntil(lambda: window.mc_label.text() == "MC check of confirm #1: 37 %",
                        timeout=5000)
        frames = logic.capture.frames
        qtbot.wait(600)
        assert logic.capture.frames > frames              # the monitor runs on meanwhile
        runner.progress = McProgress(1.0, result=PHANTOM_RESULT)
        qtbot.waitUntil(lambda: "DISAGREE" in window.mc_label.text(), timeout=5000)
        assert window.mc_label.isVisible()
        assert window.mc_label.fontInfo().pixelSize() >= 22   # legible from 3 m
        qtbot.wait(50)
        # both lines (verdict, then the reasons) fit: nothing cut off
        lines = window.mc_label.text().splitlines()
        assert len(lines) == 2
        assert window.mc_label.height() >= 2 * window.mc_label.fontMetrics().lineSpacing()
        label = _qimage_to_numpy(window.mc_label.grab().toImage()).astype(int)
        red = (label[..., 0] > 200) & (label[..., 1] < 140) & (label[..., 2] < 140)
        assert red.sum() > 300                            # the verdict is drawn in red
        shot = _qimage_to_numpy(window.grab().toImage())
        _save("window_mc_check", shot, tmp_path)
        assert shot.shape[:2] == (1080, 1920)
        top = window.mc_label.mapTo(window, QtCore.QPoint(0, 0)).y()
        assert 0 < top < 300                              # near the top, under the header
        assert np.any(red)
    finally:
        window.close()
        logic.close()
        slog.close()
    time.sleep(0.05)
