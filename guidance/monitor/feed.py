"""Frames for the OR monitor: what one tracked video frame brings, and a capture worker.

A *feed* turns a camera (real, simulated, recorded, OpenIGTLink) plus tracking and
registration into :class:`FrameUpdate` objects. The monitor never calls a feed from its UI
thread: a :class:`CaptureWorker` thread reads it and keeps only the newest update.

:class:`ScriptedFeed` replays known poses over a given background (tests, benchmarks,
rehearsal without a camera); :class:`LoopFeed` wraps the live
:class:`guidance.loop.guidance_loop.GuidanceLoop` when it is available.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from guidance.tracking.pose_filter import (
    DEFAULT_STALENESS_LIMIT_S,
    FilterOptions,
    PoseFilter,
    TrackingState,
)
from models.base.errors import InputError, IortError
from models.base.validation import as_array, as_transform

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameUpdate:
    """One processed video frame.

    Attributes
    ----------
    image_rgb : (H, W, 3) uint8
        Undistorted video frame, RGB.
    camera_matrix : (3, 3) array
        Intrinsics (px) of ``image_rgb``.
    timestamp_s : float
        ``time.monotonic()`` when the frame was captured.
    camera_from_patient : (4, 4) array or None
        Camera pose relative to the patient (needs the reference tracked and a
        registration); None when unknown.
    patient_from_applicator : (4, 4) array or None
        Tracked applicator in patient LPS (mm); None when unknown.
    tool_states : mapping name -> TrackingState
        Each tool's state as the pose filter decided it for this frame (the one
        vocabulary: :class:`~guidance.tracking.pose_filter.TrackingState`).
    tool_ages_s : mapping name -> float or None
        Age (s) of each tool's newest pose at capture time; None = never seen.
    camera_from_tools : mapping name -> (4, 4) array
        Raw tool poses in the camera frame (for OpenIGTLink).
    fre_mm, tre_mm : float or None
        Accepted registration's fiducial and (predicted) target registration error.
    registered : bool
        A ``patient_from_reference`` is in use (also one loaded from a file, which has
        no FRE).
    index : int
        Frame number from the feed.
    """

    image_rgb: np.ndarray
    camera_matrix: np.ndarray
    timestamp_s: float
    camera_from_patient: np.ndarray | None = None
    patient_from_applicator: np.ndarray | None = None
    tool_ages_s: Mapping[str, float | None] = field(default_factory=dict)
    tool_states: Mapping[str, TrackingState] = field(default_factory=dict)
    camera_from_tools: Mapping[str, np.ndarray] = field(default_factory=dict)
    fre_mm: float | None = None
    tre_mm: float | None = None
    index: int = 0
    registered: bool = False

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.image_rgb.shape[1]), int(self.image_rgb.shape[0])


class FrameFeed(Protocol):
    """Anything that yields :class:`FrameUpdate` (blocking up to one frame period)."""

    def read(self) -> FrameUpdate | None:
        """The next frame, or None at the end of the stream."""

    def close(self) -> None:
        """Release the camera/source."""


@dataclass(frozen=True)
class ScriptedShot:
    """Truth for one frame of a :class:`ScriptedFeed`.

    ``visible`` lists the tools seen in this frame; a tool not seen keeps its last pose,
    which the same pose filter as the loop's marks STALE, then UNTRACKED past the limit.
    """

    camera_from_patient: np.ndarray
    patient_from_applicator: np.ndarray
    visible: tuple[str, ...] = ("reference", "applicator")


class ScriptedFeed:
    """Replays scripted poses over a background image at a fixed frame rate.

    Parameters
    ----------
    shots : sequence of ScriptedShot
        One per frame; the feed ends after the last unless ``loop``.
    camera_matrix : (3, 3) array
        Intrinsics (px).
    background : (H, W, 3) uint8 array or callable(index, shot) -> array
        The video frames.
    fps : float
        Frame rate (0 = as fast as read).
    fre_mm, tre_mm : float, optional
        Registration numbers reported with every frame.
    loop : bool
        Start again after the last shot.
    staleness_limit_s : float
        Age after which a tool not seen is UNTRACKED (as ``FilterOptions.staleness_limit_s``).
    """

    def __init__(self, shots: Sequence[ScriptedShot], camera_matrix: np.ndarray,
                 background: np.ndarray | Callable[[int, ScriptedShot], np.ndarray], *,
                 fps: float = 30.0, fre_mm: float | None = None,
                 tre_mm: float | None = None, loop: bool = False,
                 staleness_limit_s: float = DEFAULT_STALENESS_LIMIT_S) -> None:
        if not shots:
            raise InputError("shots must not be empty")
        self.shots = list(shots)
        self.camera_matrix = as_array(camera_matrix, name="camera_matrix", shape=(3, 3))
        self.background = background
        self.period_s = 1.0 / fps if fps > 0 else 0.0
        self.fre_mm, self.tre_mm = fre_mm, tre_mm
        self.loop = loop
        self._index = 0
        options = FilterOptions(enabled=False, staleness_limit_s=staleness_limit_s)
        self._filters = {tool: PoseFilter(options) for tool in ("reference", "applicator")}
        self._next_s: float | None = None
        self._closed = threading.Event()

    def read(self) -> FrameUpdate | None:
        if self._closed.is_set():
            return None
        if self._index >= len(self.shots):
            if not self.loop:
                return None
        shot = self.shots[self._index % len(self.shots)]
        now = time.monotonic()
        if self.period_s:
            if self._next_s is None:
                self._next_s = now
            wait = self._next_s - now
            if wait > 0 and self._closed.wait(wait):
                return None
            self._next_s = max(self._next_s + self.period_s, time.monotonic())
            now = time.monotonic()
        # camera_from_reference with the reference fixed to the patient (reference = patient)
        measured = {"reference": as_transform(shot.camera_from_patient,
                                              name="camera_from_patient"),
                    "applicator": as_transform(shot.patient_from_applicator,
                                               name="patient_from_applicator")}
        filtered = {tool: f.update(now, measured[tool] if tool in shot.visible else None)
                    for tool, f in self._filters.items()}
        ages = {tool: None if fp.state is TrackingState.UNTRACKED else fp.age_s
                for tool, fp in filtered.items()}
        image = self.background(self._index, shot) if callable(self.background) \
            else self.background
        update = FrameUpdate(
            image_rgb=np.asarray(image), camera_matrix=self.camera_matrix, timestamp_s=now,
            camera_from_patient=filtered["reference"].pose,
            patient_from_applicator=filtered["applicator"].pose,
            tool_ages_s=ages, tool_states={tool: fp.state for tool, fp in filtered.items()},
            fre_mm=self.fre_mm, tre_mm=self.tre_mm, index=self._index)
        self._index += 1
        return update

    def close(self) -> None:
        self._closed.set()


class CaptureWorker:
    """Reads a feed on its own thread and keeps the newest :class:`FrameUpdate`.

    The UI polls :meth:`latest`; nothing the feed does (camera I/O, marker detection,
    registration) runs on the UI thread. The thread ends at the end of the stream, on an
    error of the feed (logged, counted) or on :meth:`stop`.
    """

    def __init__(self, feed: FrameFeed, *, on_frame: Callable[[FrameUpdate], None] | None = None
                 ) -> None:
        self.feed = feed
        self.on_frame = on_frame
        self.frames = 0
        self.errors = 0
        self.ended = threading.Event()
        self._latest: FrameUpdate | None = None
        self._seq = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor-capture", daemon=True)

    def start(self) -> CaptureWorker:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    update = self.feed.read()
                except Exception:  # a broken frame must not kill the monitor
                    self.errors += 1
                    log.exception("frame feed failed; frame skipped")
                    if self.errors > 100:
                        log.error("frame feed failed 100 times; capture stopped")
                        break
                    continue
                if update is None:
                    break
                with self._lock:
                    self._latest = update
                    self._seq += 1
                    self.frames += 1
                if self.on_frame is not None:
                    self.on_frame(update)
        finally:
            self.ended.set()

    def latest(self) -> tuple[int, FrameUpdate | None]:
        """(sequence number, newest update); the number grows with every new frame."""
        with self._lock:
            return self._seq, self._latest

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self.feed.close()
        if self._thread.is_alive():
            self._thread.join(timeout_s)


class LoopFeed:
    """:class:`FrameFeed` over a :class:`guidance.loop.guidance_loop.GuidanceLoop` (any frame
    source).

    Each read runs one frame through the loop (detection, pose filter, registration),
    undistorts the image for the overlay and converts it to RGB.

    Parameters
    ----------
    loop : GuidanceLoop
        The pipeline; its source is opened on the first read and closed by :meth:`close`.
    camera_matrix : (3, 3) array
        Intrinsics of the *undistorted* images.
    undistort : callable(image_bgr) -> image_bgr, optional
        Lens undistortion (e.g. ``calibration.undistort.Undistorter.undistort``).
    on_result : callable(FrameResult), optional
        Hook per processed frame (e.g.
        :class:`guidance.registration.pointer.PointerRegistration` for the simulated
        procedure, :class:`guidance.registration.guided.GuidedRegistration` for a real
        camera); its accepted ``result`` supplies the predicted TRE of the updates.
    """

    def __init__(self, loop, camera_matrix: np.ndarray, *,
                 undistort: Callable[[np.ndarray], np.ndarray] | None = None,
                 on_result: Callable[[object], None] | None = None) -> None:
        self.loop = loop
        self.camera_matrix = as_array(camera_matrix, name="camera_matrix", shape=(3, 3))
        self.undistort = undistort
        self.on_result = on_result
        self.tre_mm: float | None = None
        self.error = ""
        self._opened = False
        self._closed = False
        self._lock = threading.Lock()

    def read(self) -> FrameUpdate | None:
        # the source is only touched under the lock: close() from another thread waits
        with self._lock:
            return self._read()

    def _read(self) -> FrameUpdate | None:
        import cv2

        if self._closed:
            return None
        if not self._opened:
            try:
                self.loop.source.open()
            except IortError as exc:  # camera absent: end the stream, say why
                self.error = str(exc)
                log.error("frame source could not open: %s", exc)
                return None
            self._opened = True
        while not self._closed:
            result = self.loop.step()
            if result is False:
                return None
            if result is None:
                continue
            if self.on_result is not None:
                self.on_result(result)
                reg = getattr(self.on_result, "result", None)
                if reg is not None:
                    self.tre_mm = reg.predicted_tre_mm
            image = result.frame.image
            if self.undistort is not None:
                image = self.undistort(image)
            rgb = (cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2
                   else cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            ages = {name: None if status.state is TrackingState.UNTRACKED else status.age_s
                    for name, status in result.tools.items()}
            poses = {name: status.camera_from_tool for name, status in result.tools.items()
                     if status.camera_from_tool is not None}
            return FrameUpdate(
                image_rgb=rgb, camera_matrix=self.camera_matrix, timestamp_s=time.monotonic(),
                camera_from_patient=result.camera_from_patient,
                patient_from_applicator=result.patient_from_applicator, tool_ages_s=ages,
                tool_states={name: status.state for name, status in result.tools.items()},
                camera_from_tools=poses, fre_mm=self.loop.registration_fre_mm,
                tre_mm=self.tre_mm, index=int(result.frame.index),
                registered=self.loop.patient_from_reference is not None)
        return None

    def close(self) -> None:
        """Stop reading and close the source (waits for a frame in progress)."""
        self._closed = True
        with self._lock:
            if self._opened:
                self._opened = False
                self.loop.source.close()
