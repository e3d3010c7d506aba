"""Trainee mode: drive a simulated applicator through the real loop, get hints, meet faults,
confirm, be scored. Plain logic (no Qt): the window's trainee panel and ``iort rehearse
--headless`` both drive a :class:`TraineeSession`.

* the simulated applicator and its hints are :mod:`guidance.monitor.trainee_drive`;
* :class:`TraineeSession` — the phantom seen by a scripted camera: every frame the tracker
  device reports the driver's pose (:class:`~guidance.sim.scripted.ScriptedTrackerDevice`),
  the :class:`~guidance.loop.guidance_loop.GuidanceLoop` composes it through the
  reference plate and a simulated paired-point registration of the skin fiducials, and a
  :class:`~guidance.monitor.logic.MonitorLogic` with the electron engine judges it. Faults
  act on that chain (:meth:`TraineeSession.inject`): marker occlusion (the applicator's
  markers hidden), a fiducial touched wrongly (a re-registration with one point off),
  marker plate slip (the plate moves on the patient, the registration does not follow),
  patient motion (the patient moves under the applicator held still), camera bump (the
  camera moves, tracking drops for a moment). Reporting a fault re-registers.
* :meth:`TraineeSession.confirm` — confirms (an override reason says it is a rehearsal),
  scores the session log with :func:`guidance.record.score.score_session`, compares each
  component with the simulation's truth (:class:`Debrief`) and records the score in the
  trainee's history.
* timed command lists through a session (``iort rehearse --headless``) are
  :mod:`guidance.monitor.trainee_script`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from guidance.loop.guidance_loop import GuidanceLoop, LoopOptions
from guidance.monitor.feed import LoopFeed
from guidance.monitor.logic import MonitorLogic
from guidance.monitor.rehearsal import PhantomView, phantom_view
from guidance.monitor.trainee_drive import ApplicatorDriver, DriveOptions, Hint, hint_for
from guidance.monitor.trainee_scenario import (
    FAULT_KINDS,
    Scenario,
    load_scenario,
    scenario_case,
    scenario_names,
)
from guidance.record.score import (
    APPLICATOR_MOVED,
    FAULT_INJECTED,
    FAULT_REPORTED,
    OPTIONAL_COMPONENTS,
    PAUSED,
    RUBRIC,
    TRAINEE_SCENARIO,
    TraineeScore,
    record_score,
    score_session,
)
from guidance.record.session_log import SessionLog
from guidance.registration.paired_point import register_paired_points
from guidance.registration.tre import fle_from_fre_mm, predict_tre_mm
from guidance.sim.scripted import ScriptedShot, ScriptedSource, ScriptedTrackerDevice
from guidance.tracking.pose_filter import FilterOptions
from guidance.treatment.dose_service import (
    DoseFunction,
    electron_dose_function,
    evaluate_dose,
)
from guidance.treatment.plan_check import PlanTolerance, compare_to_plan
from models.base.errors import InputError
from models.base.transforms import invert_rigid, transform_difference, transform_from_rotvec
from models.evaluation.dvh import structure_bounds_mm

log = logging.getLogger(__name__)

#: Localisation error (mm, RMS 3-D) of the simulated pointer on a skin fiducial.
POINTER_FLE_MM = 0.5
#: How long a camera bump blurs the markers (s).
CAMERA_BUMP_DROPOUT_S = 0.3
#: A dose is the rest pose's when computed this close to it (mm and deg).
EXACT_POSE = 1e-3
#: A motion starting after the applicator rested this long (s) is a new placement.
REST_S = 1.0
#: Which fiducial a "touched wrongly" fault displaces.
WRONG_FIDUCIAL = "FID1"


# -------------------------------------------------------------- the session
@dataclass
class Fault:
    """One injected fault (times on the session clock, s)."""

    kind: str
    started_s: float
    magnitude: float
    duration_s: float
    scripted: bool = False
    reported: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TraineeTruth:
    """The simulation's truth at confirm: the real applicator pose and what it gives."""

    patient_from_applicator: np.ndarray
    position_error_mm: float
    angle_error_deg: float
    target_v90_percent: float
    target_d90_percent_of_rx: float
    registration_tre_mm: float
    faults: tuple[dict, ...]


