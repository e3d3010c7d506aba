"""Frames for the OR monitor: what one tracked video frame brings, and a capture worker.

A *feed* turns a camera (real, simulated, recorded, OpenIGTLink) plus tracking and
registration into :class:`FrameUpdate` objects. The monitor never calls a feed from its UI
thread: a :class:`CaptureWorker` thread reads it and keeps only the newest update.

:class:`LoopFeed` runs any frame source through the
:class:`guidance.loop.guidance_loop.GuidanceLoop`; :class:`ScriptedFeed` is a
:class:`LoopFeed` whose frames and tool poses come from a script of known poses
(:mod:`guidance.sim.scripted`: tests, benchmarks, rehearsal without a camera), so every
feed's tool states are the loop's own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from guidance.loop.guidance_loop import FrameResult, GuidanceLoop, LoopOptions
from guidance.sim.scripted import (
    Background,
    ScriptedShot,
    ScriptedSource,
    ScriptedTrackerDevice,
)
from guidance.tracking.pose_filter import DEFAULT_STALENESS_LIMIT_S, FilterOptions, TrackingState
from models.base.errors import IortError
from models.base.validation import as_array

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameUpdate:
    """One frame for the monitor: the loop's :class:`FrameResult` plus what the screen needs.

    The tracking facts (tool states and ages, poses, composition) are the loop's own
    ``result``; this adds only the display image and the registration's numbers.

    Attributes
    ----------
    image_rgb : (H, W, 3) uint8
        Undistorted video frame, RGB.
    camera_matrix : (3, 3) array
        Intrinsics (px) of ``image_rgb``.
    timestamp_s : float
        ``time.monotonic()`` when the frame left the loop (for the capture-stall limit).
    result : FrameResult
        What the loop decided for this frame.
    fre_mm, tre_mm : float or None
        Accepted registration's fiducial and (predicted) target registration error.
    registered : bool
        A ``patient_from_reference`` is in use (also one loaded from a file, which has
        no FRE).
    """

    image_rgb: np.ndarray
    camera_matrix: np.ndarray
    timestamp_s: float
    result: FrameResult
    fre_mm: float | None = None
    tre_mm: float | None = None
    registered: bool = False

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.image_rgb.shape[1]), int(self.image_rgb.shape[0])

    @property
    def index(self) -> int:
        """Frame number from the source."""
        return int(self.result.frame.index)

    @property
    def camera_from_patient(self) -> np.ndarray | None:
        """Camera pose relative to the patient; None without registration or reference."""
        return self.result.camera_from_patient

    @property
    def patient_from_applicator(self) -> np.ndarray | None:
        """Tracked applicator in patient LPS (mm); None when unknown."""
        return self.result.patient_from_applicator

    @property
    def tool_states(self) -> dict[str, TrackingState]:
        """Each tool's state as the loop's pose filter decided it for this frame."""
        return {name: status.state for name, status in self.result.tools.items()}

    def tool_age_s(self, tool: str) -> float | None:
        """Age (s) of ``tool``'s newest pose on the frame clock; None = never seen/lost."""
        status = self.result.tools.get(tool)
        if status is None or status.state is TrackingState.UNTRACKED:
            return None
        return status.age_s

    @property
    def camera_from_tools(self) -> dict[str, np.ndarray]:
        """Filtered tool poses in the camera frame (for OpenIGTLink)."""
        return {name: status.camera_from_tool for name, status in self.result.tools.items()
                if status.camera_from_tool is not None}


class FrameFeed(Protocol):
    """Anything that yields :class:`FrameUpdate` (blocking up to one frame period)."""

    def read(self) -> FrameUpdate | None:
        """The next frame, or None at the end of the stream."""

    def close(self) -> None:
        """Release the camera/source."""


class CaptureWorker:
    """Reads a feed on its own thread and keeps the newest :class:`FrameUpdate`.

    The UI polls :meth:`latest`; nothing the feed does (camera I/O, marker detection,
    registration) runs on the UI thread. The thread ends at the end of the stream, on an
    error of the feed (logged, counted) or on :meth:`stop`.

    Every new update goes, on the capture thread, first to each of :attr:`listeners` (what
    must follow the tracking at its own pace, e.g. the dose request: a UI busy drawing
    does not delay it), then to :attr:`on_frame` (the window queues a signal to its
    thread). A listener that raises is logged; the capture goes on.
    """

    def __init__(self, feed: FrameFeed, *, on_frame: Callable[[FrameUpdate], None] | None = None
                 ) -> None:
        self.feed = feed
        self.on_frame = on_frame
        self.listeners: list[Callable[[FrameUpdate], None]] = []
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
                for listener in list(self.listeners):
                    try:
                        listener(update)
                    except Exception:  # a broken listener must not stop the capture
                        log.exception("frame listener %r failed", listener)
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
            return FrameUpdate(
                image_rgb=rgb, camera_matrix=self.camera_matrix, timestamp_s=time.monotonic(),
                result=result, fre_mm=self.loop.registration_fre_mm, tre_mm=self.tre_mm,
                registered=self.loop.patient_from_reference is not None)
        return None

    def close(self) -> None:
        """Stop reading and close the source (waits for a frame in progress)."""
        self._closed = True
        with self._lock:
            if self._opened:
                self._opened = False
                self.loop.source.close()


