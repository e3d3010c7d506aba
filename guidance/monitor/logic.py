"""The OR monitor's logic: everything the window shows, computed without Qt.

:class:`MonitorLogic` owns the case, the scene, the capture worker, the dose worker, the
session log and the OpenIGTLink server. It reacts to events: the window calls
:meth:`MonitorLogic.on_frame` and :meth:`MonitorLogic.on_dose` when the capture and dose
workers signal (queued to the UI thread), and :meth:`MonitorLogic.on_clock` on a slow clock
that ages what is on screen; each returns or leads to the :class:`MonitorSnapshot` the
window displays (:meth:`MonitorLogic.snapshot` is a query without side effects). Headless
drivers call :meth:`MonitorLogic.poll`, which runs the same handlers. User actions (mode,
beam, confirm) are methods here, so every rule is testable headless (Slicer's Logic/Widget
split).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from threadpoolctl import threadpool_limits

from guidance.igtl.server import IgtlServer
from guidance.monitor.feed import CaptureWorker, FrameFeed, FrameUpdate
from guidance.monitor.mc_monitor import McCheckMonitor, McCheckStatus
from guidance.monitor.state import (
    LightFilter,
    MonitorStatus,
    RateMeter,
    ToolStatus,
    state_on_screen,
)
from guidance.record.screenshots import save_confirm_screenshots
from guidance.record.session_log import SessionLog
from guidance.registration.guided import GuidedRegistration
from guidance.render.scene import (
    LIVE_MAX_TRIANGLES,
    STYLE_ISODOSE,
    Scene,
    SceneItem,
    isodose_surface,
)
from guidance.render.scene_builder import (
    STYLE_DISC,
    applicator_view_mesh,
    build_scene,
    disc_view_mesh,
    kv_view_mesh,
)
from guidance.render.slices import IsodoseLevel, Outline
from guidance.tracking.pose_filter import DEFAULT_STALENESS_LIMIT_S, TrackingState
from guidance.treatment.dose_check import DoseCheck, PlanLimits, check_dose, load_plan_limits
from guidance.treatment.dose_service import (
    DEFAULT_MACHINE,
    BeamChoice,
    BeamOptions,
    DoseFunction,
    DoseScheduler,
    DoseService,
    DoseUpdate,
    coverage_numbers,
    selector_disc,
)
from guidance.treatment.plan_check import (
    Light,
    PlanDeviation,
    PlanTolerance,
    compare_to_plan,
    traffic_light,
    worst_light,
)
from models.base.errors import InputError
from models.base.transforms import transform_difference
from models.base.validation import as_positive, as_transform
from models.patient.case import Case

log = logging.getLogger(__name__)

MODES = ("surgeon", "oncologist")
#: Phases of the procedure; the alarms follow them (see :meth:`MonitorLogic.snapshot`).
PHASES = ("registration", "approach", "placement", "confirmed")
#: Tools whose loss is an alarm in each phase (the applicator is not expected before it
#: was first seen after the registration).
PHASE_TOOLS: dict[str, tuple[str, ...]] = {
    "registration": ("reference",), "approach": ("reference",),
    "placement": ("reference", "applicator"), "confirmed": ("reference", "applicator")}
#: While the applicator is carried, live doses start at least this far apart (s); at rest
#: at once (see :class:`DoseScheduler`).
LIVE_DOSE_INTERVAL_S = 0.25
#: A settled dose is judged for the current pose while the applicator stays this close
#: (mm, deg) to the pose it was computed for (the scheduler recomputes past 1 mm / 1 deg).
DOSE_POSE_MATCH = (2.0, 2.0)
#: Hysteresis margins (mm, deg) a better light must also pass.
LIGHT_HYSTERESIS = (0.5, 0.5)
#: Isodose lines on the slices: percent of the prescription and colour (RGB); 110 % is
#: magenta, never the red of the target outline.
ISODOSE_LINES: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (50.0, (0, 120, 255)), (100.0, (255, 220, 0)), (110.0, (255, 0, 255)))
#: Structures not outlined on the slices (the skin and point markers).
NOT_OUTLINED_ROI_TYPES = ("EXTERNAL", "MARKER")
#: Colour of the target in the DVH plot (RGB; a red like STYLE_TARGET of the 3D and AR views).
TARGET_RGB = (240, 60, 60)


def _coverage(dose: DoseUpdate) -> dict[str, dict[str, float]]:
    """Metrics per structure as plain numbers (for the session log)."""
    return coverage_numbers(dose.metrics, dose.outside_beam)


@dataclass(frozen=True)
class ConfirmResult:
    """What a press of *Confirm* did: accepted (with its session-log event) or refused.

    ``message`` is what the window shows large ("Confirmed #2, 14:03:22" or the reason
    it was refused); ``needs_override`` says that typing a reason would let it through.
    """

    accepted: bool
    message: str
    seq: int | None = None
    number: int = 0
    override_reason: str = ""
    needs_override: bool = False
    time_s: float = 0.0


@dataclass(frozen=True)
class MonitorSnapshot:
    """What the window shows at one instant."""

    frame: FrameUpdate | None
    frame_seq: int
    status: MonitorStatus
    deviation: PlanDeviation | None
    light: Light
    dose: DoseUpdate | None
    dose_seq: int
    mode: str
    overlay_ok: bool
    applicator_pose: np.ndarray | None = field(default=None, repr=False)
    banner: str = ""
    registration_lines: tuple[str, ...] = ()
    #: The tracking part of the banner (without the registration prompt), '' when all is
    #: current; what a stale episode in the session log says.
    tracking_banner: str = ""
    #: Why the light is not green (each a short line for the screen).
    light_reasons: tuple[str, ...] = ()
    #: The light before hysteresis/dwell, and with thresholds tightened by the margin.
    raw_light: Light = Light.GREY
    strict_light: Light = Light.GREY
    #: Verdict on the settled dose for the current pose and beam (None: no such dose).
    dose_check: DoseCheck | None = None
    #: Procedure phase (one of :data:`PHASES`).
    phase: str = "registration"
    #: Current beam against the planned one, one line per parameter that differs.
    beam_deviations: tuple[str, ...] = ()
    #: The newest Confirm press (None before the first).
    confirm: ConfirmResult | None = None
    #: The Monte Carlo check of the newest confirm (None: none started or the check is off).
    mc_check: McCheckStatus | None = None

    @property
    def applicator_ok(self) -> bool:
        """The applicator is tracked now (its pose, dose and deviation are current)."""
        return self.applicator_pose is not None


def _value_text(value, unit: str) -> str:
    """A beam parameter for the screen: ``30°``, ``8 MeV``, ``none``."""
    if value is None:
        return "none"
    return f"{value:g}{unit}" if isinstance(value, float | int) else str(value)


def _disc_text(beam: BeamChoice) -> str:
    """``90 mm x 3 mm at 30 mm`` (diameter x thickness at depth)."""
    diameter, thickness, depth = beam.disc_size_mm
    return f"{diameter:g} mm x {thickness:g} mm at {depth:g} mm"


class MonitorLogic:
    """Wires feed, dose, plan check, session log and OpenIGTLink for the OR monitor.

    Parameters
    ----------
    case : Case
        Patient (CT, structures).
    planned_patient_from_applicator : (4, 4) array
        Planned applicator pose (LPS mm).
    feed : FrameFeed
        Tracked video frames.
    dose_fn : DoseFunction, optional
        Dose engine; without it no dose is shown.
    session_log : SessionLog, optional
        Records actions, warnings, confirmations.
    igtl : IgtlServer, optional
        Started server; tool poses and status are sent on every new frame.
    max_triangles : int
        Decimation of each structure mesh for the live views.
    registration : GuidedRegistration, optional
        Guided pointer registration for a real camera (the feed must hand it every frame,
        e.g. ``LoopFeed(on_result=registration)``); its prompt becomes the banner until a
        registration is accepted, and the ``registration_*`` methods drive it.
    notices : sequence of str
        Standing cautions shown on screen for the whole session and logged once as
        warnings (e.g. ``CameraCalibration.warnings()``: a lens model uncertain at the
        image edges).
    mc_check : McCheckMonitor, optional
        Runs the Monte Carlo second check of each accepted confirm in a background process
        (:mod:`guidance.monitor.mc_monitor`); its status is in every snapshot.
    """

    def __init__(self, case: Case, planned_patient_from_applicator: np.ndarray,
                 feed: FrameFeed, *, dose_fn: DoseFunction | None = None,
                 beam: BeamChoice | None = None, beam_options: BeamOptions | None = None,
                 session_log: SessionLog | None = None, igtl: IgtlServer | None = None,
                 tolerance: PlanTolerance | None = None,
                 stall_limit_s: float = DEFAULT_STALENESS_LIMIT_S,
                 target: str = "CTV", max_triangles: int = 4000,
                 registration: GuidedRegistration | None = None,
                 planned_beam: BeamChoice | None = None, machine: str = DEFAULT_MACHINE,
                 limits: PlanLimits | None = None, plan_name: str = "",
                 light_dwell_s: float = 0.5, notices: Sequence[str] = (),
                 mc_check: McCheckMonitor | None = None) -> None:
        self.case = case
        self.notices = tuple(str(n) for n in notices)
        self.machine = machine
        self.plan_name = plan_name
        self.limits = limits if limits is not None else load_plan_limits()
        self.registration = registration
        self.plan = as_transform(planned_patient_from_applicator,
                                 name="planned_patient_from_applicator", rigid=True)
        self.beam = beam or planned_beam or BeamChoice()
        #: The plan's beam; the window starts on it and flags every difference.
        self.planned_beam = planned_beam or self.beam
        self.beam_options = beam_options or BeamOptions()
        self.session_log = session_log
        self.igtl = igtl
        self.tolerance = tolerance or PlanTolerance()
        self.stall_limit_s = as_positive(stall_limit_s, name="stall_limit_s")
        self.target = target
        self.mode = "surgeon"
        self.frame_rate = RateMeter()
        self.scene = self._build_scene(max_triangles)
        self.capture = CaptureWorker(feed)
        # the dose follows the tracking on the capture thread (see _offer_dose)
        self._beam_lock = threading.Lock()
        self.capture.listeners.append(self._offer_dose)
        live_isodose = functools.partial(isodose_surface, max_triangles=LIVE_MAX_TRIANGLES)
        self.dose_service = (DoseService(case, dose_fn, isodose_fn=live_isodose,
                                         scheduler=DoseScheduler(
                                             min_interval_s=LIVE_DOSE_INTERVAL_S),
                                         preview_while_moving=True)
                             if dose_fn is not None else None)
        self.warn_after_s = 0.5
        self._stale_since: float | None = None
        self._stale_logged = False
        self._last_frame_seq = 0
        self._last_dose_seq = 0
        self._frame: FrameUpdate | None = None   # newest frame taken by on_frame
        self._dose: DoseUpdate | None = None     # newest dose taken by on_dose
        self._igtl_stale: bool | None = None    # tracking state last sent as STATUS
        self._latest_snapshot: MonitorSnapshot | None = None
        self._settled: DoseUpdate | None = None  # newest dose with metrics
        self._check_cache: tuple[int, DoseCheck] | None = None
        self._light_filter = LightFilter(light_dwell_s)
        self._applicator_seen = False            # since the registration
        self._confirmed_pose: np.ndarray | None = None
        self._confirm: ConfirmResult | None = None
        self._confirmed_count = 0
        #: The intraoperative anatomy edits (:func:`guidance.monitor.anatomy.attach_anatomy`).
        self.anatomy = None
        #: Monte Carlo second check started by every accepted confirm (None: off).
        self.mc_check = mc_check

    # ------------------------------------------------------------------ scene
    def _build_scene(self, max_triangles: int) -> Scene:
        scene = build_scene(self.case, applicator_diameter_mm=self.beam.applicator_diameter_mm,
                            bevel_deg=self.beam.bevel_deg, target=self.target,
                            planned_patient_from_applicator=self.plan,
                            max_triangles=max_triangles)
        self._scene_disc(scene)
        if self.beam.kv_diameter_mm is not None:
            scene.add(replace(scene.items["applicator"], mesh=self._applicator_mesh()))
        return scene

    def _scene_disc(self, scene: Scene) -> None:
        """The shielding disc as an item that follows the tracked applicator (or none)."""
        size = self.beam.disc_size_mm
        if size is None:
            scene.items.pop("disc", None)
            return
        app = scene.items["applicator"]
        scene.add(SceneItem("disc", disc_view_mesh(*size), **STYLE_DISC,
                            patient_from_item=app.patient_from_item, visible=app.visible))

    def _applicator_mesh(self) -> object:
        if self.beam.kv_diameter_mm is not None:
            return kv_view_mesh(self.beam.kv_diameter_mm)
        return applicator_view_mesh(self.beam.applicator_diameter_mm, self.beam.bevel_deg)

    # ------------------------------------------------------ what views draw
    def slice_outlines(self) -> dict[str, Outline]:
        """Structures outlined on the CT slices, in their RTSTRUCT colours (moved organs
        also dashed where the preoperative CT saw them)."""
        out = {n: Outline(s.mask, s.color_rgb) for n, s in self.case.structures.items()
               if s.roi_type not in NOT_OUTLINED_ROI_TYPES}
        if self.anatomy is not None:
            out.update(self.anatomy.preoperative_outlines())
        return out

    @staticmethod
    def isodose_levels(prescription_gy: float) -> list[IsodoseLevel]:
        """Isodose lines (Gy) drawn on the slices for a prescription."""
        return [IsodoseLevel(prescription_gy * pct / 100.0, rgb) for pct, rgb in ISODOSE_LINES]

    def structure_colors(self) -> dict[str, tuple[int, int, int]]:
        """Plot colour (RGB) of every structure; the target in the target colour."""
        colors = {name: s.color_rgb for name, s in self.case.structures.items()}
        colors[self.target] = TARGET_RGB
        return colors

    # ------------------------------------------------------------- life cycle
    def start(self) -> MonitorLogic:
        # BLAS single-threaded for the live session: its matrices are 4x4 to 3xN, and
        # OpenBLAS's second thread spins after each call (a quarter of a core, measured in
        # the oncologist view, that the UI and the dose worker need)
        threadpool_limits(1, user_api="blas")
        self.capture.start()
        self.action("session_started", mode=self.mode)
        for notice in self.notices:
            self.warn(notice, source="calibration")
        return self

    def close(self) -> None:
        self.capture.stop()
        if self.dose_service is not None:
            self.dose_service.close()
        if self.mc_check is not None:
            self.mc_check.close()

    # ---------------------------------------------------------------- actions
    def save_screenshots(self, confirmed_seq: int, images: Mapping[str, np.ndarray]) -> int:
        """Keep the views shown at a confirm (view name -> RGB image) for the treatment
        record; returns how many were saved (0 without a session log or on a disk error,
        which is logged as a warning: the confirm itself is already recorded)."""
        if self.session_log is None or not images:
            return 0
        try:
            return len(save_confirm_screenshots(self.session_log, confirmed_seq, images))
        except (OSError, InputError) as exc:
            self.warn(f"screenshots of confirm #{confirmed_seq} not saved: {exc}",
                      source="confirm")
            return 0

    def action(self, name: str, **detail: object) -> None:
        """Record a user action in the session log."""
        if self.session_log is not None:
            self.session_log.log_action(name, **detail)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise InputError(f"mode {mode!r} unknown; choose one of: {', '.join(MODES)}")
        if mode != self.mode:
            self.mode = mode
            self.action("mode", mode=mode)

    def set_beam(self, beam: BeamChoice) -> None:
        """Change energy/applicator/bevel/disc: the dose is recomputed at once."""
        if beam == self.beam:
            return
        geometry_changed = (beam.applicator_diameter_mm, beam.bevel_deg,
                            beam.kv_diameter_mm) != (self.beam.applicator_diameter_mm,
                                                     self.beam.bevel_deg,
                                                     self.beam.kv_diameter_mm)
        disc_changed = beam.disc_size_mm != self.beam.disc_size_mm
        with self._beam_lock:   # no frame offers the old beam after the new one
            self.beam = beam
            snap = self._latest_snapshot
            if self.dose_service is not None and snap is not None and \
                    snap.applicator_pose is not None:
                self.dose_service.request(snap.applicator_pose, self.beam)
        if geometry_changed:
            for name in ("applicator", "planned_applicator"):
                item = self.scene.items[name]
                self.scene.add(replace(item, mesh=self._applicator_mesh()))
        if disc_changed or geometry_changed:
            self._scene_disc(self.scene)
        self.action("beam", **asdict(beam))

    def set_plan(self, planned_patient_from_applicator: np.ndarray, beam: BeamChoice, *,
                 limits: PlanLimits | None = None, target: str | None = None,
                 plan_name: str | None = None) -> None:
        """Start over on another plan (a trainee scenario): the planned pose, its beam (also
        selected now), limits and target; earlier confirms no longer count."""
        self.plan = as_transform(planned_patient_from_applicator,
                                 name="planned_patient_from_applicator", rigid=True)
        self.planned_beam = beam
        self.limits = self.limits if limits is None else limits
        self.target = self.target if target is None else target
        self.plan_name = self.plan_name if plan_name is None else plan_name
        item = self.scene.items.get("planned_applicator")
        if item is not None:
            self.scene.add(replace(item, patient_from_item=self.plan))
        self._confirmed_pose, self._confirm, self._confirmed_count = None, None, 0
        self._check_cache = None
        self.set_beam(beam)
        if self.dose_service is not None:
            self.dose_service.invalidate()
        self.action("plan", plan_name=self.plan_name, patient_from_applicator=self.plan,
                    target=self.target)

    def confirm(self, user: str = "", override_reason: str = "") -> ConfirmResult:
        """Record the current applicator pose, beam and coverage (*Confirm*).

        Refused (with a warning recorded) while the applicator is not tracked, no dose
        matches the current pose and beam, or there is no session log. While the light
        is not green (off plan, coverage or an organ limit not met, a hot spot, estimated
        MU, a beam other than the plan's) it is refused unless ``override_reason`` says
        why; the override is recorded (action ``confirm_override``) with the reasons.
        """
        snap = self._latest_snapshot
        refused = self._confirm_refusal(snap)
        if refused is None and snap.light is not Light.GREEN and not override_reason.strip():
            why = "; ".join(snap.light_reasons) or f"light {snap.light.value}"
            result = self._refuse(f"Confirm refused ({snap.light.value.upper()}): {why} - "
                                  "type an override reason to confirm anyway",
                                  needs_override=True)
            return result
        if refused is not None:
            return self._refuse(refused)
        dev = snap.deviation
        dose = self._dose_for(snap.applicator_pose)
        seq = self.session_log.log_confirmed_pose(
            patient_from_applicator=snap.applicator_pose, beam=self._logged_beam(dose),
            coverage=_coverage(dose), user=user,
            distance_to_plan_mm=None if dev is None else dev.distance_mm,
            angle_to_plan_deg=None if dev is None else dev.angle_deg)
        override = override_reason.strip() if snap.light is not Light.GREEN else ""
        if override:
            self.action("confirm_override", reason=override, confirmed_seq=seq,
                        light=snap.light.value, reasons=list(snap.light_reasons), user=user)
        self._confirmed_count += 1
        self._confirmed_pose = snap.applicator_pose
        now = time.time()
        clock = time.strftime("%H:%M:%S", time.localtime(now))
        message = f"Confirmed #{self._confirmed_count}, {clock}"
        if override:
            message += f" - OVERRIDE: {override}"
        self._confirm = ConfirmResult(True, message, seq, self._confirmed_count, override,
                                      time_s=now)
        if self.mc_check is not None:
            self._start_mc_check(snap.applicator_pose, seq)
        return self._confirm

    def _start_mc_check(self, patient_from_applicator: np.ndarray, seq: int) -> None:
        """The Monte Carlo check of the plan just confirmed, in the anatomy as it is now
        (edits, placed disc; else the selector's disc)."""
        from models.dicom.rt_export import PlanSpec

        beam = self.beam
        why = ""
        if beam.kv_diameter_mm is not None:
            why = "kV applicator (the Monte Carlo models the electron beam)"
        elif beam.bolus_mm:
            why = "a bolus is not modelled by the Monte Carlo"
        case = self.anatomy.case if self.anatomy is not None else self.case
        options: dict[str, object] = {"target": self.target}
        disc = selector_disc(beam)
        if disc is not None and getattr(case, "disc", None) is None:
            options["disc"] = disc
        spec = PlanSpec(self.machine, beam.energy_mev, beam.applicator_diameter_mm,
                        beam.bevel_deg, beam.prescription_gy, beam.isodose_percent,
                        np.array(patient_from_applicator, dtype=np.float64))
        try:
            self.mc_check.start(case, spec, confirmed_seq=seq, number=self._confirmed_count,
                                not_applicable=why, **options)
        except Exception as exc:   # the confirm is recorded; the check's failure is shown
            log.exception("Monte Carlo check not started")
            self.warn(f"Monte Carlo check of confirm #{self._confirmed_count} not started: "
                      f"{exc}", source="mc_check")

    def _confirm_refusal(self, snap: MonitorSnapshot | None) -> str | None:
        """Why Confirm cannot record anything now (None: it can)."""
        if snap is None or not snap.overlay_ok or snap.applicator_pose is None:
            return "Confirm refused: applicator not tracked"
        if self._dose_for(snap.applicator_pose) is None:
            return "Confirm refused: dose not computed for the current pose and beam"
        if self.session_log is None:
            return "Confirm refused: no session log to record it"
        return None

    def _refuse(self, message: str, *, needs_override: bool = False) -> ConfirmResult:
        self.warn(message, source="confirm")
        self._confirm = ConfirmResult(False, message, needs_override=needs_override,
                                      number=self._confirmed_count, time_s=time.time())
        return self._confirm

    # ----------------------------------------------------- guided registration
    # (Space / S / Backspace / Enter in the window; the registration logs each step)
    def registration_capture(self) -> bool:
        """Start collecting pointer tips on the fiducial asked for (Space)."""
        return self.registration is not None and self.registration.capture()

    def registration_skip(self) -> bool:
        """Skip the fiducial asked for (S)."""
        return self.registration is not None and self.registration.skip()

    def registration_redo(self) -> bool:
        """Cancel the capture in progress or take back the last fiducial (Backspace)."""
        return self.registration is not None and self.registration.redo()

    def registration_accept(self) -> bool:
        """Register now with the fiducials collected (Enter); True if accepted."""
        return self.registration is not None and self.registration.accept()

    def warn(self, message: str, *, source: str = "") -> None:
        log.warning("%s", message)
        if self.session_log is not None:
            self.session_log.log_warning(message, source=source)

    # ---------------------------------------------------------------- events
    def on_frame(self) -> bool:
        """Take the newest captured frame (the capture worker signalled one).

        Sends the poses over OpenIGTLink (the dose was already requested for it on the
        capture thread, :meth:`_offer_dose`). Returns False when no new frame was waiting
        (signals may coalesce).
        """
        frame_seq, frame = self.capture.latest()
        if frame is None or frame_seq == self._last_frame_seq:
            return False
        self._last_frame_seq, self._frame = frame_seq, frame
        self.frame_rate.tick()
        if not _registered(frame):
            self._applicator_seen = False   # a new registration: a new approach
        elif frame.tool_states.get("applicator", TrackingState.UNTRACKED) \
                is not TrackingState.UNTRACKED:
            self._applicator_seen = True
        snap = self.snapshot()
        if self.igtl is not None:
            self._send_igtl(frame, snap.applicator_pose, snap.status)
        return True

    def _offer_dose(self, frame: FrameUpdate) -> None:
        """On the capture thread, for every captured frame: offer a tracked applicator's
        pose to the dose service (the pose :meth:`snapshot` shows for that frame). The
        scheduler tells a resting applicator by its pose seen again in the next frame, so
        the offer follows the camera, not the UI's drawing: a UI thread busy rendering
        neither delays the full dose after the applicator stops nor skips frames of it."""
        if self.dose_service is None or frame.patient_from_applicator is None or \
                frame.tool_states.get("applicator") is not TrackingState.TRACKING:
            return
        with self._beam_lock:
            self.dose_service.request(frame.patient_from_applicator, self.beam)

    def on_dose(self) -> bool:
        """Take the newest published dose into the scene; False when none was waiting."""
        if self.dose_service is None:
            return False
        dose_seq, dose = self.dose_service.latest()
        if dose_seq == self._last_dose_seq:
            return False
        self._last_dose_seq, self._dose = dose_seq, dose
        if dose is not None and dose.metrics_ready:
            self._settled = dose
        self._apply_dose(dose)
        return True

    def on_clock(self, now_s: float | None = None) -> MonitorSnapshot:
        """Age what is on screen (a stalled capture), move or hide the applicator in the
        scene, log stale episodes, and return the :class:`MonitorSnapshot` to show."""
        now = time.monotonic() if now_s is None else now_s
        snap = self.snapshot(now)
        snap = replace(snap, light=self._light_filter.update(snap.raw_light, snap.strict_light,
                                                             now))
        # what depends on the applicator is hidden while it is not tracked; target, organs
        # and the planned ghost stay (they need only the reference and the registration)
        for name in ("applicator", "isodose", "disc"):
            if name in self.scene.items:
                self.scene.items[name].visible = snap.applicator_pose is not None
        if snap.applicator_pose is not None:
            self.scene.set_pose("applicator", snap.applicator_pose)
            if "disc" in self.scene.items:
                self.scene.set_pose("disc", snap.applicator_pose)
        self._record_staleness(bool(snap.tracking_banner), snap.tracking_banner, now)
        if self.mc_check is not None:
            snap = replace(snap, mc_check=self.mc_check.poll())
        self._latest_snapshot = snap
        return snap

    def poll(self, now_s: float | None = None) -> MonitorSnapshot:
        """Handle whatever arrived (frame, dose), then :meth:`on_clock`.

        For headless drivers (tests, benchmarks); the window calls the handlers on the
        capture and dose workers' events instead.
        """
        self.on_frame()
        self.on_dose()
        return self.on_clock(now_s)

    # ---------------------------------------------------------------- queries
    def snapshot(self, now_s: float | None = None) -> MonitorSnapshot:
        """What the views show now, from the newest handled frame and dose (no side
        effects): tool states, phase, light and its reasons, deviation from the plan,
        banners.

        The anatomy overlay needs the reference tracked and a registration; the
        applicator, its dose and the deviation need the applicator tracked too. Which
        tool's loss is an alarm follows the phase (:data:`PHASE_TOOLS`)."""
        now = time.monotonic() if now_s is None else now_s
        frame_seq, frame = self._last_frame_seq, self._frame
        tools = self._tool_status(frame, now)
        by_name = {t.name: t for t in tools}
        reference_ok = by_name.get("reference", ToolStatus("reference")).state \
            is TrackingState.TRACKING
        overlay_ok = frame is not None and frame.camera_from_patient is not None \
            and reference_ok and not self.capture.ended.is_set()
        applicator_ok = frame is not None and frame.patient_from_applicator is not None and \
            by_name.get("applicator", ToolStatus("applicator")).state \
            is TrackingState.TRACKING and not self.capture.ended.is_set()
        pose = frame.patient_from_applicator if applicator_ok else None
        phase = self._phase(frame, pose)
        dose = self._dose
        status = MonitorStatus(
            tools=tools, fre_mm=frame.fre_mm if frame else None,
            tre_mm=frame.tre_mm if frame else None, fps=self.frame_rate.rate_hz,
            dose_age_s=None if dose is None else now - dose.finished_s,
            dose_pending=self.dose_service.busy if self.dose_service else False,
            dose_refining=self.dose_service.refining if self.dose_service else False,
            dose_model="full" if dose is None else dose.model,
            overlay_tools=PHASE_TOOLS[phase])
        banner, tracking_banner, reg_lines = self._banners(frame, status, by_name, overlay_ok)
        deviation = compare_to_plan(pose, self.plan, self.tolerance) if pose is not None \
            else None
        judged = self._judge(pose, deviation)
        return MonitorSnapshot(
            frame=frame, frame_seq=frame_seq, status=status, deviation=deviation,
            light=self._light_filter.peek(judged.raw, judged.strict, now), dose=dose,
            dose_seq=self._last_dose_seq, mode=self.mode, overlay_ok=overlay_ok,
            applicator_pose=pose, banner=banner, registration_lines=reg_lines,
            tracking_banner=tracking_banner, light_reasons=judged.reasons,
            raw_light=judged.raw, strict_light=judged.strict, dose_check=judged.dose_check,
            phase=phase, beam_deviations=self.beam_deviations(), confirm=self._confirm,
            mc_check=None if self.mc_check is None else self.mc_check.status)

    def _phase(self, frame: FrameUpdate | None, pose: np.ndarray | None) -> str:
        """registration -> approach (applicator not yet seen) -> placement -> confirmed
        (tracked within the green tolerance of the confirmed pose)."""
        if frame is None or not _registered(frame):
            return "registration"
        if self._confirmed_pose is not None and pose is not None:
            move, turn = transform_difference(pose, self._confirmed_pose)
            if move <= self.tolerance.green_distance_mm and \
                    turn <= self.tolerance.green_angle_deg:
                return "confirmed"
        return "placement" if self._applicator_seen else "approach"

    def _banners(self, frame: FrameUpdate | None, status: MonitorStatus,
                 by_name: Mapping[str, ToolStatus], overlay_ok: bool
                 ) -> tuple[str, str, tuple[str, ...]]:
        """(banner, its tracking part, registration lines) for the snapshot."""
        banner = status.banner()
        if self.capture.ended.is_set():
            error = getattr(self.capture.feed, "error", "")
            banner = f"VIDEO ENDED - {error}" if error else "VIDEO ENDED - overlay hidden"
        elif not overlay_ok and not banner:
            banner = _no_overlay_banner(frame, by_name)
        elif banner and overlay_ok:
            banner += " - target and organs shown, applicator and dose hidden"
        tracking_banner = banner
        reg_lines: tuple[str, ...] = ()
        if self.registration is not None:
            reg_lines = tuple(self.registration.report_lines())
            prompt = self.registration.prompt()
            if prompt and not self.capture.ended.is_set():
                # the prompt replaces 'NOT REGISTERED'; a tracking problem follows it
                banner = prompt if banner.startswith("NOT REGISTERED") or not banner \
                    else f"{prompt} | {banner}"
        return banner, tracking_banner, reg_lines

    def beam_deviations(self) -> tuple[str, ...]:
        """Every parameter of the current beam that differs from the plan's."""
        cur, plan = self.beam, self.planned_beam
        out = []
        for label, attr, unit in (("energy", "energy_mev", " MeV"),
                                  ("applicator", "applicator_diameter_mm", " mm"),
                                  ("bevel", "bevel_deg", "°"), ("disc", "disc", ""),
                                  ("bolus", "bolus_mm", " mm"),
                                  ("prescription", "prescription_gy", " Gy"),
                                  ("isodose", "isodose_percent", " %"),
                                  ("bolus", "bolus_mm", " mm"),
                                  ("kV applicator", "kv_diameter_mm", " mm")):
            a, b = getattr(cur, attr), getattr(plan, attr)
            if a != b:
                out.append(f"{label} {_value_text(a, unit)} (plan {_value_text(b, unit)})")
        if cur.disc != "none" and cur.disc == plan.disc and \
                cur.disc_size_mm != plan.disc_size_mm:
            out.append(f"disc size {_disc_text(cur)} (plan {_disc_text(plan)})")
        return tuple(out)

    def _dose_for(self, pose: np.ndarray | None) -> DoseUpdate | None:
        """The settled dose (metrics computed) of the current beam at about this pose."""
        dose = self._settled
        if pose is None or dose is None or dose.beam != self.beam:
            return None
        move, turn = transform_difference(pose, dose.patient_from_applicator)
        return dose if move <= DOSE_POSE_MATCH[0] and turn <= DOSE_POSE_MATCH[1] else None

    def _dose_check(self, dose: DoseUpdate) -> DoseCheck:
        if self._check_cache is None or self._check_cache[0] != dose.seq:
            check = check_dose(dose.metrics, target=self.target,
                               prescription_gy=dose.beam.prescription_gy,
                               dose_max_gy=dose.dose_max_gy, limits=self.limits,
                               mu_estimated=dose.mu_estimated, disc=dose.beam.disc)
            self._check_cache = (dose.seq, check)
        return self._check_cache[1]

    def _judge(self, pose: np.ndarray | None, deviation: PlanDeviation | None) -> _Judgement:
        """The light before the filter: the worst of geometry, dose and beam vs plan."""
        if pose is None or deviation is None:
            return _Judgement(Light.GREY, Light.GREY, ("applicator not tracked",), None)
        tight = self.tolerance.tightened(*LIGHT_HYSTERESIS)
        strict_geo = traffic_light(deviation.distance_mm, deviation.angle_deg, tight,
                                   roll_deg=deviation.roll_deg)
        lights, reasons = [deviation.light], []
        if deviation.light is not Light.GREEN:
            reasons.append(f"{deviation.distance_mm:.1f} mm / {deviation.angle_deg:.1f}° "
                           f"from plan (green <= {self.tolerance.green_distance_mm:g} mm, "
                           f"{self.tolerance.green_angle_deg:g}°)")
        check = None
        if self.dose_service is not None:   # without a dose engine: geometry only
            dose = self._dose_for(pose)
            if dose is None:
                lights.append(Light.YELLOW)
                reasons.append("dose not yet computed for this pose and beam")
            else:
                check = self._dose_check(dose)
                lights.append(check.light)
                reasons.extend(check.reasons)
        deviations = self.beam_deviations()
        if deviations:
            lights.append(Light.YELLOW)
            reasons.append("beam differs from plan: " + ", ".join(deviations))
        others = worst_light(lights[1:])
        return _Judgement(worst_light(lights), worst_light([strict_geo, others]),
                          tuple(reasons), check)

    def header(self) -> str:
        """Patient and plan, for the permanent banner."""
        case, plan = self.case, self.planned_beam
        name = str(case.patient_name or "unnamed").replace("^", " ")
        source = f" ({self.plan_name})" if self.plan_name else ""
        return (f"{name}  |  ID {case.patient_id or '-'}  |  plan{source}: "
                f"{self.machine} {plan.energy_mev:g} MeV, {plan.applicator_diameter_mm:g} mm, "
                f"bevel {plan.bevel_deg:g}°, disc {plan.disc}, {plan.prescription_gy:g} Gy @ "
                f"{plan.isodose_percent:g} %")

    def _record_staleness(self, stale: bool, banner: str, now: float) -> None:
        """Log a stale episode once it lasted ``warn_after_s`` (the screen shows it at
        once), and its end; short blips are not written to the session log."""
        if stale:
            if self._stale_since is None:
                self._stale_since = now
            if not self._stale_logged and now - self._stale_since >= self.warn_after_s:
                self._stale_logged = True
                self.warn(banner, source="tracking")
        else:
            if self._stale_logged:
                self.action("tracking_recovered",
                            stale_s=round(now - (self._stale_since or now), 3))
            self._stale_since = None
            self._stale_logged = False

    def _tool_status(self, frame: FrameUpdate | None, now: float) -> tuple[ToolStatus, ...]:
        names = ("reference", "applicator")
        if frame is None:
            return tuple(ToolStatus(n) for n in names)
        out = []
        states = frame.tool_states
        for name in dict.fromkeys((*names, *states)):
            state, age = state_on_screen(
                states.get(name, TrackingState.UNTRACKED), frame.tool_age_s(name),
                now - frame.timestamp_s, self.stall_limit_s)
            out.append(ToolStatus(name, state, age))
        return tuple(out)

    def _apply_dose(self, dose: DoseUpdate | None) -> None:
        if dose is None:
            return
        current = self.scene.items.get("isodose")
        if current is None or current.mesh is not dose.isodose_mesh:
            # (poll may see only the second publication of a pose: add the surface anyway)
            self.scene.add(SceneItem("isodose", dose.isodose_mesh, **STYLE_ISODOSE))
        if dose.metrics_ready and self.session_log is not None:
            # the applicator settled: record parameters and coverage (not every transient)
            self.session_log.log_dose(beam={**self._logged_beam(dose),
                                            "patient_from_applicator":
                                                dose.patient_from_applicator},
                                      coverage=_coverage(dose), compute_ms=dose.compute_ms)

    def _logged_beam(self, dose: DoseUpdate) -> dict[str, object]:
        """The beam of a dose as the session log records it: with the machine and the pose
        the engine computed it at (a replay recomputes that pose to check the numbers)."""
        beam: dict[str, object] = {**asdict(dose.beam), "machine": self.machine}
        if dose.computed_from_applicator is not None:
            beam["dose_patient_from_applicator"] = dose.computed_from_applicator
        return beam

    def _send_igtl(self, frame: FrameUpdate, pose: np.ndarray | None,
                   status: MonitorStatus) -> None:
        assert self.igtl is not None
        if pose is not None:
            self.igtl.send_transform("ApplicatorToPatient", pose,
                                     timestamp_s=time.time())
        for name, camera_from_tool in frame.camera_from_tools.items():
            self.igtl.send_transform(f"{name.capitalize()}ToCamera", camera_from_tool)
        stale = status.stale
        if stale != self._igtl_stale:
            self._igtl_stale = stale
            self.igtl.send_status("Tracking", "NOT_READY" if stale else "OK",
                                  status.banner() if stale else "tracking")


@dataclass(frozen=True)
class _Judgement:
    raw: Light
    strict: Light
    reasons: tuple[str, ...]
    dose_check: DoseCheck | None


def _registered(frame: FrameUpdate) -> bool:
    """A registration is in use (from the loop, a file, or implied by a camera pose)."""
    return frame.registered or frame.fre_mm is not None or \
        frame.camera_from_patient is not None


def _no_overlay_banner(frame: FrameUpdate | None, tools: Mapping[str, ToolStatus]) -> str:
    """Why no overlay is drawn although no tool is stale: not registered, no camera pose
    (an external tracker without a tracked camera), or the reference is lost."""
    if frame is None or not _registered(frame):
        return "NOT REGISTERED - overlay hidden (touch the fiducials with the pointer)"
    if tools.get("reference", ToolStatus("reference")).state is TrackingState.TRACKING:
        return "NO CAMERA POSE - overlay hidden (applicator, dose and slices are live)"
    return "TRACKING LOST - overlay hidden"
