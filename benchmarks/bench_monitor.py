"""OR monitor benchmarks: AR frame rate, overlay accuracy, dose-to-screen latency.

Keys
----
``monitor.ar_fps``
    AR view frames per second at 1280x720 (MSAA off, phantom structures decimated to
    4000 triangles each and drawn from LIVE_MAX_TRIANGLES copies, closed surfaces front
    faces only, translucent items in live_layers order, isodose and applicator included):
    offscreen render + blend over the video frame, one after the other on one thread: the
    work the monitor's AR compositor does per frame when the video is shown at full size
    (in the window render and blend run on two threads, at the shown size).
``monitor.overlay_max_px``
    Largest distance (px) between where small spheres at CT points are drawn and
    ``cv2.projectPoints`` for the same intrinsics and pose, over an off-centre principal
    point and landscape and portrait (non-square) windows, fx != fy.
``monitor.dose_visible_ms``
    Time from the applicator stopping (first frame at its final pose) to the dose for that
    pose being in the scene and rendered in the AR view (median of several stops): the
    first dose there, the preview model's when the move ended while one was computed.
``monitor.dose_full_visible_ms``
    The same, until the full model's dose for the final pose is shown (the preview model
    follows a moving applicator; the full one follows once it rests).
``monitor.dose_full_visible_worst_ms``
    The same for the worst clinical beam (120 mm applicator, 45 deg bevel, 12 MeV): issue
    "dose you can sign" asks for the full model within 300 ms of the applicator resting.
``monitor.window_dose_full_visible_ms`` / ``monitor.window_dose_full_visible_worst_ms``
    The full model's dose for the final pose in the real window (1920x1080, oncologist
    mode: 3D view, slices, DVH; 1280x720 video at 30 frames/s in real time), from the
    first frame at the final pose to the window's snapshot holding that dose, median of
    4 stops (the applicator rests 1.5 s, moves 8 frames of 2 mm, rests), the phantom
    plan's beam / the worst clinical beam; needs a display (Xvfb): NaN without one.
``monitor.dose_engine_real``
    1 when the project's electron dose engine was used, 0 for the analytic stand-in.
``monitor.oncologist_fps`` / ``monitor.surgeon_fps``
    AR frames drawn per second in the real window (1920x1080, 3D view, slices, DVH) in
    oncologist / surgeon mode, 1280x720 video at 30 frames/s, the applicator circling 8 mm
    around the plan (so the dose is recomputed all along by the electron engine); needs a
    display (Xvfb): NaN without one.
"""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np
import pyvista as pv

from benchmarks import best_time_s

GROUP = "monitor"
log = logging.getLogger(__name__)


def _scene_points(rng: np.random.Generator, camera_matrix: np.ndarray,
                  image_size: tuple[int, int], n_side: int = 5) -> np.ndarray:
    """Camera-frame points (mm) 300-420 mm deep whose images form a jittered grid."""
    width, height = image_size
    us = np.linspace(0.12 * width, 0.88 * width, n_side)
    vs = np.linspace(0.12 * height, 0.88 * height, n_side)
    pixels = np.array([[u, v] for u in us for v in vs])
    pixels += rng.uniform(-5.0, 5.0, size=pixels.shape)
    z = rng.uniform(300.0, 420.0, size=len(pixels))
    rays = np.linalg.solve(camera_matrix, np.c_[pixels, np.ones(len(pixels))].T).T
    return rays * z[:, None]