class ScriptedFeed(LoopFeed):
    """A script of known poses (:class:`~guidance.sim.scripted.ScriptedShot`) through the
    real :class:`~guidance.loop.guidance_loop.GuidanceLoop` (tests, benchmarks, rehearsing
    the screen without a camera).

    Parameters
    ----------
    shots : sequence of ScriptedShot
        One per frame; the feed ends after the last unless ``loop``. Kept as
        :attr:`shots`: replacing its items (``feed.shots[:] = ...``) changes what follows.
    camera_matrix : (3, 3) array
        Intrinsics (px).
    background : (H, W, 3) uint8 RGB array or callable(index, shot) -> array
        The video frames.
    fps : float
        Frame rate on the wall clock (0 = as fast as read).
    fre_mm, tre_mm : float, optional
        Registration numbers reported with every frame.
    loop : bool
        Start again after the last shot.
    staleness_limit_s : float
        Age after which a tool not seen is UNTRACKED (``FilterOptions.staleness_limit_s``).
    registered : bool
        Give the loop the registration of the scripted reference plate (default); False
        leaves the loop unregistered (no overlay, no applicator pose).
    realtime : bool
        Shots follow the wall clock (``ScriptedSource(realtime=True)``): a slow reader
        skips shots; :meth:`restart` plays the script again.
    """

    def __init__(self, shots: Sequence[ScriptedShot], camera_matrix: np.ndarray,
                 background: Background, *, fps: float = 30.0, fre_mm: float | None = None,
                 tre_mm: float | None = None, loop: bool = False,
                 staleness_limit_s: float = DEFAULT_STALENESS_LIMIT_S,
                 registered: bool = True, realtime: bool = False) -> None:
        self.shots = list(shots)
        device = ScriptedTrackerDevice(self.shots)
        options = LoopOptions(filter=FilterOptions(enabled=False,
                                                   staleness_limit_s=staleness_limit_s))
        guidance_loop = GuidanceLoop(
            ScriptedSource(self.shots, background, fps=fps, loop=loop, realtime=realtime), (),
            camera_matrix,
            device=device, options=options,
            patient_from_reference=device.patient_from_reference if registered else None)
        if registered:
            guidance_loop.registration_fre_mm = fre_mm
        super().__init__(guidance_loop, camera_matrix)
        self.tre_mm = tre_mm

    def simulation_text(self) -> str:
        """``SIMULATION scripted poses: shot N/M - R restarts`` for the screen."""
        source = self.loop.source
        return (f"SIMULATION scripted poses: shot {source.position() + 1}/{len(self.shots)}"
                " - R restarts")

    def restart(self) -> bool:
        """Play the script again from its first shot (R)."""
        self.loop.source.restart()
        return True


class SimulatedFeed(LoopFeed):
    """The simulated procedure (:class:`guidance.sim.scenario.Scenario`) through the loop: a
    :class:`LoopFeed` that can say what the simulation does and restart its approach.

    Parameters
    ----------
    loop, camera_matrix, undistort, on_result
        As for :class:`LoopFeed`.
    scenario : Scenario
        The procedure the loop's source renders.
    """

    def __init__(self, loop, camera_matrix: np.ndarray, *, scenario,
                 undistort: Callable[[np.ndarray], np.ndarray] | None = None,
                 on_result: Callable[[object], None] | None = None) -> None:
        super().__init__(loop, camera_matrix, undistort=undistort, on_result=on_result)
        self.scenario = scenario

    def simulation_text(self) -> str:
        """``SIMULATION <what happens now> - R restarts the approach`` for the screen."""
        index = self.scenario.last_index
        if index < 0:
            return "SIMULATION: starting the simulated camera"
        text = f"SIMULATION {self.scenario.describe(index)}"
        if index >= self.scenario.registration_frames:
            text += " - R restarts the approach"
        return text

    def restart(self) -> bool:
        """Start the applicator's approach again (R); False during the registration."""
        return self.scenario.restart_approach()
