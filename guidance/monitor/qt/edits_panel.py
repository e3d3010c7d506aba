"""The anatomy edit list in the OR monitor, the tracked retractor, and the mouse in 3D.

:class:`EditsPanel` lists the edits ("BOWEL moved 35 mm, 4 deg") with Undo and Redo; "Grab"
couples the picked organ to the tracked retractor (it follows the retractor live, dose
included) until the button is released, which records the edit; and a "Move in 3D" mode:
pick an organ, then in the 3D view a left drag moves it in the view plane (its centre
follows the mouse), a shift + left drag turns it about the viewing direction; releasing the
mouse button records the move as an edit ("3D view"). While the mode is on the mouse moves
the organ, not the camera. Below, three tabs make the other edits: **Resect** (a structure
of the case filled with air, saline, soft tissue or fat), **Region** (a sphere or cylinder,
along the beam, centred a depth below the applicator's end face, or a "contour": an outline
drawn on a CT slice with the mouse, extruded through the thickness 'len' about that slice;
resected with a fill) and
**Disc** (material, diameter, thickness, its upstream face a depth below the end face, on
the beam axis). Region and disc use the applicator as tracked now, else the planned pose.
Everything is done by
:class:`guidance.monitor.anatomy.AnatomyEditor` (logic); these widgets only read the mouse
and the buttons. :func:`install_edits_panel` is the window's one hook.
"""

from __future__ import annotations

import html
import logging

import numpy as np
from PyQt5 import QtCore, QtWidgets

from guidance.monitor.anatomy import (
    AnatomyEditor,
    RetractorFollower,
    ScenarioRetraction,
    attach_anatomy,
    view_drag,
)
from models.base.errors import IortError
from models.patient.edits import FILL_HU, KEEPS_ITS_VOXELS, REGION_SHAPES, ResectionRegion

#: How the panel's own edits are recorded (provenance ``how``).
PANEL_HOW = "monitor panel"

log = logging.getLogger(__name__)


