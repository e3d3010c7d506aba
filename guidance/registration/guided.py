"""Guided paired-point registration for a real camera: the user names each fiducial.

With the simulated procedure the scenario knows which fiducial the pointer touches
(:class:`guidance.registration.pointer.PointerRegistration`); in the OR nobody does, so the
monitor asks for the fiducials one after the other, in a fixed order (the case's POINT
ROIs)::

    touch FID2 with the pointer, press Space (1/5 collected)

*Space* (:meth:`GuidedRegistration.capture`) starts collecting ``samples_per_fiducial``
pointer tips (reference frame) from the following frames, taken only while pointer and
reference are both TRACKING and the tip stays within ``max_spread_mm`` of the first
sample; otherwise the capture is refused with the reason and Space must be pressed again.
*S* (:meth:`skip`) passes a fiducial that cannot be reached, *Backspace* (:meth:`redo`)
takes back the last collected or skipped fiducial (or a capture in progress), *Enter*
(:meth:`accept`) registers with >= 3 fiducials; after the last fiducial it registers by
itself. The rigid fit (Arun 1987 / Umeyama 1991) is judged by
:func:`guidance.registration.decision.assess_paired_point` (FRE, per-fiducial residuals,
Fitzpatrick-West predicted TRE at the target, number of fiducials): accepted, it is handed
to the loop; refused, it is not used and the reasons are shown. Every step goes to the
session log.

Frames arrive on the capture thread (:meth:`__call__`), keys on the UI thread: all state is
guarded by one lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from guidance.registration.decision import (
    RegistrationDecision,
    RegistrationThresholds,
)
from guidance.registration.fiducials import FiducialCollector, FiducialRegistration
from guidance.registration.workflow import (
    ConclusionListener,
    apply_conclusion,
    conclude,
)
from guidance.tracking.pose_filter import TrackingState
from models.base.errors import InputError
from models.base.validation import as_array, as_positive

log = logging.getLogger(__name__)

#: Phases of a guided registration.
COLLECTING, CAPTURING, REFUSED, ACCEPTED = "collecting", "capturing", "refused", "accepted"


@dataclass(frozen=True)
class GuidedState:
    """What the monitor shows about the registration at one instant.

    Attributes
    ----------
    phase : str
        ``collecting`` (waiting for Space), ``capturing`` (samples being taken),
        ``refused`` (a fit was refused), ``accepted`` (in use by the loop).
    current : str or None
        Fiducial to touch now (None when every fiducial was collected or skipped).
    collected, skipped : tuple of str
        In the order they were done.
    samples : int
        Samples of the capture in progress.
    message : str
        Feedback on the last step (why a sample was refused, ...); '' if none.
    """

    phase: str
    current: str | None
    collected: tuple[str, ...]
    skipped: tuple[str, ...]
    samples: int
    message: str
    n_fiducials: int


class GuidedRegistration:
    """Paired-point registration with the user naming the touched fiducial (OR workflow).

    Parameters
    ----------
    loop : GuidanceLoop
        Receives ``set_registration`` when a fit is accepted.
    fiducials_lps : mapping name -> (3,) array
        Fiducials in patient LPS mm, in the order they are asked for (>= 3).
    target_lps : (3,) array
        Where the predicted TRE is reported (e.g. the CTV centroid), LPS mm.
    samples_per_fiducial : int
        Pointer tips averaged per fiducial.
    max_spread_mm : float
        A tip farther than this from the capture's first tip refuses the capture (pointer
        moved).
    thresholds : RegistrationThresholds, optional
        Acceptance limits (default :class:`RegistrationThresholds`).
    fle_mm : float, optional
        FLE for the TRE prediction; default: estimated from the FRE (Fitzpatrick-West
        eq. 10).
    session_log : SessionLog, optional
    pointer_tool, reference_tool : str
        Tool names in :attr:`guidance.loop.guidance_loop.FrameResult.tools`.
    """

    def __init__(self, loop, fiducials_lps: Mapping[str, np.ndarray], *,
                 target_lps: np.ndarray, samples_per_fiducial: int = 5,
                 max_spread_mm: float = 1.5, thresholds: RegistrationThresholds | None = None,
                 fle_mm: float | None = None, session_log=None, pointer_tool: str = "pointer",
                 reference_tool: str = "reference") -> None:
        if len(fiducials_lps) < 3:
            raise InputError(f"need >= 3 fiducials, got {len(fiducials_lps)}")
        if samples_per_fiducial < 1:
            raise InputError("samples_per_fiducial must be >= 1")
        self.loop = loop
        self.fiducials_lps = {n: as_array(p, name=f"fiducials_lps[{n}]", shape=(3,))
                              for n, p in fiducials_lps.items()}
        self.order = tuple(self.fiducials_lps)
        self.target_lps = as_array(target_lps, name="target_lps", shape=(3,))
        self.samples_per_fiducial = int(samples_per_fiducial)
        self.max_spread_mm = as_positive(max_spread_mm, name="max_spread_mm")
        self.thresholds = thresholds or RegistrationThresholds()
        self.fle_mm = fle_mm
        self.session_log = session_log
        self.pointer_tool, self.reference_tool = pointer_tool, reference_tool
        self.tips_reference_mm: dict[str, np.ndarray] = {}   # mean tip per collected fiducial
        self.result: FiducialRegistration | None = None        # accepted fit (in the loop)
        self.candidate: FiducialRegistration | None = None     # last fit, accepted or not
        self.decision: RegistrationDecision | None = None
        self._history: list[tuple[str, str]] = []   # ("collected" | "skipped", name)
        self._samples: list[np.ndarray] = []
        self._capturing = False
        self._message = ""
        self._lock = threading.Lock()
        #: Called with every :class:`RegistrationConcluded` (accepted or refused).
        self.on_concluded: list[ConclusionListener] = []

    # ------------------------------------------------------------------ state
    def _done(self, kind: str) -> tuple[str, ...]:
        return tuple(n for k, n in self._history if k == kind)

    def _current(self) -> str | None:
        done = {n for _, n in self._history}
        return next((n for n in self.order if n not in done), None)

    def state(self) -> GuidedState:
        """Snapshot of the workflow (thread-safe)."""
        with self._lock:
            if self.result is not None:
                phase = ACCEPTED
            elif self.decision is not None and not self.decision.accepted:
                phase = REFUSED
            else:
                phase = CAPTURING if self._capturing else COLLECTING
            return GuidedState(phase=phase, current=self._current(),
                               collected=self._done("collected"),
                               skipped=self._done("skipped"), samples=len(self._samples),
                               message=self._message, n_fiducials=len(self.order))

    @property
    def finished(self) -> bool:
        """A registration was accepted (the workflow is over)."""
        return self.result is not None

    def prompt(self) -> str:
        """The banner line: what to do now."""
        s = self.state()
        count = f"({len(s.collected)}/{s.n_fiducials} collected)"
        if s.phase == ACCEPTED:
            return ""
        if s.phase == REFUSED:
            return (f"REGISTRATION REFUSED: {'; '.join(self.decision.reasons)} - "
                    "Backspace to redo the last fiducial")
        if s.phase == CAPTURING:
            return (f"REGISTRATION: hold the pointer still on {s.current} "
                    f"({s.samples}/{self.samples_per_fiducial} samples) {count}")
        if s.current is None and s.message:
            return f"REGISTRATION: {s.message} - Backspace to go back"
        if s.current is None:
            return (f"REGISTRATION: only {len(s.collected)} fiducials collected (3 needed) - "
                    "Backspace to go back")
        text = f"REGISTRATION: touch {s.current} with the pointer, press Space {count}"
        if len(s.collected) >= 3:
            text += " - Enter to register now"
        if s.message:
            text = f"{s.message} | {text}"
        return text

    def report_lines(self) -> list[str]:
        """Two lines: FRE, predicted TRE, count; per-fiducial residuals (empty before a fit)."""
        reg = self.candidate
        if reg is None:
            return []
        verdict = "accepted" if self.result is not None else "REFUSED"
        tre = "—" if reg.predicted_tre_mm is None else f"{reg.predicted_tre_mm:.2f} mm"
        lines = [f"registration {verdict}: FRE {reg.fre_mm:.2f} mm, predicted TRE at target "
                 f"{tre}, {len(reg.names)} fiducials"]
        residuals = "residuals: " + ", ".join(
            f"{name} {res:.2f} mm" for name, res in reg.residuals_by_name().items())
        skipped = self.state().skipped
        if skipped:
            residuals += "; skipped: " + ", ".join(skipped)
        return [*lines, residuals]

    # ---------------------------------------------------------------- actions
    def capture(self) -> bool:
        """Space: start collecting samples for the current fiducial (False if nothing to do)."""
        with self._lock:
            name = self._current()
            if self.result is not None or name is None or self._capturing:
                return False
            self._capturing, self._samples, self._message = True, [], ""
            self.decision = None
        self._action("registration_capture", fiducial=name)
        return True

    def skip(self) -> bool:
        """S: pass the current fiducial (it is not used)."""
        with self._lock:
            name = self._current()
            if self.result is not None or name is None:
                return False
            self._capturing, self._samples, self._message = False, [], ""
            self.decision = None
            self._history.append(("skipped", name))
        self._action("registration_skip", fiducial=name)
        self._maybe_register_all_done()
        return True

    def redo(self) -> bool:
        """Backspace: cancel a capture in progress, else take back the last fiducial."""
        with self._lock:
            if self.result is not None:
                return False
            if self._capturing:
                self._capturing, self._samples = False, []
                name = self._current()
            elif self._history:
                _, name = self._history.pop()
                self.tips_reference_mm.pop(name, None)
            else:
                return False
            self.decision = None
            self.candidate = None
            self._message = ""
        self._action("registration_redo", fiducial=name)
        return True

    def accept(self) -> bool:
        """Enter: register with the fiducials collected so far (>= 3 needed)."""
        with self._lock:
            if self.result is not None or self._capturing:
                return False
            n = len(self.tips_reference_mm)
            if n < 3:
                self._message = f"only {n} fiducials collected: touch at least 3"
                return False
        self._action("registration_accept", n_fiducials=n)
        return self._register()

    # ----------------------------------------------------------------- frames
    def __call__(self, result) -> None:
        """Take one :class:`guidance.loop.guidance_loop.FrameResult` (capture thread)."""
        with self._lock:
            if not self._capturing:
                return
            name = self._current()
            refusal = self._refusal(result)
            if refusal:
                self._capturing, self._samples = False, []
                self._message = f"{name}: {refusal} - press Space again"
            else:
                self._samples.append(np.asarray(result.pointer_tip_reference_mm, float))
                if len(self._samples) < self.samples_per_fiducial:
                    return
                mean = np.mean(self._samples, axis=0)
                spread = float(np.max(np.linalg.norm(np.array(self._samples) - mean, axis=1)))
                self.tips_reference_mm[name] = mean
                self._history.append(("collected", name))
                self._capturing, self._samples, self._message = False, [], ""
        if refusal:
            self._warn(f"registration sample refused: {self._message}")
            return
        self._action("registration_fiducial", fiducial=name,
                     tip_reference_mm=[round(float(v), 4) for v in mean],
                     spread_mm=round(spread, 4), samples=self.samples_per_fiducial)
        self._maybe_register_all_done()

    def _refusal(self, result) -> str:
        """Why this frame's tip cannot be a sample ('' if it can). Called under the lock."""
        bad = [f"{tool} {result.state(tool).value}" for tool in
               (self.pointer_tool, self.reference_tool)
               if result.state(tool) is not TrackingState.TRACKING]
        if bad or result.pointer_tip_reference_mm is None:
            return ("not tracked (" + (", ".join(bad) or "no pointer tip") + ")")
        if self._samples:
            moved = float(np.linalg.norm(np.asarray(result.pointer_tip_reference_mm, float)
                                         - self._samples[0]))
            if moved > self.max_spread_mm:
                return (f"pointer moved {moved:.1f} mm (limit {self.max_spread_mm:.1f} mm), "
                        "hold the tip still")
        return ""

    # ------------------------------------------------------------ registration
    def _maybe_register_all_done(self) -> None:
        with self._lock:
            ready = self._current() is None and len(self.tips_reference_mm) >= 3
        if ready:
            self._register()

    def _register(self) -> bool:
        with self._lock:
            tips = dict(self.tips_reference_mm)
        collector = FiducialCollector({n: self.fiducials_lps[n] for n in tips},
                                      samples_per_fiducial=1, max_spread_mm=self.max_spread_mm)
        for name, tip in tips.items():
            collector.add(name, tip)
        outcome = conclude(collector, method="paired_point_guided", target_lps=self.target_lps,
                           thresholds=self.thresholds, fle_mm=self.fle_mm)
        with self._lock:
            if outcome.registration is None:
                self._message = outcome.reasons[0]
            else:
                self.candidate = outcome.registration
                self.decision = RegistrationDecision(outcome.accepted, outcome.reasons)
                if outcome.accepted:
                    self.result = outcome.registration
        apply_conclusion(outcome, loop=self.loop, session_log=self.session_log)
        for listener in self.on_concluded:
            listener(outcome)
        return outcome.accepted

    # ---------------------------------------------------------------- logging
    def _action(self, name: str, **detail: object) -> None:
        if self.session_log is not None:
            self.session_log.log_action(name, **detail)

    def _warn(self, message: str) -> None:
        log.warning("%s", message)
        if self.session_log is not None:
            self.session_log.log_warning(message, source="registration")