def overlay_max_error_px(image_size: tuple[int, int], principal_shift_px: tuple[float, float],
                         rng: np.random.Generator) -> float:
    """Max distance (px) between rendered sphere centres and ``cv2.projectPoints``."""
    from guidance.render.overlay import OverlayRenderer
    from guidance.render.scene import Scene, SceneItem
    from models.base.transforms import transform_from_rotvec

    width, height = image_size
    f = 1.2 * max(width, height)
    camera_matrix = np.array([[f, 0.0, width / 2.0 + principal_shift_px[0]],
                              [0.0, 1.03 * f, height / 2.0 + principal_shift_px[1]],
                              [0.0, 0.0, 1.0]])
    camera_from_patient = transform_from_rotvec(rng.normal(size=3) * 0.4,
                                                rng.normal(size=3) * 20.0)
    points_camera = _scene_points(rng, camera_matrix, image_size)
    patient_from_camera = np.linalg.inv(camera_from_patient)
    points = points_camera @ patient_from_camera[:3, :3].T + patient_from_camera[:3, 3]
    scene = Scene()
    spheres = pv.MultiBlock([pv.Sphere(radius=1.2, center=p, theta_resolution=24,
                                       phi_resolution=24) for p in points]).combine()
    scene.add(SceneItem("points", spheres.extract_surface(algorithm="dataset_surface"),
                        (1.0, 1.0, 1.0), 1.0))
    with OverlayRenderer(scene, camera_matrix, image_size) as renderer:
        layer = renderer.render_layer(camera_from_patient)
    mask = (layer[..., 3] > 0).astype(np.uint8)
    _, _, _, centroids = cv2.connectedComponentsWithStats(mask)
    blobs = centroids[1:]
    expected, _ = cv2.projectPoints(points, cv2.Rodrigues(camera_from_patient[:3, :3])[0],
                                    camera_from_patient[:3, 3], camera_matrix, None)
    expected = expected.reshape(-1, 2)
    if len(blobs) != len(expected):
        return float("inf")
    dist = np.linalg.norm(blobs[:, None, :] - expected[None, :, :], axis=2)
    return float(dist.min(axis=0).max())


def _ar_fps(quick: bool) -> float:
    from guidance.monitor.feed import ScriptedFeed
    from guidance.monitor.logic import MonitorLogic
    from guidance.monitor.rehearsal import phantom_view, slab_dose
    from guidance.render.compositing import blend_layer
    from guidance.render.overlay import OverlayRenderer, live_layers
    from guidance.render.scene import LIVE_MAX_TRIANGLES
    from guidance.render.scene_actors import add_organ_outlines

    view = phantom_view(spacing_mm=(3.0, 3.0, 4.0) if quick else (1.5, 1.5, 2.5),
                        image_size=(1280, 720))
    feed = ScriptedFeed(view.shots([(0.0, 0.0, 0.0)]), view.camera_matrix, view.background())
    logic = MonitorLogic(view.case, view.plan, feed, max_triangles=4000)
    beam = logic.beam
    from guidance.render.scene import STYLE_ISODOSE, SceneItem, isodose_surface

    iso = isodose_surface(slab_dose(view.case, view.plan, beam), beam.prescription_gy)
    logic.scene.add(SceneItem("isodose", iso, **STYLE_ISODOSE))
    logic.scene.items["applicator"].visible = True
    n_tri = sum(item.mesh.n_cells for item in logic.scene.items.values())
    log.info("AR scene: %d triangles", n_tri)
    background = view.background()
    frames = 10 if quick else 40
    with OverlayRenderer(logic.scene, view.camera_matrix, view.image_size,
                         max_triangles=LIVE_MAX_TRIANGLES,
                         layers=live_layers(logic.target)) as renderer:
        add_organ_outlines(renderer.plotter, logic.scene,   # as the monitor does
                           actors=renderer.actors)
        renderer.render_layer(view.camera_from_patient)  # warm up

        def run() -> None:  # the AR compositor's per-frame work, on this thread
            for k in range(frames):
                pose = view.camera_from_patient.copy()
                pose[0, 3] += 0.2 * k
                blend_layer(background, renderer.render_layer(pose))

        elapsed = best_time_s(run, repeat=2 if quick else 3)
    logic.close()
    return frames / elapsed


def _dose_function():
    """The project's electron engine when present, else the analytic stand-in."""
    try:
        from guidance.treatment.dose_service import electron_dose_function

        return electron_dose_function(), 1.0
    except (ImportError, AttributeError) as exc:
        from guidance.monitor.rehearsal import slab_dose

        log.warning("electron dose engine unavailable (%s); using the analytic stand-in", exc)
        return slab_dose, 0.0


def _move(stop: int) -> list[tuple[float, float, float]]:
    """The applicator's offsets (mm) before stop number ``stop``: 8 frames of 2 mm (above
    the 1 mm recompute threshold), ending 2 mm further on at each stop."""
    return [(stop * 2.0 + 2.0 * k - 8.0, 0.0, 0.0) for k in range(8)]


def _dose_at(dose, patient_from_applicator: np.ndarray) -> bool:
    """``dose`` (a DoseUpdate or None) was computed within 1 mm / 1 deg of the pose."""
    from models.base.transforms import transform_difference

    return dose is not None and max(transform_difference(dose.patient_from_applicator,
                                                         patient_from_applicator)) <= 1.0