#: Pass marks of the debrief per component: (value, "max" = must not exceed / "min").
PASS_MARKS: dict[str, tuple[float, str]] = {
    "position_error_mm": (3.0, "max"),
    "angle_error_deg": (5.0, "max"),
    "target_v90_percent": (95.0, "min"),
    "target_d90_percent_of_rx": (100.0, "min"),
    "organ_limit_violations": (0.0, "max"),
    "repositionings": (5.0, "max"),
    "registration_fre_mm": (2.0, "max"),
    "registration_tre_mm": (2.0, "max"),
    "faults_noticed_percent": (100.0, "min"),
}
LABELS = {"position_error_mm": ("position error", "mm"),
          "angle_error_deg": ("beam-axis angle", "°"),
          "target_v90_percent": ("target V90", "%"),
          "target_d90_percent_of_rx": ("target D90", "% of Rx"),
          "organ_limit_violations": ("organs over limit", ""),
          "time_to_confirm_s": ("time to confirm", "s"),
          "repositionings": ("repositionings", ""),
          "registration_fre_mm": ("registration FRE", "mm"),
          "registration_tre_mm": ("registration TRE", "mm"),
          "faults_noticed_percent": ("faults noticed", "%")}


@dataclass(frozen=True)
class DebriefRow:
    """One score component: logged value, the truth (None where the log is the truth),
    pass mark, pass/fail, points."""

    name: str
    label: str
    unit: str
    value: float | None
    truth: float | None
    mark: str
    passed: bool
    points: float
    full_points: float
    #: False for an optional component the session does not have (no fault injected...):
    #: it does not count in the total.
    applies: bool = True


@dataclass(frozen=True)
class Debrief:
    """What the debrief screen shows after a confirm."""

    scenario: str
    trainee: str
    score: TraineeScore
    rows: tuple[DebriefRow, ...]
    truth: TraineeTruth | None
    session_path: str

    @property
    def passed(self) -> bool:
        return self.score.confirmed and all(r.passed for r in self.rows)

    def lines(self) -> list[str]:
        out = [f"{self.scenario} - {self.trainee}: score {self.score.total:.0f} / 100, "
               f"{'PASS' if self.passed else 'FAIL'}"]
        for r in self.rows:
            shown = "-" if r.value is None else f"{r.value:.2f}"
            truth = "" if r.truth is None else f"(truth {r.truth:.2f})"
            points = f"{r.points:4.1f}/{r.full_points:g}" if r.applies else "n/a"
            out.append(f"  {r.label:<20} {shown:>8} {r.unit:<7} {truth:<16} "
                       f"{'pass' if r.passed else 'FAIL'}  {r.mark:<10} {points}")
        out += [f"  note: {n}" for n in self.score.notes]
        return out

    def to_dict(self) -> dict:
        truth = None if self.truth is None else {
            **asdict(self.truth),
            "patient_from_applicator": self.truth.patient_from_applicator.tolist()}
        return {"scenario": self.scenario, "trainee": self.trainee, "passed": self.passed,
                "total": self.score.total, "score": asdict(self.score),
                "rows": [asdict(r) for r in self.rows], "truth": truth,
                "session": self.session_path}


def _rows(score: TraineeScore, truth: TraineeTruth | None, time_limit_s: float
          ) -> tuple[DebriefRow, ...]:
    truths = {} if truth is None else {
        "position_error_mm": truth.position_error_mm, "angle_error_deg": truth.angle_error_deg,
        "target_v90_percent": truth.target_v90_percent,
        "target_d90_percent_of_rx": truth.target_d90_percent_of_rx,
        "registration_tre_mm": truth.registration_tre_mm}
    marks = {**PASS_MARKS, "time_to_confirm_s": (time_limit_s, "max")}
    rows = []
    for name, value in score.components.items():
        limit, kind = marks[name]
        judged = truths.get(name, value)   # the truth where there is one
        if judged is None:
            passed = name in OPTIONAL_COMPONENTS   # does not apply: nothing to fail
        else:
            passed = judged <= limit + 1e-9 if kind == "max" else judged >= limit - 1e-9
        label, unit = LABELS[name]
        rows.append(DebriefRow(name, label, unit, value, truths.get(name),
                               f"{'<=' if kind == 'max' else '>='} {limit:g}",
                               bool(passed and score.confirmed), score.points.get(name, 0.0),
                               RUBRIC[name][0],
                               value is not None or name not in OPTIONAL_COMPONENTS))
    return tuple(rows)


