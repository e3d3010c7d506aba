"""Scripted poses through the real guidance loop (tests, benchmarks, screen rehearsal).

A script is a list of :class:`ScriptedShot` — the truth of one frame: where the camera is
relative to the patient, where the applicator is, which tools are in view. Two pieces turn a
script into loop input, so a script takes the same path as a camera:

* :class:`ScriptedSource` — a :class:`~guidance.frames.base.FrameSource` of background images
  at a fixed frame rate (wall clock), ``Frame.index`` = the shot's index;
* :class:`ScriptedTrackerDevice` — a tracker device (like the marker tracker, the PLUS
  pattern) that "measures" the shot's tools in the camera frame: the reference plate at
  ``camera_from_patient @ patient_from_reference`` and the applicator at
  ``camera_from_patient @ patient_from_applicator``.

The loop then filters, decides each tool's state (a tool not in view is STALE, then
UNTRACKED) and composes ``patient_from_applicator`` back from the reference and the
registration, exactly as for markers.

Examples
--------
>>> from guidance.loop.guidance_loop import GuidanceLoop
>>> k = np.array([[500.0, 0, 160], [0, 500.0, 120], [0, 0, 1]])
>>> camera_from_patient = np.eye(4); camera_from_patient[2, 3] = 400.0
>>> plan = np.eye(4); plan[:3, 3] = (10.0, -20.0, 30.0)
>>> shots = [ScriptedShot(camera_from_patient, plan)] * 3
>>> device = ScriptedTrackerDevice(shots)
>>> source = ScriptedSource(shots, np.zeros((240, 320, 3), np.uint8), fps=0)
>>> loop = GuidanceLoop(source, (), k, device=device,
...                     patient_from_reference=device.patient_from_reference)
>>> _ = loop.run()
>>> np.allclose(loop.last_result.patient_from_applicator, plan)
True
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from guidance.frames.base import Frame, FrameSource
from guidance.tracking.devices import Measured, ToolGeometry
from models.base.errors import InputError
from models.base.validation import as_transform

#: Where the scripted reference plate sits in the patient (mm): beside the field, so the
#: loop's composition through the reference is exercised (not an identity).
DEFAULT_PATIENT_FROM_REFERENCE = np.array([[1.0, 0.0, 0.0, 0.0],
                                           [0.0, 0.0, -1.0, -60.0],
                                           [0.0, 1.0, 0.0, 80.0],
                                           [0.0, 0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class ScriptedShot:
    """Truth for one scripted frame.

    Attributes
    ----------
    camera_from_patient : (4, 4) array
        Camera pose (OpenCV camera frame, mm) relative to patient LPS.
    patient_from_applicator : (4, 4) array
        Applicator end-face frame in patient LPS (mm).
    visible : tuple of str
        Tools seen in this frame (``"reference"``, ``"applicator"``); a tool not seen keeps
        its last pose, which the loop's pose filter marks STALE, then UNTRACKED.
    """

    camera_from_patient: np.ndarray
    patient_from_applicator: np.ndarray
    visible: tuple[str, ...] = ("reference", "applicator")


Background = np.ndarray | Callable[[int, ScriptedShot], np.ndarray]


class ScriptedSource(FrameSource):
    """Background frames (BGR) for a script, paced on the wall clock.

    Parameters
    ----------
    shots : sequence of ScriptedShot
        Shared with the device: edits to the list (e.g. ``shots[:] = ...``) take effect on
        the next frame.
    background : (H, W, 3) uint8 RGB array or callable(index, shot) -> array
    fps : float
        Frame rate (0 = as fast as read).
    loop : bool
        Start again after the last shot instead of ending the stream.
    realtime : bool
        Shot ``index`` is the one due ``index / fps`` seconds after the first read (or the
        last :meth:`restart`): a slow reader skips shots instead of slowing the script.
    """

    def __init__(self, shots: Sequence[ScriptedShot], background: Background, *,
                 fps: float = 30.0, loop: bool = False, realtime: bool = False) -> None:
        super().__init__("scripted")
        if not shots:
            raise InputError("a script needs at least one shot")
        self.shots = shots
        self.background = background
        self.period_s = 1.0 / fps if fps > 0 else 0.0
        self.loop = loop
        self.realtime = realtime and fps > 0
        self.fps = float(fps)
        self._index = 0
        self._next_s: float | None = None
        self._start_s: float | None = None
        self._offset = 0
        self._closed = threading.Event()

    def restart(self) -> None:
        """Play the script again from its first shot at the next read (frame indices keep
        growing: the next one that shows shot 0)."""
        self._start_s = None

    def position(self) -> int:
        """Which shot of the script is shown now (0-based)."""
        return max(0, self._index - 1 - self._offset) % len(self.shots)

    def _open(self) -> None:
        self._closed.clear()

    def _read(self) -> Frame | None:
        if self._index >= len(self.shots) and not self.loop and not self.realtime:
            return None
        if self.realtime:
            now = time.monotonic()
            if self._start_s is None:   # first read, or restart(): the script's time zero
                n = len(self.shots)
                self._offset = -(-self._index // n) * n   # next index showing shot 0
                self._start_s = now
            ahead_s = (self._index - self._offset) / self.fps - (now - self._start_s)
            if ahead_s > 0 and self._closed.wait(ahead_s):
                return None
            due = self._offset + int((time.monotonic() - self._start_s) * self.fps)
            self._index = max(self._index, due)
            if self._index - self._offset >= len(self.shots) and not self.loop:
                return None
        elif self.period_s:
            now = time.monotonic()
            if self._next_s is None:
                self._next_s = now
            wait = self._next_s - now
            if wait > 0 and self._closed.wait(wait):
                return None
            self._next_s = max(self._next_s + self.period_s, time.monotonic())
        index = self._index
        shot = self.shots[index % len(self.shots)]
        image = self.background(index, shot) if callable(self.background) else self.background
        self._index += 1
        return Frame(image=np.ascontiguousarray(np.asarray(image)[:, :, ::-1]),
                     timestamp_s=time.monotonic(), camera_id=self.camera_id, index=index)

    def _close(self) -> None:
        self._closed.set()


class ScriptedTrackerDevice:
    """Tracker device reporting the tools of each frame's :class:`ScriptedShot`.

    The tracker frame is the camera frame (as for marker tracking); the applicator tool's
    frame is its end face (``tool_from_applicator`` = identity).

    Parameters
    ----------
    shots : sequence of ScriptedShot
        Indexed by ``Frame.index`` (modulo the length).
    patient_from_reference : (4, 4) array, optional
        Where the reference plate is fixed on the patient; the registration a loop using
        this device must be given for the composition to return the script's poses.
    """

    tracker_is_camera = True
    tool_names = ("reference", "applicator")

    def __init__(self, shots: Sequence[ScriptedShot],
                 patient_from_reference: np.ndarray | None = None) -> None:
        self.shots = shots
        self.patient_from_reference = as_transform(
            DEFAULT_PATIENT_FROM_REFERENCE if patient_from_reference is None
            else patient_from_reference, name="patient_from_reference", rigid=True)

    def geometry(self, tool: str) -> ToolGeometry:
        return ToolGeometry(tool_from_applicator=np.eye(4)) if tool == "applicator" \
            else ToolGeometry()

    def measure(self, frame: Frame, previous: Mapping[str, np.ndarray | None],
                max_age_s: float) -> Measured:
        shot = self.shots[frame.index % len(self.shots)]
        camera_from_patient = as_transform(shot.camera_from_patient, name="camera_from_patient")
        poses = {"reference": camera_from_patient @ self.patient_from_reference,
                 "applicator": camera_from_patient @ as_transform(
                     shot.patient_from_applicator, name="patient_from_applicator")}
        return Measured({tool: pose for tool, pose in poses.items() if tool in shot.visible})