def _dose_visible_ms(quick: bool, beam=None) -> tuple[float, float, float]:
    """(first dose, full-model dose, engine real) after the applicator stops, ms; ``beam``
    a :class:`~guidance.treatment.dose_service.BeamChoice` (None: the plan's)."""
    from guidance.monitor.feed import ScriptedFeed
    from guidance.monitor.logic import MonitorLogic
    from guidance.monitor.rehearsal import phantom_view
    from guidance.render.compositing import blend_layer
    from guidance.render.overlay import OverlayRenderer
    from guidance.treatment.dose_service import BeamChoice

    view = phantom_view(spacing_mm=(3.0, 3.0, 4.0) if quick else (1.5, 1.5, 2.5),
                        image_size=(1280, 720))
    dose_fn, real = _dose_function()
    # warm up (JIT) once on the plan
    beam = BeamChoice() if beam is None else beam
    dose_fn(view.case, view.plan, beam)
    stops = 2 if quick else 5
    moves = []
    for s in range(stops):
        path = _move(s)
        moves.append(path + [path[-1]] * 30)
    latencies, full_latencies = [], []
    background = view.background()
    for path in moves:
        shots = view.shots(path)
        feed = ScriptedFeed(shots, view.camera_matrix, background, fps=30.0)
        logic = MonitorLogic(view.case, view.plan, feed, dose_fn=dose_fn, beam=beam)
        final = shots[-1].patient_from_applicator
        renderer = OverlayRenderer(logic.scene, view.camera_matrix, view.image_size)
        logic.start()
        stop_s = first_ms = None
        drawn_seq = None
        deadline = time.monotonic() + 30.0
        try:
            while time.monotonic() < deadline:
                snap = logic.poll()
                if snap.frame is not None and stop_s is None and \
                        snap.applicator_pose is not None and \
                        np.allclose(snap.applicator_pose, final):
                    stop_s = snap.frame.timestamp_s
                # an AR frame drawn per new captured frame, as the monitor window does
                if snap.frame is not None and snap.frame_seq != drawn_seq:
                    drawn_seq = snap.frame_seq
                    blend_layer(snap.frame.image_rgb,
                                renderer.render_layer(snap.frame.camera_from_patient))
                if stop_s is not None and _dose_at(snap.dose, final):
                    if first_ms is None:
                        first_ms = (time.monotonic() - stop_s) * 1000.0
                    if snap.dose.model == "full":
                        latencies.append(first_ms)
                        full_latencies.append((time.monotonic() - stop_s) * 1000.0)
                        break
                time.sleep(0.005)
        finally:
            logic.close()
            renderer.close()
    if not latencies:
        return float("inf"), float("inf"), real
    return float(np.median(latencies)), float(np.median(full_latencies)), real


def window_dose_full_visible_ms(beam=None, *, stops: int = 4) -> float:
    """Median ms from the applicator's first frame at rest to the full model's dose for
    that pose in the real window's snapshot (see the module docstring); ``beam`` a
    :class:`~guidance.treatment.dose_service.BeamChoice` (None: the plan's)."""
    import os

    if not os.environ.get("DISPLAY"):
        log.warning("no display: monitor.window_dose_full_visible_ms not measured")
        return float("nan")
    from PyQt5 import QtWidgets

    from guidance.monitor.feed import ScriptedFeed
    from guidance.monitor.logic import MonitorLogic
    from guidance.monitor.qt.window import MonitorWindow
    from guidance.monitor.rehearsal import phantom_view
    from guidance.treatment.dose_service import BeamChoice

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["bench"])
    view = phantom_view(spacing_mm=(1.5, 1.5, 2.5), image_size=(1280, 720))
    dose_fn, _real = _dose_function()
    beam = BeamChoice() if beam is None else beam
    dose_fn(view.case, view.plan, beam)   # JIT warm-up
    background = view.background()
    latencies = []
    for s in range(stops):
        move = _move(s)
        shots = view.shots([move[0]] * 45 + move + [move[-1]] * 45)
        feed = ScriptedFeed(shots, view.camera_matrix, background, fps=30.0, realtime=True)
        logic = MonitorLogic(view.case, view.plan, feed, dose_fn=dose_fn, beam=beam)
        window = MonitorWindow(logic)
        window.resize(1920, 1080)
        window.show()
        window.set_mode("oncologist")
        first, final = shots[0].patient_from_applicator, shots[-1].patient_from_applicator
        logic.start()
        moved, stop_s = False, None
        deadline = time.monotonic() + 10.0
        try:
            while time.monotonic() < deadline:
                app.processEvents()
                time.sleep(0.002)
                snap = window.snapshot
                if snap is None or snap.frame is None or snap.applicator_pose is None:
                    continue
                moved = moved or not np.allclose(snap.applicator_pose, first)
                if moved and stop_s is None and np.allclose(snap.applicator_pose, final):
                    stop_s = snap.frame.timestamp_s
                if stop_s is not None and _dose_at(snap.dose, final) and \
                        snap.dose.model == "full":
                    latencies.append((time.monotonic() - stop_s) * 1000.0)
                    break
        finally:
            window.close()
            app.processEvents()
            logic.close()
    return float(np.median(latencies)) if len(latencies) == stops else float("inf")


