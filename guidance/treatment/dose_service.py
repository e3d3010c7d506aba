"""The live dose: when to recompute it, and the worker that computes it off the UI thread.

One service for every view: :class:`DoseScheduler` decides from the tracked applicator pose
(moved more than 1 mm or 1 deg, or a new beam choice) whether a computation starts now,
waits for the running one (latest wins), or is not needed; :class:`DoseService` runs the
dose engine and the DVH metrics on a worker thread and publishes :class:`DoseUpdate` s.
``iort demo`` uses the same scheduler synchronously.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import ClassVar

import numpy as np

from guidance.loop.guidance_loop import FrameResult
from guidance.tracking.pose_filter import TrackingState
from models.base.cancel import Cancelled, cancel_when
from models.base.errors import InputError
from models.base.transforms import transform_difference
from models.base.validation import as_positive
from models.evaluation.dvh import (
    DVH,
    DoseMetrics,
    split_by_dose_grid,
    structure_bounds_mm,
    structure_dvhs,
)
from models.patient.case import Case
from models.patient.volume import Volume

log = logging.getLogger(__name__)

#: The machine every command uses when neither the option nor the plan names one.
DEFAULT_MACHINE = "liac"

#: Structures that are not organs: never drawn in the views, no DVH.
HIDDEN_ROI_TYPES = ("EXTERNAL", "CAVITY", "MARKER")


@dataclass
class DoseScheduler:
    """Decides when to recompute the dose from the tracked applicator pose.

    Latest wins: a computation starts as soon as the worker is free and the pose (or the
    beam parameters) changed by more than the thresholds since the last computed one. When
    the applicator stops, at most one stale computation is still running: a preview (a
    stale full model is stopped, :attr:`cancel_requested`), so the full dose for the final
    pose is visible after at most one preview and one full computation.

    ``min_interval_s`` paces a moving applicator: while the pose keeps changing,
    computations start at least that far apart (the live monitor: a few doses a second
    while the applicator is carried, instead of one after the other, which took the CPU the
    live view needs on 2 cores). A pose that holds still -- offered again within the
    thresholds of the one waiting -- starts at once, so resting costs no latency, and so
    does a change of the beam.
    """

    min_move_mm: float = 1.0
    min_turn_deg: float = 1.0
    min_interval_s: float = 0.0
    #: A pose this close (mm, deg) to the one waiting holds still (the tracked pose's
    #: jitter is about 0.1 mm / 0.05 deg).
    still_mm: float = 0.3
    still_deg: float = 0.3
    _computed_pose: np.ndarray | None = None
    _computed_params: object = None
    busy: bool = False
    _pending: tuple[np.ndarray, object] | None = field(default=None, repr=False)
    #: The pose waiting was offered again within the still thresholds of itself: the
    #: applicator rests there, and it starts as soon as the worker is free, unpaced.
    _pending_still: bool = field(default=False, repr=False)
    _started_s: float = field(default=-np.inf, repr=False)
    #: The running computation was started for a pose that moved past the thresholds
    #: from the last computed one (a preview will do): not the first pose, not one holding
    #: still, not a beam change. The first pose of a move after a pause counts as moving
    #: too: a full model started there would still be running when the applicator comes
    #: to rest (a worst-case full dose takes ~0.3 s, the preview ~0.05 s), and the full
    #: model follows the preview as soon as the pose holds still.
    started_moving: bool = False
    #: The last computed dose was the preview model's: a pose within the thresholds of it
    #: (the applicator rests) starts the full model.
    computed_preview: bool = False
    #: The running computation is the full model and a pose past the thresholds (or a new
    #: beam) was offered meanwhile: its result would only delay the new pose's, so the
    #: worker stops it at its next stage (:func:`models.base.cancel.checkpoint`).
    cancel_requested: bool = False
    #: With no pose offered this long (s) after a preview, the full model follows anyway.
    REFINE_AFTER_S: ClassVar[float] = 0.1

    def needs(self, patient_from_applicator: np.ndarray, params: object) -> bool:
        """True when this pose/params differs enough from the last computed one, or that
        one was only a preview (:attr:`computed_preview`)."""
        return params != self._computed_params or self.computed_preview or \
            self.needs_move(patient_from_applicator)

    def offer(self, patient_from_applicator: np.ndarray, params: object, *,
              now_s: float | None = None, _waited: bool = False) -> bool:
        """Offer the newest pose; True means: start a computation with it now.

        ``params`` is anything comparable with ``==`` (the beam choice): a change forces
        a recomputation. ``now_s``: the monotonic clock (s), for the pacing.
        """
        if self.busy and self.started_moving and params == self._computed_params and \
                self._holds_still(patient_from_applicator, params):
            # the pose a preview computes, seen again: the applicator rests there, and
            # the full model follows the preview at once (if it was one)
            self._pending = (np.array(patient_from_applicator, dtype=np.float64), params)
            self._pending_still = True
            return False
        if not self.needs(patient_from_applicator, params):
            self._pending = None
            self._pending_still = False
            return False
        now_s = time.monotonic() if now_s is None else now_s
        still = self._pending_still if _waited else \
            self._holds_still(patient_from_applicator, params)
        # only motion is paced: a beam change (the oncologist's choice) starts when free
        same_beam = params == self._computed_params
        paced = same_beam and now_s - self._started_s < self.min_interval_s and not still
        if self.busy or paced:
            self._pending = (np.array(patient_from_applicator, dtype=np.float64), params)
            self._pending_still = still
            # a full dose for a pose the applicator has left: stop it (a preview is quick)
            self.cancel_requested |= self.busy and not self.started_moving
            return False
        self.busy = True
        self.cancel_requested = False
        near = not self.needs_move(patient_from_applicator)
        self.started_moving = (same_beam and not still and not near
                               and self._computed_pose is not None)
        self.computed_preview = False
        self._started_s = now_s
        self._computed_pose = np.array(patient_from_applicator, dtype=np.float64)
        self._computed_params = params
        self._pending = None
        self._pending_still = False
        return True

    def needs_move(self, patient_from_applicator: np.ndarray) -> bool:
        """True when this pose moved past the thresholds from the last computed one."""
        if self._computed_pose is None:
            return True
        move, turn = transform_difference(patient_from_applicator, self._computed_pose)
        return move > self.min_move_mm or turn > self.min_turn_deg

    def _holds_still(self, patient_from_applicator: np.ndarray, params: object) -> bool:
        """True when this pose is the one waiting, or the one a preview was started for,
        within :attr:`still_mm` and :attr:`still_deg` (a slow drag moves more than that
        from frame to frame): seen twice, the applicator rests there."""
        for seen, seen_params, counts in (
                (*(self._pending or (None, None)), True),
                (self._computed_pose, self._computed_params, self.started_moving)):
            if seen is None or not counts or params != seen_params:
                continue
            move, turn = transform_difference(patient_from_applicator, seen)
            if move <= self.still_mm and turn <= self.still_deg:
                return True
        return False

    def due(self, now_s: float | None = None) -> tuple[np.ndarray, object] | None:
        """The waiting pose, started now when the worker is free and its pacing interval
        has passed (the worker asks while idle); None otherwise."""
        pending = self._pending
        now_s = time.monotonic() if now_s is None else now_s
        if pending is None and self.computed_preview and not self.busy and \
                now_s - self._started_s >= max(self.min_interval_s, self.REFINE_AFTER_S):
            # no newer pose (the camera stopped, or the tool is not offered any more): the
            # full model for the previewed one
            pending = (self._computed_pose, self._computed_params)
        if self.busy or pending is None:
            return None
        if now_s - self._started_s < self.min_interval_s and not self._pending_still:
            return None
        return pending if self.offer(*pending, now_s=now_s, _waited=True) else None

    @property
    def has_pending(self) -> bool:
        """True when a newer pose waits for the running computation to finish."""
        return self._pending is not None

    def finished(self) -> tuple[np.ndarray, object] | None:
        """Mark the running computation done (or cancelled); returns the pose to compute
        next, if any."""
        self.busy = False
        self.cancel_requested = False
        pending = self._pending
        if pending is not None and self.offer(*pending, _waited=True):
            return pending
        return None

    def invalidate(self) -> None:
        """Forget the last computed pose (e.g. after the CT or registration changed)."""
        self._computed_pose = None


@dataclass(frozen=True)
class BeamChoice:
    """Dose parameters the oncologist selects (defaults: the built-in phantom's plan on the
    :data:`DEFAULT_MACHINE`)."""

    energy_mev: float = 8.0
    applicator_diameter_mm: float = 70.0
    bevel_deg: float = 0.0
    disc: str = "none"
    prescription_gy: float = 10.0
    isodose_percent: float = 90.0
    #: Shielding disc (with ``disc`` a material): diameter (None: the applicator's + 20 mm),
    #: thickness, and depth of its upstream face below the end face along the beam (mm).
    disc_diameter_mm: float | None = None
    disc_thickness_mm: float = 3.0
    disc_depth_mm: float = 30.0
    #: Water-equivalent bolus under the end face (mm); the applicator then sits on the
    #: bolus, ``bolus_mm`` above the tissue.
    bolus_mm: float = 0.0
    #: A kV spherical applicator of this diameter (mm) instead of the electron beam; its
    #: sphere's centre is the applicator frame's origin, ``prescription_gy`` at its surface.
    kv_diameter_mm: float | None = None

    def __post_init__(self) -> None:
        as_positive(self.energy_mev, name="energy_mev")
        as_positive(self.applicator_diameter_mm, name="applicator_diameter_mm")
        as_positive(self.prescription_gy, name="prescription_gy")
        as_positive(self.bolus_mm, name="bolus_mm", allow_zero=True)
        if not 0.0 <= self.bevel_deg < 60.0:
            raise InputError(f"bevel_deg must be in [0, 60), got {self.bevel_deg}")
        if self.disc_diameter_mm is not None:
            as_positive(self.disc_diameter_mm, name="disc_diameter_mm")
        as_positive(self.disc_thickness_mm, name="disc_thickness_mm")
        as_positive(self.disc_depth_mm, name="disc_depth_mm")
        as_positive(self.bolus_mm, name="bolus_mm", allow_zero=True)
        if self.kv_diameter_mm is not None:
            as_positive(self.kv_diameter_mm, name="kv_diameter_mm")

    @property
    def disc_size_mm(self) -> tuple[float, float, float] | None:
        """(diameter, thickness, depth) of the shielding disc in mm; None without one (or
        with a kV applicator, which takes no disc)."""
        if self.disc == "none" or self.kv_diameter_mm is not None:
            return None
        diameter = self.disc_diameter_mm if self.disc_diameter_mm is not None \
            else self.applicator_diameter_mm + 20.0
        return diameter, self.disc_thickness_mm, self.disc_depth_mm

    @property
    def key(self) -> tuple:
        """Hashable identity (a change means: recompute the dose)."""
        return tuple(asdict(self).values())


@dataclass(frozen=True)
class BeamOptions:
    """What the selectors offer (from the beam library when it is available)."""

    energies_mev: tuple[float, ...] = (6.0, 8.0, 9.0, 10.0, 12.0)
    diameters_mm: tuple[float, ...] = (40.0, 50.0, 60.0, 70.0, 80.0, 100.0)
    bevels_deg: tuple[float, ...] = (0.0, 15.0, 30.0, 45.0)
    discs: tuple[str, ...] = ("none", "lead", "steel")
    kv_diameters_mm: tuple[float, ...] = ()


#: ``dose_fn(case, patient_from_applicator, beam) -> dose Volume in Gy`` or an engine result
#: with ``.dose`` (Volume, Gy), ``.mu`` and ``.mu_estimated`` (e.g. ``DoseResult``). A
#: function with ``supports_preview = True`` also takes ``model="preview"`` (a faster
#: model for a moving applicator) or ``model="full"``.
DoseFunction = Callable[[Case, np.ndarray, BeamChoice], object]
#: ``isodose_fn(dose, level_gy) -> surface mesh`` for the views.
IsodoseFunction = Callable[[Volume, float], object]


@dataclass(frozen=True)
class DoseUpdate:
    """One dose computation, ready to display.

    Published twice per pose: first with the dose and isodose surface only
    (``metrics_ready`` False, so the isodose appears as soon as possible), then with the
    DVH metrics — unless the applicator has already moved on. ``outside_beam`` lists
    structures entirely outside the dose grid (0 Gy, no DVH computed).
    """

    dose: Volume
    beam: BeamChoice
    patient_from_applicator: np.ndarray
    isodose_mesh: object
    compute_ms: float
    requested_s: float
    finished_s: float
    metrics: dict[str, DoseMetrics] = field(default_factory=dict)
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    outside_beam: tuple[str, ...] = ()
    metrics_ready: bool = False
    seq: int = 0
    #: Monitor units of the dose (None from an engine that gives none) and whether they
    #: rest on an output factor that is not measured (must be shown, blocks a clean confirm).
    mu: float | None = None
    mu_estimated: bool = False
    #: Pose the engine actually computed this dose at (it reuses a result for a pose that
    #: barely moved): what a replay recomputes to reproduce the numbers exactly.
    computed_from_applicator: np.ndarray | None = None
    #: Version of the anatomy the dose was computed on (:meth:`DoseService.set_case`
    #: counts up from 0) and, once the anatomy is edited, the organ metrics of the same dose
    #: on the preoperative structure masks (organs where the CT saw them), beside
    #: ``metrics`` (organs where they are now).
    anatomy_version: int = 0
    metrics_preoperative: dict[str, DoseMetrics] = field(default_factory=dict)
    #: ``"full"``, or ``"preview"``: the engine's fast model while the applicator moved
    #: (no DVH metrics; the full model follows when it rests, and the views say which).
    model: str = "full"

    @property
    def dose_max_gy(self) -> float:
        """Maximum of the dose grid (Gy)."""
        return float(np.max(self.dose.array)) if self.dose.array.size else 0.0


class DoseService:
    """Computes dose, the isodose surface and DVH metrics on a worker thread.

    The one place the live dose is triggered (the monitor and its benchmark use it; the
    loop knows nothing of dose). :meth:`request` never blocks: the :class:`DoseScheduler`
    decides whether to start now, remember the pose for later (latest wins) or do nothing.
    DVHs are computed only for structures whose bounding box meets the dose grid (the
    others get 0 Gy everywhere).

    Parameters
    ----------
    case : Case
        CT and structures the dose is computed and evaluated on.
    dose_fn : callable(case, patient_from_applicator, beam) -> Volume
        The dose engine (Gy), e.g. :func:`electron_dose_function`.
    structures : iterable of str, optional
        Structures whose DVH metrics are computed (default: all but
        :data:`HIDDEN_ROI_TYPES`).
    isodose_fn : callable(dose, level_gy) -> mesh, optional
        Builds the prescription isodose surface shown with each update (the views pass
        :func:`guidance.render.scene.isodose_surface`); None: no surface.

    A ``dose_fn`` that calls :func:`models.base.cancel.checkpoint` between its stages (the
    electron engine does) is stopped there when the scheduler asks to
    (:attr:`DoseScheduler.cancel_requested`): the applicator left the pose of a full
    computation; nothing is published for it and :attr:`cancelled` counts it.
    """

    def __init__(self, case: Case, dose_fn: DoseFunction, *,
                 structures: Iterable[str] | None = None, target: str = "CTV",
                 scheduler: DoseScheduler | None = None, dvh_oversample: int | None = 1,
                 isodose_fn: IsodoseFunction | None = None,
                 preview_while_moving: bool = False) -> None:
        self.case = case
        self.dose_fn = dose_fn
        #: Doses for a moving applicator use the engine's preview model (when ``dose_fn``
        #: has one); the full model follows for the pose it rests at.
        self.preview_while_moving = bool(preview_while_moving) and \
            bool(getattr(dose_fn, "supports_preview", False))
        self.isodose_fn = isodose_fn
        #: Called (on the worker thread, no arguments) after every publication; e.g. the
        #: window queues a Qt signal to take the dose on its own thread.
        self.listeners: list[Callable[[], None]] = []
        self.target = target
        names = list(structures) if structures is not None else [
            n for n, s in case.structures.items() if s.roi_type not in HIDDEN_ROI_TYPES]
        self.structures = [n for n in names if n in case.structures]
        self._bounds = {n: structure_bounds_mm(case.ct, case.structures[n].mask)
                        for n in self.structures}
        #: (version, case, bounds, preoperative case or None, its bounds): the anatomy a
        #: job computes on, swapped as one by :meth:`set_case`.
        self._anatomy: tuple = (0, case, self._bounds, None, {})
        self._last_request: tuple[np.ndarray, BeamChoice] | None = None
        self.scheduler = scheduler or DoseScheduler()
        self.dvh_oversample = dvh_oversample
        self.failures = 0
        #: Full computations stopped because the applicator moved on (not failures).
        self.cancelled = 0
        self.last_error = ""
        self._lock = threading.Lock()
        self._latest: DoseUpdate | None = None
        self._seq = 0
        self._jobs: list[tuple[np.ndarray, BeamChoice, float]] = []
        self._wake = threading.Condition(self._lock)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="monitor-dose", daemon=True)
        self._thread.start()

    def set_case(self, case: Case, *, preoperative: Case | None = None) -> bool:
        """Compute on ``case`` from now on (the edited anatomy), at once for the last pose.

        ``preoperative``: the case before the edits; each update's DVH metrics then also
        hold ``metrics_preoperative`` (the same dose on its structure masks). The running
        computation finishes on the old anatomy; its result is published, then the dose on
        the new anatomy. Returns True when a computation for the last requested pose was
        started (False before the first request).
        """
        bounds = {n: structure_bounds_mm(case.ct, case.structures[n].mask)
                  for n in self.structures if n in case.structures}
        pre_bounds = {} if preoperative is None else {
            n: structure_bounds_mm(preoperative.ct, preoperative.structures[n].mask)
            for n in self.structures if n in preoperative.structures}
        with self._lock:
            version = self._anatomy[0] + 1
            self._anatomy = (version, case, bounds, preoperative, pre_bounds)
            self.case, self._bounds = case, bounds
            self.scheduler.invalidate()
            last = self._last_request
        if last is None:
            return False
        return self.request(*last)

    @property
    def anatomy_version(self) -> int:
        """How many times the anatomy was replaced (:meth:`set_case`)."""
        with self._lock:
            return self._anatomy[0]

    def request(self, patient_from_applicator: np.ndarray, beam: BeamChoice) -> bool:
        """Offer the newest pose; True if a computation was started for it."""
        with self._lock:
            self._last_request = (np.array(patient_from_applicator, dtype=np.float64), beam)
            start = self.scheduler.offer(patient_from_applicator, beam)
            if start:
                self._jobs.append((np.array(patient_from_applicator), beam, time.monotonic()))
                self._wake.notify()
            return start

    @property
    def busy(self) -> bool:
        with self._lock:
            return self.scheduler.busy

    @property
    def refining(self) -> bool:
        """True while the full model computes (not a preview for a moving applicator):
        the dose on screen is about to be replaced, so a view that would only redraw the
        applicator's last small move can wait for it (and leave the CPU to it)."""
        with self._lock:
            return self.scheduler.busy and not self._preview_due()

    def _preview_due(self) -> bool:
        """The running (or starting) computation is a preview: the applicator moves and
        the engine has one. Call with the lock held."""
        return self.preview_while_moving and self.scheduler.started_moving

    def latest(self) -> tuple[int, DoseUpdate | None]:
        """(sequence number, newest update)."""
        with self._lock:
            return self._seq, self._latest

    def invalidate(self) -> None:
        with self._lock:
            self.scheduler.invalidate()

    def _publish(self, update: DoseUpdate) -> None:
        with self._lock:
            self._seq += 1
            self._latest = replace(update, seq=self._seq)
        for listener in list(self.listeners):
            try:
                listener()
            except Exception:  # a broken listener must not stop the dose worker
                log.exception("dose listener %r failed", listener)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._jobs and not self._stop:
                    due = self.scheduler.due()   # a paced pose whose turn has come
                    if due is not None:
                        self._jobs.append((due[0], due[1], time.monotonic()))
                        break
                    self._wake.wait(0.1 if not self.scheduler.has_pending
                                    else max(0.005, self.scheduler.min_interval_s / 4))
                if self._stop:
                    return
                pose, beam, requested = self._jobs.pop(0)
            with self._lock:
                preview = self._preview_due()
            try:
                update = self._compute_dose(pose, beam, requested,
                                            "preview" if preview else "full")
                self._publish(update)
                with self._lock:
                    moved_on = self.scheduler.has_pending
                    if preview:   # the full model follows where the applicator rests
                        self.scheduler.computed_preview = True
                if not moved_on and not preview:
                    full = self._add_metrics(update)
                    if full is not update:
                        self._publish(full)
            except Cancelled as exc:  # the applicator moved on: the newer pose follows
                self.cancelled += 1
                log.debug("dose computation for a pose left behind: %s", exc)
            except Exception as exc:  # the monitor keeps running without a new dose
                self.failures += 1
                self.last_error = str(exc)
                log.exception("dose computation failed")
            with self._lock:
                nxt = self.scheduler.finished()
                if nxt is not None:
                    self._jobs.append((nxt[0], nxt[1], time.monotonic()))

    def _compute_dose(self, pose: np.ndarray, beam: BeamChoice, requested: float,
                      model: str = "full") -> DoseUpdate:
        start = time.perf_counter()
        with self._lock:
            version, case = self._anatomy[0], self._anatomy[1]
        with cancel_when(lambda: self.scheduler.cancel_requested):
            out = self.dose_fn(case, pose, beam, model=model) if self.preview_while_moving \
                else self.dose_fn(case, pose, beam)
        dose = out if isinstance(out, Volume) else out.dose
        mu = None if isinstance(out, Volume) else getattr(out, "mu", None)
        bad = int(np.count_nonzero(~np.isfinite(dose.array)))
        if bad:  # never shown: a NaN dose would draw no isodose and read as 0 Gy
            raise FloatingPointError(f"dose engine returned {bad} NaN/infinite voxel(s) of "
                                     f"{dose.array.size}; dose not published")
        iso = None if self.isodose_fn is None else self.isodose_fn(dose, beam.prescription_gy)
        return DoseUpdate(dose=dose, beam=beam, patient_from_applicator=pose, isodose_mesh=iso,
                          compute_ms=(time.perf_counter() - start) * 1000.0,
                          requested_s=requested, finished_s=time.monotonic(),
                          mu=None if mu is None else float(mu),
                          mu_estimated=bool(getattr(out, "mu_estimated", False)),
                          computed_from_applicator=np.array(
                              getattr(out, "patient_from_applicator", pose), dtype=np.float64),
                          anatomy_version=version, model=model)

    def _add_metrics(self, update: DoseUpdate) -> DoseUpdate:
        start = time.perf_counter()
        with self._lock:
            anatomy = self._anatomy
        if anatomy[0] != update.anatomy_version:  # edited meanwhile: its dose follows
            return update
        _, case, bounds, preoperative, pre_bounds = anatomy
        dvhs, outside = evaluate_dose(case, update.dose, update.beam, bounds,
                                      oversample=self.dvh_oversample)
        before = {}
        if preoperative is not None:
            pre, _ = evaluate_dose(preoperative, update.dose, update.beam, pre_bounds,
                                   oversample=self.dvh_oversample)
            before = {n: d.metrics for n, d in pre.items()}
        return replace(update, metrics={n: d.metrics for n, d in dvhs.items()},
                       metrics_preoperative=before,
                       curves={n: (d.dose_edges_gy, d.cumulative_percent)
                               for n, d in dvhs.items()},
                       outside_beam=tuple(outside), metrics_ready=True,
                       compute_ms=update.compute_ms + (time.perf_counter() - start) * 1000.0)

    def close(self, timeout_s: float = 5.0) -> None:
        with self._lock:
            self._stop = True
            self._wake.notify_all()
        self._thread.join(timeout_s)


