"""Trainee mode of the OR monitor (F3): scenario picker, hint arrows, faults, debrief.

Widgets only: every rule is in :class:`guidance.monitor.trainee.TraineeSession`.
:func:`attach_trainee_mode` adds to a :class:`~guidance.monitor.qt.window.MonitorWindow`

* a dock panel (:class:`TraineePanel`): scenario picker and *Start*, the scenario's text,
  time against the limit, the hint, *Fault!* (F), *Pause* (P), *Confirm*, an instructor's
  fault injector and, after a confirm, the debrief table (every score component, its
  truth, pass mark, pass/fail, points);
* :class:`HintOverlay` over the AR view: an arrow from the tracked end-face centre to the
  planned one (yellow) and the way the beam axis must turn (cyan), projected with the
  frame's camera, and the hint text;
* the keys while trainee mode is on: arrows move the applicator (left/right = patient
  right/left as seen from the camera anterior with cranial up, up/down = cranial/caudal),
  Page Up/Down = anterior/posterior (out of / into the bed); with Shift the same keys tilt
  the beam axis that way; Ctrl+Left/Right roll the applicator about its axis (a bevel's
  orientation). A key moves the applicator while it is held (10 mm/s, 5 deg/s, roll
  10 deg/s on the wall clock, whatever the key repeat). A left-drag in the AR view moves the
  applicator parallel to the image, at the depth of its end face.

A confirm from the monitor's own *Confirm* (Ctrl+Enter) is scored too.
"""

from __future__ import annotations

import html
import logging

import numpy as np
from PyQt5 import QtCore, QtGui, QtWidgets

from guidance.monitor.trainee import Debrief, TraineeSession
from guidance.monitor.trainee_scenario import FAULT_KINDS, load_scenario, scenario_names

log = logging.getLogger(__name__)

#: Driving keys: key -> patient direction (Shift: tilt instead of translate).
DRIVE_KEYS: dict[int, str] = {
    QtCore.Qt.Key_Left: "right", QtCore.Qt.Key_Right: "left",
    QtCore.Qt.Key_Up: "cranial", QtCore.Qt.Key_Down: "caudal",
    QtCore.Qt.Key_PageUp: "anterior", QtCore.Qt.Key_PageDown: "posterior"}
#: Roll keys (with Ctrl): about the beam axis, as seen looking down the beam.
ROLL_KEYS: dict[int, str] = {QtCore.Qt.Key_Left: "counterclockwise",
                             QtCore.Qt.Key_Right: "clockwise"}
#: Colours (RGB) of the overlay arrows and the pass/fail cells.
MOVE_RGB, TILT_RGB = (255, 220, 0), (0, 220, 255)
PASS_RGB, FAIL_RGB = (31, 111, 58), (176, 30, 30)
#: Widgets whose keys are text, never driving.
TEXT_INPUTS = (QtWidgets.QLineEdit, QtWidgets.QAbstractSpinBox, QtWidgets.QTextEdit,
               QtWidgets.QPlainTextEdit)
PANEL_STYLE = """
QLabel#trainee_title { background-color: #4a2a6a; color: white; font-size: 20px;
    font-weight: bold; padding: 4px; }
QLabel#trainee_hint { color: #ffdc00; font-size: 20px; font-weight: bold; }
QLabel#trainee_total { font-size: 22px; font-weight: bold; padding: 4px; }
QPushButton#trainee_fault { background-color: #8a1f1f; font-weight: bold; }
QPushButton#trainee_confirm { background-color: #1f5f3a; font-weight: bold; }
"""


def _project(frame, point_lps: np.ndarray) -> tuple[float, float] | None:
    """Pixel (u, v) of a patient point in the frame's undistorted image, or None."""
    camera_from_patient = frame.camera_from_patient
    if camera_from_patient is None:
        return None
    p = camera_from_patient[:3, :3] @ point_lps + camera_from_patient[:3, 3]
    if p[2] <= 1e-6:
        return None
    uvw = frame.camera_matrix @ (p / p[2])
    return float(uvw[0]), float(uvw[1])


