"""The oncologist's shielding disc, bolus and kV applicator controls (OR monitor).

Material, diameter, thickness and depth of the disc, the bolus under the end face, and a
kV spherical applicator instead of the electron beam; a red line names the hot spot when
the light's reasons have one (e.g. backscatter from a lead disc into the pancreas).
"""

from __future__ import annotations

from dataclasses import replace

from PyQt5 import QtCore, QtWidgets

from guidance.treatment.dose_service import BeamChoice, BeamOptions

#: Text of the diameter spin box at its "auto" value (the applicator's diameter + 20 mm).
AUTO_DIAMETER = "auto (applicator + 20)"


class DiscPanel(QtWidgets.QWidget):
    """Selectors for :class:`BeamChoice`'s disc, bolus and kV fields; :attr:`changed` fires
    on every edit (the window then sets the beam)."""

    changed = QtCore.pyqtSignal()

    def __init__(self, options: BeamOptions, beam: BeamChoice,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        self.material = QtWidgets.QComboBox()
        for name in options.discs:
            self.material.addItem(name, name)
        self.diameter = self._spin(0.0, 200.0, 5.0, " mm")
        self.diameter.setSpecialValueText(AUTO_DIAMETER)
        self.thickness = self._spin(0.5, 10.0, 0.5, " mm")
        self.depth = self._spin(2.0, 100.0, 1.0, " mm")
        self.bolus = self._spin(0.0, 30.0, 1.0, " mm")
        self.kv = QtWidgets.QComboBox()
        self.kv.addItem("electron beam", None)
        for diameter in options.kv_diameters_mm:
            self.kv.addItem(f"kV sphere {diameter:g} mm", float(diameter))
        columns = [("disc", self.material), ("disc diameter", self.diameter),
                   ("thickness", self.thickness), ("depth", self.depth),
                   ("bolus", self.bolus), ("applicator type", self.kv)]
        for col, (label, widget) in enumerate(columns):
            grid.addWidget(QtWidgets.QLabel(label, objectName="caption"), 0, col)
            grid.addWidget(widget, 1, col)
        self.hot_label = QtWidgets.QLabel("", objectName="hotspot")
        self.hot_label.setWordWrap(True)
        self.hot_label.setStyleSheet("color: #ff6a6a; font-size: 20px; font-weight: bold;")
        grid.addWidget(self.hot_label, 2, 0, 1, len(columns))
        self.set_beam(beam)
        for combo in (self.material, self.kv):
            combo.currentIndexChanged.connect(self._edited)
        for spin in (self.diameter, self.thickness, self.depth, self.bolus):
            spin.valueChanged.connect(self._edited)

    @staticmethod
    def _spin(low: float, high: float, step: float, suffix: str) -> QtWidgets.QDoubleSpinBox:
        spin = QtWidgets.QDoubleSpinBox()
        spin.setRange(low, high)
        spin.setSingleStep(step)
        spin.setDecimals(1)
        spin.setSuffix(suffix)
        spin.setKeyboardTracking(False)   # one recompute per value, not per digit typed
        return spin

    def set_beam(self, beam: BeamChoice) -> None:
        """Show ``beam``'s values (no :attr:`changed`)."""
        widgets = (self.material, self.kv, self.diameter, self.thickness, self.depth,
                   self.bolus)
        for widget in widgets:
            widget.blockSignals(True)
        self.material.setCurrentIndex(max(0, self.material.findData(beam.disc)))
        kv_index = self.kv.findData(beam.kv_diameter_mm) if beam.kv_diameter_mm else 0
        self.kv.setCurrentIndex(max(0, kv_index))
        self.diameter.setValue(beam.disc_diameter_mm or 0.0)
        self.thickness.setValue(beam.disc_thickness_mm)
        self.depth.setValue(beam.disc_depth_mm)
        self.bolus.setValue(beam.bolus_mm)
        for widget in widgets:
            widget.blockSignals(False)
        self._enable()

    def apply(self, beam: BeamChoice) -> BeamChoice:
        """``beam`` with the panel's disc, bolus and kV values."""
        kv = self.kv.currentData()
        return replace(beam, disc=str(self.material.currentData()),
                       disc_diameter_mm=self.diameter.value() or None,
                       disc_thickness_mm=self.thickness.value(),
                       disc_depth_mm=self.depth.value(), bolus_mm=self.bolus.value(),
                       kv_diameter_mm=None if kv is None else float(kv))

    def show_reasons(self, reasons: tuple[str, ...] | list[str]) -> None:
        """Show the hot-spot reason of the light, if any, large and red."""
        hot = [r for r in reasons if r.startswith("hot spot")]
        self.hot_label.setText(("HOT SPOT" + hot[0][len("hot spot"):]) if hot else "")
        self.hot_label.setVisible(bool(hot))

    def _edited(self) -> None:
        self._enable()
        self.changed.emit()

    def _enable(self) -> None:
        electron = self.kv.currentData() is None
        with_disc = electron and self.material.currentData() != "none"
        self.material.setEnabled(electron)
        self.bolus.setEnabled(electron)
        for spin in (self.diameter, self.thickness, self.depth):
            spin.setEnabled(with_disc)
