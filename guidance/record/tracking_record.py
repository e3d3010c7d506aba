"""What a replay needs from the live loop: every frame's clock, size and raw tool poses.

:func:`record_tracking` attaches a :class:`TrackingRecorder` to a
:class:`~guidance.loop.guidance_loop.GuidanceLoop` before it runs. It wraps the loop's frame
source and tracker device (so it sees every frame read, including the ones the loop then
skips, and every measurement before the pose filter) and listens to the loop's events (the
registration applied, the filtered applicator pose it published). The records go to the
session log in order, in batches (``frames`` events of up to :data:`FRAMES_PER_EVENT`
frames, written when a batch is full, before any other event of the recorder and on
:meth:`TrackingRecorder.flush`): a crash loses at most the last batch of poses, never an
event the log already acknowledged (confirms, registrations and doses are their own
events).

A replay (:mod:`guidance.record.replay`) feeds the recorded frames back through a new loop
with :class:`ReplaySource` and :class:`ReplayDevice`: the same pose filter on the same
stamps and measurements gives the same poses, bit for bit, which the recorded filtered
poses let it check.

Record layout (JSON in the ``frames`` payload, list ``records``):

* a frame: ``{"i": index, "t": stamp_s, "size": [w, h], "img": valid uint8,
  "m": {tool: 16 floats row-major, tracker frame, mm} | "unusable": reason, "n": markers,
  "app": patient_from_applicator (16 floats) | None, "states": {tool: state}}``
  (``m``/``app``/``states`` absent for a frame the loop skipped before measuring);
* a registration: ``{"reg": patient_from_reference (16 floats) | None, "fre": mm,
  "method": str}``.

The ``tracker`` event (written once, at attach time) holds the device's tool names, whether
its frame is the camera's, each tool's geometry, the loop options, the camera matrix and the
calibrated size.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from guidance.frames.base import Frame, FrameSource, check_image
from guidance.loop.guidance_loop import (
    FrameProcessed,
    GuidanceLoop,
    LoopOptions,
    RegistrationChanged,
)
from guidance.record.session_log import SessionEvent, SessionLog
from guidance.tracking.devices import FrameUnusable, Measured, ToolGeometry, TrackerDevice
from guidance.tracking.pose_filter import FilterOptions
from models.base.errors import InputError
from models.base.files import private_file

#: Frames per ``frames`` event (about 1 s of video at 30 fps).
FRAMES_PER_EVENT = 30


def video_path(log_path: Path) -> Path:
    """Where the camera video of a session log goes (beside it)."""
    return log_path.with_name(log_path.name + ".camera.mp4")


def _flat(matrix: np.ndarray | None) -> list[float] | None:
    return None if matrix is None else [float(v) for v in np.asarray(matrix).ravel()]


def _matrix(values: Sequence[float] | None, *, where: str) -> np.ndarray | None:
    if values is None:
        return None
    m = np.asarray(values, dtype=np.float64)
    if m.size != 16 or not np.all(np.isfinite(m)):
        raise InputError(f"{where}: a transform must be 16 finite numbers, got {m.size}")
    return m.reshape(4, 4)


class CameraVideo:
    """The camera frames as an MP4 beside the session log, written on a worker thread.

    :meth:`offer` never blocks the loop: a frame is queued (and numbered) or, when the
    encoder is behind, dropped (None). Frames of another size than the first, and
    frames that are not uint8 images, are not written. The file is owner-only.
    """

    def __init__(self, path: Path, *, fps: float = 30.0, queue_frames: int = 8) -> None:
        import queue

        self.path = Path(path)
        self.fps = float(fps)
        self._queue: queue.Queue = queue.Queue(maxsize=int(queue_frames))
        self._size: tuple[int, int] | None = None
        self.written = 0
        self.dropped = 0
        self._numbered = 0
        self.error = ""
        private_file(self.path, exclusive=True)
        self._thread = threading.Thread(target=self._run, name="camera-video", daemon=True)
        self._thread.start()

    def offer(self, image: np.ndarray) -> int | None:
        """Queue one BGR (or grey) frame; its frame number in the video, or None."""
        import queue

        if self.error or not check_image(image):
            return None
        size = (int(image.shape[1]), int(image.shape[0]))
        if self._size is None:
            self._size = size
        if size != self._size:
            return None
        try:
            self._queue.put_nowait(np.array(image, copy=True))
        except queue.Full:
            self.dropped += 1
            return None
        number = self._numbered
        self._numbered += 1
        return number

    def _run(self) -> None:
        import cv2
        import imageio.v2 as imageio

        writer = None
        try:
            while True:
                image = self._queue.get()
                if image is None:
                    break
                if writer is None:
                    writer = imageio.get_writer(str(self.path), format="FFMPEG", fps=self.fps,
                                                codec="libx264", quality=6,
                                                macro_block_size=1, ffmpeg_log_level="error")
                rgb = (cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2
                       else cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
                writer.append_data(rgb)
                self.written += 1
        except Exception as exc:  # a full disk must not stop the guidance
            self.error = str(exc)
        finally:
            if writer is not None:
                writer.close()

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued and close the file."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout_s)


class TrackingRecorder:
    """Collects frame records and writes them to a session log in ordered batches.

    Thread-safe: the loop may run on a capture thread while the UI thread flushes.
    """

    def __init__(self, session_log: SessionLog, *,
                 frames_per_event: int = FRAMES_PER_EVENT,
                 video: CameraVideo | None = None) -> None:
        self.session_log = session_log
        self.video = video
        self.frames_per_event = int(frames_per_event)
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []
        self._current: dict[str, Any] | None = None
        self.frames_recorded = 0
        #: Set when the log refused a write (e.g. closed): recording stops, the loop goes on.
        self.failed: str = ""

    def write_setup(self, loop: GuidanceLoop, device: TrackerDevice) -> None:
        """The ``tracker`` event: what a replay needs to rebuild the device and the loop."""
        geometry = {}
        for tool in device.tool_names:
            g = device.geometry(tool)
            geometry[tool] = {"tip_mm": None if g.tip_mm is None else
                              [float(v) for v in np.asarray(g.tip_mm).ravel()],
                              "tool_from_applicator": _flat(g.tool_from_applicator)}
        self.session_log.append("tracker", {
            "tool_names": list(device.tool_names),
            "tracker_is_camera": bool(device.tracker_is_camera),
            "geometry": geometry,
            "options": asdict(loop.options),
            "camera_matrix": loop.camera_matrix,
            "calibrated_size_px": (None if loop.calibrated_size_px is None
                                   else list(loop.calibrated_size_px)),
            "max_clock_step_s": float(loop.MAX_CLOCK_STEP_S),
            "video": (None if self.video is None else
                      str(self.video.path.relative_to(self.session_log.path.parent))),
            "frames_per_event": self.frames_per_event})

    # -- fed by the wrappers and the loop's events (any thread) ------------------------
    def frame_read(self, frame: Frame) -> None:
        image = frame.image
        size = [int(image.shape[1]), int(image.shape[0])] if getattr(image, "ndim", 0) >= 2 \
            else [0, 0]
        record = {"i": int(frame.index), "t": float(frame.timestamp_s), "size": size,
                  "img": bool(check_image(image))}
        if self.video is not None:
            record["v"] = self.video.offer(image)
        with self._lock:
            self._current = record
            self._records.append(record)
            self.frames_recorded += 1
            full = len(self._records) >= self.frames_per_event
        if full:
            self.flush(keep_current=True)

    def measured(self, measured: Measured | None, unusable: str = "") -> None:
        with self._lock:
            record = self._current
            if record is None:
                return
            if measured is None:
                record["unusable"] = unusable
            else:
                record["m"] = {name: _flat(pose)
                               for name, pose in measured.tracker_from_tool.items()}
                record["n"] = int(measured.n_markers)

    def on_event(self, event: object) -> None:
        if isinstance(event, FrameProcessed):
            result = event.result
            with self._lock:
                record = self._current
                if record is not None and record["i"] == result.frame.index:
                    record["app"] = _flat(result.patient_from_applicator)
                    record["states"] = {n: s.state.value for n, s in result.tools.items()}
        elif isinstance(event, RegistrationChanged):
            with self._lock:
                self._records.append({"reg": _flat(event.patient_from_reference),
                                      "fre": event.fre_mm, "method": str(event.method)})

    def flush(self, *, keep_current: bool = False) -> None:
        """Write the collected records as one ``frames`` event.

        ``keep_current`` keeps the frame being processed in memory (its measurement and
        output are not known yet); it is written with the next batch.
        """
        with self._lock:
            if self.failed:
                return
            records = self._records
            tail: list[dict[str, Any]] = []
            if keep_current and records and records[-1] is self._current:
                records, tail = records[:-1], records[-1:]
            self._records = tail
            if not keep_current:
                self._current = None
            if not records:
                return
            try:
                self.session_log.append("frames", {"records": records})
            except (RuntimeError, PermissionError, InputError, OSError) as exc:
                self.failed = str(exc)


class RecordingSource(FrameSource):
    """A frame source that tells a :class:`TrackingRecorder` of every frame it hands on."""

    def __init__(self, inner: FrameSource, recorder: TrackingRecorder) -> None:
        super().__init__(inner.camera_id)
        self.inner = inner
        self.recorder = recorder

    def _open(self) -> None:
        self.inner.open()

    def _read(self) -> Frame | None:
        frame = self.inner.read()
        self.frames_skipped = self.inner.frames_skipped
        if frame is not None:
            self.recorder.frame_read(frame)
        return frame

    def _close(self) -> None:
        self.inner.close()
        self.recorder.flush()
        if self.recorder.video is not None:
            self.recorder.video.close()

    def __getattr__(self, name: str) -> Any:  # fps, loop, ... of the wrapped source
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


class RecordingTrackerDevice:
    """A tracker device that tells a :class:`TrackingRecorder` what the wrapped one measured."""

    def __init__(self, inner: TrackerDevice, recorder: TrackingRecorder) -> None:
        self.inner = inner
        self.recorder = recorder
        self.tool_names = inner.tool_names
        self.tracker_is_camera = inner.tracker_is_camera

    def geometry(self, tool: str) -> ToolGeometry:
        return self.inner.geometry(tool)

    def measure(self, frame: Frame, previous: Mapping[str, np.ndarray | None],
                max_age_s: float) -> Measured:
        try:
            measured = self.inner.measure(frame, previous, max_age_s)
        except FrameUnusable as exc:
            self.recorder.measured(None, str(exc))
            raise
        self.recorder.measured(measured)
        return measured


def record_tracking(loop: GuidanceLoop, session_log: SessionLog, *,
                    frames_per_event: int = FRAMES_PER_EVENT, video: bool = False,
                    video_fps: float = 30.0, video_queue_frames: int = 8) -> TrackingRecorder:
    """Record what ``loop`` reads, measures and publishes into ``session_log``.

    Call before the loop runs (after its registration, if one is given up front: that one
    is written in the ``tracker`` event's stream as the first record). ``video`` also
    keeps the camera frames as ``<log>.camera.mp4`` beside the log (frame ``v`` of each
    record), for a replay that shows the real video.
    """
    camera = CameraVideo(video_path(session_log.path), fps=video_fps,
                         queue_frames=video_queue_frames) if video else None
    recorder = TrackingRecorder(session_log, frames_per_event=frames_per_event, video=camera)
    recorder.write_setup(loop, loop.device)
    if loop.patient_from_reference is not None:
        recorder.on_event(RegistrationChanged(loop.patient_from_reference,
                                              loop.registration_fre_mm, "given"))
    loop.source = RecordingSource(loop.source, recorder)
    loop.device = RecordingTrackerDevice(loop.device, recorder)
    loop.subscribe(recorder.on_event)
    return recorder


# ---------------------------------------------------------------------------- replaying
def tracker_setup(event: SessionEvent) -> tuple[LoopOptions, dict[str, ToolGeometry],
                                                 tuple[str, ...], bool]:
    """Loop options, tool geometry, tool names and tracker-is-camera of a ``tracker`` event."""
    p = event.payload
    where = f"session log event {event.seq} (tracker)"
    try:
        opts = dict(p["options"])
        opts["filter"] = FilterOptions(**opts["filter"])
        options = LoopOptions(**opts)
        geometry = {}
        for tool, g in p["geometry"].items():
            tip = g.get("tip_mm")
            geometry[tool] = ToolGeometry(
                tip_mm=None if tip is None else np.asarray(tip, dtype=np.float64),
                tool_from_applicator=_matrix(g.get("tool_from_applicator"), where=where))
        return options, geometry, tuple(p["tool_names"]), bool(p["tracker_is_camera"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{where} is damaged ({exc}); the tracking cannot be replayed") \
            from None


class ReplaySource(FrameSource):
    """Frames rebuilt from frame records: the recorded index, stamp and size; the image
    from the recorded camera video when there is one, else black.

    A record whose image was not a valid uint8 array gives a float image, so the loop
    skips it again. ``on_record(record)`` is called for every non-frame record (a
    registration) in stream order, just before the next frame is handed on.
    """

    def __init__(self, records: Sequence[Mapping[str, Any]], *, on_record=None,
                 camera_id: str = "replay", pace=None, video: Path | None = None) -> None:
        super().__init__(camera_id)
        self.records = records
        self.on_record = on_record
        self.pace = pace
        self.video = video
        self._capture = None
        self._video_pos = 0
        self._pos = 0
        self._images: dict[tuple[int, int, bool], np.ndarray] = {}

    def _open(self) -> None:
        self._pos = 0
        if self.video is not None and self.video.is_file():
            import cv2

            self._capture = cv2.VideoCapture(str(self.video))
            self._video_pos = 0

    def _close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def _video_frame(self, number: int | None, size: Sequence[int]) -> np.ndarray | None:
        """Frame ``number`` of the recorded video at the recorded size, or None."""
        import cv2

        if self._capture is None or number is None or number < self._video_pos:
            return None
        image = None
        while self._video_pos <= number:
            ok, image = self._capture.read()
            self._video_pos += 1
            if not ok:
                self._capture.release()
                self._capture = None
                return None
        want = (int(size[0]), int(size[1]))
        if image is not None and (image.shape[1], image.shape[0]) != want:
            image = cv2.resize(image, want, interpolation=cv2.INTER_AREA)
        return image

    def _image(self, size: Sequence[int], valid: bool) -> np.ndarray:
        key = (int(size[0]), int(size[1]), bool(valid))
        image = self._images.get(key)
        if image is None:
            dtype = np.uint8 if valid else np.float32
            image = self._images[key] = np.zeros((key[1], key[0], 3), dtype)
        return image

    def _read(self) -> Frame | None:
        while self._pos < len(self.records):
            record = self.records[self._pos]
            self._pos += 1
            if "i" not in record:
                if self.on_record is not None:
                    self.on_record(record)
                continue
            t = record.get("t")
            t_s = float("nan") if t is None else float(t)
            if self.pace is not None:
                self.pace(t_s)
            image = self._video_frame(record.get("v"), record["size"]) if record["img"] \
                else None
            return Frame(image=image if image is not None else
                         self._image(record["size"], record["img"]), timestamp_s=t_s,
                         camera_id=self.camera_id, index=int(record["i"]))
        return None


class ReplayDevice:
    """A tracker device that reports the recorded measurement of each frame."""

    def __init__(self, records: Sequence[Mapping[str, Any]], geometry: Mapping[str, ToolGeometry],
                 tool_names: tuple[str, ...], tracker_is_camera: bool) -> None:
        self._by_index = {int(r["i"]): r for r in records if "i" in r}
        self._geometry = dict(geometry)
        self.tool_names = tool_names
        self.tracker_is_camera = tracker_is_camera

    def geometry(self, tool: str) -> ToolGeometry:
        return self._geometry.get(tool, ToolGeometry())

    def measure(self, frame: Frame, previous: Mapping[str, np.ndarray | None],
                max_age_s: float) -> Measured:
        record = self._by_index.get(frame.index, {})
        if "unusable" in record:
            raise FrameUnusable(record["unusable"])
        poses = {name: _matrix(values, where=f"frame {frame.index}")
                 for name, values in (record.get("m") or {}).items()}
        return Measured({n: p for n, p in poses.items() if p is not None},
                        n_markers=int(record.get("n", 0)))
