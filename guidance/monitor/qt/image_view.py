"""Image widgets of the OR monitor: a letterboxed RGB view with a placeholder text before its
first image (never a black window at start)."""

from __future__ import annotations

import cv2
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
        self.source_size: tuple[int, int] | None = None
        self._qimage: QtGui.QImage | None = None
        self._shown: QtGui.QImage | None = None    # the image at the size it is drawn
        self.setSizePolicy(QtWidgets.QSizePolicy.Expanding, QtWidgets.QSizePolicy.Expanding)

    def set_image(self, rgb: np.ndarray, *, source_size: tuple[int, int] | None = None
                  ) -> None:
        """Show ``rgb`` (H, W, 3 uint8). ``source_size`` (w, h) px: the pixel grid that
        :meth:`widget_point` and :meth:`image_pixel` speak of, when ``rgb`` is a resized
        copy of it (the AR view gets the video already at the size it is shown); by
        default the image's own."""
        self.image = rgb
        self.source_size = (rgb.shape[1], rgb.shape[0]) if source_size is None else \
            (int(source_size[0]), int(source_size[1]))
        self._qimage = numpy_to_qimage(rgb)
        self._shown = None
        self.update()

    def _shown_image(self, size: tuple[int, int]) -> QtGui.QImage:
        """The image resized to ``size`` (w, h) px by OpenCV (area average down, linear
        up): a few ms, where Qt's smooth scaling in the paint took about 5 at 720p."""
        if self._shown is None or (self._shown.width(), self._shown.height()) != size:
            if size == (self._qimage.width(), self._qimage.height()):
                self._shown = self._qimage
            else:
                shrink = size[0] < self._qimage.width()
                self._shown = numpy_to_qimage(cv2.resize(
                    np.asarray(self.image), size,
                    interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR))
        return self._shown

    def image_rect(self) -> QtCore.QRectF:
        """Where the image is drawn in widget coordinates (uniform scale)."""
        if self._qimage is None:
            return QtCore.QRectF()
        w, h = self._qimage.width(), self._qimage.height()
        scale = min(self.width() / w, self.height() / h)
        dw, dh = w * scale, h * scale
        return QtCore.QRectF((self.width() - dw) / 2.0, (self.height() - dh) / 2.0, dw, dh)

    def widget_point(self, u_px: float, v_px: float) -> tuple[float, float]:
        """Widget coordinates of pixel centre (u, v) of the source image (OpenCV
        convention)."""
        rect = self.image_rect()
        scale = rect.width() / self.source_size[0]
        return rect.x() + (u_px + 0.5) * scale, rect.y() + (v_px + 0.5) * scale

    def image_pixel(self, x: float, y: float) -> tuple[float, float]:
        """Source image pixel (u, v) under widget point (x, y) (the inverse of
        :meth:`widget_point`)."""
        rect = self.image_rect()
        scale = rect.width() / self.source_size[0]
        return (x - rect.x()) / scale - 0.5, (y - rect.y()) / scale - 0.5

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:
        painter = QtGui.QPainter(self)
        painter.fillRect(self.rect(), QtGui.QColor(0, 0, 0))
        if self._qimage is not None:
            rect = self.image_rect()
            size = (max(1, round(rect.width())), max(1, round(rect.height())))
            painter.drawImage(QtCore.QPointF(rect.x(), rect.y()), self._shown_image(size))
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
