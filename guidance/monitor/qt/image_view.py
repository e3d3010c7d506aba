"""Image widgets of the OR monitor: a letterboxed RGB view with a placeholder text before its
first image (never a black window at start)."""

from __future__ import annotations

import numpy as np
from PyQt5 import QtCore, QtGui, QtWidgets


def numpy_to_qimage(rgb: np.ndarray) -> QtGui.QImage:
    """Copy an (H, W, 3) uint8 RGB array into a QImage."""
    rgb = np.ascontiguousarray(rgb)
    height, width = rgb.shape[:2]
    return QtGui.QImage(rgb.data, width, height, 3 * width,
                        QtGui.QImage.Format_RGB888).copy()


class ImageView(QtWidgets.QWidget):
    """Shows an RGB image scaled uniformly to fit, centred on black (letterbox)."""

    #: Height (px) of the placeholder text shown before the first image.
    PLACEHOLDER_PX = 22

    def __init__(self, parent: QtWidgets.QWidget | None = None, *, min_size=(160, 120),
                 placeholder: str = ""):
        super().__init__(parent)
        self.setMinimumSize(*min_size)
        self.placeholder = placeholder
        self.image: np.ndarray | None = None
        self._qimage: QtGui.QImage | None = None
        self.setSizePolicy(QtWidgets.QSizePolicy.Expanding, QtWidgets.QSizePolicy.Expanding)

    def set_image(self, rgb: np.ndarray) -> None:
        self.image = rgb
        self._qimage = numpy_to_qimage(rgb)
        self.update()

    def image_rect(self) -> QtCore.QRectF:
        """Where the image is drawn in widget coordinates (uniform scale)."""
        if self._qimage is None:
            return QtCore.QRectF()
        w, h = self._qimage.width(), self._qimage.height()
        scale = min(self.width() / w, self.height() / h)
        dw, dh = w * scale, h * scale
        return QtCore.QRectF((self.width() - dw) / 2.0, (self.height() - dh) / 2.0, dw, dh)

    def widget_point(self, u_px: float, v_px: float) -> tuple[float, float]:
        """Widget coordinates of image pixel centre (u, v) (OpenCV convention)."""
        rect = self.image_rect()
        scale = rect.width() / self._qimage.width()
        return rect.x() + (u_px + 0.5) * scale, rect.y() + (v_px + 0.5) * scale

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:
        painter = QtGui.QPainter(self)
        painter.fillRect(self.rect(), QtGui.QColor(0, 0, 0))
        if self._qimage is not None:
            painter.setRenderHint(QtGui.QPainter.SmoothPixmapTransform, True)
            painter.drawImage(self.image_rect(), self._qimage)
            self.paint_over(painter)
        elif self.placeholder:   # before the first image: say what is coming
            painter.fillRect(self.rect(), QtGui.QColor(0x26, 0x2a, 0x30))
            font = painter.font()
            font.setPixelSize(self.PLACEHOLDER_PX)
            font.setBold(True)
            painter.setFont(font)
            painter.setPen(QtGui.QColor(0xc8, 0xcc, 0xd2))
            painter.drawText(self.rect(), QtCore.Qt.AlignCenter | QtCore.Qt.TextWordWrap,
                             self.placeholder)
        painter.end()

    def paint_over(self, painter: QtGui.QPainter) -> None:
        """Draw on top of the image (subclasses: labels, markers); nothing here."""