class EditsPanel(QtWidgets.QWidget):
    """Edit list, undo/redo and the 3D-view move mode of an :class:`AnatomyEditor`.

    Parameters
    ----------
    editor : AnatomyEditor
    organs : list of str
        What the move mode can pick (the organs drawn in the 3D view).
    on_change : callable, optional
        Called after every change (the window re-renders its 3D view).
    """

    def __init__(self, editor: AnatomyEditor, organs: list[str], *, on_change=None,
                 frame=None, applicator=None,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.editor = editor
        self.on_change = on_change
        #: ``frame() -> FrameUpdate or None``: the monitor's newest frame (the retractor).
        self.frame = frame or (lambda: None)
        #: ``applicator() -> (patient_from_applicator, "tracked" | "planned") or None``:
        #: where the region and the disc are put.
        self.applicator = applicator or (lambda: None)
        self.follower = RetractorFollower(editor)
        #: A simulated procedure's retraction step (:class:`ScenarioRetraction`), or None.
        self.script: ScenarioRetraction | None = None
        self._scripted = None          # the last frame the script saw
        layout = QtWidgets.QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QtWidgets.QLabel("anatomy edits", objectName="caption"), 0, 0, 1, 4)
        self.list = QtWidgets.QListWidget(objectName="edits")
        self.list.setMaximumHeight(90)
        layout.addWidget(self.list, 1, 0, 1, 4)
        self.undo_button = QtWidgets.QPushButton("Undo", objectName="undo_edit")
        self.redo_button = QtWidgets.QPushButton("Redo", objectName="redo_edit")
        self.organ = QtWidgets.QComboBox(objectName="edit_organ")
        self.organ.addItems(organs)
        self.move_button = QtWidgets.QPushButton("Move in 3D", objectName="move_3d")
        self.move_button.setCheckable(True)
        self.move_button.setToolTip("drag: move the organ in the view plane; shift+drag: "
                                    "turn it; release records the edit")
        self.grab_button = QtWidgets.QPushButton("Grab", objectName="grab_retractor")
        self.grab_button.setCheckable(True)
        self.grab_button.setToolTip("the organ follows the tracked retractor until released")
        for col, widget in enumerate((self.undo_button, self.redo_button, self.organ,
                                      self.grab_button, self.move_button)):
            layout.addWidget(widget, 2, col)
        self.tools = QtWidgets.QTabWidget(objectName="edit_tools")
        self.tools.addTab(self._resect_tab(), "Resect")
        self.tools.addTab(self._region_tab(), "Region")
        self.tools.addTab(self._disc_tab(), "Disc")
        layout.addWidget(self.tools, 3, 0, 1, 5)
        self.message = QtWidgets.QLabel("", objectName="edit_message")
        self.message.setWordWrap(True)
        layout.addWidget(self.message, 4, 0, 1, 5)
        self.undo_button.clicked.connect(self.undo)
        self.redo_button.clicked.connect(self.redo)
        self.grab_button.toggled.connect(self._grab_toggled)
        self._follow_timer = QtCore.QTimer(self)
        self._follow_timer.timeout.connect(self.follow)
        self._follow_timer.start(100)
        editor.listeners.append(self.refresh)
        self.refresh()

    # ------------------------------------------------------------ the edit tabs
    @staticmethod
    def _fill_box(name: str) -> QtWidgets.QComboBox:
        box = QtWidgets.QComboBox(objectName=name)
        for fill in FILL_HU:
            box.addItem(fill.replace("_", " "), fill)
        return box

    @staticmethod
    def _mm_box(name: str, value: float, lo: float, hi: float) -> QtWidgets.QDoubleSpinBox:
        box = QtWidgets.QDoubleSpinBox(objectName=name)
        box.setRange(lo, hi)
        box.setDecimals(1)
        box.setSuffix(" mm")
        box.setValue(value)
        return box

    def _resect_tab(self) -> QtWidgets.QWidget:
        tab = QtWidgets.QWidget()
        row = QtWidgets.QHBoxLayout(tab)
        self.resect_structure = QtWidgets.QComboBox(objectName="resect_structure")
        self.resect_structure.addItems(
            [n for n, s in self.editor.original.structures.items()
             if s.roi_type not in KEEPS_ITS_VOXELS])
        self.resect_fill = self._fill_box("resect_fill")
        self.resect_button = QtWidgets.QPushButton("Resect", objectName="resect")
        self.resect_button.setToolTip("empty the structure and fill it with the material")
        self.resect_button.clicked.connect(self.resect)
        for w in (self.resect_structure, QtWidgets.QLabel("fill"), self.resect_fill,
                  self.resect_button):
            row.addWidget(w)
        return tab

    def _region_tab(self) -> QtWidgets.QWidget:
        tab = QtWidgets.QWidget()
        row = QtWidgets.QGridLayout(tab)
        self.region_shape = QtWidgets.QComboBox(objectName="region_shape")
        self.region_shape.addItems(list(REGION_SHAPES))
        self.region_radius = self._mm_box("region_radius_mm", 15.0, 1.0, 100.0)
        self.region_length = self._mm_box("region_length_mm", 20.0, 1.0, 200.0)
        self.region_depth = self._mm_box("region_depth_mm", 15.0, 0.0, 150.0)
        self.region_fill = self._fill_box("region_fill")
        self.region_button = QtWidgets.QPushButton("Resect region", objectName="resect_region")
        self.region_button.setToolTip("a sphere or cylinder (along the beam) centred the "
                                      "depth below the applicator's end face")
        self.region_button.clicked.connect(self.resect_region)
        #: The outline drawn on a slice for a "contour" region: (points_lps, normal_lps).
        self.drawn_outline: tuple[np.ndarray, np.ndarray] | None = None
        #: Slice views that draw when the shape is "contour" (set by install_edits_panel).
        self.slice_views: list = []
        self.region_shape.currentTextChanged.connect(self._shape_changed)
        self._shape_changed(self.region_shape.currentText())
        self._rows(row, [(self.region_shape, QtWidgets.QLabel("r"), self.region_radius,
                          QtWidgets.QLabel("len"), self.region_length),
                         (QtWidgets.QLabel("depth"), self.region_depth, self.region_fill,
                          self.region_button)])
        return tab

    @staticmethod
    def _rows(grid: QtWidgets.QGridLayout, rows) -> None:
        """Two short rows rather than one wide one (the side panel stays narrow)."""
        grid.setContentsMargins(4, 2, 4, 2)
        for r, widgets in enumerate(rows):
            for c, w in enumerate(widgets):
                grid.addWidget(w, r, c)

    def _disc_tab(self) -> QtWidgets.QWidget:
        from models.dose.materials import shield_materials

        tab = QtWidgets.QWidget()
        row = QtWidgets.QGridLayout(tab)
        self.disc_material = QtWidgets.QComboBox(objectName="disc_material")
        self.disc_material.addItems(list(shield_materials()))
        self.disc_diameter = self._mm_box("disc_diameter_mm", 80.0, 10.0, 200.0)
        self.disc_thickness = self._mm_box("disc_thickness_mm", 3.0, 0.5, 20.0)
        self.disc_depth = self._mm_box("disc_depth_mm", 30.0, 1.0, 150.0)
        self.disc_button = QtWidgets.QPushButton("Place disc", objectName="place_disc")
        self.disc_button.setToolTip("normal to the beam, its upstream face the depth below "
                                    "the applicator's end face")
        self.disc_button.clicked.connect(self.place_disc)
        self._rows(row, [(self.disc_material, QtWidgets.QLabel("\u2300"), self.disc_diameter,
                          QtWidgets.QLabel("t"), self.disc_thickness),
                         (QtWidgets.QLabel("depth"), self.disc_depth, self.disc_button)])
        return tab

    def _applicator_pose(self) -> tuple[np.ndarray, str]:
        got = self.applicator()
        if got is None:
            raise IortError("no applicator pose (neither tracked nor planned): show the "
                            "applicator to the camera")
        return got

    def resect(self) -> None:
        """The Resect button: the chosen structure filled with the chosen material."""
        name = self.resect_structure.currentText()
        self._try(lambda: self.editor.resect(name, fill=self.resect_fill.currentData(),
                                             how=PANEL_HOW))

    def _shape_changed(self, shape: str) -> None:
        """Cylinder: length; contour: thickness, and the slices draw."""
        self.region_length.setEnabled(shape in ("cylinder", "contour"))
        self.region_radius.setEnabled(shape != "contour")
        self.region_depth.setEnabled(shape != "contour")
        for view in self.slice_views:
            view.drawing = shape == "contour"
        if shape == "contour":
            self.show_message("draw the region's outline on a slice (press, drag around it, "
                              "release); 'len' is its thickness", error=False)

    def outline_drawn(self, points_lps: np.ndarray, normal_lps: np.ndarray) -> None:
        """A slice view's outline: kept for the next Resect region (checked now)."""
        try:
            ResectionRegion.drawn(points_lps, normal_lps, self.region_length.value())
        except IortError as exc:
            self.drawn_outline = None
            self.show_message(f"drawing refused: {exc}", error=True)
            return
        self.drawn_outline = (np.asarray(points_lps, float), np.asarray(normal_lps, float))
        self.show_message(f"outline of {len(points_lps)} points drawn: press Resect region")

    def resect_region(self) -> None:
        """The Resect region button: a sphere / cylinder at the applicator's tip, or the
        outline drawn on a slice extruded through the thickness ("contour")."""
        if self.region_shape.currentText() == "contour":
            self._try(self._resect_drawn)
            return

        def make() -> None:
            pose, source = self._applicator_pose()
            region = ResectionRegion.below_applicator(
                self.region_shape.currentText(), pose, self.region_depth.value(),
                self.region_radius.value(), self.region_length.value())
            self.editor.resect_region(region, fill=self.region_fill.currentData(),
                                      how=f"{PANEL_HOW}, {source} applicator")
        self._try(make)

    def _resect_drawn(self) -> None:
        if self.drawn_outline is None:
            raise IortError("no outline drawn: with the shape 'contour', draw around the "
                            "region on a slice first")
        points, normal = self.drawn_outline
        region = ResectionRegion.drawn(points, normal, self.region_length.value())
        self.editor.resect_region(region, fill=self.region_fill.currentData(),
                                  how=f"{PANEL_HOW}, drawn on a slice")
        self.drawn_outline = None
        for view in self.slice_views:
            view.outline_px = []
            view.update()

    def place_disc(self) -> None:
        """The Place disc button: the disc on the applicator's axis, at the depth."""
        def make() -> None:
            pose, source = self._applicator_pose()
            self.editor.place_disc(self.disc_material.currentText(),
                                   self.disc_diameter.value(), self.disc_thickness.value(),
                                   pose, self.disc_depth.value(),
                                   how=f"{PANEL_HOW}, {source} applicator")
        self._try(make)

    def _try(self, make) -> None:
        try:
            make()
            self.show_message("")
        except IortError as exc:      # refused: one message, nothing applied
            self.show_message(str(exc), error=True)

    def refresh(self) -> None:
        """Show the edit list as it is now."""
        lines = [f"{n}. {text}, by {edit.provenance.how}" for n, (text, edit) in
                 enumerate(zip(self.editor.descriptions(), self.editor.edits, strict=True), 1)]
        moving = self.editor.preview_structure
        if moving is not None:
            now = [o.description for o in self.editor.outlines() if o.structure == moving]
            lines.append("moving: " + (now[0] if now else moving))
        self.list.clear()
        self.list.addItems(lines or ["(none: the preoperative anatomy)"])
        self.undo_button.setEnabled(len(self.editor.edits) > 0)
        if self.on_change is not None:
            self.on_change()

    def _grab_toggled(self, on: bool) -> None:
        try:
            if on:
                self.follower.grab(self.organ.currentText(), self.frame())
                self.show_message(f"{self.organ.currentText()} follows the retractor: "
                                  "release to record")
            else:
                self.follower.release()
                self.show_message("")
        except IortError as exc:
            self.show_message(str(exc), error=True)
            self.grab_button.blockSignals(True)
            self.grab_button.setChecked(False)
            self.grab_button.blockSignals(False)

    def follow(self) -> None:
        """Move the grabbed organ to the retractor's newest pose (UI thread, 10 Hz); a
        simulated procedure's retraction step grabs and releases by itself."""
        frame = self.frame()
        # the script steps once per new frame, and not in a closed window (frames still
        # queued when the monitor stopped must not grab: its session log may be closed)
        if self.script is not None and frame is not None and frame is not self._scripted \
                and self.isVisible():
            self._scripted = frame
            try:
                done = self.script.step(frame)
            except IortError as exc:           # e.g. the release refused by the case
                self.show_message(f"simulated retraction: {exc}", error=True)
                done = None
            if done is not None:
                self._show_grab(done == "grab")
        if self.follower.coupled:
            self.follower.update(frame)

    def _show_grab(self, on: bool) -> None:
        """The Grab button and message as the simulated retractor grabs / releases."""
        self.grab_button.blockSignals(True)
        self.grab_button.setChecked(on)
        self.grab_button.blockSignals(False)
        organ = self.script.structure
        self.show_message(f"{organ} follows the simulated retractor" if on
                          else f"{organ} released by the simulated retractor: edit recorded")

    def undo(self) -> None:
        self.editor.undo()

    def redo(self) -> None:
        self.editor.redo()

    def show_message(self, text: str, *, error: bool = False) -> None:
        self.message.setStyleSheet("color: #ff6a6a;" if error else "")
        self.message.setText(html.escape(text))


