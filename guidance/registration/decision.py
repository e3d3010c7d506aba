"""Accept or reject a registration against thresholds the user sets.

The numbers behind a decision are reported with it, so the monitor can say *why* a
registration was refused (which fiducial, how far, what limit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guidance.registration.paired_point import PairedPointResult
from guidance.registration.surface import SurfaceRegistrationResult, registration_disagreement_mm
from models.base.errors import InputError
from models.base.validation import as_positive


@dataclass(frozen=True)
class RegistrationThresholds:
    """User limits for accepting a registration (mm, fraction).

    Attributes
    ----------
    max_fre_mm : float
        Paired-point FRE limit.
    max_residual_mm : float
        Limit for any single fiducial's residual (catches one mis-touched fiducial).
    max_predicted_tre_mm : float
        Limit for the predicted TRE at the target.
    max_icp_rms_mm : float
        Surface registration inlier RMS limit.
    min_icp_fitness : float
        Minimum fraction of swept points matched to the surface.
    max_disagreement_mm : float
        Largest allowed distance between paired-point and surface results at the check
        points (target, fiducials).
    min_fiducials : int
    """

    max_fre_mm: float = 2.0
    max_residual_mm: float = 3.0
    max_predicted_tre_mm: float = 2.0
    max_icp_rms_mm: float = 1.5
    min_icp_fitness: float = 0.8
    max_disagreement_mm: float = 3.0
    min_fiducials: int = 4

    def __post_init__(self) -> None:
        for name in ("max_fre_mm", "max_residual_mm", "max_predicted_tre_mm",
                     "max_icp_rms_mm", "max_disagreement_mm"):
            as_positive(getattr(self, name), name=name)
        if not 0.0 <= self.min_icp_fitness <= 1.0:
            raise InputError(f"min_icp_fitness must be in [0, 1], got {self.min_icp_fitness}")
        if self.min_fiducials < 3:
            raise InputError(f"min_fiducials must be >= 3, got {self.min_fiducials}")


@dataclass(frozen=True)
class RegistrationDecision:
    """Accepted or not, and every reason for refusing (empty when accepted)."""

    accepted: bool
    reasons: tuple[str, ...]


def _decide(reasons: list[str]) -> RegistrationDecision:
    return RegistrationDecision(accepted=not reasons, reasons=tuple(reasons))


def assess_paired_point(fit: PairedPointResult, *, predicted_tre_mm: float | None = None,
                        names: tuple[str, ...] | None = None,
                        thresholds: RegistrationThresholds | None = None
                        ) -> RegistrationDecision:
    """Check a paired-point registration against the thresholds."""
    limits = thresholds if thresholds is not None else RegistrationThresholds()
    reasons = []
    n = len(fit.residuals_mm)
    labels = names if names is not None else tuple(f"#{i + 1}" for i in range(n))
    if n < limits.min_fiducials:
        reasons.append(f"only {n} fiducials (at least {limits.min_fiducials} required)")
    if fit.fre_mm > limits.max_fre_mm:
        reasons.append(f"FRE {fit.fre_mm:.2f} mm exceeds {limits.max_fre_mm:.2f} mm")
    for label, residual in zip(labels, fit.residuals_mm, strict=True):
        if residual > limits.max_residual_mm:
            reasons.append(f"fiducial {label} residual {residual:.2f} mm exceeds "
                           f"{limits.max_residual_mm:.2f} mm: touch it again")
    if predicted_tre_mm is not None and predicted_tre_mm > limits.max_predicted_tre_mm:
        reasons.append(f"predicted TRE {predicted_tre_mm:.2f} mm exceeds "
                       f"{limits.max_predicted_tre_mm:.2f} mm: add fiducials around the target")
    return _decide(reasons)


def assess_surface(result: SurfaceRegistrationResult, *,
                   paired_point_target_from_source: np.ndarray | None = None,
                   check_points_mm: np.ndarray | None = None,
                   thresholds: RegistrationThresholds | None = None) -> RegistrationDecision:
    """Check a surface registration, and its agreement with the paired-point result.

    ``check_points_mm`` are in the *source* frame (e.g. the target mapped into the
    reference frame by the paired-point registration).
    """
    limits = thresholds if thresholds is not None else RegistrationThresholds()
    reasons = []
    if result.inlier_rms_mm > limits.max_icp_rms_mm:
        reasons.append(f"surface inlier RMS {result.inlier_rms_mm:.2f} mm exceeds "
                       f"{limits.max_icp_rms_mm:.2f} mm")
    if result.fitness < limits.min_icp_fitness:
        reasons.append(f"only {100 * result.fitness:.0f} % of swept points lie on the surface "
                       f"(at least {100 * limits.min_icp_fitness:.0f} % required)")
    if paired_point_target_from_source is not None and check_points_mm is not None:
        gap = registration_disagreement_mm(result.target_from_source,
                                           paired_point_target_from_source, check_points_mm)
        if gap > limits.max_disagreement_mm:
            reasons.append(f"surface and paired-point registrations differ by {gap:.2f} mm "
                           f"(limit {limits.max_disagreement_mm:.2f} mm)")
    return _decide(reasons)
