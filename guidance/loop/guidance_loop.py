"""GuidanceLoop: the per-frame pipeline of DESIGN.md as plain Python (no Qt).

One frame through the loop::

    FrameSource.read() -> MarkerTracker (detect + PnP per tool) -> PoseFilter per tool
      -> camera_from_patient (reference pose + registration patient_from_reference)
      -> patient_from_applicator
      -> FrameResult -> subscribers (overlay, OR monitor, dose service, recorder, log)

The loop knows nothing of dose: whoever shows a dose offers the tracked applicator pose to
:class:`guidance.treatment.dose_service.DoseScheduler` (the one rule for when to recompute).

With an external tracker (``tool_poses=``, e.g. :class:`guidance.tracking.external.IgtlToolPoses`)
the marker detection is replaced by the tracker's poses (tracker frame), polled once per
frame; the frames then only drive the clock (and the AR background). See
:meth:`GuidanceLoop._compose` for the compositions.

Each tool has a clear state (:class:`~guidance.tracking.pose_filter.TrackingState`: untracked /
tracking / stale), decided on the frame clock; a change is announced in the same frame as a
:class:`ToolStateChanged` event. A pose older than ``staleness_limit_s`` is never handed
out, so no overlay can be drawn from it: :attr:`FrameResult.camera_from_patient` is None
then. Bad input never crashes the loop: unreadable frames are skipped and counted, a
failing source ends the run with a :class:`SourceFailed` event, and an exception in a
subscriber is logged and counted.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from calibration.camera import check_frame_size
from calibration.errors import CalibrationError
from guidance.frames.base import Frame, FrameSource, check_image
from guidance.tracking.devices import (
    ExternalTrackerDevice,
    FrameUnusable,
    MarkerTrackerDevice,
    Measured,
    TrackerDevice,
)
from guidance.tracking.markers import ToolPose
from guidance.tracking.pose_filter import FilterOptions, PoseFilter, TrackingState
from guidance.tracking.tools import ToolDefinition, check_tool_set
from models.base.errors import IortError
from models.base.transforms import invert_rigid
from models.base.validation import as_array, as_transform

if TYPE_CHECKING:
    from guidance.tracking.external import ToolPoseProvider

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopOptions:
    """Settings of the guidance loop.

    Attributes
    ----------
    filter : FilterOptions
        Smoothing and staleness (``filter.staleness_limit_s``, default 0.2 s).
    min_markers : int
        Markers a tool needs for a pose.
    max_rms_px : float
        Poses with a larger reprojection RMS are dropped.
    accept_ambiguous : bool
        Use poses flagged ambiguous (planar flip) as they come. Off (default): the solution
        closer to the tool's previous pose is used, and without a previous pose the
        measurement counts as not seen.
    reference_tool, pointer_tool, applicator_tool : str
        Names of the tools with those roles.
    camera_tool : str
        External-tracker mode only: the tool whose pose is the camera's
        (``tracker_from_camera``, OpenCV camera frame).
    """

    filter: FilterOptions = field(default_factory=FilterOptions)
    min_markers: int = 1
    max_rms_px: float = 3.0
    accept_ambiguous: bool = False
    reference_tool: str = "reference"
    pointer_tool: str = "pointer"
    applicator_tool: str = "applicator"
    camera_tool: str = "camera"

    @property
    def staleness_limit_s(self) -> float:
        """Age (s) beyond which no pose is used."""
        return self.filter.staleness_limit_s


@dataclass(frozen=True)
class ToolStatus:
    """One tool in one frame.

    Attributes
    ----------
    state : TrackingState
    camera_from_tool : (4, 4) array or None
        Filtered pose; None when UNTRACKED (external tracker: None unless the camera is
        tracked too).
    age_s : float
        Age of the pose on the frame clock (0 when measured in this frame).
    measurement : ToolPose or None
        Raw PnP result of this frame (with its quality), if any.
    tracker_from_tool : (4, 4) array or None
        Filtered pose in the tracker device's frame (the camera frame for marker tracking).
    """

    state: TrackingState
    camera_from_tool: np.ndarray | None
    age_s: float
    measurement: ToolPose | None = None
    tracker_from_tool: np.ndarray | None = None


@dataclass(frozen=True)
class FrameResult:
    """Everything the loop knows after one frame.

    Attributes
    ----------
    frame : Frame
    tools : dict name -> ToolStatus
    camera_from_patient : (4, 4) array or None
        For the overlay; None without registration or without a fresh enough reference pose.
    patient_from_applicator : (4, 4) array or None
    pointer_tip_reference_mm : (3,) array or None
        Pointer tip in the reference frame — only from poses measured in this frame (used to
        collect fiducials).
    pointer_tip_patient_mm : (3,) array or None
    latency_s : float
        Wall time from receiving the frame to this result.
    n_markers : int
        Markers detected in the frame.
    """

    frame: Frame
    tools: dict[str, ToolStatus]
    camera_from_patient: np.ndarray | None
    patient_from_applicator: np.ndarray | None
    pointer_tip_reference_mm: np.ndarray | None
    pointer_tip_patient_mm: np.ndarray | None
    latency_s: float
    n_markers: int

    def state(self, tool: str) -> TrackingState:
        """State of a tool (UNTRACKED for a tool the loop does not know)."""
        status = self.tools.get(tool)
        return TrackingState.UNTRACKED if status is None else status.state

    @property
    def overlay_allowed(self) -> bool:
        """True when an overlay may be drawn (registered and reference pose fresh enough)."""
        return self.camera_from_patient is not None


# -- events --------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameProcessed:
    """A frame went through the pipeline."""

    result: FrameResult


@dataclass(frozen=True)
class ToolStateChanged:
    """A tool changed state (e.g. tracking -> stale, stale -> untracked = lost)."""

    tool: str
    old: TrackingState
    new: TrackingState
    timestamp_s: float
    frame_index: int


@dataclass(frozen=True)
class FrameSkipped:
    """A frame could not be used (unreadable, wrong format, processing error)."""

    frame_index: int
    reason: str


@dataclass(frozen=True)
class RegistrationChanged:
    """``patient_from_reference`` was set (or cleared with None)."""

    patient_from_reference: np.ndarray | None
    fre_mm: float | None
    method: str


@dataclass(frozen=True)
class SourceEnded:
    """The source reached its end; the run is over."""

    frames_processed: int
    frames_skipped: int


@dataclass(frozen=True)
class SourceFailed:
    """The source failed (camera gone); the run is over."""

    reason: str


@dataclass(frozen=True)
class ClockResynchronised:
    """The frame clock jumped (a tracker or camera restarted) and the loop followed it.

    The pose filters were reset: every tool starts again from its next measurement.
    """

    frame_index: int
    from_s: float
    to_s: float


LoopEvent = (FrameProcessed | ToolStateChanged | FrameSkipped | RegistrationChanged
             | ClockResynchronised
             | SourceEnded | SourceFailed)


@dataclass(frozen=True)
class LoopSummary:
    """Counters of a :meth:`GuidanceLoop.run`.

    Attributes
    ----------
    frames_processed, frames_skipped : int
        Frames through the pipeline; frames dropped (source + loop).
    wall_s : float
    fps : float
        Frames processed per wall second (includes the source's time, e.g. rendering).
    mean_latency_s, max_latency_s : float
        Frame received -> result, processing only.
    failure : str or None
        Why the source failed, if it did.
    """

    frames_processed: int
    frames_skipped: int
    wall_s: float
    fps: float
    mean_latency_s: float
    max_latency_s: float
    failure: str | None = None


@dataclass(frozen=True)
class _CalibratedSize:
    """What :func:`calibration.camera.check_frame_size` reads of a calibration."""

    image_size: tuple[int, int]


class GuidanceLoop:
    """The live guidance pipeline.

    Parameters
    ----------
    source : FrameSource
        Opened by :meth:`run` (or by the caller) and closed by :meth:`run`.
    tools : mapping or iterable of ToolDefinition
    camera_matrix : (3, 3) array
        Intrinsics of the source's images (px).
    dist_coeffs : array, optional
        Their lens distortion (handled in PnP; images are not undistorted here).
    patient_from_reference : (4, 4) array, optional
        Registration, if already known; else set it later with :meth:`set_registration`.
    options : LoopOptions, optional
    tool_poses : ToolPoseProvider, optional
        External tracker (e.g. :class:`guidance.tracking.external.IgtlToolPoses`): tool poses
        come from it instead of marker detection, and ``tools``, ``camera_matrix`` and
        ``dist_coeffs`` are not used for tracking. The source's frames still drive the clock
        (use :class:`guidance.tracking.external.TrackerClockSource` when there is no camera).
    device : TrackerDevice, optional
        Any other tracker device (e.g. :class:`guidance.sim.scripted.ScriptedTrackerDevice`);
        excludes ``tool_poses``. Default: marker tracking of ``tools`` in the frames.

    Examples
    --------
    >>> from guidance.frames import ListSource
    >>> from guidance.tracking.tools import load_builtin_tools
    >>> k = np.array([[800.0, 0, 320], [0, 800.0, 240], [0, 0, 1]])
    >>> source = ListSource([np.zeros((480, 640), np.uint8)] * 3)   # no markers in view
    >>> loop = GuidanceLoop(source, load_builtin_tools(), k)
    >>> events = []
    >>> unsubscribe = loop.subscribe(events.append)
    >>> summary = loop.run(max_frames=100)
    >>> summary.frames_processed, loop.last_result.state("applicator").value
    (3, 'untracked')
    >>> type(events[-1]).__name__
    'SourceEnded'
    """

    def __init__(self, source: FrameSource,
                 tools: Mapping[str, ToolDefinition] | Iterable[ToolDefinition],
                 camera_matrix: np.ndarray, dist_coeffs: np.ndarray | None = None, *,
                 patient_from_reference: np.ndarray | None = None,
                 options: LoopOptions | None = None,
                 tool_poses: ToolPoseProvider | None = None,
                 device: TrackerDevice | None = None) -> None:
        if not isinstance(source, FrameSource):
            raise TypeError(f"source must be a FrameSource, got {type(source).__name__}")
        self.source = source
        values = tools.values() if isinstance(tools, Mapping) else tools
        self.tools = check_tool_set(values)
        self.options = options if options is not None else LoopOptions()
        self.camera_matrix = as_array(camera_matrix, name="camera_matrix", shape=(3, 3))
        self.dist_coeffs = (None if dist_coeffs is None
                            else as_array(dist_coeffs, name="dist_coeffs").ravel())
        if device is not None and tool_poses is not None:
            raise ValueError("give either device= or tool_poses=, not both")
        self.tool_poses = tool_poses
        self.device: TrackerDevice = device if device is not None else (
            ExternalTrackerDevice(tool_poses) if tool_poses is not None else
            MarkerTrackerDevice(self.tools.values(), self.camera_matrix, self.dist_coeffs,
                                min_markers=self.options.min_markers,
                                max_rms_px=self.options.max_rms_px,
                                accept_ambiguous=self.options.accept_ambiguous))
        tracked = self.device.tool_names
        self._filters = {name: PoseFilter(self.options.filter) for name in tracked}
        self._states = dict.fromkeys(tracked, TrackingState.UNTRACKED)
        self._subscribers: list[Callable[[LoopEvent], object]] = []
        self.patient_from_reference: np.ndarray | None = None
        self.registration_fre_mm: float | None = None
        self.frames_processed = 0
        self.frames_skipped = 0
        self.subscriber_errors = 0
        self.last_result: FrameResult | None = None
        #: True once the source ended or failed (then ``failure`` says why).
        self.finished = False
        self.failure: str | None = None
        self._last_time_s: float | None = None
        if patient_from_reference is not None:
            self.set_registration(patient_from_reference, method="given")

    # -- wiring -------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[LoopEvent], object]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; returns a function that unsubscribes."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)
        return unsubscribe

    def _emit(self, event: LoopEvent) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a broken subscriber must not stop the guidance
                self.subscriber_errors += 1
                log.exception("subscriber %r failed on %s", callback, type(event).__name__)

    def set_registration(self, patient_from_reference: np.ndarray | None, *,
                         fre_mm: float | None = None, method: str = "paired_point") -> None:
        """Set (or clear with None) the patient-to-reference registration."""
        if patient_from_reference is None:
            self.patient_from_reference = None
        else:
            self.patient_from_reference = as_transform(
                patient_from_reference, name="patient_from_reference", rigid=True, atol=1e-5)
        self.registration_fre_mm = fre_mm
        self._emit(RegistrationChanged(self.patient_from_reference, fre_mm, method))

    def state(self, tool: str) -> TrackingState:
        """Current state of a tool."""
        return self._states[tool]

    # -- per frame ----------------------------------------------------------------------
    #: (width, height) px the camera was calibrated for; a frame of another size is skipped
    #: (its intrinsics would be wrong). None: the size of the first frame is kept instead.
    calibrated_size_px: tuple[int, int] | None = None
    #: Largest step (s) between consecutive frame stamps taken as the same clock; a stamp
    #: further ahead, or behind the last, is skipped unless the next frame confirms it.
    MAX_CLOCK_STEP_S = 5.0
    _first_size_px: tuple[int, int] | None = None
    _clock_candidate_s: float | None = None

    def patient_from_tool(self, result: FrameResult, tool: str) -> np.ndarray | None:
        """A tracked tool's pose in patient LPS (mm) in ``result``, through the reference.

        ``patient_from_reference @ inv(tracker_from_reference) @ tracker_from_tool`` — only
        when registered and both the reference and the tool are TRACKING in this frame (a
        held pose must not move an organ); None otherwise. Used for tools the loop does not
        compose itself (the retractor).
        """
        reg = self.patient_from_reference
        ref = result.tools.get(self.options.reference_tool)
        status = result.tools.get(tool)
        if (reg is None or ref is None or status is None or ref.tracker_from_tool is None
                or status.tracker_from_tool is None
                or ref.state is not TrackingState.TRACKING
                or status.state is not TrackingState.TRACKING):
            return None
        return reg @ invert_rigid(ref.tracker_from_tool) @ status.tracker_from_tool

    def process(self, frame: Frame) -> FrameResult | None:
        """Run one frame through the pipeline; None (and a FrameSkipped event) if unusable.

        Skipped: an image that is not uint8, a size other than :attr:`calibrated_size_px`,
        a timestamp that is not finite, or one out of line with the clock (behind the last
        frame, or more than :attr:`MAX_CLOCK_STEP_S` ahead). Two consecutive stamps in line
        with each other but not with the old clock are a clock reset or jump: the loop
        resets its pose filters, emits :class:`ClockResynchronised` and carries on.
        """
        received = time.perf_counter()
        if not check_image(frame.image):
            return self._skip(frame.index, "frame image is not a uint8 (H, W[, 3]) array")
        problem = self._frame_size_problem(frame.image) or self._clock_problem(frame)
        if problem:
            return self._skip(frame.index, problem)
        previous = {name: f.pose for name, f in self._filters.items()}
        try:
            measured = self.device.measure(frame, previous,
                                           max_age_s=self.options.staleness_limit_s)
        except FrameUnusable as exc:
            return self._skip(frame.index, str(exc))
        self._last_time_s = frame.timestamp_s
        return self._finish(self._compose(frame, self._statuses(frame.timestamp_s, measured),
                                          measured.n_markers, received))

    def _frame_size_problem(self, image: np.ndarray) -> str | None:
        """Why a frame's size cannot be used with the intrinsics, or None."""
        expected = self.calibrated_size_px or self._first_size_px
        if expected is None:
            self._first_size_px = (int(image.shape[1]), int(image.shape[0]))
            return None
        try:
            check_frame_size(_CalibratedSize(tuple(expected)), image,  # type: ignore[arg-type]
                             source="camera calibration")
        except CalibrationError as exc:
            return f"{exc}; frame not tracked"
        return None

    def _clock_problem(self, frame: Frame) -> str | None:
        """Why a frame's timestamp cannot be used, or None (resynchronising on a reset)."""
        t_s, last = frame.timestamp_s, self._last_time_s
        if not math.isfinite(t_s):
            return f"timestamp {t_s} is not a finite number of seconds"
        if last is None or last <= t_s <= last + self.MAX_CLOCK_STEP_S:
            self._clock_candidate_s = None
            return None
        candidate = self._clock_candidate_s
        if candidate is not None and candidate < t_s <= candidate + self.MAX_CLOCK_STEP_S:
            log.warning("frame clock jumped from %.3f s to %.3f s (a restarted tracker or "
                        "camera?): pose filters reset", last, t_s)
            self._filters = {name: PoseFilter(self.options.filter) for name in self._filters}
            self._clock_candidate_s = None
            self._last_time_s = t_s
            self._emit(ClockResynchronised(frame.index, last, t_s))
            return None
        self._clock_candidate_s = t_s
        direction = "goes back in time" if t_s < last else \
            f"jumps more than {self.MAX_CLOCK_STEP_S:g} s ahead"
        return f"timestamp {t_s:.3f} s {direction} (last {last:.3f} s)"

    def _finish(self, result: FrameResult) -> FrameResult:
        """Announce state changes, count, publish."""
        frame = result.frame
        for name, status in result.tools.items():
            old = self._states[name]
            if status.state is not old:
                self._states[name] = status.state
                self._emit(ToolStateChanged(name, old, status.state, frame.timestamp_s,
                                            frame.index))
        self.frames_processed += 1
        self.last_result = result
        self._emit(FrameProcessed(result))
        return result

    def _statuses(self, t_s: float, measured: Measured) -> dict[str, ToolStatus]:
        """Filter every tool on the frame clock; express the poses in the camera frame."""
        filtered = {name: f.update(t_s, measured.tracker_from_tool.get(name))
                    for name, f in self._filters.items()}
        if self.device.tracker_is_camera:
            return {name: ToolStatus(f.state, f.pose, f.age_s, measured.measurements.get(name),
                                     tracker_from_tool=f.pose) for name, f in filtered.items()}
        camera = filtered.get(self.options.camera_tool)
        camera_from_tracker = (None if camera is None or camera.pose is None
                               else invert_rigid(camera.pose))
        return {name: ToolStatus(
            f.state, None if camera_from_tracker is None or f.pose is None
            or name == self.options.camera_tool else camera_from_tracker @ f.pose,
            f.age_s, measured.measurements.get(name), tracker_from_tool=f.pose)
            for name, f in filtered.items()}

    def _compose(self, frame: Frame, statuses: dict[str, ToolStatus], n_markers: int,
                 received: float) -> FrameResult:
        """Compose the filtered tracker-frame poses, whatever the device.

        ``patient_from_applicator = patient_from_reference @ inv(tracker_from_reference) @
        tracker_from_tool @ tool_from_applicator``; pointer tip in the reference frame
        ``inv(tracker_from_reference) @ tracker_from_pointer @ tip``; ``camera_from_patient
        = inv(patient_from_reference @ inv(tracker_from_reference) @ tracker_from_camera)``
        with ``tracker_from_camera`` the identity for marker tracking (tracker = camera) and
        the tracked camera tool otherwise (None when it is not tracked).
        """
        opts = self.options
        reg = self.patient_from_reference

        def pose(tool: str) -> np.ndarray | None:
            status = statuses.get(tool)
            return None if status is None else status.tracker_from_tool

        tracker_from_ref = pose(opts.reference_tool)
        reference_from_tracker = (None if tracker_from_ref is None
                                  else invert_rigid(tracker_from_ref))
        camera_from_patient = patient_from_applicator = None
        if reg is not None and reference_from_tracker is not None:
            patient_from_tracker = reg @ reference_from_tracker
            tracker_from_camera = (np.eye(4) if self.device.tracker_is_camera
                                   else pose(opts.camera_tool))
            if tracker_from_camera is not None:
                camera_from_patient = invert_rigid(patient_from_tracker @ tracker_from_camera)
            tracker_from_app = pose(opts.applicator_tool)
            app_offset = self.device.geometry(opts.applicator_tool).tool_from_applicator
            if tracker_from_app is not None and app_offset is not None:
                patient_from_applicator = patient_from_tracker @ tracker_from_app @ app_offset
        tip_ref = tip_patient = None
        tracker_from_ptr = pose(opts.pointer_tool)
        tip = self.device.geometry(opts.pointer_tool).tip_mm
        if (tracker_from_ptr is not None and reference_from_tracker is not None
                and tip is not None
                and statuses[opts.pointer_tool].state is TrackingState.TRACKING
                and statuses[opts.reference_tool].state is TrackingState.TRACKING):
            tip_tracker = tracker_from_ptr[:3, :3] @ tip + tracker_from_ptr[:3, 3]
            tip_ref = reference_from_tracker[:3, :3] @ tip_tracker + reference_from_tracker[:3, 3]
            if reg is not None:
                tip_patient = reg[:3, :3] @ tip_ref + reg[:3, 3]
        return FrameResult(frame=frame, tools=statuses, camera_from_patient=camera_from_patient,
                           patient_from_applicator=patient_from_applicator,
                           pointer_tip_reference_mm=tip_ref, pointer_tip_patient_mm=tip_patient,
                           latency_s=time.perf_counter() - received, n_markers=n_markers)

    def _skip(self, index: int, reason: str) -> None:
        self.frames_skipped += 1
        log.warning("frame %d skipped: %s", index, reason)
        self._emit(FrameSkipped(index, reason))
        return None

    # -- running ------------------------------------------------------------------------
    def step(self) -> FrameResult | Literal[False] | None:
        """Read and process one frame.

        Returns the FrameResult; None when the frame was skipped; False once the stream is
        over or the source failed (then :attr:`finished` is True and :attr:`failure` says
        why; a SourceFailed event is emitted for a failure).
        """
        if self.finished:
            return False
        skipped_before = self.source.frames_skipped
        try:
            frame = self.source.read()
        except IortError as exc:
            self.finished = True
            self.failure = str(exc)
            self._emit(SourceFailed(str(exc)))
            log.error("frame source failed: %s", exc)
            return False
        for _ in range(self.source.frames_skipped - skipped_before):
            self.frames_skipped += 1
            self._emit(FrameSkipped(-1, "the source could not decode a frame"))
        if frame is None:
            self.finished = True
            return False
        return self.process(frame)

    def run(self, max_frames: int | None = None) -> LoopSummary:
        """Process frames until the stream ends, the source fails or ``max_frames``.

        Opens the source if needed and always closes it.
        """
        start = time.perf_counter()
        processed_before = self.frames_processed
        latencies = []
        try:
            self.source.open()
            while not self.finished and (max_frames is None
                                         or self.frames_processed - processed_before < max_frames):
                result = self.step()
                if result:
                    latencies.append(result.latency_s)
        except IortError as exc:  # e.g. the camera is not present
            self.finished = True
            self.failure = str(exc)
            log.error("frame source failed: %s", exc)
            self._emit(SourceFailed(str(exc)))
        finally:
            self.source.close()
        if self.failure is None and self.finished:
            self._emit(SourceEnded(self.frames_processed, self.frames_skipped))
        wall = time.perf_counter() - start
        processed = self.frames_processed - processed_before
        return LoopSummary(frames_processed=processed,
                           frames_skipped=self.frames_skipped, wall_s=wall,
                           fps=processed / wall if wall > 0 else 0.0,
                           mean_latency_s=float(np.mean(latencies)) if latencies else 0.0,
                           max_latency_s=float(np.max(latencies)) if latencies else 0.0,
                           failure=self.failure)