class ViewDragger(QtCore.QObject):
    """Mouse drags in a pyvistaqt view move the picked organ while the move mode is on."""

    def __init__(self, view3d, panel: EditsPanel) -> None:
        super().__init__(view3d)
        self.view3d = view3d
        self.panel = panel
        self._start: QtCore.QPoint | None = None
        self._rotate = False
        view3d.installEventFilter(self)

    @property
    def active(self) -> bool:
        return self.panel.move_button.isChecked() and bool(self.panel.organ.currentText())

    def _centre(self, name: str) -> np.ndarray:
        editor = self.panel.editor
        c = editor.original.centroid_lps(name)
        m = editor.retraction_of(name)
        return m[:3, :3] @ c + m[:3, 3]

    def move_for(self, dx_px: float, dy_px: float, *, rotate: bool) -> np.ndarray:
        """The organ move for a drag of (dx, dy) pixels in the view as it is now."""
        cam = self.view3d.camera
        return view_drag(np.asarray(cam.position), np.asarray(cam.focal_point),
                         np.asarray(cam.up), float(cam.view_angle),
                         self.view3d.height(), self._centre(self.panel.organ.currentText()),
                         dx_px, dy_px, rotate=rotate)

    def eventFilter(self, obj, event) -> bool:
        if not self.active:
            return False
        kind = event.type()
        if kind == QtCore.QEvent.MouseButtonPress and event.button() == QtCore.Qt.LeftButton:
            self._start = event.pos()
            self._rotate = bool(event.modifiers() & QtCore.Qt.ShiftModifier)
            return True
        if kind == QtCore.QEvent.MouseMove and self._start is not None:
            delta = event.pos() - self._start
            self._preview(delta.x(), delta.y())
            return True
        if kind == QtCore.QEvent.MouseButtonRelease and self._start is not None:
            delta = event.pos() - self._start
            self._start = None
            if delta.manhattanLength() == 0:
                self.panel.editor.cancel_preview()
                return True
            self._preview(delta.x(), delta.y())
            try:
                self.panel.editor.commit_preview(how="3D view")
                self.panel.show_message("")
            except IortError as exc:
                self.panel.editor.cancel_preview()
                self.panel.show_message(str(exc), error=True)
            return True
        return kind in (QtCore.QEvent.MouseButtonPress, QtCore.QEvent.MouseButtonRelease,
                        QtCore.QEvent.MouseMove, QtCore.QEvent.Wheel)

    def _preview(self, dx_px: int, dy_px: int) -> None:
        name = self.panel.organ.currentText()
        try:
            self.panel.editor.preview(name, self.move_for(dx_px, dy_px, rotate=self._rotate))
        except IortError as exc:
            self.panel.show_message(str(exc), error=True)