class HintOverlay(QtWidgets.QWidget):
    """Hint arrows and text drawn over the AR view (transparent to the mouse)."""

    def __init__(self, ar_view: QtWidgets.QWidget, mode: TraineeMode) -> None:
        super().__init__(ar_view)
        self.ar_view = ar_view
        self.mode = mode
        self.setAttribute(QtCore.Qt.WA_TransparentForMouseEvents, True)
        self.setAttribute(QtCore.Qt.WA_NoSystemBackground, True)
        ar_view.installEventFilter(self)
        self.setGeometry(ar_view.rect())
        #: Widget points of the last move arrow (tail, head), for tests.
        self.move_arrow: tuple[tuple[float, float], tuple[float, float]] | None = None

    def eventFilter(self, obj, event) -> bool:
        if getattr(self, "ar_view", None) is obj and event.type() == QtCore.QEvent.Resize:
            self.setGeometry(obj.rect())
        return False

    def _arrow(self, painter: QtGui.QPainter, tail, head, rgb) -> None:
        painter.setPen(QtGui.QPen(QtGui.QColor(*rgb), 5, cap=QtCore.Qt.RoundCap))
        a, b = QtCore.QPointF(*tail), QtCore.QPointF(*head)
        painter.drawLine(a, b)
        d = np.subtract(head, tail)
        n = float(np.hypot(*d))
        if n < 1.0:
            return
        d /= n
        side = np.array([-d[1], d[0]])
        size = min(18.0, 0.5 * n)
        for s in (1.0, -1.0):
            wing = np.asarray(head) - size * d + s * 0.6 * size * side
            painter.drawLine(b, QtCore.QPointF(*wing))

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:
        self.move_arrow = None
        snap = self.mode.window.snapshot
        hint = self.mode.hint
        if not self.mode.active or hint is None or snap is None or snap.frame is None \
                or snap.applicator_pose is None or getattr(self.ar_view, "_qimage", None) is None:
            return
        painter = QtGui.QPainter(self)
        painter.setRenderHint(QtGui.QPainter.Antialiasing, True)
        origin = snap.applicator_pose[:3, 3]
        here = _project(snap.frame, origin)
        if here is not None and not hint.on_plan:
            there = _project(snap.frame, origin + np.asarray(hint.move_lps_mm))
            tail = self.ar_view.widget_point(*here)
            if there is not None and np.linalg.norm(hint.move_lps_mm) >= 0.5:
                head = self.ar_view.widget_point(*there)
                self.move_arrow = (tail, head)
                self._arrow(painter, tail, head, MOVE_RGB)
            tilt = np.asarray(hint.tilt_lps_deg)
            if hint.tilts_deg and np.linalg.norm(tilt) > 0:
                tip = _project(snap.frame, origin + 40.0 * tilt / np.linalg.norm(tilt))
                if tip is not None:
                    self._arrow(painter, tail, self.ar_view.widget_point(*tip), TILT_RGB)
        painter.setFont(QtGui.QFont(self.font().family(), 16, QtGui.QFont.Bold))
        text = hint.text()
        metrics = painter.fontMetrics()
        box = QtCore.QRectF(10, self.height() - 44, metrics.horizontalAdvance(text) + 20, 34)
        painter.fillRect(box, QtGui.QColor(0, 0, 0, 170))
        painter.setPen(QtGui.QColor(*MOVE_RGB))
        painter.drawText(box, QtCore.Qt.AlignCenter, text)
        painter.end()


class DebriefView(QtWidgets.QWidget):
    """The score after a confirm: total, PASS/FAIL, one row per component."""

    COLUMNS = ("component", "value", "truth", "pass mark", "result", "points")

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.total = QtWidgets.QLabel("", objectName="trainee_total")
        self.table = QtWidgets.QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(
            QtWidgets.QHeaderView.ResizeToContents)
        self.notes = QtWidgets.QLabel("")
        self.notes.setWordWrap(True)
        layout.addWidget(self.total)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.notes)

    def show_debrief(self, debrief: Debrief) -> None:
        rgb = PASS_RGB if debrief.passed else FAIL_RGB
        self.total.setText(f"{debrief.scenario}: {debrief.score.total:.0f} / 100  "
                           f"{'PASS' if debrief.passed else 'FAIL'}")
        self.total.setStyleSheet(f"background-color: rgb{rgb}; color: white;")
        self.table.setRowCount(len(debrief.rows))
        for n, row in enumerate(debrief.rows):
            cells = (row.label, "-" if row.value is None else f"{row.value:.2f} {row.unit}",
                     "" if row.truth is None else f"{row.truth:.2f}", row.mark,
                     "pass" if row.passed else "FAIL",
                     f"{row.points:.1f} / {row.full_points:g}" if row.applies else "n/a")
            for c, text in enumerate(cells):
                item = QtWidgets.QTableWidgetItem(text)
                if c == 4:
                    item.setBackground(QtGui.QColor(*(PASS_RGB if row.passed else FAIL_RGB)))
                    item.setForeground(QtGui.QColor(255, 255, 255))
                self.table.setItem(n, c, item)
        self.notes.setText(html.escape("; ".join(debrief.score.notes)))
        self.show()


