"""The OR monitor window (PyQt5 + pyvistaqt). Qt lives only in this module.

Everything shown comes from :class:`guidance.monitor.logic.MonitorLogic` (plain Python);
this module only builds widgets, polls the logic on a timer and copies values into them.

Views
-----
* **AR view** — the video frame with the scene rendered over it by
  :class:`guidance.render.ar_compositor.ArCompositor` on its own thread (offscreen VTK
  render window of the size the video is shown, VTK camera from the scaled intrinsics and
  ``camera_from_patient`` via :mod:`guidance.render.vtk_camera`), shown scaled *uniformly*
  (letterboxed) so a CT point stays on the pixel ``cv2.projectPoints`` gives. Stale
  tracking: greyed video, no anatomy, red banner.
* **3D view** — pyvistaqt ``QtInteractor`` with the same scene (organs, target, planned
  and tracked applicator, isodose surface).
* **Slices** — axial, sagittal, coronal CT through the applicator end face with structure
  outlines and isodose lines (:mod:`guidance.render.slices`), rendered on a worker thread.
* **Surgeon mode** — AR view large, traffic light and distance/angle to the plan.
* **Oncologist mode** — slices, 3D, DVH, V90/D90 and organ doses, beam selectors,
  *Confirm* (records pose, beam and coverage in the session log).

Shortcuts: F1 surgeon, F2 oncologist, F11 full screen, Esc leave full screen,
Ctrl+Return confirm, Ctrl+Q quit. While a guided pointer registration runs (real camera
without ``--registration``): Space collect the fiducial asked for, S skip it, Backspace
redo, Enter register (see ``docs/monitor.md``, *Registering with the pointer*).
"""

from __future__ import annotations

import concurrent.futures
import html
import logging
import threading
import time
from dataclasses import replace

import numpy as np
from PyQt5 import QtCore, QtGui, QtWidgets

from guidance.monitor.declutter import default_ar_items
from guidance.monitor.logic import ISODOSE_LINES, MonitorLogic, MonitorSnapshot
from guidance.monitor.qt.disc_panel import DiscPanel
from guidance.monitor.qt.image_view import ImageView, numpy_to_qimage  # noqa: F401
from guidance.monitor.qt.slice_view import SliceView
from guidance.monitor.qt.structure_panel import StructureToggles
from guidance.monitor.state import LIGHT_TEXT_COLORS, coverage_table
from guidance.render.ar_compositor import ArCompositor, ArJob
from guidance.render.overlay import live_layers
from guidance.render.plots import SCREEN_LARGE, render_dvh_plot
from guidance.render.scene import LIVE_MAX_TRIANGLES, STYLE_ISODOSE
from guidance.render.scene_actors import SceneActors
from guidance.render.slices import ORIENTATIONS, SliceImage, render_slice, slice_normal
from guidance.treatment.dose_service import HIDDEN_ROI_TYPES
from guidance.treatment.plan_check import LIGHT_RGB, Light

log = logging.getLogger(__name__)

DARK_STYLE = """
QWidget { background-color: #15171a; color: #e6e6e6; font-size: 15px; }
QStatusBar, QStatusBar QLabel { background-color: #0d0e10; color: #d0d0d0; font-size: 16px; }
QComboBox, QDoubleSpinBox, QPushButton { background-color: #25282d; border: 1px solid #3a3f46;
    padding: 4px 8px; border-radius: 4px; }
QPushButton:hover { background-color: #30343a; }
QPushButton#confirm { background-color: #1f5f3a; font-weight: bold; font-size: 18px; }
QLabel#banner { background-color: #c81e1e; color: white; font-size: 26px; font-weight: bold;
    padding: 6px; }
QLabel#deviation { font-size: 30px; font-weight: bold; }
QLabel#coverage { font-family: monospace; font-size: 16px; }
QLabel#caption { color: #9aa0a6; font-size: 16px; }
QLabel#legend { font-size: 17px; font-weight: bold; }
QLabel#registration { font-family: monospace; font-size: 16px; padding: 4px; }
QLabel#header { background-color: #1d2733; color: #ffffff; font-size: 22px; font-weight: bold;
    padding: 4px 10px; }
QLabel#notice { background-color: #5a4300; color: #ffe08a; font-size: 20px;
    font-weight: bold; padding: 4px 10px; }
QLabel#phase { color: #9ad0ff; font-size: 22px; font-weight: bold; }
QLabel#simulation { color: #c9b3ff; font-size: 20px; font-weight: bold; }
QLabel#reasons { font-size: 20px; font-weight: bold; }
QLabel#plan_beam { font-size: 17px; }
QLabel#ack { font-size: 28px; font-weight: bold; padding: 6px 10px; border-radius: 4px; }
QLabel#mc_check { font-size: 22px; font-weight: bold; padding: 2px 10px; }
QLineEdit#override { background-color: #25282d; border: 1px solid #8a6d1f; padding: 4px;
    font-size: 16px; }
"""
#: Background of the Confirm acknowledgement: accepted, accepted with an override, refused.
ACK_STYLE = {"ok": "background-color: #1f6f3a; color: white;",
             "override": "background-color: #b07d10; color: black;",
             "refused": "background-color: #b01e1e; color: white;"}



def _lines_px(lines: int, pixel_size: int, *, family: str = "", bold: bool = False) -> int:
    """Height (px) of ``lines`` lines of text in a font of ``pixel_size`` px."""
    font = QtGui.QFont(family) if family else QtGui.QFont()
    font.setPixelSize(pixel_size)
    font.setBold(bold)
    return int(np.ceil(QtGui.QFontMetricsF(font).lineSpacing() * lines)) + 4


