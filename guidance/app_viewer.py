"""A minimal Qt window that plays the demo's overlay frames (Qt lives only in app modules).

The full OR monitor is :mod:`guidance.app`; this viewer only replays images, so that
``iort demo`` on a machine with a display shows what it computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def show_frames(images: Sequence[Path], *, title: str = "iort", fps: float = 15.0) -> None:
    """Open a window that loops over ``images``; Esc or Q closes it."""
    from PyQt5 import QtCore, QtGui, QtWidgets

    if not images:
        return
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    label = QtWidgets.QLabel()
    label.setWindowTitle(title)
    label.setAlignment(QtCore.Qt.AlignCenter)
    label.setStyleSheet("background: black;")
    pixmaps = [QtGui.QPixmap(str(p)) for p in images]
    state = {"index": 0}

    def advance() -> None:
        label.setPixmap(pixmaps[state["index"] % len(pixmaps)])
        state["index"] += 1

    shortcut_close = [QtWidgets.QShortcut(QtGui.QKeySequence(key), label, label.close)
                      for key in ("Esc", "Q")]
    timer = QtCore.QTimer(label)
    timer.timeout.connect(advance)
    timer.start(int(1000 / fps))
    advance()
    label.resize(pixmaps[0].size())
    label.show()
    app.exec_()
    del shortcut_close
