"""Simulated camera speed: the realistic field against the plain VTK rendering, alone, through
tracking, and in the OR monitor's real window.

Keys
----
sim.render_fps          realistic field (guidance/sim/field.py), 1280x720, the simulated
                        procedure's frames (reference plate, applicator, moving gloved hands,
                        lamp, noise): rendered frames per second, best of a few runs
sim.render_plain_fps    the plain field (pyvista/VTK SimulatedCamera) on the same script
sim.pipeline_fps        realistic field: render + marker tracking + pose filter + undistortion
                        for display, i.e. the monitor's capture thread per frame, 1/s
sim.window_fps          AR frames drawn per second by the monitor's real window (Qt, 1280x720
                        video, electron dose engine running) on the realistic simulated
                        procedure, over 15 s of the treatment phase; only with a display
                        (run under Xvfb), absent otherwise
sim.window_capture_fps  frames the window's capture worker delivered per second meanwhile
"""

from __future__ import annotations

import logging
import os
import time

from benchmarks import best_time_s

GROUP = "sim"
log = logging.getLogger(__name__)


def _scenario(field: str, frames: int, case=None):
    from guidance.sim.scenario import Scenario, ScenarioOptions, default_camera
    from models.patient.phantom import make_phantom

    case = case if case is not None else make_phantom(spacing_mm=(3.0, 3.0, 4.0))
    return Scenario(case, default_camera(), ScenarioOptions(frames=frames, field=field,
                                                            hand_period_s=3.0,
                                                            frame_interval_s=1.0 / 30.0))


def _render_fps(field: str, frames: int, repeat: int) -> float:
    """Frames per second of the renderer alone on the treatment phase's scenes."""
    with _scenario(field, frames + 15) as scenario:
        scenes = [scenario(i, i / 30.0) for i in range(15, 15 + frames)]
        camera = scenario.source().camera

        def render_all() -> None:
            for scene in scenes:
                hands = {"patient_from_hands": scene.hands} if scene.hands else {}
                camera.render(scene.camera_from_patient, scene.patient_from_tool, **hands)

        render_all()   # warm up
        return frames / best_time_s(render_all, repeat=repeat)


def _pipeline_fps(frames: int, repeat: int) -> float:
    from calibration.undistort import undistorter_for
    from guidance.loop.guidance_loop import GuidanceLoop

    with _scenario("realistic", 10_000) as scenario:
        loop = GuidanceLoop(scenario.source(), scenario.tools,
                            scenario.calibration.camera_matrix, scenario.calibration.dist_coeffs)
        undistorter = undistorter_for(scenario.calibration)
        loop.source.open()

        def run() -> None:
            for _ in range(frames):
                result = loop.step()
                undistorter.undistort(result.frame.image)

        run()   # warm up (past the registration phase)
        elapsed = best_time_s(run, repeat=repeat)
        loop.source.close()
    return frames / elapsed


def _window_fps(seconds: float) -> tuple[float, float] | None:
    """(AR frames drawn per s, frames captured per s) in the real window, or None."""
    if not os.environ.get("DISPLAY"):
        log.warning("no display: sim.window_fps needs an X server (run under xvfb-run)")
        return None
    from PyQt5 import QtCore, QtWidgets

    from guidance.monitor.logic import MonitorLogic
    from guidance.monitor.qt.window import MonitorWindow
    from guidance.monitor.rehearsal import simulated_feed
    from guidance.treatment.dose_service import electron_dose_function
    from models.patient.phantom import make_phantom, planned_patient_from_applicator

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["iort-bench"])
    case = make_phantom()
    plan = planned_patient_from_applicator(case)
    dose_fn = electron_dose_function()
    from guidance.treatment.dose_service import BeamChoice

    dose_fn(case, plan, BeamChoice())          # warm the kernels, as `iort run` does
    feed, _ = simulated_feed(case, frames=int(30 * (seconds + 20)), field="realistic")
    logic = MonitorLogic(case, plan, feed, dose_fn=dose_fn, stall_limit_s=0.5)
    window = MonitorWindow(logic)
    window.resize(1600, 900)
    window.show()
    logic.start()

    def wait(duration_s: float) -> None:
        loop = QtCore.QEventLoop()
        QtCore.QTimer.singleShot(int(duration_s * 1000), loop.quit)
        loop.exec_()

    try:
        wait(6.0)                                   # registration done, applicator settling
        frames0, ticks0 = window.ar_frames, feed.loop.frames_processed
        start = time.monotonic()
        wait(seconds)
        elapsed = time.monotonic() - start
        drawn = (window.ar_frames - frames0) / elapsed
        captured = (feed.loop.frames_processed - ticks0) / elapsed
    finally:
        window.close()
        logic.close()
        app.processEvents()
    return drawn, captured


def run(*, quick: bool = False) -> dict[str, float]:
    """Time the simulated camera (see the module docstring for the keys)."""
    results = {
        "sim.render_fps": _render_fps("realistic", 20 if quick else 60, 2 if quick else 3),
        "sim.render_plain_fps": _render_fps("plain", 4 if quick else 10, 1 if quick else 2),
        "sim.pipeline_fps": _pipeline_fps(20 if quick else 60, 2 if quick else 3),
    }
    window = _window_fps(5.0 if quick else 15.0)
    if window is not None:
        results["sim.window_fps"], results["sim.window_capture_fps"] = window
    return results
