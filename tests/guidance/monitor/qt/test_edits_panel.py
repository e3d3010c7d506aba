"""The anatomy edit list and the 3D-view drag in the real monitor window (Xvfb)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PyQt5 import QtCore, QtGui, QtWidgets

from guidance.monitor.feed import ScriptedFeed
from guidance.monitor.logic import MonitorLogic
from guidance.monitor.qt.window import MonitorWindow
from guidance.monitor.rehearsal import phantom_view, slab_dose
from guidance.record.session_log import SessionLog

pytestmark = pytest.mark.gui

#: Screenshots are kept here when IORT_SCREENSHOT_DIR is set (to look at them).
SHOT_DIR = os.environ.get("IORT_SCREENSHOT_DIR")


def _send(widget, kind, x: float, y: float, *, shift: bool = False) -> None:
    buttons = QtCore.Qt.NoButton if kind == QtCore.QEvent.MouseButtonRelease \
        else QtCore.Qt.LeftButton
    mods = QtCore.Qt.ShiftModifier if shift else QtCore.Qt.NoModifier
    event = QtGui.QMouseEvent(kind, QtCore.QPointF(x, y), QtCore.Qt.LeftButton, buttons, mods)
    QtWidgets.QApplication.sendEvent(widget, event)


def _display_xy(view3d, point_lps: np.ndarray) -> np.ndarray:
    """Where the 3D view draws a patient point (widget pixels, y down)."""
    renderer = view3d.renderer
    renderer.SetWorldPoint(*point_lps, 1.0)
    renderer.WorldToDisplay()
    x, y, _ = renderer.GetDisplayPoint()
    ratio = view3d.devicePixelRatioF()
    return np.array([x / ratio, view3d.height() - y / ratio])


def _rows(panel) -> list[str]:
    return [panel.list.item(i).text() for i in range(panel.list.count())]


def test_edit_list_undo_and_a_drag_that_moves_the_bowel_with_the_mouse(qtbot, tmp_path) -> None:
    view = phantom_view()
    feed = ScriptedFeed(view.shots([(0.0, 0.0, 0.0)] * 4), view.camera_matrix,
                        view.background(), fps=15.0, fre_mm=0.5, tre_mm=0.9, loop=True)
    slog = SessionLog.create(tmp_path / "s.sqlite")
    logic = MonitorLogic(view.case, view.plan, feed, dose_fn=slab_dose, session_log=slog,
                         stall_limit_s=1.0)
    window = MonitorWindow(logic)
    qtbot.addWidget(window)
    window.resize(1500, 900)
    window.show()
    window.set_mode("oncologist")
    qtbot.waitExposed(window)
    panel, editor = window.edits_panel, logic.anatomy
    assert _rows(panel) == ["(none: the preoperative anatomy)"]
    assert not panel.undo_button.isEnabled()
    # an edit (as a pointer sweep would make it) shows with its numbers; undo/redo buttons
    c = view.case.centroid_lps("BOWEL")
    move = np.eye(4)
    move[:3, 3] = (0.0, -21.0, 28.0)
    editor.retract("BOWEL", move, how="pointer sweep")
    assert _rows(panel) == ["1. BOWEL moved 35 mm, 0 deg, by pointer sweep"]
    assert "BOWEL:preoperative" in window._scene3d.actors      # dashed, where it was
    # the coronal slice through the plan (y = -12 mm) cut the bowel; after the move its
    # outline there is the dashed preoperative one (the bowel itself now lies anterior)
    bowel_rgb = np.array(view.case.structures["BOWEL"].color_rgb)

    def coronal_bowel_px() -> int:
        image = window.slice_views["coronal"].image
        return -1 if image is None else int(np.all(image == bowel_rgb, axis=2).sum())
    qtbot.waitUntil(lambda: window._slice_key is not None and coronal_bowel_px() >= 0,
                    timeout=20000)
    editor.undo()
    qtbot.waitUntil(lambda: window._slice_key is not None, timeout=20000)
    qtbot.waitUntil(lambda: window._slice_future is None or window._slice_future.done(),
                    timeout=20000)
    window.tick()
    solid_px = coronal_bowel_px()
    editor.redo()
    qtbot.waitUntil(lambda: window._slice_key is not None, timeout=20000)
    qtbot.waitUntil(lambda: window._slice_future is None or window._slice_future.done(),
                    timeout=20000)
    window.tick()
    dashed_px = coronal_bowel_px()
    assert solid_px > 100 and 0.4 * solid_px < dashed_px < 0.75 * solid_px
    qtbot.mouseClick(panel.undo_button, QtCore.Qt.LeftButton)
    assert _rows(panel) == ["(none: the preoperative anatomy)"]
    assert "BOWEL:preoperative" not in window._scene3d.actors
    qtbot.mouseClick(panel.redo_button, QtCore.Qt.LeftButton)
    assert len(editor.edits) == 1
    # move mode: a 60 px drag to the right carries the bowel's centre 60 px on screen
    panel.organ.setCurrentText("BOWEL")
    panel.move_button.setChecked(True)
    view3d = window.view3d
    before = move[:3, :3] @ c + move[:3, 3]
    start_xy = _display_xy(view3d, before)
    x0, y0 = view3d.width() / 2, view3d.height() / 2
    camera_before = np.asarray(view3d.camera.position).copy()
    _send(view3d, QtCore.QEvent.MouseButtonPress, x0, y0)
    _send(view3d, QtCore.QEvent.MouseMove, x0 + 30, y0)
    assert editor.previewing and _rows(panel)[-1].startswith("moving: BOWEL")
    _send(view3d, QtCore.QEvent.MouseMove, x0 + 60, y0)
    _send(view3d, QtCore.QEvent.MouseButtonRelease, x0 + 60, y0)
    assert not editor.previewing and len(editor.edits) == 2
    np.testing.assert_allclose(view3d.camera.position, camera_before)   # camera stayed
    m = editor.retraction_of("BOWEL")
    after_xy = _display_xy(view3d, m[:3, :3] @ c + m[:3, 3])
    np.testing.assert_allclose(after_xy - start_xy, (60.0, 0.0), atol=2.0)
    assert _rows(panel)[-1].endswith("by 3D view")
    # shift-drag turns it about the viewing direction: 40 px -> 20 deg, centre stays
    _send(view3d, QtCore.QEvent.MouseButtonPress, x0, y0, shift=True)
    _send(view3d, QtCore.QEvent.MouseButtonRelease, x0 + 40, y0, shift=True)
    from models.base.transforms import angle_between_transforms_deg

    turned = editor.retraction_of("BOWEL")
    assert angle_between_transforms_deg(turned, m) == pytest.approx(20.0, abs=1e-6)
    np.testing.assert_allclose(turned[:3, :3] @ c + turned[:3, 3], m[:3, :3] @ c + m[:3, 3],
                               atol=1e-6)
    assert _rows(panel)[-1] == "3. BOWEL moved 0 mm, 20 deg, by 3D view"
    if SHOT_DIR:
        window.grab().save(str(Path(SHOT_DIR) / "edits_panel.png"))
    window.close()
    with SessionLog.open(tmp_path / "s.sqlite", readonly=True) as back:
        kinds = [e.kind for e in back.events() if e.kind.startswith("anatomy")]
    assert kinds == ["anatomy_edit", "anatomy_undo", "anatomy_redo", "anatomy_undo",
                     "anatomy_redo", "anatomy_edit", "anatomy_edit"]


def test_grab_button_couples_the_bowel_to_the_tracked_retractor(qtbot, monkeypatch) -> None:
    from tests.guidance.monitor.test_anatomy import _frame_with_retractor

    view = phantom_view()
    feed = ScriptedFeed(view.shots([(0.0, 0.0, 0.0)] * 4), view.camera_matrix,
                        view.background(), fps=15.0, fre_mm=0.5, tre_mm=0.9, loop=True)
    logic = MonitorLogic(view.case, view.plan, feed, dose_fn=slab_dose)
    window = MonitorWindow(logic, with_3d=False)
    qtbot.addWidget(window)
    window.show()
    panel = window.edits_panel
    camera, blade = np.eye(4), np.eye(4)
    camera[2, 3] = 400.0
    frames = {"now": _frame_with_retractor(camera, blade, tracked=False)}
    monkeypatch.setattr(panel, "frame", lambda: frames["now"])
    panel.organ.setCurrentText("BOWEL")
    qtbot.mouseClick(panel.grab_button, QtCore.Qt.LeftButton)      # not tracked: refused
    assert not panel.grab_button.isChecked() and "not tracked" in panel.message.text()
    frames["now"] = _frame_with_retractor(camera, blade)
    qtbot.mouseClick(panel.grab_button, QtCore.Qt.LeftButton)
    assert panel.grab_button.isChecked() and panel.follower.coupled
    pull = np.eye(4)
    pull[:3, 3] = (0.0, -30.0, 10.0)
    frames["now"] = _frame_with_retractor(camera, pull)
    qtbot.waitUntil(lambda: logic.anatomy.previewing, timeout=3000)  # the 10 Hz follow
    assert _rows(panel)[-1].startswith("moving: BOWEL moved 32 mm")
    qtbot.mouseClick(panel.grab_button, QtCore.Qt.LeftButton)      # release: recorded
    assert _rows(panel) == ["1. BOWEL moved 32 mm, 0 deg, by tracked retractor"]
    window.close()