class TraineePanel(QtWidgets.QWidget):
    """The trainee's controls (see the module docstring)."""

    def __init__(self, mode: TraineeMode) -> None:
        super().__init__()
        self.mode = mode
        self.setStyleSheet(PANEL_STYLE)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(QtWidgets.QLabel("TRAINEE MODE  (F3)", objectName="trainee_title"))
        row = QtWidgets.QHBoxLayout()
        self.scenario_box = QtWidgets.QComboBox()
        for name in scenario_names():
            self.scenario_box.addItem(f"{name} - {load_scenario(name).title}", name)
        current = self.scenario_box.findData(mode.session.scenario.name)
        if current < 0:   # a scenario file of one's own
            self.scenario_box.addItem(mode.session.scenario.name, mode.session.scenario)
            current = self.scenario_box.count() - 1
        self.scenario_box.setCurrentIndex(current)
        self.start_button = QtWidgets.QPushButton("Start")
        self.start_button.clicked.connect(self._start)
        row.addWidget(self.scenario_box, 1)
        row.addWidget(self.start_button)
        layout.addLayout(row)
        self.description = QtWidgets.QLabel("")
        self.description.setWordWrap(True)
        layout.addWidget(self.description)
        self.clock_label = QtWidgets.QLabel("")
        self._late = False
        layout.addWidget(self.clock_label)
        self.hints_box = QtWidgets.QCheckBox("hints")
        self.hints_box.toggled.connect(self._hints_toggled)
        layout.addWidget(self.hints_box)
        self.hint_label = QtWidgets.QLabel("", objectName="trainee_hint")
        self.hint_label.setWordWrap(True)
        layout.addWidget(self.hint_label)
        buttons = QtWidgets.QHBoxLayout()
        self.fault_button = QtWidgets.QPushButton("Fault! (F)", objectName="trainee_fault")
        self.fault_button.clicked.connect(mode.report_fault)
        self.pause_button = QtWidgets.QPushButton("Pause (P)")
        self.pause_button.clicked.connect(mode.pause)
        self.confirm_button = QtWidgets.QPushButton("Confirm", objectName="trainee_confirm")
        self.confirm_button.clicked.connect(mode.confirm)
        for b in (self.fault_button, self.pause_button, self.confirm_button):
            b.setFocusPolicy(QtCore.Qt.NoFocus)   # arrow keys stay with the driving
            buttons.addWidget(b)
        layout.addLayout(buttons)
        self.message = QtWidgets.QLabel("")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        inject = QtWidgets.QHBoxLayout()
        inject.addWidget(QtWidgets.QLabel("instructor:"))
        self.fault_kind = QtWidgets.QComboBox()
        for kind in FAULT_KINDS:
            self.fault_kind.addItem(kind.replace("_", " "), kind)
        self.inject_button = QtWidgets.QPushButton("Inject")
        self.inject_button.clicked.connect(
            lambda: mode.session.inject(str(self.fault_kind.currentData())))
        inject.addWidget(self.fault_kind, 1)
        inject.addWidget(self.inject_button)
        layout.addLayout(inject)
        layout.addWidget(QtWidgets.QLabel(
            "arrows: move (left/right, cranial/caudal), PgUp/PgDn: anterior/posterior, "
            "Shift+keys: tilt, Ctrl+left/right: roll"))
        self.debrief = DebriefView()
        self.debrief.hide()
        layout.addWidget(self.debrief, 1)
        layout.addStretch(0)
        self.show_scenario()

    def show_scenario(self) -> None:
        scenario = self.mode.session.scenario
        self.description.setText(f"<b>{html.escape(scenario.title)}</b><br>"
                                 f"{html.escape(scenario.spec.description)}")
        self.hints_box.setChecked(self.mode.session.hints_on)
        self.debrief.hide()
        self.message.setText("")

    def _start(self) -> None:
        data = self.scenario_box.currentData()
        self.mode.start_scenario(data)

    def _hints_toggled(self, on: bool) -> None:
        self.mode.session.hints_on = bool(on)
        self.mode.session.logic.action("trainee_hints", on=bool(on))

    def refresh(self) -> None:
        session = self.mode.session
        limit = session.scenario.spec.time_limit_s
        faults = len(session.faults)
        paused = "  PAUSED" if session.paused else ""
        elapsed = session.elapsed_s
        self.clock_label.setText(f"time {elapsed:5.0f} / {limit:g} s   "
                                 f"faults {faults}{paused}")
        late = elapsed > limit and session.debrief is None
        if late != self._late:   # (a style sheet change re-polishes: only on a change)
            self._late = late
            self.clock_label.setStyleSheet("color: #ff5050; font-weight: bold;" if late
                                           else "")
        hint = self.mode.hint
        self.hint_label.setText("" if hint is None else hint.text())