class TrafficLight(QtWidgets.QLabel):
    """A large coloured disc with the light's name."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFixedSize(160, 160)
        self.setAlignment(QtCore.Qt.AlignCenter)
        self.light = Light.GREY
        self.set_light(Light.GREY)

    def set_light(self, light: Light) -> None:
        self.light = light
        r, g, b = LIGHT_RGB[light]
        self.setText(light.value.upper())
        self.setStyleSheet(f"background-color: rgb({r},{g},{b}); border-radius: 80px; "
                           "color: black; font-size: 26px; font-weight: bold;")


def _full_dose_coming(snap: MonitorSnapshot, shown_dose_seq: int) -> bool:
    """A view showing the dose ``shown_dose_seq`` can wait: the full model is computing
    (``MonitorStatus.dose_refining``) and the snapshot brings only a move or a preview's
    dose, which that full dose replaces a moment later."""
    return snap.status.dose_refining and (
        snap.dose_seq == shown_dose_seq
        or (snap.dose is not None and snap.dose.model == "preview"))


class MonitorWindow(QtWidgets.QMainWindow):
    """The OR monitor. Give it a started :class:`MonitorLogic`."""

    #: The capture and dose workers signal these from their threads; Qt queues them to the
    #: UI thread (as Slicer's OpenIGTLinkIF queues connector events).
    frame_arrived = QtCore.pyqtSignal()
    ar_ready = QtCore.pyqtSignal()
    #: Shortest time (s) between two re-slicings that follow the applicator or the dose.
    SLICE_INTERVAL_S = 0.25
    #: Shortest time (s) between two re-renders of the 3D view.
    VIEW3D_INTERVAL_S = 0.5
    dose_arrived = QtCore.pyqtSignal()

    def __init__(self, logic: MonitorLogic, *, clock_ms: int = 100, with_3d: bool = True,
                 slice_px: int = 320) -> None:
        super().__init__()
        self.logic = logic
        self.slice_px = slice_px
        self.setWindowTitle("IORT guidance — OR monitor")
        self.setStyleSheet(DARK_STYLE)
        self._submitted: tuple | None = None   # (frame seq, overlay ok, applicator ok)
        self._rendered_frame_seq = -1
        self._rendered_ok: bool | None = None
        self._rendered_app_ok: bool | None = None
        self._rendered_dose_seq = -1
        self._last_3d_s = 0.0
        self._3d_key: tuple | None = None
        self._slice_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._slice_future: concurrent.futures.Future | None = None
        self._slice_key: tuple | None = None
        self._last_slices_s = 0.0
        self._dvh_future: concurrent.futures.Future | None = None
        self.ar_frames = 0
        self.snapshot: MonitorSnapshot | None = None
        self.quit_box: QtWidgets.QMessageBox | None = None
        self._quit_confirmed = False
        self._build(with_3d)
        self._shortcuts()
        self.set_mode(logic.mode)
        # events, not polling: a new frame or dose is handled when its worker signals it;
        # a slow clock only ages what is on screen (a stalled camera) and the prompts
        self._closed = False
        self.frame_arrived.connect(self._on_frame)
        self.ar_ready.connect(self._on_ar_ready)
        self._ar_queued = threading.Event()
        self._compositor = ArCompositor(
            target=logic.target, max_triangles=LIVE_MAX_TRIANGLES,
            on_done=lambda: self._signal_once(self._ar_queued, self.ar_ready))
        self.dose_arrived.connect(self._on_dose)
        # one queued signal at a time per worker: when drawing is slower than the camera the
        # queue would otherwise grow without bound (growing latency, timers and Ctrl+C
        # starved); the slot always takes the newest frame or dose anyway
        self._frame_queued = threading.Event()
        self._dose_queued = threading.Event()
        logic.capture.on_frame = lambda _update: self._signal_once(self._frame_queued,
                                                                   self.frame_arrived)
        self._dose_listener = lambda: self._signal_once(self._dose_queued, self.dose_arrived)
        if logic.dose_service is not None:
            logic.dose_service.listeners.append(self._dose_listener)
        self._timer = QtCore.QTimer(self)
        self._timer.timeout.connect(self._on_clock)
        self._timer.start(clock_ms)

    # ----------------------------------------------------------------- layout
    def _build(self, with_3d: bool) -> None:
        central = QtWidgets.QWidget()
        outer = QtWidgets.QVBoxLayout(central)
        outer.setContentsMargins(4, 4, 4, 4)
        # patient and plan, always in view
        self.header = QtWidgets.QLabel(self.logic.header(), objectName="header")
        outer.addWidget(self.header)
        # standing cautions (e.g. the camera calibration's), for the whole session
        self.notice_label = QtWidgets.QLabel("\n".join(f"CAUTION: {n}" for n in
                                                       self.logic.notices), objectName="notice")
        self.notice_label.setWordWrap(True)
        self.notice_label.setVisible(bool(self.logic.notices))
        outer.addWidget(self.notice_label)
        # what the last Confirm did, large (hidden before the first press)
        self.ack_label = QtWidgets.QLabel("", objectName="ack")
        self.ack_label.setWordWrap(True)
        self.ack_label.hide()
        outer.addWidget(self.ack_label)
        # the Monte Carlo second check of the newest confirm: progress, then its verdict
        self.mc_label = QtWidgets.QLabel("", objectName="mc_check")
        self.mc_label.setWordWrap(True)
        # progress, then verdict and reasons: two lines from the start, nothing jumps
        self.mc_label.setMinimumHeight(_lines_px(2, 22, bold=True))
        self.mc_label.hide()
        outer.addWidget(self.mc_label)
        self.banner = QtWidgets.QLabel("", objectName="banner")
        self.banner.setAlignment(QtCore.Qt.AlignCenter)
        self.banner.setWordWrap(True)   # a long prompt must not widen the window
        self.banner.hide()
        outer.addWidget(self.banner)
        self.registration_label = QtWidgets.QLabel("", objectName="registration")
        self.registration_label.hide()
        outer.addWidget(self.registration_label)
        self.splitter = QtWidgets.QSplitter(QtCore.Qt.Horizontal)
        outer.addWidget(self.splitter, 1)
        self.ar_view = ImageView(min_size=(320, 180),
                                 placeholder="starting the camera and the tracking ...")
        # left column: the AR view, and in oncologist mode the CT slices under it (the
        # video is 16:9, so the column has room below it)
        left = QtWidgets.QWidget()
        left_layout = QtWidgets.QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.ar_view, 3)
        self.splitter.addWidget(left)

        side = QtWidgets.QWidget()
        side_layout = QtWidgets.QVBoxLayout(side)
        side_layout.setContentsMargins(4, 0, 0, 0)
        self._build_surgeon_panel(side_layout)
        self.view3d = None
        if with_3d:
            self._build_3d(side, side_layout)
        self._build_slices(left_layout)
        self._build_oncologist_panel(side_layout)
        from guidance.monitor.qt.edits_panel import install_edits_panel
        self.edits_panel = install_edits_panel(self, side_layout)   # anatomy edits
        # surgeon mode: the panel at the top, the rest empty (set_mode switches it off)
        side_layout.addStretch(1)
        self._side_layout = side_layout
        # the side column scrolls when its panels (disc, edits, trainee) are taller than the
        # screen, so the window itself never grows beyond it
        scroll = QtWidgets.QScrollArea()
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QtWidgets.QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
        self.splitter.addWidget(scroll)
        self.setCentralWidget(central)
        self._build_status_bar()

    def _build_surgeon_panel(self, side_layout: QtWidgets.QVBoxLayout) -> None:
        self.surgeon_panel = QtWidgets.QWidget()
        sp = QtWidgets.QVBoxLayout(self.surgeon_panel)
        self.light = TrafficLight()
        self.deviation_label = QtWidgets.QLabel("—", objectName="deviation")
        self.deviation_label.setWordWrap(True)
        self.phase_label = QtWidgets.QLabel("", objectName="phase")
        # what a simulated procedure is doing now (hidden for a real camera)
        self.sim_label = QtWidgets.QLabel("", objectName="simulation")
        self.sim_label.setWordWrap(True)
        self.sim_label.setVisible(hasattr(self.logic.capture.feed, "simulation_text"))
        # fixed heights: a text that appears, changes or wraps does not move what is below
        self.phase_label.setMinimumHeight(_lines_px(1, 22, bold=True))
        self.sim_label.setMinimumHeight(_lines_px(1, 20, bold=True))
        self.deviation_label.setMinimumHeight(_lines_px(2, 30, bold=True))
        self.reasons_label = QtWidgets.QLabel("", objectName="reasons")
        self.reasons_label.setWordWrap(True)
        self.reasons_label.setAlignment(QtCore.Qt.AlignTop | QtCore.Qt.AlignLeft)
        # room for 4 reasons: a shorter or longer list does not move what is below
        self.reasons_label.setMinimumHeight(_lines_px(4, 20, bold=True))
        sp.addWidget(self.phase_label)
        sp.addWidget(self.sim_label)
        # the light above its reading (surgeon mode, a narrow column) or beside it
        # (oncologist mode: the column is wide and its height goes to the dose)
        self._light_row = QtWidgets.QBoxLayout(QtWidgets.QBoxLayout.TopToBottom)
        self._light_row.addWidget(self.light, 0, QtCore.Qt.AlignHCenter)
        reading = QtWidgets.QVBoxLayout()
        reading.addWidget(self.deviation_label)
        reading.addWidget(self.reasons_label)
        self._light_row.addLayout(reading, 1)
        sp.addLayout(self._light_row)
        # AR decluttering: target, Rx isodose, planned ghost and the organs near the beam by
        # default; each structure can be switched
        scene = self.logic.scene
        beam = self.logic.beam
        self._ar_default = default_ar_items(scene, self.logic.plan, target=self.logic.target,
                                            applicator_diameter_mm=beam.applicator_diameter_mm,
                                            energy_mev=beam.energy_mev)
        items = [(n, scene.items[n].color) for n in scene.items
                 if n not in ("applicator", "disc")]
        items.append(("isodose", STYLE_ISODOSE["color"]))
        self.ar_toggles = StructureToggles(items, self._ar_default | {"isodose"})
        self.ar_toggles.changed.connect(self._ar_structures_changed)
        sp.addWidget(self.ar_toggles)
        self.surgeon_panel.setSizePolicy(QtWidgets.QSizePolicy.Preferred,
                                         QtWidgets.QSizePolicy.Minimum)
        side_layout.addWidget(self.surgeon_panel)

    def _build_3d(self, side: QtWidgets.QWidget, side_layout: QtWidgets.QVBoxLayout) -> None:
        from pyvistaqt import QtInteractor

        self.view3d = QtInteractor(side, auto_update=False)
        self.view3d.set_background("#101214")
        self.view3d.disable_anti_aliasing()
        self.view3d.setMinimumSize(200, 160)
        self.view3d.renderer.SetUseOIT(False)   # fixed layers instead (see live_layers)
        self._scene3d = SceneActors(self.view3d, self.logic.scene, name_prefix="3d_",
                                    max_triangles=LIVE_MAX_TRIANGLES, cull_back_faces=True,
                                    layers=live_layers(self.logic.target))
        self._scene3d.sync()
        # from anterior-superior, centred on the planned applicator end face
        focus = self.logic.plan[:3, 3]
        self.view3d.camera.focal_point = tuple(focus)
        self.view3d.camera.position = tuple(focus + np.array([0.0, -260.0, 150.0]))
        self.view3d.camera.up = (0.0, 0.0, 1.0)
        self.view3d.reset_camera_clipping_range()
        # which way is the patient: a cube with the LPS faces in the corner (+x left,
        # +y posterior, +z superior), turning with the view
        import pyvista as pv

        cube = pv.create_axes_orientation_box(
            xlabel="L", ylabel="P", zlabel="S", x_color="#e03c3c", y_color="#3cb44b",
            z_color="#3c64e0", opacity=1.0, label_color="white", text_scale=0.5)
        cube.SetXMinusFaceText("R")
        cube.SetYMinusFaceText("A")
        cube.SetZMinusFaceText("I")
        self.view3d.add_orientation_widget(cube, viewport=(0.0, 0.0, 0.2, 0.6))
        side_layout.addWidget(self.view3d, 2)

    def _build_slices(self, side_layout: QtWidgets.QVBoxLayout) -> None:
        self.slice_row = QtWidgets.QWidget()
        column = QtWidgets.QVBoxLayout(self.slice_row)
        column.setContentsMargins(0, 0, 0, 0)
        # what the line colours mean: isodoses (percent of the prescription) and outlines
        self.slice_legend = QtWidgets.QLabel(self._slice_legend_html(), objectName="legend")
        self.slice_legend.setWordWrap(True)   # never wider than the column
        column.addWidget(self.slice_legend)
        sr = QtWidgets.QHBoxLayout()
        column.addLayout(sr, 1)
        self.slice_views: dict[str, SliceView] = {}
        for orientation in ORIENTATIONS:
            box = QtWidgets.QVBoxLayout()
            caption = QtWidgets.QLabel(orientation, objectName="caption")
            view = SliceView(orientation, min_size=(160, 160))
            view.view_changed.connect(self._slices_moved)
            box.addWidget(caption)
            box.addWidget(view, 1)
            sr.addLayout(box)
            self.slice_views[orientation] = view
        side_layout.addWidget(self.slice_row, 2)

    @staticmethod
    def _slice_legend_html() -> str:
        iso = "&nbsp;&nbsp;".join(f"<span style='color: rgb{rgb}'>&#9473;&#9473; {pct:g} %</span>"
                                  for pct, rgb in ISODOSE_LINES)
        return (f"isodose (of Rx): {iso}&nbsp;&nbsp;&nbsp; outlines: structures in their "
                "colours (table) &nbsp;&nbsp; <span style='color: #9aa0a6'>wheel: move, "
                "Ctrl+wheel: zoom, double click: back</span>")

    def _build_oncologist_panel(self, side_layout: QtWidgets.QVBoxLayout) -> None:
        self.oncologist_panel = QtWidgets.QWidget()
        op = QtWidgets.QGridLayout(self.oncologist_panel)
        opts = self.logic.beam_options
        self.energy = self._combo([f"{e:g} MeV" for e in opts.energies_mev],
                                  opts.energies_mev, self.logic.beam.energy_mev)
        self.diameter = self._combo([f"{d:g} mm" for d in opts.diameters_mm],
                                    opts.diameters_mm, self.logic.beam.applicator_diameter_mm)
        self.bevel = self._combo([f"{b:g}°" for b in opts.bevels_deg], opts.bevels_deg,
                                 self.logic.beam.bevel_deg)
        self.disc_panel = DiscPanel(opts, self.logic.beam)
        self.disc = self.disc_panel.material
        self.prescription = QtWidgets.QDoubleSpinBox()
        self.prescription.setRange(1.0, 30.0)
        self.prescription.setSuffix(" Gy")
        self.prescription.setValue(self.logic.beam.prescription_gy)
        for col, (label, widget) in enumerate([("energy", self.energy),
                                               ("applicator", self.diameter),
                                               ("bevel", self.bevel),
                                               ("prescription", self.prescription)]):
            op.addWidget(QtWidgets.QLabel(label, objectName="caption"), 0, col)
            op.addWidget(widget, 1, col)
        for widget in (self.energy, self.diameter, self.bevel):
            widget.currentIndexChanged.connect(self._beam_changed)
        self.prescription.valueChanged.connect(self._beam_changed)
        self.disc_panel.changed.connect(self._beam_changed)
        op.addWidget(self.disc_panel, 2, 0, 1, 5)
        self.dvh_view = ImageView(min_size=(240, 140))
        op.addWidget(self.dvh_view, 3, 0, 1, 3)
        self.coverage_label = QtWidgets.QLabel("no dose yet", objectName="coverage")
        self.coverage_label.setAlignment(QtCore.Qt.AlignTop | QtCore.Qt.AlignLeft)
        # every structure, the outside-beam line and MU: the table never changes height
        shown = [s for s in self.logic.case.structures.values()
                 if s.roi_type not in HIDDEN_ROI_TYPES]
        self.coverage_label.setMinimumHeight(_lines_px(len(shown) + 2, 16, family="monospace"))
        op.addWidget(self.coverage_label, 3, 3, 1, 2)
        self.plan_beam_label = QtWidgets.QLabel("", objectName="plan_beam")
        self.plan_beam_label.setWordWrap(True)
        op.addWidget(self.plan_beam_label, 4, 0, 1, 5)
        self.override_edit = QtWidgets.QLineEdit(objectName="override")
        self.override_edit.setPlaceholderText("override reason (needed to confirm a plan "
                                              "that is not green)")
        op.addWidget(self.override_edit, 5, 0, 1, 3)
        self.confirm_button = QtWidgets.QPushButton("Confirm pose + dose", objectName="confirm")
        self.confirm_button.clicked.connect(self.confirm)
        op.addWidget(self.confirm_button, 5, 3, 1, 2)
        side_layout.addWidget(self.oncologist_panel, 0)   # its height; the rest to the 3D view

    def _build_status_bar(self) -> None:
        self.status_labels: dict[str, QtWidgets.QLabel] = {}
        for key in ("tools", "registration", "fps", "dose"):
            label = QtWidgets.QLabel("")
            self.status_labels[key] = label
            self.statusBar().addPermanentWidget(label, 2 if key == "tools" else 1)
        self.mode_label = QtWidgets.QLabel("")
        self.statusBar().addWidget(self.mode_label)

    def _combo(self, labels: list[str], values, current) -> QtWidgets.QComboBox:
        box = QtWidgets.QComboBox()
        for label, value in zip(labels, values, strict=True):
            box.addItem(label, value)
        index = max(0, box.findData(current))
        box.setCurrentIndex(index)
        return box

    def _shortcuts(self) -> None:
        for keys, slot in [("F1", lambda: self.set_mode("surgeon")),
                           ("F2", lambda: self.set_mode("oncologist")),
                           ("F11", self.toggle_full_screen),
                           ("Escape", self.showNormal),
                           ("Ctrl+Return", self.confirm),
                           ("Ctrl+Q", self.ask_quit)]:
            shortcut = QtWidgets.QShortcut(QtGui.QKeySequence(keys), self, activated=slot)
            # work whichever widget (or the 3D view) has the focus
            shortcut.setContext(QtCore.Qt.ApplicationShortcut)
        feed = self.logic.capture.feed
        if hasattr(feed, "restart"):   # a simulated procedure: R plays it again
            QtWidgets.QShortcut(QtGui.QKeySequence("R"), self, activated=self._restart_sim
                                ).setContext(QtCore.Qt.ApplicationShortcut)
        # guided registration keys, only while it runs (they would steal Space/Backspace
        # from the selectors otherwise)
        self.registration_shortcuts: list[QtWidgets.QShortcut] = []
        if self.logic.registration is None:
            return
        for keys, slot in [("Space", self.logic.registration_capture),
                           ("S", self.logic.registration_skip),
                           ("Backspace", self.logic.registration_redo),
                           ("Return", self.logic.registration_accept),
                           ("Enter", self.logic.registration_accept)]:
            shortcut = QtWidgets.QShortcut(QtGui.QKeySequence(keys), self, activated=slot)
            shortcut.setContext(QtCore.Qt.ApplicationShortcut)
            self.registration_shortcuts.append(shortcut)

    # ---------------------------------------------------------------- actions
    def set_mode(self, mode: str) -> None:
        self.logic.set_mode(mode)
        oncologist = mode == "oncologist"
        self.slice_row.setVisible(oncologist)
        self.oncologist_panel.setVisible(oncologist)
        self.ar_toggles.setVisible(not oncologist)   # the surgeon's AR switches
        self._light_row.setDirection(QtWidgets.QBoxLayout.LeftToRight if oncologist
                                     else QtWidgets.QBoxLayout.TopToBottom)
        self._side_layout.setStretch(self._side_layout.count() - 1, 0 if oncologist else 1)
        if self.view3d is not None:
            self.view3d.setVisible(oncologist)
        total = max(self.width(), 1000)
        self.splitter.setSizes([int(total * 0.78), int(total * 0.22)] if not oncologist
                               else [int(total * 0.5), int(total * 0.5)])
        self.mode_label.setText(f"{mode.upper()}  (F1/F2 mode, F11 full screen, "
                                "Ctrl+Enter confirm)")

    def _restart_sim(self) -> None:
        if self.logic.capture.feed.restart():
            self.logic.action("simulation_restart")

    def ask_quit(self) -> None:
        """Ctrl+Q (or the window's close button): during a session, ask first."""
        if self.logic.session_log is None:
            self.close()
            return
        if self.quit_box is None:
            box = QtWidgets.QMessageBox(
                QtWidgets.QMessageBox.Question, "Quit the OR monitor?",
                "Quit the OR monitor? The session will be closed and its log ended.",
                QtWidgets.QMessageBox.Yes | QtWidgets.QMessageBox.No, self)
            box.setDefaultButton(QtWidgets.QMessageBox.No)
            box.setStyleSheet("QLabel { font-size: 22px; } QPushButton { font-size: 20px; "
                              "min-width: 120px; padding: 8px; }")
            box.finished.connect(self._quit_answered)
            self.quit_box = box
        self.quit_box.open()   # not modal-blocking: the monitor keeps updating behind it

    def _quit_answered(self, _code: int) -> None:
        if self.quit_box.clickedButton() is self.quit_box.button(QtWidgets.QMessageBox.Yes):
            self._quit_confirmed = True
            self.logic.action("quit_confirmed")
            self.close()

    def _slices_moved(self) -> None:
        if self.snapshot is not None:
            self._update_slices(self.snapshot)

    def toggle_full_screen(self) -> None:
        if self.isFullScreen():
            self.showNormal()
        else:
            self.showFullScreen()
        self.logic.action("full_screen", on=self.isFullScreen())

    def _beam_changed(self) -> None:
        beam = self.disc_panel.apply(replace(
            self.logic.beam, energy_mev=float(self.energy.currentData()),
            applicator_diameter_mm=float(self.diameter.currentData()),
            bevel_deg=float(self.bevel.currentData()),
            prescription_gy=float(self.prescription.value())))
        self.logic.set_beam(beam)
        self._scene_changed()

    def confirm(self) -> None:
        """Confirm (button, Ctrl+Enter) with the typed override reason, if any; the result
        is shown large in the window."""
        result = self.logic.confirm(override_reason=self.override_edit.text())
        if result.accepted:
            self.override_edit.clear()
        self._show_ack(result)
        if result.accepted and result.seq is not None:
            # what the team saw when they confirmed, for the treatment record
            shots = {"window": _grab_rgb(self), "ar": _grab_rgb(self.ar_view)}
            if self.slice_row.isVisible():
                shots["slices"] = _grab_rgb(self.slice_row)
            self.logic.save_screenshots(result.seq, shots)

    def _show_ack(self, result) -> None:
        kind = "refused" if not result.accepted else "override" if result.override_reason \
            else "ok"
        self.ack_label.setStyleSheet(ACK_STYLE[kind])
        self.ack_label.setText(result.message)
        self.ack_label.show()

    def _scene_changed(self) -> None:
        if self.view3d is not None:
            self._scene3d.sync()
            # one render, by Qt's next paint (render() renders, and the paint again)
            self.view3d.update()

    # ------------------------------------------------------------------ update
    @staticmethod
    def _signal_once(queued: threading.Event, signal) -> None:
        """Emit ``signal`` (from a worker thread) unless one is still waiting."""
        if not queued.is_set():
            queued.set()
            signal.emit()

    def _on_frame(self) -> None:
        self._frame_queued.clear()
        if not self._closed and self.logic.on_frame():
            self._refresh(self.logic.on_clock())

    def _on_dose(self) -> None:
        self._dose_queued.clear()
        if not self._closed and self.logic.on_dose():
            self._refresh(self.logic.on_clock())

    def _on_clock(self) -> None:
        if not self._closed:
            self._refresh(self.logic.on_clock())

    def tick(self) -> None:
        """Handle whatever arrived and refresh, and show the AR frame it asked for (tests
        drive the window with it)."""
        self._refresh(self.logic.poll())
        self._show_ar(self._compositor.wait())

    def _refresh(self, snap: MonitorSnapshot) -> None:
        """Copy a snapshot into the widgets; re-render what changed (UI thread, no waits)."""
        self.snapshot = snap
        for key, text in snap.status.fields().items():
            label = self.status_labels[key]
            label.setText(text)
            # grow to fit, never shrink: nothing cut off ("pointer: UNTRACKE"), no jumps
            need = label.fontMetrics().horizontalAdvance(text) + 16
            if need > label.minimumWidth():
                label.setMinimumWidth(need)
        banner = snap.banner
        self.banner.setText(banner)
        self.banner.setVisible(bool(banner))
        self.registration_label.setText("\n".join(snap.registration_lines))
        self.registration_label.setVisible(bool(snap.registration_lines))
        if self.registration_shortcuts and self.logic.registration.finished:
            for shortcut in self.registration_shortcuts:
                shortcut.setEnabled(False)
        self.light.set_light(snap.light)
        self._show_mc_check(snap)
        self.deviation_label.setText(snap.deviation.text() if snap.deviation is not None
                                     else "applicator not tracked")
        self._show_judgement(snap)
        if self.sim_label.isVisibleTo(self.surgeon_panel):
            self.sim_label.setText(self.logic.capture.feed.simulation_text())
        # re-render on a new frame, and also when tracking turns stale without a new frame
        # (a frozen camera must not leave a confident overlay on screen)
        if snap.frame is not None and \
                self._submitted != (snap.frame_seq, snap.overlay_ok, snap.applicator_ok):
            self._render_ar(snap)
        if snap.dose is not None and snap.dose_seq != self._rendered_dose_seq:
            self._rendered_dose_seq = snap.dose_seq
            self._show_dose(snap)
        self._update_slices(snap)
        self._update_3d(snap)
        if self._dvh_future is not None and self._dvh_future.done():
            future, self._dvh_future = self._dvh_future, None
            try:
                self.dvh_view.set_image(future.result())
            except Exception:
                log.exception("DVH plot failed")

    def _show_mc_check(self, snap: MonitorSnapshot) -> None:
        """The Monte Carlo check's line (hidden before the first confirm)."""
        status = snap.mc_check
        if status is None:
            self.mc_label.hide()
            return
        if self.mc_label.text() != status.line:
            self.mc_label.setText(status.line)
            self.mc_label.setStyleSheet(f"color: {status.color};")
        self.mc_label.show()

    def _show_judgement(self, snap: MonitorSnapshot) -> None:
        """Phase, why the light is not green, planned beam next to the current one."""
        self.phase_label.setText(f"PHASE: {snap.phase.upper()}")
        color = LIGHT_TEXT_COLORS.get(snap.light.value, LIGHT_TEXT_COLORS["grey"])
        self.reasons_label.setStyleSheet(f"color: {color};")
        self.reasons_label.setText("\n".join(snap.light_reasons) if snap.light_reasons
                                   else "plan, coverage and organ limits met")
        plan, cur = self.logic.planned_beam, self.logic.beam

        def beam_text(b) -> str:
            if b.kv_diameter_mm is not None:
                return f"kV sphere {b.kv_diameter_mm:g} mm, {b.prescription_gy:g} Gy at surface"
            disc = "none" if b.disc_size_mm is None else \
                "{} {:g}x{:g} mm at {:g} mm".format(b.disc, *b.disc_size_mm)
            bolus = f", bolus {b.bolus_mm:g} mm" if b.bolus_mm else ""
            return (f"{self.logic.machine} {b.energy_mev:g} MeV, {b.applicator_diameter_mm:g} "
                    f"mm, bevel {b.bevel_deg:g}°, disc {disc}{bolus}, {b.prescription_gy:g} Gy")

        text = f"plan:    {beam_text(plan)}\ncurrent: {beam_text(cur)}"
        if snap.beam_deviations:
            text += "\nDIFFERS FROM PLAN: " + ", ".join(snap.beam_deviations)
        self.plan_beam_label.setText(text)
        self.disc_panel.show_reasons(snap.light_reasons)
        self.plan_beam_label.setStyleSheet("color: #f0c81e;" if snap.beam_deviations else "")

    def _update_3d(self, snap: MonitorSnapshot) -> None:
        """Re-render the 3D view when the applicator moved (> 2 mm) or a dose arrived, at
        most every :attr:`VIEW3D_INTERVAL_S` (each render costs tens of ms on a CPU, and
        the UI thread waits for it); a move alone waits while the full model computes the
        dose for it (``MonitorStatus.dose_refining``)."""
        if self.view3d is None or not self.view3d.isVisible():
            return
        pose = snap.applicator_pose
        key = (None if pose is None else tuple(np.round(pose[:3, 3] / 2.0).astype(int)),
               snap.dose_seq)
        now = time.monotonic()
        if self._3d_key is not None and _full_dose_coming(snap, self._3d_key[1]):
            return
        if key != self._3d_key and now - self._last_3d_s > self.VIEW3D_INTERVAL_S:
            self._3d_key = key
            self._last_3d_s = now
            self._scene_changed()

    def _render_ar(self, snap: MonitorSnapshot) -> None:
        """Hand the frame to the compositor (its image arrives with ``ar_ready``)."""
        frame = snap.frame
        self._submitted = (snap.frame_seq, snap.overlay_ok, snap.applicator_ok)
        ok = snap.overlay_ok and frame.camera_from_patient is not None
        self._compositor.submit(ArJob(
            snap.frame_seq, frame.image_rgb, frame.camera_matrix,
            self._ar_shown_size(frame.image_size),
            # not ok: greyed video, no anatomy from an old pose (the banner says why)
            frame.camera_from_patient if ok else None,
            self._compositor.snapshot(self.logic.scene), frozenset(self.ar_hidden()),
            tag=(snap.overlay_ok, snap.applicator_ok)))

    def _on_ar_ready(self) -> None:
        self._ar_queued.clear()
        if not self._closed:
            self._show_ar(self._compositor.take())

    def _show_ar(self, result) -> None:
        if result is None:
            return
        overlay_ok, applicator_ok = result.job.tag
        video = result.job.video_rgb
        self.ar_view.set_image(result.image_rgb, source_size=(video.shape[1], video.shape[0]))
        self._rendered_frame_seq = result.job.seq
        self._rendered_ok, self._rendered_app_ok = overlay_ok, applicator_ok
        self.ar_frames += 1

    def _ar_shown_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """The size (w, h) px the video is shown at in the AR view, never above its own:
        the scene is rendered and blended at that size (the CPU rasteriser's and the
        blend's time grow with the pixels; oncologist mode shows the video at ~0.75)."""
        shown = min(1.0, self.ar_view.width() / image_size[0],
                    self.ar_view.height() / image_size[1])
        return (max(1, round(image_size[0] * shown)), max(1, round(image_size[1] * shown)))

    def ar_hidden(self) -> set[str]:
        """Scene items the AR view leaves out (switched off by the structure toggles)."""
        return set(self.ar_toggles.buttons) - self.ar_toggles.shown()

    def _ar_structures_changed(self) -> None:
        self.logic.action("ar_structures", shown=sorted(self.ar_toggles.shown()))
        if self.snapshot is not None and self.snapshot.frame is not None:
            self._render_ar(self.snapshot)

    def _show_dose(self, snap: MonitorSnapshot) -> None:
        dose = snap.dose
        if not dose.metrics_ready:
            self.coverage_label.setStyleSheet("color: #8a8f96;")  # old numbers, updating
            return
        self.coverage_label.setStyleSheet("")
        colors = self.logic.structure_colors()
        width = max(320, self.dvh_view.width())
        height = max(180, self.dvh_view.height())
        # the plot is drawn on the slice worker (tens of ms), shown by _refresh when ready
        self._dvh_future = self._slice_pool.submit(
            render_dvh_plot, dose.curves, colors, size=(width, height),
            prescription_gy=dose.beam.prescription_gy, style=SCREEN_LARGE)
        lines = [self._coloured(line, colors)
                 for line in coverage_table(dose.metrics, target=self.logic.target)]
        if dose.outside_beam:
            lines.append("0 Gy (outside beam): " + ", ".join(dose.outside_beam))
        if dose.mu is not None:
            lines.append(f"MU {dose.mu:.1f}" + ("  ESTIMATED - output factor not measured"
                                                if dose.mu_estimated else ""))
        elif dose.mu_estimated:
            lines.append("MU ESTIMATED - output factor not measured")
        # the structure names in their DVH curve colours: the table is the plot's legend
        self.coverage_label.setText("<pre style='margin:0'>" + "<br>".join(lines) + "</pre>")
        log.debug("dose + DVH %.0f ms", dose.compute_ms)

    @staticmethod
    def _coloured(line: str, colors: dict[str, tuple[int, int, int]]) -> str:
        """A coverage line with its structure name (before ':') in the curve's colour."""
        name, sep, rest = line.partition(":")
        rgb = colors.get(name)
        if not sep or rgb is None:
            return html.escape(line)
        return (f"<span style='color: rgb{tuple(int(c) for c in rgb)}'>&#9632; "
                f"{html.escape(name)}</span>:{html.escape(rest)}")

    def _update_slices(self, snap: MonitorSnapshot) -> None:
        if not self.slice_row.isVisible():
            return
        if self._slice_future is not None:
            if not self._slice_future.done():
                return
            try:
                images: list[SliceImage] = self._slice_future.result()
                for image in images:
                    view = self.slice_views[image.orientation]
                    if view.outline_px and not (QtWidgets.QApplication.mouseButtons()
                                                & QtCore.Qt.LeftButton) and \
                            not np.array_equal(view.patient_from_pixel,
                                               image.patient_from_pixel):
                        view.outline_px = []   # drawn on the slice shown before
                    view.patient_from_pixel = image.patient_from_pixel
                    view.set_image(image.rgb)
            except Exception:
                log.exception("slice rendering failed")
            self._slice_future = None
        pose = snap.applicator_pose
        if pose is None and snap.dose is not None:
            pose = snap.dose.patient_from_applicator
        if pose is None:
            pose = self.logic.plan
        views = self.slice_views
        key = (tuple(np.round(pose[:3, 3] / 2.0).astype(int)), snap.dose_seq,
               tuple((v.offset_mm, v.zoom) for v in views.values()),
               self.logic.beam.disc_size_mm)
        if key == self._slice_key:
            return
        # a moving applicator or a new dose re-slices at most SLICE_INTERVAL_S apart (the
        # slices take CPU and the interpreter lock from the live view); the oncologist's own
        # scroll and zoom at once
        now = time.monotonic()
        if self._slice_key is not None and key[2] == self._slice_key[2] and \
                now - self._last_slices_s < self.SLICE_INTERVAL_S:
            return
        if self._slice_key is not None and key[2:] == self._slice_key[2:] and \
                _full_dose_coming(snap, self._slice_key[1]):
            # the slices follow with the full dose instead of taking the CPU from it (the
            # AR view moves at once; the oncologist's scroll and zoom do not wait)
            return
        self._slice_key = key
        self._last_slices_s = now
        case = self.logic.case
        outlines = self.logic.slice_outlines()
        dose = snap.dose.dose if snap.dose is not None else None
        rx = snap.dose.beam.prescription_gy if snap.dose is not None else 1.0
        isodoses = self.logic.isodose_levels(rx)
        centre = pose[:3, 3].copy()
        size = self.slice_px

        where = {o: (centre + views[o].offset_mm * slice_normal(o), 160.0 / size / views[o].zoom)
                 for o in ORIENTATIONS}

        disc = self.logic.beam.disc_size_mm

        def work() -> list[SliceImage]:
            return [render_slice(case.ct, o, where[o][0], outlines=outlines, dose=dose,
                                 isodoses=isodoses, patient_from_applicator=pose,
                                 disc_mm=disc, size_px=size, pixel_mm=where[o][1])
                    for o in ORIENTATIONS]

        self._slice_future = self._slice_pool.submit(work)

    # --------------------------------------------------------------- shutdown
    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        if event.spontaneous() and not self._quit_confirmed and \
                self.logic.session_log is not None:   # the window manager's close button
            event.ignore()
            self.ask_quit()
            return
        if self.quit_box is not None:
            self.quit_box.close()
        self._closed = True   # signals already queued from the workers are ignored
        self._timer.stop()
        self.logic.capture.on_frame = None
        if self.logic.dose_service is not None and \
                self._dose_listener in self.logic.dose_service.listeners:
            self.logic.dose_service.listeners.remove(self._dose_listener)
        self._slice_pool.shutdown(wait=True, cancel_futures=True)
        self.logic.close()
        self._compositor.close()
        if self.view3d is not None:
            self.view3d.close()
        super().closeEvent(event)


#: Exit code of :func:`run_window` after Ctrl+C (SIGINT), as a shell reports it.
INTERRUPTED = 130


def run_window(logic: MonitorLogic, *, full_screen: bool = False,
               quit_after_s: float | None = None, setup=None) -> int:
    """Create the Qt application and window, run the event loop; returns the exit code
    (:data:`INTERRUPTED` after Ctrl+C).

    Ctrl+C closes the window like Ctrl+Q (workers stopped, the caller closes the session
    log) instead of raising KeyboardInterrupt inside a Qt slot, which aborts the process.
    ``quit_after_s`` closes the window after that many seconds (smoke tests); ``setup``
    is called with the window before it is shown (e.g. trainee mode adds its panel).
    """
    import signal

    interrupted: list[bool] = []
    window: MonitorWindow | None = None

    def on_sigint(_signum, _frame) -> None:
        interrupted.append(True)
        if window is not None:   # close from the event loop, not inside this handler
            QtCore.QTimer.singleShot(0, window.close)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["iort"])
        window = MonitorWindow(logic)
        if setup is not None:
            setup(window)
        window.resize(1600, 900)
        if full_screen:
            window.showFullScreen()
        else:
            window.show()
        if quit_after_s is not None:
            QtCore.QTimer.singleShot(int(quit_after_s * 1000), window.close)
        if interrupted:   # Ctrl+C while the window was being built
            QtCore.QTimer.singleShot(0, window.close)
        # Python runs signal handlers only between bytecodes: a short timer gives it the
        # chance while Qt waits in C
        wake = QtCore.QTimer()
        wake.timeout.connect(lambda: None)
        wake.start(200)
        app.setQuitOnLastWindowClosed(True)
        code = int(app.exec_())
        wake.stop()
    finally:
        signal.signal(signal.SIGINT, previous)
    return INTERRUPTED if interrupted else code


def _grab_rgb(widget: QtWidgets.QWidget) -> np.ndarray:
    """What ``widget`` shows now, as an (H, W, 3) uint8 RGB array."""
    image = widget.grab().toImage().convertToFormat(QtGui.QImage.Format_RGB888)
    width, height, stride = image.width(), image.height(), image.bytesPerLine()
    data = np.frombuffer(image.constBits().asstring(stride * height), np.uint8)
    return data.reshape(height, stride)[:, : 3 * width].reshape(height, width, 3).copy()
