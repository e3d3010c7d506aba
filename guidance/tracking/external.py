"""Tool poses from an external tracker (OpenIGTLink TRANSFORMs) for the guidance loop.

An optical or electromagnetic tracker, usually through PLUS or 3D Slicer (SlicerIGT),
streams each tool's pose as an OpenIGTLink ``TRANSFORM`` named e.g. ``ReferenceToTracker``,
``PointerToTracker``, ``ApplicatorToTracker`` (the SlicerIGT ``<From>To<To>`` convention:
the matrix maps the tool frame to the tracker frame, our ``tracker_from_tool``). Our
:class:`~guidance.igtl.server.IgtlServer` receives and decodes them; :class:`IgtlToolPoses`
hands the loop, once per frame, the tools with a *new* valid pose since the previous frame.

The loop (:class:`guidance.loop.guidance_loop.GuidanceLoop` with ``tool_poses=``) composes, in the
tracker
frame, with no camera needed::

    patient_from_applicator = patient_from_reference @ inv(tracker_from_reference)
                              @ tracker_from_applicator
    tip_reference_mm        = inv(tracker_from_reference) @ tracker_from_pointer_tip

and, only when the camera itself is tracked (a ``camera`` tool carrying a marker, with the
hand-eye result ``camera_marker_from_camera`` of :mod:`calibration.handeye`)::

    camera_from_patient = inv(tracker_from_camera) @ tracker_from_reference
                          @ inv(patient_from_reference)

Tool geometry (``marker_from_frame``): the tracker reports the marker body; the loop wants
the role frame. Per tool an optional fixed transform is applied on the right:
``tracker_from_frame = tracker_from_marker @ marker_from_frame`` — the pointer's pivot
calibration (a translation to the tip: the pointer's role frame has its origin at the tip),
the applicator's ``marker_from_applicator``, the camera's hand-eye result. Without one the
tracker is assumed to stream the role frame itself (PLUS does when its config applies the
calibration, e.g. ``StylusTipToTracker``).

Bad input: TRANSFORMs that are not finite are dropped by the server; ones that are not
rigid (scaled, sheared, reflected) are dropped here with a log line; devices not in
``device_names`` are ignored; a tool whose messages stop gets no new measurement, so the
loop's :class:`~guidance.tracking.pose_filter.PoseFilter` turns it STALE, then UNTRACKED, exactly as
a marker tool that leaves the image.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from guidance.frames.base import Frame, FrameSource
from guidance.igtl.server import IgtlServer, ReceivedMessage
from models.base.errors import InputError
from models.base.validation import as_transform

log = logging.getLogger(__name__)

#: Default OpenIGTLink device names per tool (SlicerIGT / PLUS naming).
DEFAULT_DEVICE_NAMES: dict[str, str] = {
    "reference": "ReferenceToTracker",
    "pointer": "PointerToTracker",
    "applicator": "ApplicatorToTracker",
    "camera": "CameraToTracker",
}

#: Allowed deviation of ``R @ R.T`` from identity before a TRANSFORM counts as non-rigid
#: (float32 on the wire rounds at ~1e-7; this is 1e-5 * 100, see ``as_transform``).
_RIGID_ATOL = 1e-5


@dataclass(frozen=True)
class TrackerPose:
    """One tool pose from the external tracker.

    Attributes
    ----------
    tool : str
        Tool (role) name, e.g. ``"reference"``.
    tracker_from_tool : (4, 4) float64 array
        Pose of the tool's role frame in the tracker frame (mm), rotation orthonormalised.
    received_s : float
        ``time.monotonic()`` when the message arrived.
    timestamp_s : float
        The sender's timestamp (its own clock; informative only).
    """

    tool: str
    tracker_from_tool: np.ndarray
    received_s: float
    timestamp_s: float


class ToolPoseProvider(Protocol):
    """What :class:`guidance.loop.guidance_loop.GuidanceLoop` needs from an external tracker."""

    @property
    def tool_names(self) -> tuple[str, ...]:
        """The tools this provider can report."""
        ...

    def poll(self, max_age_s: float | None = None) -> dict[str, TrackerPose]:
        """Tools with a new valid pose since the previous call (older than ``max_age_s``
        on arrival: left out)."""
        ...


@dataclass
class TrackerStats:
    """Counters of an :class:`IgtlToolPoses` (for the status bar and tests)."""

    accepted: int = 0
    dropped_nonrigid: int = 0
    dropped_old: int = 0
    last_error: str = ""
    per_tool: dict[str, int] = field(default_factory=dict)


def parse_device_names(text: str) -> dict[str, str]:
    """Parse ``"reference=ReferenceToTracker,pointer=StylusTipToTracker"``.

    Tools not named keep their :data:`DEFAULT_DEVICE_NAMES` entry; ``tool=`` (empty device)
    removes a tool. Raises InputError on malformed text.

    Examples
    --------
    >>> parse_device_names("pointer=StylusTipToTracker,camera=")["pointer"]
    'StylusTipToTracker'
    """
    names = dict(DEFAULT_DEVICE_NAMES)
    for item in filter(None, (part.strip() for part in text.split(","))):
        tool, sep, device = (s.strip() for s in item.partition("="))
        if not sep or not tool:
            raise InputError(f"--tracker-devices: {item!r} is not TOOL=DEVICE (e.g. "
                             "reference=ReferenceToTracker)")
        if tool not in DEFAULT_DEVICE_NAMES:
            raise InputError(f"--tracker-devices: unknown tool {tool!r} in {item!r}; the "
                             f"tools are {', '.join(DEFAULT_DEVICE_NAMES)}")
        if len(device.encode("utf8")) > 20:
            raise InputError(f"--tracker-devices: device name {device!r} is longer than the "
                             "20 bytes OpenIGTLink allows")
        if device:
            names[tool] = device
        else:
            names.pop(tool, None)
    if not names:
        raise InputError("--tracker-devices: no tool left to track")
    return names


def _nearest_rotation(pose: np.ndarray) -> np.ndarray:
    """Project the rotation block onto SO(3) (SVD), so rigid inverses stay exact."""
    u, _, vt = np.linalg.svd(pose[:3, :3])
    out = pose.copy()
    out[:3, :3] = u @ vt
    return out


class IgtlToolPoses:
    """Tool poses from OpenIGTLink TRANSFORM messages received by an :class:`IgtlServer`.

    Parameters
    ----------
    server : IgtlServer
        A started server the tracker sends to.
    device_names : mapping tool -> device name, optional
        Which TRANSFORM device carries which tool (default :data:`DEFAULT_DEVICE_NAMES`).
        Other devices are ignored.
    marker_from_frame : mapping tool -> (4, 4) array, optional
        Fixed tool geometry applied on the right (pivot calibration of the pointer as a
        translation to the tip, ``marker_from_applicator``, hand-eye
        ``camera_marker_from_camera``). Tools not listed are taken as streamed.

    Examples
    --------
    A tracker (here pyigtl's client standing in for PLUS) streams the reference:

    >>> import time, pyigtl
    >>> pose = np.eye(4)
    >>> pose[:3, 3] = [10.0, 20.0, 30.0]
    >>> with IgtlServer(port=0) as server:
    ...     tracker = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=server.port)
    ...     t0 = time.monotonic()
    ...     _ = tracker.send_message(pyigtl.TransformMessage(
    ...         pose, device_name="ReferenceToTracker"), wait=True)
    ...     _ = server.wait_for("TRANSFORM", "ReferenceToTracker", timeout_s=5.0,
    ...                         newer_than_s=t0)
    ...     poses = IgtlToolPoses(server, {"reference": "ReferenceToTracker"})
    ...     new = poses.poll(max_age_s=5.0)
    ...     tracker.stop()
    >>> new["reference"].tracker_from_tool[:3, 3].tolist()
    [10.0, 20.0, 30.0]
    """

    def __init__(self, server: IgtlServer, device_names: Mapping[str, str] | None = None, *,
                 marker_from_frame: Mapping[str, np.ndarray] | None = None) -> None:
        if not isinstance(server, IgtlServer):
            raise TypeError(f"server must be an IgtlServer, got {type(server).__name__}")
        self.server = server
        self.device_names = dict(DEFAULT_DEVICE_NAMES if device_names is None else device_names)
        if not self.device_names:
            raise InputError("device_names must name at least one tool")
        devices = list(self.device_names.values())
        if len(set(devices)) != len(devices):
            raise InputError(f"device_names map two tools to one device: {self.device_names}")
        self.marker_from_frame = {
            tool: as_transform(m, name=f"marker_from_frame[{tool!r}]", rigid=True, atol=1e-5)
            for tool, m in (marker_from_frame or {}).items()}
        unknown = set(self.marker_from_frame) - set(self.device_names)
        if unknown:
            raise InputError(f"marker_from_frame names tools without a device: {sorted(unknown)}")
        self.stats = TrackerStats(per_tool=dict.fromkeys(self.device_names, 0))
        self._seen: dict[str, ReceivedMessage | None] = dict.fromkeys(self.device_names)
        self._bad_streak: dict[str, int] = dict.fromkeys(self.device_names, 0)

    @property
    def tool_names(self) -> tuple[str, ...]:
        """The tools this provider reports."""
        return tuple(self.device_names)

    def newest_received_s(self) -> float:
        """Arrival time (monotonic s) of the newest message of any configured tool, or -inf."""
        times = [m.received_s for d in self.device_names.values()
                 if (m := self.server.latest("TRANSFORM", d)) is not None]
        return max(times, default=float("-inf"))

    def poll(self, max_age_s: float | None = None) -> dict[str, TrackerPose]:
        """Tools whose newest TRANSFORM is new since the previous call and valid.

        Parameters
        ----------
        max_age_s : float, optional
            A message that arrived longer ago than this (``time.monotonic()``) is not
            reported (the loop passes its staleness limit).

        Returns
        -------
        dict tool -> TrackerPose
            Only tools with a fresh, rigid pose; a tool left out gets no measurement this
            frame.
        """
        now = time.monotonic()
        out: dict[str, TrackerPose] = {}
        for tool, device in self.device_names.items():
            message = self.server.latest("TRANSFORM", device)
            if message is None or message is self._seen[tool]:
                continue
            self._seen[tool] = message
            if max_age_s is not None and now - message.received_s > max_age_s:
                self.stats.dropped_old += 1
                log.debug("TRANSFORM %r arrived %.3f s ago (limit %.3f s); not used", device,
                          now - message.received_s, max_age_s)
                continue
            try:
                pose = as_transform(message.message.matrix, name=f"TRANSFORM {device!r}",
                                    rigid=True, atol=_RIGID_ATOL)
            except (ValueError, TypeError, AttributeError) as exc:
                self._drop(tool, device, str(exc))
                continue
            self._bad_streak[tool] = 0
            pose = _nearest_rotation(pose)
            geometry = self.marker_from_frame.get(tool)
            if geometry is not None:
                pose = pose @ geometry
            self.stats.accepted += 1
            self.stats.per_tool[tool] += 1
            out[tool] = TrackerPose(tool, pose, message.received_s, message.timestamp_s)
        return out

    def _drop(self, tool: str, device: str, reason: str) -> None:
        self.stats.dropped_nonrigid += 1
        self.stats.last_error = f"{device}: {reason}"
        self._bad_streak[tool] += 1
        # one warning per run of bad messages (a broken sender at 60 Hz must not flood)
        level = logging.WARNING if self._bad_streak[tool] == 1 else logging.DEBUG
        log.log(level, "external tracker: TRANSFORM %r (%s) dropped: %s", device, tool, reason)


class TrackerClockSource(FrameSource):
    """A frame source that only ticks: the clock of the loop when no camera is used.

    Each :meth:`read` waits until a tracker message newer than the previous tick arrives
    (or ``max_interval_s`` passes, so staleness still advances when the tracker goes
    silent) and returns a :class:`Frame` holding a small black image, timestamped with
    ``time.monotonic()``. The stream never ends by itself; close it to stop.

    Parameters
    ----------
    poses : IgtlToolPoses
    max_interval_s : float
        Longest time between ticks.
    image_size : (width, height)
        Size of the blank image (a placeholder for the AR view: nothing is drawn on it).
    """

    def __init__(self, poses: IgtlToolPoses, *, max_interval_s: float = 0.05,
                 image_size: tuple[int, int] = (64, 48)) -> None:
        super().__init__("tracker-clock")
        self.poses = poses
        self.max_interval_s = float(max_interval_s)
        if self.max_interval_s <= 0:
            raise InputError(f"max_interval_s must be > 0, got {max_interval_s}")
        width, height = (int(v) for v in image_size)
        self._image = np.zeros((height, width, 3), np.uint8)
        self._last_tick = float("-inf")
        self._index = 0

    def _open(self) -> None:
        self._last_tick = time.monotonic()

    def _read(self) -> Frame:
        deadline = self._last_tick + self.max_interval_s
        while time.monotonic() < deadline and self.poses.newest_received_s() <= self._last_tick:
            time.sleep(0.001)
        self._last_tick = time.monotonic()
        index = self._index
        self._index += 1
        return Frame(image=self._image, timestamp_s=self._last_tick, camera_id=self.camera_id,
                     index=index)