def dose_trigger(scheduler: DoseScheduler, result: FrameResult,
                 params: object) -> np.ndarray | None:
    """The synchronous use of the scheduler (``iort demo`` and its replay): the pose to
    compute the dose at now, or None.

    A dose is computed for a frame whose applicator is TRACKING and has moved more than the
    scheduler's thresholds since the last computed pose (or whose ``params`` changed). The
    caller computes it at once (the scheduler is marked free again here).
    """
    pose = result.patient_from_applicator
    if pose is None or result.state("applicator") is not TrackingState.TRACKING:
        return None
    if not scheduler.offer(pose, params):
        return None
    scheduler.finished()
    return np.array(pose, dtype=np.float64)


def coverage_numbers(metrics: Mapping[str, DoseMetrics],
                     outside_beam: Iterable[str] = ()) -> dict[str, dict[str, float]]:
    """Metrics per structure as plain numbers (what the session log records at a dose or
    a confirm; a structure outside the dose grid gets 0 Gy and 100 % outside)."""
    out = {name: {k: v for k, v in asdict(m).items() if k != "name"}
           for name, m in metrics.items()}
    for name in outside_beam:
        out[name] = {"dmax_gy": 0.0, "dmean_gy": 0.0, "outside_dose_grid_percent": 100.0}
    return out