class _LiveShots(Sequence):
    """One shot, always the current truth (the device and source index it per frame)."""

    def __init__(self, session: TraineeSession) -> None:
        self._session = session

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index):
        return self._session.shot_now()


class TraineeSession:
    """One rehearsal of a scenario (see the module docstring).

    Parameters
    ----------
    scenario : Scenario or str
        The scenario (or its name / file).
    trainee : str
        Who rehearses (the score is recorded under this name).
    session_log : SessionLog
        Where the rehearsal is recorded (the score is computed from it).
    scenarios : list of Scenario, optional
        Scenarios the case must hold targets for (default: all shipped ones and this one).
    view : PhantomView, optional
        Phantom and camera (default :func:`~guidance.monitor.rehearsal.phantom_view`).
    fps : float
        Frame rate of the simulated camera.
    seed : int
        Seed of the pointer noise of the simulated registrations.
    scores_folder : path, optional
        Folder of the trainee histories (default: the sessions folder's ``trainees``).
    """

    def __init__(self, scenario: Scenario | str, *, trainee: str, session_log: SessionLog,
                 scenarios: list[Scenario] | None = None, view: PhantomView | None = None,
                 fps: float = 30.0, seed: int = 0, scores_folder: str | Path | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 drive: DriveOptions | None = None) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self.trainee = trainee
        self.session_log = session_log
        self.scores_folder = scores_folder
        self.clock = clock
        self.rng = np.random.default_rng(seed)
        view = view or phantom_view()
        known = scenarios if scenarios is not None else [load_scenario(n)
                                                         for n in scenario_names()]
        self.case = scenario_case(view.case, [*known, self.scenario])
        self.camera_matrix = view.camera_matrix
        self._camera_from_patient_at_start = view.camera_from_patient.copy()
        self.camera_from_patient = view.camera_from_patient.copy()
        self.plan = self.scenario.plan(self.case)
        self.driver = ApplicatorDriver(self.scenario.start_pose(self.case), options=drive,
                                       clock=clock)
        self.faults: list[Fault] = []
        self.hints_on = self.scenario.spec.hints
        self._hidden_until: dict[str, float] = {}
        self._t0: float | None = None
        self._scripted = list(self.scenario.spec.faults)
        self.debrief: Debrief | None = None
        self.paused = False
        self._rest_since = -np.inf
        self._since_seq = 0
        self._exact_request: np.ndarray | None = None
        shots = _LiveShots(self)
        self.device = ScriptedTrackerDevice(shots)
        self.true_patient_from_reference = self.device.patient_from_reference.copy()
        options = LoopOptions(filter=FilterOptions(enabled=False))
        self.loop = GuidanceLoop(ScriptedSource(shots, view.background(), fps=fps, loop=True),
                                 (), view.camera_matrix, device=self.device, options=options)
        self.feed = LoopFeed(self.loop, view.camera_matrix)
        beam = self.scenario.beam()
        self.dose_fn = self._dose_function()
        self.logic = MonitorLogic(self.case, self.plan, self.feed, dose_fn=self.dose_fn,
                                  beam=beam, planned_beam=beam, session_log=session_log,
                                  limits=self.scenario.limits(),
                                  target=self.scenario.target_name,
                                  plan_name=f"scenario {self.scenario.name}",
                                  tolerance=PlanTolerance(check_roll=beam.bevel_deg > 0))

    def _dose_function(self) -> DoseFunction:
        # never the previous result for a nearby pose: the score's dose is the pose's own
        return electron_dose_function(reuse_below=(0.0, 0.0))

    # ----------------------------------------------------------- life cycle
    def start(self) -> TraineeSession:
        """Start the monitor logic and the scenario (:meth:`restart`)."""
        self.logic.start()
        self.restart()
        return self

    def restart(self, scenario: Scenario | str | None = None) -> None:
        """Begin the scenario (again, or another one): the applicator back at its start,
        the plan, beam, limits and target of the scenario, a fresh registration, the
        scripted faults re-armed. The score counts from here."""
        if scenario is not None:
            chosen = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
            if chosen.target_name not in self.case.structures:
                self.case = scenario_case(self.case, [chosen])   # only before start()
            self.scenario = chosen
        spec = self.scenario.spec
        self.plan = self.scenario.plan(self.case)
        self.driver.release_all()
        self.driver = ApplicatorDriver(self.scenario.start_pose(self.case),
                                       options=self.driver.options, clock=self.clock)
        self.hints_on = spec.hints
        self._scripted = list(spec.faults)
        self.faults = []
        self._hidden_until = {}
        self.debrief = None
        self.paused = False
        self.device.patient_from_reference = self.true_patient_from_reference.copy()
        self.camera_from_patient = self._camera_from_patient_at_start.copy()
        if self.logic.dose_service is not None:
            self.logic.dose_service.dose_fn = self._dose_function()
        self.logic.set_plan(self.plan, self.scenario.beam(), limits=self.scenario.limits(),
                            target=self.scenario.target_name,
                            plan_name=f"scenario {self.scenario.name}")
        self._t0 = self.clock()
        self._since_seq = self.session_log.log_action(
            TRAINEE_SCENARIO, scenario=self.scenario.name, trainee=self.trainee,
            plan=self.plan, start=self.driver.pose())
        self.register()

    def close(self) -> None:
        self.logic.close()

    @property
    def elapsed_s(self) -> float:
        return 0.0 if self._t0 is None else self.clock() - self._t0

    # ------------------------------------------------------------- the world
    def shot_now(self) -> ScriptedShot:
        """The truth of the frame being taken now."""
        now = self.clock()
        visible = tuple(t for t in ("reference", "applicator")
                        if self._hidden_until.get(t, -np.inf) <= now)
        return ScriptedShot(self.camera_from_patient, self.driver.pose(now), visible)

    def register(self, *, wrong_mm: float = 0.0) -> float:
        """A paired-point registration of the skin fiducials touched by the simulated
        pointer (FLE :data:`POINTER_FLE_MM`; ``wrong_mm``: :data:`WRONG_FIDUCIAL` touched
        that far off), applied to the loop and logged. Returns its true TRE at the target."""
        names = sorted(self.case.fiducials_lps)
        patient = np.array([self.case.fiducials_lps[n] for n in names])
        reference_from_patient = invert_rigid(self.device.patient_from_reference)
        touched = patient @ reference_from_patient[:3, :3].T + reference_from_patient[:3, 3]
        touched += self.rng.normal(0.0, POINTER_FLE_MM / np.sqrt(3.0), touched.shape)
        if wrong_mm and WRONG_FIDUCIAL in names:
            touched[names.index(WRONG_FIDUCIAL)] += wrong_mm * np.array([0.6, 0.0, 0.8])
        fit = register_paired_points(patient, touched)
        target = self.case.centroid_lps(self.scenario.target_name)
        tre = float(predict_tre_mm(patient, target, fle_from_fre_mm(fit.fre_mm, len(names)))[0])
        self.loop.set_registration(fit.fixed_from_moving, fre_mm=fit.fre_mm)
        self.feed.tre_mm = tre
        self.session_log.log_registration(
            method="paired_point", fre_mm=fit.fre_mm, accepted=True,
            patient_from_reference=fit.fixed_from_moving, tre_predicted_mm=tre,
            residuals_mm=dict(zip(names, map(float, fit.residuals_mm), strict=True)),
            n_points=len(names))
        self.logic.dose_service.invalidate()
        return self.true_tre_mm()

    def true_tre_mm(self) -> float:
        """Distance (mm) between where the loop puts the target and where it is."""
        if self.loop.patient_from_reference is None:
            return float("nan")
        error = self.loop.patient_from_reference @ invert_rigid(self.device.patient_from_reference)
        target = self.case.centroid_lps(self.scenario.target_name)
        return float(np.linalg.norm(error[:3, :3] @ target + error[:3, 3] - target))

    # ----------------------------------------------------------------- faults
    def inject(self, kind: str, *, magnitude: float | None = None,
               duration_s: float = 2.0, scripted: bool = False) -> Fault:
        """Inject a fault now (one of :data:`FAULT_KINDS`); ``magnitude`` in mm."""
        if kind not in FAULT_KINDS:
            raise InputError(f"fault {kind!r} unknown; choose one of: {', '.join(FAULT_KINDS)}")
        size = float(6.0 if magnitude is None else magnitude)
        now = self.clock()
        if kind == "marker_occlusion":
            self._hidden_until["applicator"] = now + duration_s
        elif kind == "camera_bump":
            bump = transform_from_rotvec(np.radians([1.5, -1.0, 0.5]), [size, -0.5 * size, 0.0])
            self.camera_from_patient = bump @ self.camera_from_patient
            for tool in ("reference", "applicator"):
                self._hidden_until[tool] = now + CAMERA_BUMP_DROPOUT_S
        elif kind == "patient_motion":
            shift = np.eye(4)
            shift[:3, 3] = size * np.array([0.0, -0.3, -0.95]) / np.linalg.norm([0.3, 0.95])
            self.camera_from_patient = self.camera_from_patient @ shift
            self.driver.move_patient(invert_rigid(shift))
        elif kind == "plate_slip":
            slip = np.eye(4)
            slip[:3, 3] = size * np.array([0.8, 0.0, 0.6])
            self.device.patient_from_reference = slip @ self.device.patient_from_reference
        elif kind == "fiducial_wrong":
            self.register(wrong_mm=size)
        fault = Fault(kind, self.elapsed_s, size, duration_s, scripted)
        self.faults.append(fault)
        self.logic.action(FAULT_INJECTED, kind=kind, magnitude=size, scripted=scripted,
                          notice_within_s=self.scenario.spec.notice_within_s)
        log.info("fault injected: %s (%g)", kind, size)
        return fault

    def report_fault(self) -> None:
        """The trainee says something is wrong: recorded; registration faults (a wrong
        fiducial, a slipped plate) are cured by registering again."""
        self.logic.action(FAULT_REPORTED, t_s=round(self.elapsed_s, 3))
        recent = [f for f in self.faults if not f.reported]
        for fault in recent:
            fault.reported = True
        if any(f.kind in ("fiducial_wrong", "plate_slip") for f in recent):
            self.register()

    def pause(self) -> None:
        """Stop moving and look (counts as noticing a recent fault)."""
        self.driver.release_all()
        self.paused = not self.paused
        self.logic.action(PAUSED, on=self.paused, t_s=round(self.elapsed_s, 3))

    def tick(self) -> None:
        """Fire the scenario's scripted faults that are due (call it often)."""
        elapsed = self.elapsed_s
        while self._scripted and self._scripted[0].t_s <= elapsed:
            spec = self._scripted.pop(0)
            self.inject(spec.kind, magnitude=spec.magnitude, duration_s=spec.duration_s,
                        scripted=True)

    # ------------------------------------------------------------------ drive
    def _note_motion(self) -> None:
        """Log the start of a motion burst (after a rest of :data:`REST_S`): the score
        counts repositionings from these."""
        now = self.clock()
        if not self.driver.moving and now - self._rest_since >= REST_S:
            self.logic.action(APPLICATOR_MOVED, t_s=round(self.elapsed_s, 3))
        self.paused = False

    def _note_rest(self) -> None:
        if not self.driver.moving:
            self._rest_since = self.clock()

    def hold(self, motion: str, direction: str, *, for_s: float | None = None) -> None:
        """Start moving the applicator (see :meth:`ApplicatorDriver.hold`)."""
        self._note_motion()
        self.driver.hold(motion, direction, for_s=for_s)
        if for_s is not None:
            self._rest_since = max(self._rest_since, self.clock() + for_s)

    def release(self, motion: str, direction: str) -> None:
        self.driver.release(motion, direction)
        self._note_rest()

    def step(self, motion: str, direction: str, amount: float) -> None:
        """Move the applicator at once by ``amount`` (mm or deg)."""
        self._note_motion()
        self.driver.step(motion, direction, amount)
        self._rest_since = self.clock()

    def drag(self, du_px: float, dv_px: float, frame) -> np.ndarray | None:
        """Move the applicator parallel to the image plane by an image drag of (du, dv)
        pixels of ``frame`` (a :class:`~guidance.monitor.feed.FrameUpdate`), at the depth of
        its end face; returns the move (patient LPS, mm), None without a camera pose."""
        camera_from_patient = None if frame is None else frame.camera_from_patient
        if camera_from_patient is None:
            return None
        origin = self.driver.pose()[:3, 3]
        depth_mm = float(camera_from_patient[2, :3] @ origin + camera_from_patient[2, 3])
        k = frame.camera_matrix
        move_camera = np.array([du_px * depth_mm / k[0, 0], dv_px * depth_mm / k[1, 1], 0.0])
        move = camera_from_patient[:3, :3].T @ move_camera
        self._note_motion()
        self.driver.translate_by(move)
        self._rest_since = self.clock()
        return move

    # ------------------------------------------------------------------ hints
    def hint(self, patient_from_applicator: np.ndarray | None) -> Hint | None:
        """The hint for the tracked pose (None with hints off or nothing tracked)."""
        if not self.hints_on or patient_from_applicator is None:
            return None
        return hint_for(patient_from_applicator, self.plan,
                        roll=self.logic.tolerance.check_roll)

    # ---------------------------------------------------------------- confirm
    def ready_to_confirm(self, snap) -> bool:
        """True once the monitor shows the dose of exactly the tracked pose, at rest.

        The live dose is recomputed only after 1 mm / 1 deg, so the applicator may rest a
        little away from the pose of the last dose; then this asks for the dose of the
        rest pose (the score's V90 is then the rest pose's).
        """
        pose = None if snap is None else snap.applicator_pose
        service = self.logic.dose_service
        if pose is None or service is None or self.driver.moving:
            return False
        _, latest = service.latest()
        exact = latest is not None and latest.metrics_ready and latest.beam == self.logic.beam \
            and max(transform_difference(pose, latest.patient_from_applicator)) < EXACT_POSE
        if exact:
            return snap.dose is latest and snap.dose_check is not None
        asked = self._exact_request
        if not service.busy and (asked is None
                                 or max(transform_difference(pose, asked)) >= EXACT_POSE):
            self._exact_request = pose.copy()
            service.invalidate()
            service.request(pose, self.logic.beam)
        return False

    def confirm(self):
        """Confirm the tracked pose; on success score it and build the debrief.

        Returns the :class:`~guidance.monitor.logic.ConfirmResult` (refused while the
        applicator is not tracked or its dose not computed). A light other than green is
        confirmed with an override reason saying it is a rehearsal (the debrief judges it).
        """
        # (the logic records the override only when the light is not green)
        result = self.logic.confirm(user=self.trainee,
                                    override_reason="rehearsal: the debrief judges it")
        if result.accepted:
            self.driver.release_all()
            self.debrief = self.finish()
        return result

    def _truth(self) -> TraineeTruth:
        pose = self.driver.pose()
        dev = compare_to_plan(pose, self.plan)
        beam = self.logic.beam
        result = self._dose_function()(self.case, pose, beam)
        dose = getattr(result, "dose", result)
        name = self.scenario.target_name
        bounds = {name: structure_bounds_mm(self.case.ct, self.case.structures[name].mask)}
        dvhs, _ = evaluate_dose(self.case, dose, beam, bounds)
        metrics = dvhs[name].metrics if name in dvhs else None
        return TraineeTruth(
            pose, dev.distance_mm, dev.angle_deg,
            0.0 if metrics is None else metrics.v90_percent,
            0.0 if metrics is None else 100.0 * metrics.d90_gy / beam.prescription_gy,
            self.true_tre_mm(), tuple(f.to_dict() for f in self.faults))

    def finish(self) -> Debrief:
        """Score the session log, compare with the truth, record the score."""
        last = self.session_log.last("confirmed_pose")
        confirmed = last is not None and last.seq >= self._since_seq
        truth = self._truth() if confirmed else None
        score = score_session(self.session_log.path, self.plan, trainee=self.trainee,
                              target=self.scenario.target_name, limits=self.logic.limits,
                              since_seq=self._since_seq)
        record_score(score, folder=self.scores_folder)
        debrief = Debrief(self.scenario.name, self.trainee, score,
                          _rows(score, truth, self.scenario.spec.time_limit_s), truth,
                          str(self.session_log.path))
        self.logic.action("trainee_debrief", total=score.total, passed=debrief.passed)
        self.debrief = debrief
        return debrief
