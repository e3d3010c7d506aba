"""How every paired-point registration ends: fitted, judged, then applied or refused.

Both ways of collecting fiducials — the simulated procedure that knows which fiducial the
pointer touches (:mod:`.pointer`) and the guided one where the user names them
(:mod:`.guided`) — end here, so no fit reaches the loop without being judged against the
:class:`~guidance.registration.decision.RegistrationThresholds`:

1. :func:`conclude` fits the collected tips and judges the fit: a
   :class:`RegistrationConcluded` with ``accepted`` and every reason for a refusal;
2. :func:`apply_conclusion` is the one place that hands an accepted result to the loop and
   writes the outcome (accepted or refused, with FRE, residuals and predicted TRE) to the
   session log;
3. the collectors then tell their listeners (``on_concluded``), e.g. the monitor's banner.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from guidance.registration.decision import (
    RegistrationThresholds,
    assess_paired_point,
)
from guidance.registration.fiducials import FiducialCollector, FiducialRegistration
from models.base.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistrationConcluded:
    """The end of one registration attempt.

    Attributes
    ----------
    method : str
        How the fiducials were collected (``"paired_point"``, ``"paired_point_guided"``).
    accepted : bool
        The fit met every threshold and is (to be) used by the loop.
    reasons : tuple of str
        Why it was refused (empty when accepted).
    registration : FiducialRegistration or None
        The fit (None when no fit was possible, e.g. collinear fiducials).
    """

    method: str
    accepted: bool
    reasons: tuple[str, ...]
    registration: FiducialRegistration | None = None


#: Listener of concluded registrations.
ConclusionListener = Callable[[RegistrationConcluded], object]


def conclude(collector: FiducialCollector, *, method: str, target_lps: np.ndarray,
             thresholds: RegistrationThresholds, fle_mm: float | None = None
             ) -> RegistrationConcluded:
    """Fit the collected fiducials and judge the fit.

    Parameters
    ----------
    collector : FiducialCollector
        Mean pointer tips (reference frame, mm) per fiducial.
    method : str
        Recorded with the outcome.
    target_lps : (3,) array
        Where the TRE is predicted (patient LPS, mm).
    thresholds : RegistrationThresholds
        Limits the fit must meet.
    fle_mm : float, optional
        Fiducial localisation error for the TRE prediction (default: implied by the FRE).

    Returns
    -------
    RegistrationConcluded
        Refused, with the reason, when no fit is possible (fewer than 3 fiducials,
        collinear fiducials) or a threshold is exceeded.
    """
    try:
        reg = collector.register(target_patient_mm=target_lps, fle_mm=fle_mm)
    except (InputError, ValueError) as exc:
        return RegistrationConcluded(method, False, (f"registration not possible: {exc}",))
    decision = assess_paired_point(reg.fit, predicted_tre_mm=reg.predicted_tre_mm,
                                   names=reg.names, thresholds=thresholds)
    return RegistrationConcluded(method, decision.accepted, decision.reasons, reg)


def apply_conclusion(outcome: RegistrationConcluded, *, loop=None, session_log=None) -> None:
    """Hand an accepted registration to the loop; record the outcome either way.

    Parameters
    ----------
    outcome : RegistrationConcluded
    loop : object with ``set_registration(patient_from_reference, fre_mm=...)``, optional
        Gets ``patient_from_reference`` only when the outcome is accepted.
    session_log : SessionLog, optional
        Gets the registration (with ``accepted``) when there was a fit, and a warning
        with the reasons when it was refused.
    """
    reg = outcome.registration
    if session_log is not None and reg is not None:
        session_log.log_registration(
            method=outcome.method, fre_mm=reg.fre_mm,
            patient_from_reference=reg.patient_from_reference, accepted=outcome.accepted,
            tre_predicted_mm=reg.predicted_tre_mm, residuals_mm=reg.residuals_by_name(),
            n_points=len(reg.names))
    if outcome.accepted:
        assert reg is not None
        if loop is not None:
            loop.set_registration(reg.patient_from_reference, fre_mm=reg.fre_mm)
        log.info("registration accepted (%s): FRE %.2f mm, %d fiducials", outcome.method,
                 reg.fre_mm, len(reg.names))
        return
    message = "registration refused: " + "; ".join(outcome.reasons)
    log.warning("%s", message)
    if session_log is not None:
        session_log.log_warning(message, source="registration")
