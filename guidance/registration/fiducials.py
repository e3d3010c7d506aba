"""Collect pointer-touched fiducials and register the patient to the reference.

The user touches each skin fiducial with the tracked pointer; the loop reports the pointer
tip in the reference frame
(:attr:`guidance.loop.guidance_loop.FrameResult.pointer_tip_reference_mm`) for
every frame in which pointer and reference are both measured. A few frames are averaged per
fiducial (lower FLE), with a spread check that catches a pointer that slipped. Then the
paired-point fit gives ``patient_from_reference`` with its FRE, per-fiducial residuals and
the predicted TRE at a target (:func:`guidance.registration.tre.predict_tre_mm`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from guidance.registration.paired_point import PairedPointResult, register_paired_points
from guidance.registration.tre import fle_from_fre_mm, predict_tre_mm
from models.base.errors import InputError
from models.base.validation import as_array, as_positive


@dataclass(frozen=True)
class FiducialRegistration:
    """Patient-to-reference registration from touched fiducials.

    Attributes
    ----------
    patient_from_reference : (4, 4) array
    fit : PairedPointResult
        FRE and residuals (order of ``names``).
    names : tuple of str
    predicted_tre_mm : float or None
        RMS TRE expected at the target (None without a target).
    fle_mm : float
        FLE used for the prediction (given, or estimated from the FRE).
    """

    patient_from_reference: np.ndarray
    fit: PairedPointResult
    names: tuple[str, ...]
    predicted_tre_mm: float | None
    fle_mm: float

    @property
    def fre_mm(self) -> float:
        """Fiducial registration error (RMS, mm)."""
        return self.fit.fre_mm

    def residuals_by_name(self) -> dict[str, float]:
        """Residual (mm) of each fiducial."""
        return dict(zip(self.names, self.fit.residuals_mm.tolist(), strict=True))


class FiducialCollector:
    """Average pointer tips per fiducial, then register.

    Parameters
    ----------
    fiducials_patient_mm : mapping name -> (3,) array
        Fiducials in patient LPS (from the CT / RTSTRUCT POINT ROIs).
    samples_per_fiducial : int
        Frames averaged for one fiducial.
    max_spread_mm : float
        Samples of one fiducial farther than this from their mean are refused (the pointer
        moved): :meth:`add` returns False and the fiducial's samples restart.
    """

    def __init__(self, fiducials_patient_mm: Mapping[str, np.ndarray], *,
                 samples_per_fiducial: int = 5, max_spread_mm: float = 1.5) -> None:
        if len(fiducials_patient_mm) < 3:
            raise InputError(f"need >= 3 fiducials, got {len(fiducials_patient_mm)}")
        self.fiducials_patient_mm = {
            name: as_array(p, name=f"fiducials_patient_mm[{name}]", shape=(3,))
            for name, p in fiducials_patient_mm.items()}
        if samples_per_fiducial < 1:
            raise InputError("samples_per_fiducial must be >= 1")
        self.samples_per_fiducial = int(samples_per_fiducial)
        self.max_spread_mm = as_positive(max_spread_mm, name="max_spread_mm")
        self._samples: dict[str, list[np.ndarray]] = {n: [] for n in self.fiducials_patient_mm}

    def add(self, name: str, tip_reference_mm: np.ndarray) -> bool:
        """Add one pointer-tip sample (reference frame, mm) for fiducial ``name``.

        Returns False (and restarts this fiducial) if the sample is farther than
        ``max_spread_mm`` from the others.
        """
        if name not in self._samples:
            raise KeyError(f"unknown fiducial {name!r}; known: {sorted(self._samples)}")
        tip = as_array(tip_reference_mm, name="tip_reference_mm", shape=(3,))
        samples = self._samples[name]
        if samples and np.linalg.norm(tip - np.mean(samples, axis=0)) > self.max_spread_mm:
            self._samples[name] = [tip]
            return False
        if len(samples) < self.samples_per_fiducial:
            samples.append(tip)
        return True

    def is_done(self, name: str) -> bool:
        """Whether fiducial ``name`` has all its samples."""
        return len(self._samples[name]) >= self.samples_per_fiducial

    @property
    def complete(self) -> bool:
        """All fiducials collected."""
        return all(self.is_done(n) for n in self._samples)

    def collected(self) -> dict[str, np.ndarray]:
        """Mean tip (reference frame, mm) of every fiducial with all its samples."""
        return {n: np.mean(s, axis=0) for n, s in self._samples.items() if self.is_done(n)}

    def register(self, *, target_patient_mm: np.ndarray | None = None,
                 fle_mm: float | None = None) -> FiducialRegistration:
        """Paired-point fit over the collected fiducials (>= 3 needed).

        ``fle_mm`` defaults to the FLE implied by the observed FRE (Fitzpatrick–West).
        """
        points = self.collected()
        if len(points) < 3:
            raise InputError(f"only {len(points)} fiducials collected; touch at least 3")
        names = tuple(points)
        fixed = np.array([self.fiducials_patient_mm[n] for n in names])
        moving = np.array([points[n] for n in names])
        fit = register_paired_points(fixed, moving)
        fle = fle_mm if fle_mm is not None else fle_from_fre_mm(fit.fre_mm, len(names))
        tre = None
        if target_patient_mm is not None:
            tre = float(predict_tre_mm(fixed, target_patient_mm, fle)[0])
        return FiducialRegistration(patient_from_reference=fit.fixed_from_moving, fit=fit,
                                    names=names, predicted_tre_mm=tre, fle_mm=float(fle))
