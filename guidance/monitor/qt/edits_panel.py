"""The anatomy edit list in the OR monitor, the tracked retractor, and the mouse in 3D.

:class:`EditsPanel` lists the edits ("BOWEL moved 35 mm, 4 deg") with Undo and Redo; "Grab"
couples the picked organ to the tracked retractor (it follows the retractor live, dose
included) until the button is released, which records the edit; and a "Move in 3D" mode:
pick an organ, then in the 3D view a left drag moves it in the view plane (its centre
follows the mouse), a shift + left drag turns it about the viewing direction; releasing the
mouse button records the move as an edit ("3D view"). While the mode is on the mouse moves
the organ, not the camera. Everything is done by
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
    attach_anatomy,
    view_drag,
)
from models.base.errors import IortError

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
                 frame=None, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.editor = editor
        self.on_change = on_change
        #: ``frame() -> FrameUpdate or None``: the monitor's newest frame (the retractor).
        self.frame = frame or (lambda: None)
        self.follower = RetractorFollower(editor)
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
        self.message = QtWidgets.QLabel("", objectName="edit_message")
        self.message.setWordWrap(True)
        layout.addWidget(self.message, 3, 0, 1, 5)
        self.undo_button.clicked.connect(self.undo)
        self.redo_button.clicked.connect(self.redo)
        self.grab_button.toggled.connect(self._grab_toggled)
        self._follow_timer = QtCore.QTimer(self)
        self._follow_timer.timeout.connect(self.follow)
        self._follow_timer.start(100)
        editor.listeners.append(self.refresh)
        self.refresh()

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
        """Move the grabbed organ to the retractor's newest pose (UI thread, 10 Hz)."""
        if self.follower.coupled:
            self.follower.update(self.frame())

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

    panel = EditsPanel(editor, organs, on_change=changed,
                       frame=lambda: None if window.snapshot is None else window.snapshot.frame)
    layout.addWidget(panel)
    window.view_dragger = (ViewDragger(window.view3d, panel)
                           if window.view3d is not None else None)
    return panel
