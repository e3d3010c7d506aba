"""Dose engine for the live loop: warm-up, reuse when the pose barely moved.

* :class:`ElectronDoseEngine` holds one CT (converted once to a contiguous float32 array)
  and computes :class:`~models.dose.electron.DoseResult` for a pose and beam. Per-beam
  tables are cached (:func:`~models.dose.electron.electron_model`), so a pose change only
  re-samples the CT along the new beam and re-spreads the pencils; a pose that moved less
  than ``min_move_mm`` / ``min_turn_deg`` with the same beam and options returns the last
  result at once, and a new prescription or isodose only rescales it (dose is linear).
* :func:`warm_up` compiles (or loads from numba's on-disk cache) every kernel on a tiny
  problem; call it at start-up, before the first tracked frame.
* The numba kernels release the GIL (``nogil=True``), so the live dose service
  (``guidance.treatment.dose_service``, which runs this engine on a worker thread) never
  stalls a UI thread.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np

from models.base.errors import InputError
from models.base.transforms import transform_difference
from models.base.validation import as_transform
from models.beams.library import BeamLibrary, ElectronBeam
from models.dose.electron import DoseResult, ShieldingDisc, compute_electron_dose
from models.patient.volume import Volume

log = logging.getLogger(__name__)


def warm_up() -> float:
    """Compile or load every dose kernel on a tiny problem; returns the time taken (s)."""
    from models.dose.kv import compute_kv_dose
    from models.dose.water import water_phantom, water_pose

    start = time.perf_counter()
    # large enough to hold the whole 6 MeV beam (no "beam outside the CT" warning)
    ct = water_phantom(half_width_mm=40.0, depth_mm=60.0, spacing_mm=4.0)
    beam = ElectronBeam("liac", 6.0, 30.0)
    compute_electron_dose(ct, water_pose(0.0), beam, grid_mm=4.0)
    compute_electron_dose(ct, water_pose(0.0), beam, grid_mm=4.0, fast=False)
    kv_pose = np.eye(4)
    kv_pose[:3, 3] = [0.0, 0.0, 15.0]
    compute_kv_dose(ct, kv_pose, 15.0, grid_mm=4.0, max_depth_mm=8.0)
    elapsed = time.perf_counter() - start
    log.info("dose kernels ready in %.2f s", elapsed)
    return elapsed


@dataclass(frozen=True)
class DoseRequest:
    """Everything that defines one electron dose computation (hashable options)."""

    patient_from_applicator: np.ndarray = field(compare=False)
    beam: ElectronBeam
    prescription_gy: float = 10.0
    isodose_percent: float = 90.0
    bolus_mm: float = 0.0
    disc: ShieldingDisc | None = None
    dose_to: str = "water"
    model: str = "full"

    def geometry(self) -> tuple:
        """What changes the dose distribution's shape (besides the pose)."""
        return (self.beam, self.bolus_mm, self.disc, self.dose_to, self.model)

    def options(self) -> tuple:
        """The non-pose part, compared to decide whether a cached result can be reused."""
        return (*self.geometry(), self.prescription_gy, self.isodose_percent)


class ElectronDoseEngine:
    """Electron dose for one CT, fast on repeated poses (see the module docstring).

    Parameters
    ----------
    ct : Volume
        CT in HU.
    library : BeamLibrary, optional
        Beam data (default: shipped).
    grid_mm : float, default 2
        Dose grid spacing.
    min_move_mm, min_turn_deg : float
        Pose changes below both thresholds reuse the previous result.

    Examples
    --------
    >>> from models.dose.water import water_phantom, water_pose
    >>> engine = ElectronDoseEngine(water_phantom(spacing_mm=2.0))
    >>> result = engine.compute(water_pose(0.0), ElectronBeam("liac", 6.0, 50.0))
    >>> round(result.isodose_gy(), 3)
    10.0
    """

    def __init__(self, ct: Volume, library: BeamLibrary | None = None, *,
                 grid_mm: float = 2.0, min_move_mm: float = 0.2,
                 min_turn_deg: float = 0.1) -> None:
        if not isinstance(ct, Volume):
            raise TypeError(f"ct must be a Volume, got {type(ct).__name__}")
        self.ct = Volume(np.ascontiguousarray(ct.array, dtype=np.float32),
                         ct.patient_from_voxel)
        self.library = library
        self.grid_mm = float(grid_mm)
        self.min_move_mm = float(min_move_mm)
        self.min_turn_deg = float(min_turn_deg)
        self._last: tuple[DoseRequest, DoseResult] | None = None
        self._lock = threading.Lock()

    def warm_up(self) -> float:
        """Compile/load the kernels (see :func:`warm_up`); returns seconds."""
        return warm_up()

    def compute(self, patient_from_applicator: np.ndarray, beam: ElectronBeam, *,
                prescription_gy: float = 10.0, isodose_percent: float = 90.0,
                bolus_mm: float = 0.0, disc: ShieldingDisc | None = None,
                dose_to: str = "water", model: str = "full") -> DoseResult:
        """Dose for a pose and beam (Gy on a beam-aligned grid).

        Reuses the last result when the pose moved less than the thresholds with the same
        beam, bolus, disc, ``dose_to`` and ``model``; a changed prescription or isodose only
        rescales it. ``model="preview"`` while the applicator is dragged, ``"full"`` once it
        rests (see :func:`models.dose.electron.compute_electron_dose`).
        """
        pose = as_transform(patient_from_applicator, name="patient_from_applicator",
                            rigid=True)
        request = DoseRequest(pose, beam, float(prescription_gy), float(isodose_percent),
                              float(bolus_mm), disc, dose_to, model)
        with self._lock:
            last = self._last
        if last is not None and last[0].geometry() == request.geometry():
            move_mm, turn_deg = transform_difference(pose, last[0].patient_from_applicator)
            if move_mm < self.min_move_mm and turn_deg < self.min_turn_deg:
                if last[0].options() == request.options():
                    return last[1]
                result = _rescaled(last[1], request)
                with self._lock:
                    self._last = (request, result)
                return result
        result = compute_electron_dose(self.ct, pose, beam, prescription_gy=prescription_gy,
                                       grid_mm=self.grid_mm, isodose_percent=isodose_percent,
                                       bolus_mm=bolus_mm, disc=disc, library=self.library,
                                       dose_to=dose_to, model=model)
        with self._lock:
            self._last = (request, result)
        return result


def _rescaled(result: DoseResult, request: DoseRequest) -> DoseResult:
    """The same dose distribution for another prescription / isodose (dose is linear)."""
    if not 0.0 < request.isodose_percent < 100.0 or not request.prescription_gy > 0.0:
        raise InputError("prescription_gy must be > 0 and isodose_percent in (0, 100)")
    dmax_gy = request.prescription_gy / (request.isodose_percent / 100.0)
    scale = dmax_gy / result.dmax_gy
    return replace(result, dose=result.dose.with_array(
        (result.dose.array * scale).astype(np.float32)), prescription_gy=request.prescription_gy,
        isodose_percent=request.isodose_percent, dmax_gy=dmax_gy, mu=result.mu * scale,
        compute_ms=0.0)
