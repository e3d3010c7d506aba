"""Dose engines: electron pencil beam and kV spherical kernels (GPU-free).

Public API (imported lazily so that :mod:`models.beams` can use
:mod:`models.dose.depth_dose` without a cycle)::

    from models.dose import compute_electron_dose, DoseResult, ShieldingDisc
    from models.beams import ElectronBeam
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "compute_electron_dose": "models.dose.electron",
    "DoseResult": "models.dose.electron",
    "ShieldingDisc": "models.dose.electron",
    "output_factor": "models.dose.water",
    "depth_curve": "models.dose.water",
    "ElectronDoseEngine": "models.dose.engine",
    "DoseWorker": "models.dose.engine",
    "compute_kv_dose": "models.dose.kv",
    "KvApplicator": "models.dose.kv",
    "KvDoseResult": "models.dose.kv",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models.dose' has no attribute {name!r}")