def evaluate_dose(case: Case, dose: Volume, beam: BeamChoice,
                  bounds: Mapping[str, tuple[np.ndarray, np.ndarray] | None], *,
                  oversample: int | None = 1) -> tuple[dict[str, DVH], tuple[str, ...]]:
    """The DVHs the monitor shows and logs for a dose (0.1 Gy bins, on the CT grid).

    ``bounds`` = :func:`models.evaluation.dvh.structure_bounds_mm` of the structures to
    evaluate; returns their DVHs and the names entirely outside the dose grid (0 Gy). The
    one rule, so a recomputation (e.g. for the treatment record) gives the logged numbers.
    """
    inside, outside = split_by_dose_grid(dose, bounds)
    dvhs = structure_dvhs(dose, case.ct, case.structures, names=inside,
                          prescription_gy=beam.prescription_gy,
                          isodose_percent=beam.isodose_percent, bin_width_gy=0.1,
                          oversample=oversample)
    return dvhs, tuple(outside)


def beam_options(machine: str = DEFAULT_MACHINE) -> BeamOptions:
    """Selector contents from the shipped beam library for one machine."""
    from models.beams.library import default_library
    from models.dose.kv import kv_diameters_mm

    data = default_library().machine(machine)
    return BeamOptions(energies_mev=tuple(float(e) for e in data.energies_mev),
                       diameters_mm=tuple(float(d) for d in data.applicator_diameters_mm),
                       bevels_deg=tuple(float(b) for b in data.bevels_deg),
                       discs=("none", "lead", "steel"), kv_diameters_mm=kv_diameters_mm())


