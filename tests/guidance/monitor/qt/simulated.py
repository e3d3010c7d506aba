"""The monitor window on the simulated procedure, as `iort run phantom --source sim` opens
it (small frames, coarse phantom), for the GUI tests."""

from __future__ import annotations

from guidance.monitor.logic import MonitorLogic
from guidance.monitor.qt.window import MonitorWindow
from guidance.monitor.rehearsal import simulated_feed, slab_dose


def open_simulated_window(qtbot, case, *, frames: int, session_log=None):
    """Start the simulated feed, the logic and the window (1200x700, no 3D view).

    Returns ``(window, logic, scenario)``; the caller closes ``logic``.
    """
    feed, scenario = simulated_feed(case, frames=frames, image_size=(640, 360),
                                    session_log=session_log)
    logic = MonitorLogic(case, scenario.planned_patient_from_applicator, feed,
                         dose_fn=slab_dose, session_log=session_log, stall_limit_s=1.5)
    window = MonitorWindow(logic, with_3d=False)
    qtbot.addWidget(window)
    window.resize(1200, 700)
    window.show()
    logic.start()
    return window, logic, scenario