def install_edits_panel(window, layout: QtWidgets.QBoxLayout) -> EditsPanel:
    """The window's hook: attach the anatomy editor to its logic (if not yet), add the
    panel to ``layout`` and the mouse mode to its 3D view (if any)."""
    logic = window.logic
    editor = logic.anatomy if logic.anatomy is not None else attach_anatomy(logic)
    organs = [n for n in logic.scene.items if n in editor.original.structures
              and n != logic.target]
    def changed() -> None:
        window._scene_changed()      # the 3D view now
        window._slice_key = None     # the slices at their next refresh (edited CT, outlines)

    def applicator() -> tuple[np.ndarray, str]:
        snap = window.snapshot
        if snap is not None and snap.applicator_pose is not None:
            return snap.applicator_pose, "tracked"
        return logic.plan, "planned"

    panel = EditsPanel(editor, organs, on_change=changed,
                       frame=lambda: None if window.snapshot is None else window.snapshot.frame,
                       applicator=applicator)
    layout.addWidget(panel)
    scenario = getattr(logic.capture.feed, "scenario", None)
    if scenario is not None and getattr(scenario, "retraction_frames", 0):
        panel.script = ScenarioRetraction(panel.follower, scenario)
    panel.slice_views = list(getattr(window, "slice_views", {}).values())
    for view in panel.slice_views:
        view.outline_drawn.connect(panel.outline_drawn)
    window.view_dragger = (ViewDragger(window.view3d, panel)
                           if window.view3d is not None else None)
    return panel
