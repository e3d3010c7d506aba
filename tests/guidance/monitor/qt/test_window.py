"""The real OR-monitor window under Xvfb: modes, phantom, scripted camera, pixels."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PyQt5 import QtCore, QtWidgets

from guidance.monitor.feed import ScriptedFeed
from guidance.monitor.logic import MonitorLogic
from guidance.monitor.qt.window import MonitorWindow
from guidance.monitor.rehearsal import phantom_view, slab_dose
from guidance.record.session_log import SessionLog
from guidance.treatment.dose_service import BeamChoice

pytestmark = pytest.mark.gui

#: Screenshots are kept here when IORT_SCREENSHOT_DIR is set (to look at them).
SHOT_DIR = os.environ.get("IORT_SCREENSHOT_DIR")


def _qimage_to_numpy(qimage) -> np.ndarray:
    qimage = qimage.convertToFormat(qimage.Format_RGB888)
    ptr = qimage.bits()
    ptr.setsize(qimage.byteCount())
    stride = qimage.bytesPerLine()
    arr = np.frombuffer(ptr, np.uint8).reshape(qimage.height(), stride)
    return arr[:, : qimage.width() * 3].reshape(qimage.height(), qimage.width(), 3).copy()


def _save(name: str, rgb: np.ndarray, tmp_path: Path) -> None:
    for folder in filter(None, (SHOT_DIR, str(tmp_path))):
        Path(folder).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(Path(folder) / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _reddish(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., c].astype(int) for c in range(3))
    return (r > g + 50) & (r > b + 50)


def show_active(qtbot, window, size: tuple[int, int]) -> None:
    """Show ``window`` at ``size`` with the keyboard focus (keys reach its shortcuts)."""
    qtbot.addWidget(window)
    window.resize(*size)
    window.show()
    QtWidgets.QApplication.setActiveWindow(window)  # no window manager under Xvfb
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)


@pytest.fixture(scope="module")
def view():
    return phantom_view()


def test_window_modes_overlay_dose_and_dropout(qtbot, view, tmp_path) -> None:
    offsets = [(1.0, 0.0, 0.5), (1.5, 0.0, 0.5), (2.0, 0.0, 0.5)] * 3
    feed = ScriptedFeed(view.shots(offsets), view.camera_matrix, view.background(),
                        fps=30.0, fre_mm=0.6, tre_mm=1.1, loop=True)
    slog = SessionLog.create(tmp_path / "session.sqlite", case_id="phantom")
    logic = MonitorLogic(view.case, view.plan, feed, dose_fn=slab_dose, session_log=slog,
                         beam=BeamChoice(energy_mev=9.0, applicator_diameter_mm=60.0),
                         stall_limit_s=1.0)   # 2 shared cores: no false stall
    window = MonitorWindow(logic)
    show_active(qtbot, window, (1500, 900))
    logic.start()
    try:
        # --- surgeon mode: AR with target where cv2.projectPoints puts it
        qtbot.waitUntil(lambda: window.ar_frames >= 3 and window.snapshot.overlay_ok,
                        timeout=20000)
        assert logic.mode == "surgeon" and not window.slice_row.isVisible()
        target = view.case.centroid_lps("CTV")
        pose = view.camera_from_patient
        uv, _ = cv2.projectPoints(target[None], cv2.Rodrigues(pose[:3, :3])[0], pose[:3, 3],
                                  view.camera_matrix, None)
        u, v = uv.reshape(2)
        ar = window.ar_view.image
        assert ar.shape == (view.image_size[1], view.image_size[0], 3)
        patch = _reddish(ar[int(v) - 3:int(v) + 4, int(u) - 3:int(u) + 4])
        assert patch.mean() > 0.8, "target not drawn at its projection"
        _, labels, _, centroids = cv2.connectedComponentsWithStats(
            _reddish(ar).astype(np.uint8))
        blob = centroids[labels[round(v), round(u)]]
        assert np.hypot(blob[0] - u, blob[1] - v) < 15.0  # the target blob is centred there
        # same check on the real widget pixels (uniform scaling into the widget)
        grab = _qimage_to_numpy(window.ar_view.grab().toImage())
        wx, wy = window.ar_view.widget_point(u, v)
        assert _reddish(grab[int(wy) - 2:int(wy) + 3, int(wx) - 2:int(wx) + 3]).mean() > 0.8
        qtbot.waitUntil(lambda: window.light.light.value in ("green", "yellow"), timeout=10000)
        assert "mm" in window.deviation_label.text() and "°" in window.deviation_label.text()
        assert "FRE 0.60 mm" in window.status_labels["registration"].text()
        assert not window.banner.isVisible()
        _save("surgeon", _qimage_to_numpy(window.grab().toImage()), tmp_path)

        # --- oncologist mode (keyboard shortcut): isodose on slices, DVH, coverage
        qtbot.keyClick(window, QtCore.Qt.Key_F2)
        assert logic.mode == "oncologist" and window.slice_row.isVisible()
        qtbot.waitUntil(lambda: window.snapshot.dose is not None
                        and window.snapshot.dose.metrics_ready, timeout=20000)
        qtbot.waitUntil(lambda: all(v.image is not None for v in window.slice_views.values())
                        and window._slice_key[1] > 0, timeout=20000)

        def iso_yellow_px() -> int:
            axial = window.slice_views["axial"].image
            return int(np.all(axial == (255, 220, 0), axis=2).sum())

        # (the slice worker re-renders as the applicator moves: wait for a dosed slice)
        qtbot.waitUntil(lambda: iso_yellow_px() > 20, timeout=20000)
        assert "V90" in window.coverage_label.text() and "%" in window.coverage_label.text()
        assert window.dvh_view.image is not None
        assert "isodose" in logic.scene.items
        ar_iso = window.ar_view.image
        _save("oncologist", _qimage_to_numpy(window.grab().toImage()), tmp_path)
        assert ar_iso is not None

        # --- energy change: dose recomputed for the new beam; confirm records it
        window.energy.setCurrentIndex(window.energy.findData(12.0))
        qtbot.waitUntil(lambda: window.snapshot.dose is not None
                        and window.snapshot.dose.beam.energy_mev == 12.0
                        and window.snapshot.dose.metrics_ready, timeout=20000)
        # not the plan's beam: refused, the reason large in the window; a typed override
        # reason lets it through and is recorded
        qtbot.keyClick(window, QtCore.Qt.Key_Return, QtCore.Qt.ControlModifier)
        assert window.ack_label.isVisible() and "refused" in window.ack_label.text()
        assert "energy 12 MeV (plan 9 MeV)" in window.ack_label.text()
        assert slog.last("confirmed_pose") is None
        qtbot.keyClicks(window.override_edit, "bed deeper than planned")
        qtbot.mouseClick(window.confirm_button, QtCore.Qt.LeftButton)
        assert window.ack_label.text().startswith("Confirmed #1, ")
        assert "OVERRIDE: bed deeper than planned" in window.ack_label.text()
        confirmed = slog.last("confirmed_pose")
        assert confirmed is not None
        assert confirmed.payload["beam"]["energy_mev"] == 12.0
        assert "CTV" in confirmed.payload["coverage"]
        assert confirmed.payload["distance_to_plan_mm"] < 5.0
        # what was on screen at the confirm is kept for the treatment record
        from guidance.record.session_report import content_from_session

        shots = content_from_session(slog.path).images
        assert sorted(p.name for p in shots) == [f"confirm_{confirmed.seq}_{view}.png"
                                                  for view in ("ar", "slices", "window")]
        window_file = next(p for p in shots if p.name.endswith("_window.png"))
        window_shot = cv2.imread(str(window_file))
        assert window_shot.shape[:2] == (window.height(), window.width())
        assert window_shot.std() > 10 and window_file.stat().st_mode & 0o777 == 0o600

        # --- dropout of the applicator: banner, grey light, applicator and dose hidden, but
        # target and organs stay (the reference and the registration are valid)
        qtbot.keyClick(window, QtCore.Qt.Key_F1)
        feed.shots[:] = [replace(s, visible=("reference",)) for s in feed.shots]
        qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=5000)
        qtbot.waitUntil(lambda: not window.snapshot.applicator_ok
                        and window._rendered_frame_seq == window.snapshot.frame_seq
                        and window._rendered_app_ok is False, timeout=5000)
        window.tick()
        assert window.snapshot.overlay_ok
        banner = window.banner.text()   # STALE, then LOST past the staleness limit
        assert ("STALE" in banner or "LOST" in banner) and "applicator" in banner
        assert "target and organs shown" in banner
        assert window.light.light.value == "grey"
        assert not logic.scene.items["applicator"].visible
        assert not logic.scene.items["isodose"].visible
        kept = window.ar_view.image
        assert _reddish(kept[int(v) - 3:int(v) + 4, int(u) - 3:int(u) + 4]).mean() > 0.8
        _save("dropout", _qimage_to_numpy(window.grab().toImage()), tmp_path)
        qtbot.keyClick(window, QtCore.Qt.Key_Return, QtCore.Qt.ControlModifier)
        assert slog.last("confirmed_pose").seq == confirmed.seq  # refused while stale
        # a dropout longer than 0.5 s is written to the session log
        qtbot.waitUntil(lambda: any(e.payload["source"] == "tracking"
                                    for e in slog.events("warning")), timeout=5000)
    finally:
        window.close()
    kinds = [e.kind for e in SessionLog.open(slog.path, readonly=True).events()]
    assert "warning" in kinds and "action" in kinds
    actions = [e.payload["action"] for e in slog.events("action")]
    assert "mode" in actions and "beam" in actions
    slog.close()


def test_ar_rendered_and_blended_at_the_size_it_is_shown(qtbot) -> None:
    """A 1280x720 video in a smaller view: the scene is rendered at the shown size (no
    resize up, then down again) and the target is still where cv2.projectPoints puts it,
    in the image and on the widget."""
    small = phantom_view(spacing_mm=(3.0, 3.0, 4.0), image_size=(1280, 720))
    feed = ScriptedFeed(small.shots([(0.0, 0.0, 0.0)] * 5), small.camera_matrix,
                        small.background(), fps=30.0, loop=True)
    logic = MonitorLogic(small.case, small.plan, feed, stall_limit_s=1.0)
    window = MonitorWindow(logic, with_3d=False)
    show_active(qtbot, window, (1000, 640))
    logic.start()
    try:
        qtbot.waitUntil(lambda: window.ar_frames >= 2 and window.snapshot.overlay_ok
                        and window._rendered_ok is True, timeout=20000)
        ar = window.ar_view.image
        rect = window.ar_view.image_rect()
        assert ar.shape[1] < 1200 and window.ar_view.source_size == (1280, 720)
        assert (ar.shape[1], ar.shape[0]) == (round(rect.width()), round(rect.height()))
        assert window._compositor.renderer.image_size == (ar.shape[1], ar.shape[0])
        pose = small.camera_from_patient
        uv, _ = cv2.projectPoints(small.case.centroid_lps("CTV")[None],
                                  cv2.Rodrigues(pose[:3, :3])[0], pose[:3, 3],
                                  small.camera_matrix, None)
        u, v = uv.reshape(2)
        s = ar.shape[1] / 1280.0
        col, row = (u + 0.5) * s - 0.5, (v + 0.5) * s - 0.5
        assert _reddish(ar[round(row) - 2:round(row) + 3, round(col) - 2:round(col) + 3]
                        ).mean() > 0.8
        grab = _qimage_to_numpy(window.ar_view.grab().toImage())
        wx, wy = window.ar_view.widget_point(u, v)
        assert _reddish(grab[int(wy) - 2:int(wy) + 3, int(wx) - 2:int(wx) + 3]).mean() > 0.8
        assert window.ar_view.image_pixel(wx, wy) == pytest.approx((u, v), abs=1e-6)
    finally:
        window.close()


def test_frozen_camera_greys_the_overlay(qtbot, view) -> None:
    """The feed stops delivering frames: the last overlay must not stay on screen."""
    feed = ScriptedFeed(view.shots([(0.0, 0.0, 0.0)] * 10), view.camera_matrix,
                        view.background(), fps=30.0, loop=True)
    logic = MonitorLogic(view.case, view.plan, feed)
    window = MonitorWindow(logic, with_3d=False)
    qtbot.addWidget(window)
    window.show()
    logic.start()
    try:
        qtbot.waitUntil(lambda: window.snapshot is not None and window.snapshot.overlay_ok
                        and window.ar_frames >= 1, timeout=20000)
        assert _reddish(window.ar_view.image).any()
        feed.loop.source.loop = False     # the camera stops after this round
        qtbot.waitUntil(lambda: logic.capture.ended.is_set(), timeout=5000)
        qtbot.waitUntil(lambda: not window.snapshot.overlay_ok
                        and window._rendered_ok is False, timeout=5000)
        frozen = window.ar_view.image
        body = frozen[frozen.shape[0] // 8:]
        assert not _reddish(body).any(), "overlay still drawn from a frozen camera"
        assert window.banner.isVisible() and "VIDEO ENDED" in window.banner.text()
    finally:
        window.close()


@pytest.mark.parametrize(("size", "shift"), [((640, 400), (37.0, -21.0)),
                                             ((400, 640), (-15.5, 30.25))])
def test_overlay_points_match_projectpoints(size, shift, rng) -> None:
    """Rendered CT points vs cv2.projectPoints, off-centre principal point, non-square."""
    from benchmarks.bench_monitor import overlay_max_error_px

    err = overlay_max_error_px(size, shift, rng)
    assert err < 1.0


@pytest.mark.slow
def test_simulated_camera_through_the_loop(qtbot, tmp_path) -> None:
    """Simulated camera -> marker tracking -> pointer registration -> AR overlay in the window."""
    from models.patient.phantom import make_phantom
    from tests.guidance.monitor.qt.simulated import open_simulated_window

    case = make_phantom(spacing_mm=(3.0, 3.0, 4.0))
    slog = SessionLog.create(tmp_path / "sim.sqlite", case_id="phantom")
    window, logic, _ = open_simulated_window(qtbot, case, frames=40, session_log=slog)
    try:
        qtbot.waitUntil(lambda: window.snapshot is not None and window.snapshot.overlay_ok
                        and window._rendered_frame_seq == window.snapshot.frame_seq,
                        timeout=120000)
        registration = slog.last("registration")
        assert registration is not None and registration.payload["fre_mm"] < 2.0
        frame = window.snapshot.frame
        pose = frame.camera_from_patient
        uv, _ = cv2.projectPoints(case.centroid_lps("CTV")[None],
                                  cv2.Rodrigues(pose[:3, :3])[0], pose[:3, 3],
                                  frame.camera_matrix, None)
        u, v = uv.reshape(2)
        ar = window.ar_view.image
        _save("simulated_camera", _qimage_to_numpy(window.grab().toImage()), tmp_path)
        _save("simulated_camera_ar", ar, tmp_path)
        video = frame.image_rgb.astype(int)
        redness = ar.astype(int)[..., 0] - ar.astype(int)[..., 1] - (video[..., 0] - video[..., 1])
        # the target (red, behind the translucent applicator tube) reddens its projection...
        assert redness[int(v) - 2:int(v) + 3, int(u) - 2:int(u) + 3].mean() > 15
        # ...while the video far from the anatomy is untouched
        assert np.abs(ar[:20, :20].astype(int) - video[:20, :20]).max() <= 1
        assert "FRE" in window.status_labels["registration"].text()
    finally:
        window.close()
        logic.close()       # before its session log: nothing may log to a closed one
        slog.close()


def test_frames_and_doses_reach_the_window_as_events(qtbot, view) -> None:
    """With the clock effectively off, new frames and doses still reach the window: the
    capture and dose workers signal it (no polling timer drives the views)."""
    feed = ScriptedFeed(view.shots([(0.0, 0.0, 0.0)] * 5), view.camera_matrix,
                        view.background(), fps=30.0, loop=True)
    logic = MonitorLogic(view.case, view.plan, feed, dose_fn=slab_dose,
                         beam=BeamChoice(energy_mev=9.0, applicator_diameter_mm=60.0))
    window = MonitorWindow(logic, clock_ms=3_600_000, with_3d=False)
    show_active(qtbot, window, (1200, 700))
    logic.start()
    try:
        qtbot.waitUntil(lambda: window.ar_frames >= 5, timeout=20000)
        qtbot.waitUntil(lambda: window.snapshot is not None
                        and window.snapshot.dose is not None, timeout=20000)
        # green once the settled dose is judged and the 0.5 s dwell passed, frames only
        qtbot.waitUntil(lambda: window.snapshot.light.value == "green", timeout=10000)
        seen = window.snapshot.frame_seq
        qtbot.waitUntil(lambda: window.snapshot.frame_seq > seen, timeout=5000)
    finally:
        window.close()