class TraineeMode(QtCore.QObject):
    """Trainee mode on a monitor window: panel, overlay, keys, F3 (see the module)."""

    def __init__(self, window, session: TraineeSession, *, tick_ms: int = 50) -> None:
        super().__init__(window)
        self.window = window
        self.session = session
        self.active = False
        self.hint = None
        self._confirm_pending = False
        self._drag_from: QtCore.QPoint | None = None
        self.panel = TraineePanel(self)
        self.dock = QtWidgets.QDockWidget("Trainee", window)
        self.dock.setObjectName("trainee_dock")
        self.dock.setWidget(self.panel)
        self.dock.setFeatures(QtWidgets.QDockWidget.NoDockWidgetFeatures)
        window.addDockWidget(QtCore.Qt.RightDockWidgetArea, self.dock)
        self.overlay = HintOverlay(window.ar_view, self)
        self.shortcut = QtWidgets.QShortcut(QtGui.QKeySequence("F3"), window,
                                            activated=self.toggle)
        self.shortcut.setContext(QtCore.Qt.ApplicationShortcut)
        QtWidgets.QApplication.instance().installEventFilter(self)
        self._timer = QtCore.QTimer(self)
        self._timer.timeout.connect(self.tick)
        self._timer.start(tick_ms)
        self.set_active(True)

    # ------------------------------------------------------------ switching
    def toggle(self) -> None:
        self.set_active(not self.active)

    def set_active(self, on: bool) -> None:
        self.active = bool(on)
        self.dock.setVisible(self.active)
        self.overlay.setVisible(self.active)
        if not self.active:
            self.session.driver.release_all()
        self.session.logic.action("trainee_mode", on=self.active)

    def start_scenario(self, scenario) -> None:
        self._confirm_pending = False
        self.session.restart(scenario)
        self.panel.show_scenario()
        self.window.header.setText(self.session.logic.header())

    # -------------------------------------------------------------- actions
    def report_fault(self) -> None:
        self.session.report_fault()
        self.panel.message.setText("fault reported")

    def pause(self) -> None:
        self.session.pause()

    def confirm(self) -> None:
        """Confirm as soon as the dose of the applicator's rest pose is shown."""
        self._confirm_pending = True
        self.panel.message.setText("confirming: hold still...")
        self._try_confirm()

    def _try_confirm(self) -> None:
        if not self._confirm_pending or not self.session.ready_to_confirm(self.window.snapshot):
            return
        self._confirm_pending = False
        result = self.session.confirm()
        self.panel.message.setText(result.message)
        if result.accepted:
            self._show_debrief()

    def _show_debrief(self) -> None:
        if self.session.debrief is not None:
            self.panel.debrief.show_debrief(self.session.debrief)

    # ---------------------------------------------------------------- clock
    def tick(self) -> None:
        """Scripted faults, the hint, a confirm made with the monitor's own button."""
        session = self.session
        session.tick()
        self._try_confirm()
        snap = self.window.snapshot
        pose = None if snap is None else snap.applicator_pose
        self.hint = session.hint(pose) if self.active else None
        confirm = None if snap is None else snap.confirm
        if confirm is not None and confirm.accepted and session.debrief is None:
            session.driver.release_all()
            session.finish()
            self._show_debrief()
        self.panel.refresh()
        self.overlay.update()

    # ---------------------------------------------------------- mouse, keys
    def _mouse(self, event) -> bool:
        """Left-drag in the AR view moves the applicator parallel to the image."""
        kind = event.type()
        if kind == QtCore.QEvent.MouseButtonPress and event.button() == QtCore.Qt.LeftButton:
            self._drag_from = event.pos()
            return True
        if self._drag_from is None:
            return False
        if kind in (QtCore.QEvent.MouseMove, QtCore.QEvent.MouseButtonRelease):
            view = self.window.ar_view
            rect = view.image_rect()
            snap = self.window.snapshot
            if rect.width() > 0 and snap is not None and snap.frame is not None:
                scale = rect.width() / snap.frame.image_rgb.shape[1]   # widget px per image px
                delta = event.pos() - self._drag_from
                self.session.drag(delta.x() / scale, delta.y() / scale, snap.frame)
            self._drag_from = event.pos()
            if kind == QtCore.QEvent.MouseButtonRelease:
                self._drag_from = None
            return True
        return False

    def eventFilter(self, obj, event) -> bool:
        """Keys and AR-view mouse while trainee mode is on (an application-wide filter:
        the keys drive whichever widget has the focus); let go when the window closes."""
        if not hasattr(self, "active"):   # being torn down
            return False
        if obj is self.window and event.type() == QtCore.QEvent.Close:
            self._detach()
            return False
        try:
            return self._filter(obj, event)
        except Exception:   # an exception out of a Qt virtual aborts the program
            log.exception("trainee mode: event %s not handled", event.type())
            return False

    def _detach(self) -> None:
        self._timer.stop()
        self.session.driver.release_all()
        app = QtWidgets.QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)

    def _filter(self, obj, event) -> bool:
        kind = event.type()
        if self.active and obj is self.window.ar_view and kind in (
                QtCore.QEvent.MouseButtonPress, QtCore.QEvent.MouseMove,
                QtCore.QEvent.MouseButtonRelease):
            return self._mouse(event)
        if not self.active or kind not in (QtCore.QEvent.KeyPress, QtCore.QEvent.KeyRelease):
            return False
        if isinstance(QtWidgets.QApplication.focusWidget(), TEXT_INPUTS):
            return False    # typing (an override reason) is not driving
        key = event.key()
        if kind == QtCore.QEvent.KeyPress and not event.isAutoRepeat() and \
                event.modifiers() in (QtCore.Qt.NoModifier, QtCore.Qt.KeypadModifier):
            if key == QtCore.Qt.Key_F:
                self.report_fault()
                return True
            if key == QtCore.Qt.Key_P:
                self.pause()
                return True
        if key not in DRIVE_KEYS:
            return False
        if event.isAutoRepeat():
            return True
        direction = DRIVE_KEYS[key]
        roll = ROLL_KEYS.get(key) if event.modifiers() & QtCore.Qt.ControlModifier else None
        if kind == QtCore.QEvent.KeyPress:
            if roll is not None:
                self.session.hold("roll", roll)
                return True
            tilt = bool(event.modifiers() & QtCore.Qt.ShiftModifier)
            if tilt and direction in ("anterior", "posterior"):
                return True    # the beam axis cannot tilt along itself
            self.session.hold("tilt" if tilt else "translate", direction)
        else:
            for motion in ("translate", "tilt"):
                self.session.release(motion, direction)
            if key in ROLL_KEYS:
                self.session.release("roll", ROLL_KEYS[key])
        return True


def attach_trainee_mode(window, session: TraineeSession) -> TraineeMode:
    """Add trainee mode to a monitor window (it starts on; F3 toggles it)."""
    return TraineeMode(window, session)
