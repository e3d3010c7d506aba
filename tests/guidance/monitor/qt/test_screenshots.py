"""The documentation's screenshots of the monitor at 1920x1080 (docs/images), retaken by

    IORT_SCREENSHOT_DIR=docs/images pytest -m slow tests/guidance/monitor/qt/test_screenshots.py

(phantom, real liac engine, applicator 0.8 mm / 0.3 deg off the plan): surgeon mode on the
plan and confirmed; the bevel changed 0 -> 30 deg in surgeon and in oncologist mode."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

pytest.importorskip("pytestqt")
from PyQt5 import QtCore

from guidance.monitor.logic import MonitorLogic
from guidance.monitor.qt.window import MonitorWindow
from guidance.monitor.rehearsal import phantom_view
from guidance.record.session_log import SessionLog
from guidance.treatment.dose_service import beam_options, electron_dose_function
from guidance.treatment.plan_check import Light
from tests.guidance.monitor.qt.test_window import SHOT_DIR, _qimage_to_numpy, show_active
from tests.guidance.monitor.qt.test_window_safety import PLAN_BEAM, _on_plan_feed

pytestmark = [pytest.mark.gui, pytest.mark.slow]


def _shoot(window, name: str, tmp_path: Path) -> None:
    rgb = _qimage_to_numpy(window.grab().toImage())
    assert rgb.shape[:2] == (1080, 1920)
    for folder in filter(None, (SHOT_DIR, str(tmp_path))):
        cv2.imwrite(str(Path(folder) / f"{name}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 88])


def test_monitor_screenshots_1080p(qtbot, tmp_path) -> None:
    view = phantom_view(spacing_mm=(1.5, 1.5, 2.5), image_size=(1280, 720))
    slog = SessionLog.create(tmp_path / "session.sqlite", case_id="phantom")
    logic = MonitorLogic(view.case, view.plan, _on_plan_feed(view),
                         dose_fn=electron_dose_function("liac"), beam=PLAN_BEAM,
                         planned_beam=PLAN_BEAM, machine="liac",
                         beam_options=beam_options("liac"), session_log=slog,
                         plan_name="phantom plan", stall_limit_s=1.0)
    window = MonitorWindow(logic)
    show_active(qtbot, window, (1920, 1080))
    logic.start()
    try:
        qtbot.waitUntil(lambda: window.snapshot is not None
                        and window.snapshot.light is Light.GREEN, timeout=60000)
        qtbot.keyClick(window, QtCore.Qt.Key_Return, QtCore.Qt.ControlModifier)
        assert window.ack_label.text().startswith("Confirmed #1")
        qtbot.waitUntil(lambda: window.ar_frames > 5, timeout=20000)
        _shoot(window, "monitor_surgeon", tmp_path)
        window.bevel.setCurrentIndex(window.bevel.findData(30.0))
        qtbot.waitUntil(lambda: window.snapshot.dose_check is not None
                        and window.snapshot.dose.beam.bevel_deg == 30.0
                        and window.light.light is Light.RED, timeout=60000)
        qtbot.keyClick(window, QtCore.Qt.Key_Return, QtCore.Qt.ControlModifier)
        assert "refused" in window.ack_label.text()
        frames = window.ar_frames
        qtbot.waitUntil(lambda: window.ar_frames > frames + 3, timeout=20000)
        _shoot(window, "monitor_surgeon_bevel30", tmp_path)
        qtbot.keyClick(window, QtCore.Qt.Key_F2)
        seq = window.snapshot.dose_seq
        qtbot.waitUntil(lambda: window.slice_views["sagittal"].image is not None
                        and window.dvh_view.image is not None, timeout=30000)
        window._update_3d(window.snapshot)
        qtbot.wait(1500)   # the slices, DVH and 3D view drawn after the mode change
        assert window.snapshot.dose_seq >= seq
        _shoot(window, "monitor_oncologist_bevel30", tmp_path)
    finally:
        window.close()
        slog.close()