def selector_disc(beam: BeamChoice):
    """The disc chosen in the beam selector as the engine's
    :class:`~models.dose.electron.ShieldingDisc` (centred on the beam), None without one.

    A disc placed in the patient (``case.disc``) takes precedence where the dose is computed.

    Examples
    --------
    >>> selector_disc(BeamChoice(disc="lead", disc_diameter_mm=80.0)).depth_mm
    30.0
    >>> selector_disc(BeamChoice()) is None
    True
    """
    from models.dose.electron import ShieldingDisc

    if beam.disc_size_mm is None:
        return None
    diameter, thickness, depth = beam.disc_size_mm
    return ShieldingDisc(material=beam.disc, diameter_mm=diameter, thickness_mm=thickness,
                         depth_mm=depth)


def electron_dose_function(machine: str = DEFAULT_MACHINE, *, grid_mm: float = 2.0,
                           reuse_below: tuple[float, float] = (0.2, 0.1)) -> DoseFunction:
    """A :data:`DoseFunction` running the project's electron pencil-beam engine, or the kV
    spherical-applicator model when ``BeamChoice.kv_diameter_mm`` is set.

    Uses one :class:`models.dose.engine.ElectronDoseEngine` per CT (a changed prescription only
    rescales the last result). The shielding disc is the one placed in the case
    (``case.disc``, a :class:`models.patient.edits.DiscPlacement` edit: material, size and
    pose, see :func:`models.dose.disc.disc_in_beam`); a case without a placed disc takes the
    selector's (``BeamChoice.disc`` = material, centred on the beam, of
    ``BeamChoice.disc_size_mm``). The bolus is ``BeamChoice.bolus_mm``. Returns the engine's
    ``DoseResult`` (dose, MU and whether they are estimated), or the kV model's
    ``KvDoseResult`` (no MU: a treatment time). ``reuse_below`` = (mm, deg): a pose moved
    less than both reuses the last result (``(0, 0)``: always computed at the pose asked for).
    ``model="preview"`` (keyword) runs the engine's fast model for a moving applicator.
    """
    from models.beams.library import ElectronBeam
    from models.dose.disc import disc_in_beam
    from models.dose.engine import ElectronDoseEngine
    from models.dose.kv import compute_kv_dose

    # (the CT is kept with its engine: an id() alone could be reused by a new CT once the
    # old one is freed, e.g. after an anatomy edit)
    engines: dict[int, tuple[Volume, ElectronDoseEngine]] = {}

    def dose_fn(case: Case, patient_from_applicator: np.ndarray, beam: BeamChoice, *,
                model: str = "full") -> Volume:
        held = engines.get(id(case.ct))
        if held is None or held[0] is not case.ct:
            engines.clear()
            held = engines[id(case.ct)] = (case.ct, ElectronDoseEngine(
                case.ct, grid_mm=grid_mm, min_move_mm=reuse_below[0],
                min_turn_deg=reuse_below[1]))
        engine = held[1]
        if beam.kv_diameter_mm is not None:
            return compute_kv_dose(case.ct, patient_from_applicator, beam.kv_diameter_mm,
                                   prescription_gy=beam.prescription_gy, grid_mm=grid_mm)
        disc = selector_disc(beam)
        if getattr(case, "disc", None) is not None:
            disc = disc_in_beam(case.disc, patient_from_applicator)
        result = engine.compute(
            patient_from_applicator,
            ElectronBeam(machine, beam.energy_mev, beam.applicator_diameter_mm, beam.bevel_deg),
            prescription_gy=beam.prescription_gy, isodose_percent=beam.isodose_percent,
            bolus_mm=beam.bolus_mm, disc=disc, model=model)
        return result

    dose_fn.supports_preview = True   # the electron engine's preview (the kV model ignores it)
    return dose_fn
