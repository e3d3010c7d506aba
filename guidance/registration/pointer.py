"""Paired-point registration driven by the live loop: the pointer touches each fiducial.

Used by the OR monitor and by ``iort demo``: every
:class:`guidance.loop.guidance_loop.FrameResult` is handed to a :class:`PointerRegistration`,
which averages the pointer tip (reference frame) per fiducial and, when all are collected
(or the registration phase is over), concludes like every registration
(:mod:`guidance.registration.workflow`): judged, then applied or refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import numpy as np

from guidance.registration.decision import RegistrationThresholds
from guidance.registration.fiducials import FiducialCollector, FiducialRegistration
from guidance.registration.workflow import (
    ConclusionListener,
    RegistrationConcluded,
    apply_conclusion,
    conclude,
)
from models.base.validation import as_array

log = logging.getLogger(__name__)


class PointerRegistration:
    """Paired-point registration from the pointer touching the case's fiducials.

    Called with every :class:`guidance.loop.guidance_loop.FrameResult`; ``fiducial_at(frame_index)``
    says which fiducial the pointer touches in that frame (the simulated procedure knows;
    in the OR the user names it). When every fiducial is collected (or ``give_up(index)``
    says the registration phase is over) it registers, hands the result to the loop and
    records it in the session log. Rigid paired-point fit (Arun 1987 / Umeyama 1991) with
    the Fitzpatrick-West predicted TRE at ``target_lps``, judged against ``thresholds``
    like every registration (:func:`guidance.registration.workflow.conclude`): a refused
    fit never reaches the loop.
    """

    def __init__(self, loop, fiducials_lps: Mapping[str, np.ndarray],
                 fiducial_at: Callable[[int], str | None], *, target_lps: np.ndarray,
                 samples_per_fiducial: int = 2, give_up: Callable[[int], bool] | None = None,
                 session_log=None, thresholds: RegistrationThresholds | None = None) -> None:
        self.loop = loop
        self.fiducial_at = fiducial_at
        self.target_lps = as_array(target_lps, name="target_lps", shape=(3,))
        self.give_up = give_up
        self.session_log = session_log
        self.collector = FiducialCollector(fiducials_lps,
                                           samples_per_fiducial=samples_per_fiducial,
                                           max_spread_mm=3.0)
        self.thresholds = thresholds if thresholds is not None else RegistrationThresholds()
        self.outcome: RegistrationConcluded | None = None
        #: Called with the :class:`RegistrationConcluded` (accepted or refused).
        self.on_concluded: list[ConclusionListener] = []

    @property
    def tried(self) -> bool:
        """The registration concluded (accepted or refused); later frames are ignored."""
        return self.outcome is not None

    @property
    def result(self) -> FiducialRegistration | None:
        """The accepted fit (the one the loop uses), None until then or when refused."""
        return self.outcome.registration if self.outcome and self.outcome.accepted else None

    def __call__(self, result) -> None:
        if self.tried:
            return
        index = result.frame.index
        name = self.fiducial_at(index)
        if name is not None and result.pointer_tip_reference_mm is not None:
            self.collector.add(name, result.pointer_tip_reference_mm)
        if self.collector.complete or (self.give_up is not None and self.give_up(index)):
            outcome = conclude(self.collector, method="paired_point",
                               target_lps=self.target_lps, thresholds=self.thresholds)
            self.outcome = outcome
            apply_conclusion(outcome, loop=self.loop, session_log=self.session_log)
            for listener in self.on_concluded:
                listener(outcome)
