"""Trainee mode in the real OR-monitor window under Xvfb: start a scenario, drive with
the keys, confirm, read the debrief (widgets and pixels)."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PyQt5 import QtCore, QtWidgets

from guidance.monitor.qt.trainee_panel import MOVE_RGB, attach_trainee_mode
from guidance.monitor.qt.window import MonitorWindow
from guidance.monitor.rehearsal import phantom_view
from guidance.monitor.trainee import TraineeSession
from guidance.record.session_log import SessionLog
from guidance.treatment.plan_check import compare_to_plan
from tests.guidance.monitor.qt.test_window import _qimage_to_numpy, _save, show_active

pytestmark = pytest.mark.gui


def _near(rgb: np.ndarray, colour, tol: int = 40) -> np.ndarray:
    return np.all(np.abs(rgb.astype(int) - np.array(colour)) <= tol, axis=-1)


def test_start_drive_confirm_debrief(qtbot, tmp_path) -> None:
    slog = SessionLog.create(tmp_path / "session.sqlite", case_id="phantom")
    session = TraineeSession("sarcoma_lead_disc", trainee="Ana", session_log=slog,
                             view=phantom_view(), scores_folder=tmp_path / "scores")
    window = MonitorWindow(session.logic)
    mode = attach_trainee_mode(window, session)
    show_active(qtbot, window, (1500, 900))
    session.start()
    try:
        # F3 toggles trainee mode (it starts on)
        assert mode.active and mode.dock.isVisible()
        qtbot.keyClick(window, QtCore.Qt.Key_F3)
        qtbot.waitUntil(lambda: not mode.dock.isVisible(), timeout=3000)
        qtbot.keyClick(window, QtCore.Qt.Key_F3)
        qtbot.waitUntil(lambda: mode.dock.isVisible(), timeout=3000)
        # pick the pancreas scenario and start it
        box = mode.panel.scenario_box
        box.setCurrentIndex(box.findData("pancreas_bed_8mev"))
        qtbot.mouseClick(mode.panel.start_button, QtCore.Qt.LeftButton)
        assert session.scenario.name == "pancreas_bed_8mev"
        assert "Pancreas bed" in mode.panel.description.text()
        assert "8 MeV" in window.header.text()
        # the hint: text in the panel, a yellow arrow over the AR view
        qtbot.waitUntil(lambda: window.snapshot is not None
                        and window.snapshot.applicator_ok
                        and mode.overlay.move_arrow is not None, timeout=20000)
        assert "move" in mode.panel.hint_label.text()
        # the start is 8 mm left, 7 mm caudal of the plan: the camera looks from anterior
        # with cranial up, so the patient's right is screen left and cranial is up
        (tail_x, tail_y), (head_x, head_y) = mode.overlay.move_arrow
        assert head_x < tail_x - 5 and head_y < tail_y - 5
        qtbot.wait(200)
        ar = _qimage_to_numpy(window.ar_view.grab().toImage())
        assert _near(ar, MOVE_RGB).sum() > 150
        _save("trainee_hint", _qimage_to_numpy(window.grab().toImage()), tmp_path)
        # drive: hold Right (patient left) for about 0.5 s, measured on our own clock
        start = session.driver.pose()
        t0 = time.monotonic()
        qtbot.keyPress(window, QtCore.Qt.Key_Right)
        qtbot.wait(500)
        qtbot.keyRelease(window, QtCore.Qt.Key_Right)
        held = time.monotonic() - t0
        moved = session.driver.pose()[:3, 3] - start[:3, 3]
        assert moved[0] == pytest.approx(10.0 * held, abs=1.0)       # 10 mm/s, patient left
        np.testing.assert_allclose(moved[1:], 0.0, atol=1e-9)
        # Shift+Up tilts the beam axis cranially
        before = session.driver.pose()[:3, 2]
        qtbot.keyPress(window, QtCore.Qt.Key_Up, QtCore.Qt.ShiftModifier)
        qtbot.wait(300)
        qtbot.keyRelease(window, QtCore.Qt.Key_Up, QtCore.Qt.ShiftModifier)
        assert session.driver.pose()[2, 2] > before[2] + 0.01
        # Ctrl+Right rolls about the beam axis (clockwise looking down the beam)
        before = session.driver.pose()
        qtbot.keyPress(window, QtCore.Qt.Key_Right, QtCore.Qt.ControlModifier)
        qtbot.wait(300)
        qtbot.keyRelease(window, QtCore.Qt.Key_Right, QtCore.Qt.ControlModifier)
        after = session.driver.pose()
        np.testing.assert_allclose(after[:3, 2], before[:3, 2], atol=1e-9)
        np.testing.assert_allclose(after[:3, 3], before[:3, 3], atol=1e-9)
        assert compare_to_plan(after, before).roll_deg > 1.0
        # a left-drag in the AR view moves the applicator with the picture: 60 px to the
        # right at the end face's depth (the camera looks from anterior: patient left)
        frame = window.snapshot.frame
        scale = window.ar_view.image_rect().width() / frame.image_rgb.shape[1]
        origin = session.driver.pose()[:3, 3]
        depth = (frame.camera_from_patient[:3, :3] @ origin + frame.camera_from_patient[:3, 3])[2]
        expected_mm = 60.0 / scale * depth / frame.camera_matrix[0, 0]
        centre = window.ar_view.rect().center()
        qtbot.mousePress(window.ar_view, QtCore.Qt.LeftButton, pos=centre)
        qtbot.mouseMove(window.ar_view, centre + QtCore.QPoint(30, 0))
        qtbot.mouseRelease(window.ar_view, QtCore.Qt.LeftButton,
                           pos=centre + QtCore.QPoint(60, 0))
        moved = session.driver.pose()[:3, 3] - origin
        camera_x = frame.camera_from_patient[0, :3]          # image right, in the patient
        assert moved @ camera_x == pytest.approx(expected_mm, rel=0.02)
        assert moved[0] > 0.5 * expected_mm                  # mostly towards patient left
        # typing an override reason is not driving
        window.override_edit.setFocus()
        qtbot.waitUntil(window.override_edit.hasFocus, timeout=3000)
        here = session.driver.pose()
        qtbot.keyClicks(window.override_edit, "fp")
        qtbot.keyClick(window.override_edit, QtCore.Qt.Key_Left)
        assert window.override_edit.text() == "fp"
        np.testing.assert_allclose(session.driver.pose(), here)
        window.override_edit.clear()
        window.ar_view.setFocus()
        # report a fault with F
        qtbot.keyClick(window, QtCore.Qt.Key_F)
        assert any(e.payload["action"] == "fault_reported" for e in slog.events("action"))
        # confirm once the dose for this pose is in, then the debrief
        qtbot.waitUntil(lambda: window.snapshot.dose_check is not None
                        and window.snapshot.applicator_ok, timeout=20000)
        qtbot.mouseClick(mode.panel.confirm_button, QtCore.Qt.LeftButton)
        qtbot.waitUntil(lambda: mode.panel.debrief.isVisible(), timeout=20000)
        debrief = session.debrief
        table = mode.panel.debrief.table
        assert table.rowCount() == len(debrief.rows) == 10
        labels = [table.item(r, 0).text() for r in range(table.rowCount())]
        assert "position error" in labels and "target V90" in labels
        row = labels.index("position error")
        assert table.item(row, 4).text() == ("pass" if debrief.rows[row].passed else "FAIL")
        assert f"{debrief.score.total:.0f} / 100" in mode.panel.debrief.total.text()
        qtbot.wait(100)
        shot = _qimage_to_numpy(mode.panel.grab().toImage())
        _save("trainee_debrief", _qimage_to_numpy(window.grab().toImage()), tmp_path)
        assert (_near(shot, (31, 111, 58), 12).sum() + _near(shot, (176, 30, 30), 12).sum()
                ) > 200   # pass/fail cells are painted
        assert session.debrief.score.components["position_error_mm"] > 1.0
    finally:
        window.close()
        session.close()
        slog.close()
    QtWidgets.QApplication.processEvents()
