"""Resection, drawn region and disc placement from the monitor's edit panel (Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PyQt5 import QtCore

from guidance.monitor.anatomy import attach_anatomy
from guidance.monitor.feed import ScriptedFeed
from guidance.monitor.logic import MonitorLogic
from guidance.monitor.qt.window import MonitorWindow
from guidance.monitor.rehearsal import phantom_view, slab_dose
from guidance.record.session_log import SessionLog

pytestmark = pytest.mark.gui


def _rows(panel) -> list[str]:
    return [panel.list.item(i).text() for i in range(panel.list.count())]


def _pick(box, data) -> None:
    index = box.findData(data)
    if index < 0:
        index = box.findText(data)
    assert index >= 0, data
    box.setCurrentIndex(index)


def test_resect_a_region_and_place_a_disc_from_the_panel(qtbot, tmp_path) -> None:
    from models.dose.disc import disc_in_beam
    from models.patient.case_store import load_edits, save_case

    view = phantom_view()
    case = view.case
    folder = save_case(case, tmp_path / "case")
    feed = ScriptedFeed(view.shots([(0.0, 0.0, 0.0)] * 4), view.camera_matrix,
                        view.background(), fps=15.0, fre_mm=0.5, tre_mm=0.9, loop=True)
    slog = SessionLog.create(tmp_path / "s.sqlite")
    logic = MonitorLogic(case, view.plan, feed, dose_fn=slab_dose, session_log=slog)
    attach_anatomy(logic, case_dir=folder, who="surgeon")
    window = MonitorWindow(logic, with_3d=False)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    panel, editor = window.edits_panel, logic.anatomy
    original_hu = case.ct.array.copy()

    # 1. the cavity packed with saline: its HU become 0, nothing else changes
    cavity = case.structures["CAVITY"].mask
    assert np.mean(original_hu[cavity] == 0.0) < 0.5
    assert "BODY" not in [panel.resect_structure.itemText(i)
                          for i in range(panel.resect_structure.count())]
    _pick(panel.resect_structure, "CAVITY")
    _pick(panel.resect_fill, "saline")
    qtbot.mouseClick(panel.resect_button, QtCore.Qt.LeftButton)
    assert _rows(panel) == ["1. CAVITY resected, filled with saline, by monitor panel"]
    hu = logic.case.ct.array
    assert np.all(hu[cavity] == 0.0)
    np.testing.assert_array_equal(hu[~cavity], original_hu[~cavity])
    assert logic.dose_service.case is logic.case              # the dose follows
    assert len(load_edits(folder)) == 1                       # saved in the case folder
    qtbot.mouseClick(panel.undo_button, QtCore.Qt.LeftButton)
    assert _rows(panel) == ["(none: the preoperative anatomy)"]
    np.testing.assert_array_equal(logic.case.ct.array, original_hu)   # bit for bit
    assert logic.dose_service.case is logic.case and len(load_edits(folder)) == 0
    qtbot.mouseClick(panel.redo_button, QtCore.Qt.LeftButton)

    # 2. a 12 mm sphere 15 mm below the end face (the planned pose: nothing is tracked)
    pose, source = panel.applicator()
    assert source == "planned"
    np.testing.assert_array_equal(pose, view.plan)
    panel.tools.setCurrentIndex(1)
    _pick(panel.region_shape, "sphere")
    assert not panel.region_length.isEnabled()
    panel.region_radius.setValue(12.0)
    panel.region_depth.setValue(15.0)
    _pick(panel.region_fill, "soft_tissue")
    qtbot.mouseClick(panel.region_button, QtCore.Qt.LeftButton)
    assert panel.message.text() == ""
    centre = view.plan[:3, 3] + 15.0 * view.plan[:3, 2]
    c = np.round(centre).astype(int).tolist()
    assert _rows(panel)[-1] == (f"2. sphere r 12 mm at ({c[0]}, {c[1]}, {c[2]}) mm resected, "
                                "filled with soft_tissue, by monitor panel, planned applicator")
    k, j, i = np.indices(case.ct.shape)
    pts = case.ct.voxel_to_patient(np.column_stack([i.ravel(), j.ravel(), k.ravel()]))
    ball = (np.linalg.norm(pts - centre, axis=1) <= 12.0).reshape(case.ct.shape)
    body = case.structures["BODY"].mask | cavity
    assert (ball & body).sum() > 50
    assert np.all(logic.case.ct.array[ball & body] == 40.0)
    rest = ~(ball & body) & ~cavity
    np.testing.assert_array_equal(logic.case.ct.array[rest], original_hu[rest])

    # 3. a lead disc 60 mm x 4 mm, its upstream face 25 mm below the end face, on the axis
    panel.tools.setCurrentIndex(2)
    _pick(panel.disc_material, "lead")
    panel.disc_diameter.setValue(60.0)
    panel.disc_thickness.setValue(4.0)
    panel.disc_depth.setValue(25.0)
    qtbot.mouseClick(panel.disc_button, QtCore.Qt.LeftButton)
    assert _rows(panel)[-1].startswith("3. lead disc 60 mm x 4 mm placed at (")
    assert _rows(panel)[-1].endswith("by monitor panel, planned applicator")
    disc = logic.case.disc
    assert disc is not None and logic.dose_service.case.disc is disc
    seen = disc_in_beam(disc, view.plan)
    assert (seen.depth_mm, seen.thickness_mm, seen.centre_x_mm, seen.centre_y_mm,
            seen.diameter_mm) == pytest.approx((25.0, 4.0, 0.0, 0.0, 60.0), abs=1e-9)
    np.testing.assert_array_equal(logic.case.ct.array, editor.edits.apply(case).ct.array)
    # no applicator pose: one message, nothing applied
    panel.applicator = lambda: None
    qtbot.mouseClick(panel.disc_button, QtCore.Qt.LeftButton)
    assert "no applicator pose" in panel.message.text() and len(editor.edits) == 3
    qtbot.mouseClick(panel.undo_button, QtCore.Qt.LeftButton)
    assert logic.case.disc is None and len(_rows(panel)) == 2
    assert len(load_edits(folder)) == 2
    window.close()
    with SessionLog.open(tmp_path / "s.sqlite", readonly=True) as back:
        edits = [e.payload["edit"] for e in back.events() if e.kind == "anatomy_edit"]
    assert [e["kind"] for e in edits] == ["resection", "resection", "disc"]
    assert edits[1]["region"]["shape"] == "sphere" and edits[1]["region"]["radius_mm"] == 12.0
    assert edits[2]["who"] == "surgeon"


def _drag(widget, points) -> None:
    """Press at the first point, move through the others with the left button held,
    release at the last (widget coordinates)."""
    from PyQt5 import QtGui, QtWidgets

    def send(kind, p, button, buttons) -> None:
        QtWidgets.QApplication.sendEvent(widget, QtGui.QMouseEvent(
            kind, QtCore.QPointF(*p), button, buttons, QtCore.Qt.NoModifier))

    left = QtCore.Qt.LeftButton
    send(QtCore.QEvent.MouseButtonPress, points[0], left, left)
    for p in points[1:]:
        send(QtCore.QEvent.MouseMove, p, QtCore.Qt.NoButton, left)
    send(QtCore.QEvent.MouseButtonRelease, points[-1], left, QtCore.Qt.NoButton)


def test_a_region_drawn_on_a_slice_is_resected_and_undone(qtbot, tmp_path) -> None:
    from models.patient.edits import ResectionRegion

    view = phantom_view()
    case = view.case
    feed = ScriptedFeed(view.shots([(0.0, 0.0, 0.0)] * 4), view.camera_matrix,
                        view.background(), fps=15.0, fre_mm=0.5, tre_mm=0.9, loop=True)
    logic = MonitorLogic(case, view.plan, feed, dose_fn=slab_dose)
    attach_anatomy(logic, who="physicist")
    window = MonitorWindow(logic, with_3d=False)
    qtbot.addWidget(window)
    window.resize(1600, 1000)
    window.show()
    window.set_mode("oncologist")
    logic.start()
    try:
        axial = window.slice_views["axial"]
        qtbot.waitUntil(lambda: axial.patient_from_pixel is not None
                        and axial.image is not None, timeout=20000)
        panel = window.edits_panel
        panel.tools.setCurrentIndex(1)
        _pick(panel.region_shape, "contour")
        assert axial.drawing and not panel.region_depth.isEnabled()
        panel.region_length.setValue(6.0)
        _pick(panel.region_fill, "air")
        # a circle of 30 px radius around the slice centre, drawn with the mouse
        cx, cy = axial.width() / 2.0, axial.height() / 2.0
        t = np.linspace(0.0, 2.0 * np.pi, 40)
        _drag(axial, [(cx + 30.0 * np.cos(a), cy + 30.0 * np.sin(a)) for a in t])
        assert panel.drawn_outline is not None, panel.message.text()
        points, normal = panel.drawn_outline
        np.testing.assert_allclose(np.abs(normal), [0.0, 0.0, 1.0], atol=1e-9)  # axial
        # the outline is drawn on the slice (cyan pixels on its ring)
        shot = axial.grab().toImage()
        ring = [shot.pixelColor(int(cx + 30 * np.cos(a)), int(cy + 30 * np.sin(a)))
                for a in t[::5]]
        assert sum(c.blue() > 200 and c.green() > 180 and c.red() < 80 for c in ring) >= 5
        original_hu = logic.case.ct.array.copy()
        qtbot.mouseClick(panel.region_button, QtCore.Qt.LeftButton)
        rows = _rows(panel)
        assert len(rows) == 1 and "drawn region" in rows[0], (rows, panel.message.text())
        # independent truth: the same outline through the model, inside the body
        region = ResectionRegion.drawn(points, normal, 6.0)
        inside = region.mask_on(case.ct)
        changed = logic.case.ct.array != original_hu
        assert changed.any() and np.all(inside[changed])
        assert np.all(logic.case.ct.array[changed] == -1000.0)
        assert logic.dose_service.case is logic.case              # the dose follows
        qtbot.mouseClick(panel.undo_button, QtCore.Qt.LeftButton)
        np.testing.assert_array_equal(logic.case.ct.array, original_hu)
        # a scribble (no area) is refused in one line, nothing kept
        _drag(axial, [(cx, cy), (cx + 40.0, cy), (cx + 80.0, cy)])
        assert panel.drawn_outline is None and "refused" in panel.message.text()
    finally:
        logic.close()


@pytest.mark.slow
def test_the_windowed_simulation_retracts_the_bowel_by_itself(qtbot) -> None:
    """With a display the demo runs the simulated procedure in the window: its retraction
    step grabs the bowel with the tracked retractor, pulls it and releases it, as the
    headless demo does, and the edit is in the list."""
    from models.base.transforms import transform_difference
    from models.patient.phantom import make_phantom
    from tests.guidance.monitor.qt.simulated import open_simulated_window

    case = make_phantom(spacing_mm=(3.0, 3.0, 4.0))
    window, logic, scenario = open_simulated_window(qtbot, case, frames=160)
    assert scenario.retraction_frames > 10
    try:
        panel, editor = window.edits_panel, logic.anatomy
        assert panel.script is not None and panel.script.structure == "BOWEL"
        qtbot.waitUntil(lambda: panel.script.grabbed, timeout=120000)
        assert panel.grab_button.isChecked() and "follows" in panel.message.text()
        qtbot.waitUntil(lambda: panel.script.done, timeout=120000)
        assert not panel.grab_button.isChecked() and "released" in panel.message.text()
        rows = _rows(panel)
        assert len(rows) == 1 and rows[0].startswith("1. BOWEL moved"), rows
        want = scenario.patient_from_retracted_at(scenario.treatment_start)
        move_mm, turn_deg = transform_difference(editor.retraction_of("BOWEL"), want)
        assert move_mm < 2.0 and turn_deg < 2.0, (move_mm, turn_deg)   # tracking error
        assert logic.dose_service.case is logic.case                  # the dose follows
    finally:
        logic.close()
