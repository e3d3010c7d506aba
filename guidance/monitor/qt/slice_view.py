"""A CT slice view of the OR monitor: patient direction letters on its edges, mouse wheel
to move through the volume, Ctrl+wheel to zoom, double click to go back to the applicator;
with :attr:`SliceView.drawing` on, press-drag-release draws a closed outline (a region to
resect)."""

from __future__ import annotations

import numpy as np
from PyQt5 import QtCore, QtGui, QtWidgets

from guidance.monitor.qt.image_view import ImageView
from guidance.render.slices import edge_labels

#: Step of one wheel notch (mm) and zoom factor per Ctrl+wheel notch; zoom limits.
SCROLL_STEP_MM = 2.0
ZOOM_STEP = 1.25
ZOOM_RANGE = (0.5, 4.0)
#: Height (px) of the direction letters (A/P/L/R/S/I).
LABEL_PX = 20


class SliceView(ImageView):
    """One slice orientation; ``offset_mm`` (along the slice normal) and ``zoom`` are the
    user's, read by the window when it renders the slice. Emits :attr:`view_changed`."""

    view_changed = QtCore.pyqtSignal()
    #: A closed outline was drawn: its points (N, 3) in patient LPS mm and the slice's unit
    #: normal (3,), both numpy arrays.
    outline_drawn = QtCore.pyqtSignal(object, object)

    def __init__(self, orientation: str, parent: QtWidgets.QWidget | None = None, *,
                 min_size=(160, 160)) -> None:
        super().__init__(parent, min_size=min_size, placeholder=f"{orientation}: no slice yet")
        self.orientation = orientation
        self.labels = edge_labels(orientation)
        self.offset_mm = 0.0
        self.zoom = 1.0
        #: ``patient_from_pixel`` of the slice shown (set with its image).
        self.patient_from_pixel = None
        #: Press-drag-release draws an outline (the edits panel's "contour" region).
        self.drawing = False
        #: The outline being drawn, or the last one drawn, in image pixels (u, v).
        self.outline_px: list[tuple[float, float]] = []

    def mousePressEvent(self, event: QtGui.QMouseEvent) -> None:
        if not (self.drawing and event.button() == QtCore.Qt.LeftButton
                and self._qimage is not None and self.patient_from_pixel is not None):
            super().mousePressEvent(event)
            return
        self.outline_px = [self.image_pixel(event.x(), event.y())]
        event.accept()

    def mouseMoveEvent(self, event: QtGui.QMouseEvent) -> None:
        if self.drawing and self.outline_px and event.buttons() & QtCore.Qt.LeftButton:
            u, v = self.image_pixel(event.x(), event.y())
            last = self.outline_px[-1]
            if (u - last[0]) ** 2 + (v - last[1]) ** 2 >= 1.0:   # a point per pixel moved
                self.outline_px.append((u, v))
                self.update()
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QtGui.QMouseEvent) -> None:
        if not (self.drawing and self.outline_px and event.button() == QtCore.Qt.LeftButton):
            super().mouseReleaseEvent(event)
            return
        event.accept()
        self.update()
        if len(self.outline_px) < 3:
            return
        pixels = np.array([[u, v, 0.0, 1.0] for u, v in self.outline_px])
        points = (pixels @ np.asarray(self.patient_from_pixel, float).T)[:, :3]
        normal = np.cross(self.patient_from_pixel[:3, 0], self.patient_from_pixel[:3, 1])
        self.outline_drawn.emit(points, normal / np.linalg.norm(normal))

    def wheelEvent(self, event: QtGui.QWheelEvent) -> None:
        notches = event.angleDelta().y() / 120.0
        if not notches:
            return
        if event.modifiers() & QtCore.Qt.ControlModifier:
            self.zoom = min(max(self.zoom * ZOOM_STEP ** notches, ZOOM_RANGE[0]), ZOOM_RANGE[1])
        else:
            self.offset_mm += SCROLL_STEP_MM * notches
        event.accept()
        self.view_changed.emit()
        self.update()

    def mouseDoubleClickEvent(self, event: QtGui.QMouseEvent) -> None:
        self.offset_mm, self.zoom = 0.0, 1.0
        self.view_changed.emit()
        self.update()

    def paint_over(self, painter: QtGui.QPainter) -> None:
        rect = self.image_rect()
        font = painter.font()
        font.setPixelSize(LABEL_PX)
        font.setBold(True)
        painter.setFont(font)
        pad = 4.0
        box = rect.adjusted(pad, pad, -pad, -pad)
        placement = {"left": QtCore.Qt.AlignLeft | QtCore.Qt.AlignVCenter,
                     "right": QtCore.Qt.AlignRight | QtCore.Qt.AlignVCenter,
                     "top": QtCore.Qt.AlignTop | QtCore.Qt.AlignHCenter,
                     "bottom": QtCore.Qt.AlignBottom | QtCore.Qt.AlignHCenter}
        for side, letter in self.labels.items():
            _outlined_text(painter, box, placement[side], letter)
        if self.outline_px:
            pen = QtGui.QPen(QtGui.QColor(0, 230, 255))
            pen.setWidth(2)
            painter.setPen(pen)
            polygon = QtGui.QPolygonF([QtCore.QPointF(*self.widget_point(u, v))
                                       for u, v in self.outline_px])
            painter.drawPolygon(polygon)
        if self.offset_mm or self.zoom != 1.0:
            _outlined_text(painter, box, QtCore.Qt.AlignLeft | QtCore.Qt.AlignBottom,
                           f"{self.offset_mm:+.0f} mm  x{self.zoom:.2g}")


def _outlined_text(painter: QtGui.QPainter, box: QtCore.QRectF, flags, text: str) -> None:
    """Yellow text with a black outline: readable over bone and over air."""
    painter.setPen(QtGui.QColor(0, 0, 0))
    for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        painter.drawText(box.translated(dx, dy), int(flags), text)
    painter.setPen(QtGui.QColor(255, 230, 90))
    painter.drawText(box, int(flags), text)
