"""The shielding disc, bolus and kV applicator in the real window (issue 13 item 13):
editable, drawn on the slices and in 3D, a named hot spot, the kV sphere selectable."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PyQt5 import QtCore

from guidance.monitor.feed import ScriptedFeed
from guidance.monitor.logic import MonitorLogic
from guidance.monitor.qt.window import MonitorWindow
from guidance.monitor.rehearsal import phantom_view
from guidance.render.slices import DISC_RGB
from guidance.treatment.dose_service import BeamChoice, beam_options, electron_dose_function
from guidance.treatment.plan_check import Light
from models.base.transforms import invert_rigid
from tests.guidance.monitor.qt.test_window import _qimage_to_numpy, show_active

pytestmark = pytest.mark.gui

PLAN_BEAM = BeamChoice(energy_mev=10.0, applicator_diameter_mm=80.0)   # CTV V90 96.8 %


def test_disc_edited_drawn_and_its_hot_spot_named_bolus_and_kv(qtbot) -> None:
    view = phantom_view()
    feed = ScriptedFeed(view.shots([(0.0, 0.0, 0.0)]), view.camera_matrix, view.background(),
                        fps=30.0, loop=True, fre_mm=0.5)
    logic = MonitorLogic(view.case, view.plan, feed, dose_fn=electron_dose_function("liac"),
                         beam=PLAN_BEAM, planned_beam=PLAN_BEAM, machine="liac",
                         beam_options=beam_options("liac"), stall_limit_s=1.0)
    window = MonitorWindow(logic, with_3d=True)
    show_active(qtbot, window, (1920, 1080))
    qtbot.keyClick(window, QtCore.Qt.Key_F2)
    logic.start()
    panel = window.disc_panel
    try:
        assert panel.isVisible() and not panel.depth.isEnabled()   # no disc: sizes off
        qtbot.waitUntil(lambda: window.snapshot is not None and window.snapshot.dose is not None
                        and window.snapshot.dose.metrics_ready, timeout=40000)
        assert not panel.hot_label.isVisible()

        # lead, 90 mm x 3 mm, 20 mm under the end face
        panel.material.setCurrentIndex(panel.material.findData("lead"))
        assert panel.depth.isEnabled()
        panel.diameter.setValue(90.0)
        panel.depth.setValue(20.0)
        assert logic.beam.disc_size_mm == (90.0, 3.0, 20.0)

        def settled_on(**fields) -> bool:
            dose = window.snapshot.dose if window.snapshot else None
            return (dose is not None and dose.metrics_ready and window.snapshot.dose_check
                    is not None and all(getattr(dose.beam, k) == v for k, v in fields.items()))

        qtbot.waitUntil(lambda: settled_on(disc="lead", disc_depth_mm=20.0,
                                           disc_diameter_mm=90.0), timeout=40000)
        window.tick()
        dose = window.snapshot.dose
        hot_pct = 100.0 * dose.dose_max_gy / 10.0
        assert hot_pct > 140.0                       # backscatter off the lead
        organ = max((n for n in dose.metrics if n != "CTV"),
                    key=lambda n: dose.metrics[n].dmax_gy)
        assert window.light.light is Light.RED
        assert panel.hot_label.isVisible()
        assert f"in {organ} " in panel.hot_label.text() and "lead disc" in panel.hot_label.text()
        assert panel.hot_label.fontInfo().pixelSize() >= 20
        assert any(r.startswith("hot spot") and organ in r for r in window.snapshot.light_reasons)

        # drawn in 3D: the disc follows the applicator, 90 mm wide
        item = logic.scene.items["disc"]
        assert item.visible and window._scene3d.actors["disc"].GetVisibility()
        xmin, xmax, _, _, zmin, zmax = item.mesh.bounds
        assert (xmax - xmin) == pytest.approx(90.0, abs=1.0)
        assert (zmin, zmax) == (pytest.approx(20.0, abs=1e-6), pytest.approx(23.0, abs=1e-6))
        # drawn on the slices: disc pixels lie 20-23 mm below the end face, within 45 mm
        sag = window.slice_views["sagittal"]

        def disc_pixels():
            if sag.image is None:
                return np.zeros((0, 2), int)
            return np.argwhere(np.all(sag.image == DISC_RGB, axis=2))

        qtbot.waitUntil(lambda: len(disc_pixels()) > 20, timeout=20000)
        rows, cols = disc_pixels().T
        pixel = np.stack([cols, rows, np.zeros_like(cols), np.ones_like(cols)]).astype(float)
        app = invert_rigid(window.snapshot.applicator_pose) @ sag.patient_from_pixel @ pixel
        assert app[2].min() >= 20.0 - 0.6 and app[2].max() <= 23.0 + 0.6
        assert np.hypot(app[0], app[1]).max() <= 45.0 + 0.6
        grab = _qimage_to_numpy(sag.grab().toImage())
        assert np.all(np.abs(grab.astype(int) - DISC_RGB) <= 12, axis=2).sum() > 10

        # bolus: the beam carries it, the plan comparison names it
        panel.material.setCurrentIndex(panel.material.findData("none"))
        panel.bolus.setValue(5.0)
        qtbot.waitUntil(lambda: settled_on(bolus_mm=5.0, disc="none"), timeout=40000)
        window.tick()
        assert "disc" not in logic.scene.items
        assert "bolus 5 mm (plan 0 mm)" in window.plan_beam_label.text()

        # the kV sphere instead of the electron beam
        panel.kv.setCurrentIndex(panel.kv.findData(30.0))
        assert not panel.material.isEnabled() and not panel.bolus.isEnabled()
        qtbot.waitUntil(lambda: settled_on(kv_diameter_mm=30.0), timeout=40000)
        window.tick()
        bounds = np.array(logic.scene.items["applicator"].mesh.bounds).reshape(3, 2)
        np.testing.assert_allclose(bounds[:, 1] - bounds[:, 0], 30.0, atol=0.5)   # a sphere
        assert "kV sphere 30 mm" in window.plan_beam_label.text()
        assert window.snapshot.dose.mu is None
    finally:
        window.close()