def window_fps(mode: str, *, seconds: float = 15.0, quick: bool = False,
               profile: str | None = None) -> float:
    """AR frames per second of the real monitor window in ``mode`` (see the module
    docstring); ``profile`` writes a cProfile of the UI thread to that file."""
    import os

    if not os.environ.get("DISPLAY"):
        log.warning("no display: monitor.%s_fps not measured", mode)
        return float("nan")
    from PyQt5 import QtWidgets

    from guidance.monitor.feed import ScriptedFeed
    from guidance.monitor.logic import MonitorLogic
    from guidance.monitor.qt.window import MonitorWindow
    from guidance.monitor.rehearsal import phantom_view

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["bench"])
    view = phantom_view(spacing_mm=(3.0, 3.0, 4.0) if quick else (1.5, 1.5, 2.5),
                        image_size=(1280, 720))
    dose_fn, _real = _dose_function()
    path = [(8.0 * np.cos(t), 8.0 * np.sin(t), 0.0) for t in np.linspace(0, 2 * np.pi, 90)]
    feed = ScriptedFeed(view.shots(path), view.camera_matrix, view.background(), fps=30.0,
                        loop=True, realtime=True, fre_mm=0.5)
    logic = MonitorLogic(view.case, view.plan, feed, dose_fn=dose_fn, stall_limit_s=1.0)
    window = MonitorWindow(logic)
    window.resize(1920, 1080)
    window.show()
    window.set_mode(mode)
    logic.start()
    profiler = None
    try:
        end = time.monotonic() + 3.0   # warm up: first frames, first dose, JIT
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.002)
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        start_frames, start = window.ar_frames, time.monotonic()
        while time.monotonic() - start < seconds:
            app.processEvents()
            time.sleep(0.002)
        fps = (window.ar_frames - start_frames) / (time.monotonic() - start)
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        window.close()
        app.processEvents()
    return fps


def run(*, quick: bool = False) -> dict[str, float]:
    """Run the monitor benchmarks (see module docstring for the keys)."""
    rng = np.random.default_rng(8)
    errors = [overlay_max_error_px(size, shift, rng)
              for size, shift in [((1280, 720), (41.0, -27.5)), ((720, 1280), (-33.0, 18.25)),
                                  ((640, 480), (0.0, 0.0))]]
    dose_ms, full_ms, real = _dose_visible_ms(quick)
    from guidance.treatment.dose_service import BeamChoice

    worst = BeamChoice(energy_mev=12.0, applicator_diameter_mm=120.0, bevel_deg=45.0)
    _, worst_full_ms, _ = _dose_visible_ms(quick, worst)
    return {
        "monitor.ar_fps": _ar_fps(quick),
        "monitor.overlay_max_px": max(errors),
        "monitor.dose_visible_ms": dose_ms,
        "monitor.dose_full_visible_ms": full_ms,
        "monitor.dose_full_visible_worst_ms": worst_full_ms,
        "monitor.window_dose_full_visible_ms": window_dose_full_visible_ms(
            stops=2 if quick else 4),
        "monitor.window_dose_full_visible_worst_ms": window_dose_full_visible_ms(
            worst, stops=2 if quick else 4),
        "monitor.dose_engine_real": real,
        "monitor.oncologist_fps": window_fps("oncologist", seconds=5.0 if quick else 15.0,
                                             quick=quick),
        "monitor.surgeon_fps": window_fps("surgeon", seconds=5.0 if quick else 15.0,
                                          quick=quick),
    }
