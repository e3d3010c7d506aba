"""Per-structure switches of the AR view (OR monitor): one checkable button per scene item,
its name in its colour; what is unchecked is not drawn over the video."""

from __future__ import annotations

from collections.abc import Iterable

from PyQt5 import QtCore, QtWidgets

#: Labels of the items that are not structures.
ITEM_LABELS = {"planned_applicator": "planned ghost", "isodose": "Rx isodose"}
COLUMNS = 3


class StructureToggles(QtWidgets.QWidget):
    """``items``: (name, RGB 0-1) in display order; ``shown``: the names checked at start.
    :attr:`changed` fires when the user switches one."""

    changed = QtCore.pyqtSignal()

    def __init__(self, items: Iterable[tuple[str, tuple[float, float, float]]],
                 shown: set[str], parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(4)
        grid.addWidget(QtWidgets.QLabel("AR shows:", objectName="caption"), 0, 0, 1, COLUMNS)
        self.buttons: dict[str, QtWidgets.QPushButton] = {}
        for n, (name, rgb) in enumerate(items):
            button = QtWidgets.QPushButton(ITEM_LABELS.get(name, name))
            button.setCheckable(True)
            button.setChecked(name in shown)
            r, g, b = (round(255 * c) for c in rgb)
            button.setStyleSheet(
                f"QPushButton {{ color: rgb({r},{g},{b}); font-size: 16px; font-weight: bold;"
                " padding: 3px 6px; } QPushButton:checked { background-color: #3a4352; "
                "border: 2px solid #9aa7b8; } QPushButton:!checked { color: #6a6f76; }")
            button.toggled.connect(self.changed)
            grid.addWidget(button, 1 + n // COLUMNS, n % COLUMNS)
            self.buttons[name] = button

    def shown(self) -> set[str]:
        """Names switched on."""
        return {name for name, button in self.buttons.items() if button.isChecked()}
