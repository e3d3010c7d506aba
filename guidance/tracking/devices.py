"""Tracker devices: one interface for every source of tool poses (the PLUS pattern).

A marker tracker is just another tracker (PLUS's ``vtkPlusOpticalMarkerTracker``): the
guidance loop asks its :class:`TrackerDevice` for the tools measured in a frame, in the
device's *tracker frame*, and composes them one way whatever the device is:

* :class:`MarkerTrackerDevice` — ArUco markers in the camera image; the tracker frame *is*
  the camera frame, tool offsets (pointer tip, applicator end) come from the tool
  definitions;
* :class:`ExternalTrackerDevice` — an optical/EM tracker's poses
  (a :class:`~guidance.tracking.external.ToolPoseProvider`, e.g. OpenIGTLink TRANSFORMs);
  the streamed frames are the tools' role frames (pointer tip at the origin, applicator
  end face), and the camera is just another tracked tool (``"camera"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from guidance.frames.base import Frame
from guidance.tracking.markers import MarkerTracker, ToolPose
from guidance.tracking.tools import ToolDefinition
from models.base.errors import InputError
from models.base.transforms import angle_between_transforms_deg

if TYPE_CHECKING:
    from guidance.tracking.external import ToolPoseProvider


@dataclass(frozen=True)
class ToolGeometry:
    """Where a tool's points of interest are in its tracked frame.

    Attributes
    ----------
    tip_mm : (3,) array or None
        Pointer tip (mm) in the tool frame.
    tool_from_applicator : (4, 4) array or None
        Applicator end-face frame in the tool frame.
    """

    tip_mm: np.ndarray | None = None
    tool_from_applicator: np.ndarray | None = None


@dataclass(frozen=True)
class Measured:
    """What a device measured in one frame.

    Attributes
    ----------
    tracker_from_tool : dict name -> (4, 4) array
        Tools measured (new) in this frame, in the device's tracker frame (mm).
    measurements : dict name -> ToolPose
        Marker detail (reprojection RMS, markers used) when the device has it.
    n_markers : int
        Markers detected in the image (0 for devices without markers).
    """

    tracker_from_tool: dict[str, np.ndarray]
    measurements: dict[str, ToolPose] = field(default_factory=dict)
    n_markers: int = 0


class FrameUnusable(InputError):
    """The device could not measure in this frame (the loop skips the frame)."""


class TrackerDevice(Protocol):
    """What :class:`guidance.loop.guidance_loop.GuidanceLoop` needs from a tracker."""

    #: Tools the device reports.
    tool_names: tuple[str, ...]
    #: True when the tracker frame is the camera frame (marker tracking).
    tracker_is_camera: bool

    def geometry(self, tool: str) -> ToolGeometry:
        """Tip and applicator offsets of ``tool`` (empty for an unknown tool)."""
        ...

    def measure(self, frame: Frame, previous: Mapping[str, np.ndarray | None],
                max_age_s: float) -> Measured:
        """Tools measured in ``frame``; ``previous`` = each tool's last filtered
        ``tracker_from_tool`` (for disambiguation); raises :class:`FrameUnusable`."""
        ...


class MarkerTrackerDevice:
    """ArUco marker tracking as a tracker device (tracker frame = camera frame).

    Parameters
    ----------
    tools : iterable of ToolDefinition
    camera_matrix, dist_coeffs : arrays
        Intrinsics of the frames (px) and their lens distortion (handled in PnP).
    min_markers, max_rms_px :
        As :class:`~guidance.tracking.markers.MarkerTracker`.
    accept_ambiguous : bool
        Use poses flagged ambiguous (planar flip) as they come. Off: the solution closer to
        the tool's previous pose is used, and without one the measurement counts as not seen.
    """

    tracker_is_camera = True

    def __init__(self, tools: Iterable[ToolDefinition], camera_matrix: np.ndarray,
                 dist_coeffs: np.ndarray | None = None, *, min_markers: int = 1,
                 max_rms_px: float = 3.0, accept_ambiguous: bool = False) -> None:
        self.tools = {t.name: t for t in tools}
        self.tool_names = tuple(self.tools)
        self.accept_ambiguous = accept_ambiguous
        self.tracker = MarkerTracker(self.tools, camera_matrix, dist_coeffs,
                                     min_markers=min_markers, max_rms_px=max_rms_px)

    def geometry(self, tool: str) -> ToolGeometry:
        definition = self.tools.get(tool)
        if definition is None:
            return ToolGeometry()
        return ToolGeometry(tip_mm=definition.tip_mm,
                            tool_from_applicator=definition.tool_from_applicator)

    def measure(self, frame: Frame, previous: Mapping[str, np.ndarray | None],
                max_age_s: float) -> Measured:
        image = frame.image if frame.image.ndim == 2 or frame.image.shape[2] == 3 else \
            cv2.cvtColor(frame.image, cv2.COLOR_BGRA2BGR)
        try:
            tracking = self.tracker.track(image)
        except (cv2.error, ValueError) as exc:
            raise FrameUnusable(f"marker detection failed: {exc}") from exc
        measurements = {}
        for name in self.tool_names:
            chosen = self._disambiguate(tracking.poses.get(name), previous.get(name))
            if chosen is not None:
                measurements[name] = chosen
        return Measured({n: m.camera_from_tool for n, m in measurements.items()},
                        measurements, len(tracking.detections))

    def _disambiguate(self, measurement: ToolPose | None, previous: np.ndarray | None
                      ) -> ToolPose | None:
        """Resolve a planar flip with the tool's history; drop it if there is none."""
        if measurement is None or not measurement.ambiguous or self.accept_ambiguous:
            return measurement
        if previous is None or measurement.alternative is None:
            return None
        candidates = (measurement.camera_from_tool, measurement.alternative)
        angles = [angle_between_transforms_deg(previous, c) for c in candidates]
        return replace(measurement, camera_from_tool=candidates[int(np.argmin(angles))])


class ExternalTrackerDevice:
    """An external tracker's poses (tracker frame) as a tracker device.

    The streamed frames are the tools' role frames: the pointer tip is the origin of the
    pointer frame and the applicator frame is its end face, so the geometry is the identity.
    """

    tracker_is_camera = False

    def __init__(self, provider: ToolPoseProvider) -> None:
        self.provider = provider
        self.tool_names = tuple(provider.tool_names)

    def geometry(self, tool: str) -> ToolGeometry:
        return ToolGeometry(tip_mm=np.zeros(3), tool_from_applicator=np.eye(4))

    def measure(self, frame: Frame, previous: Mapping[str, np.ndarray | None],
                max_age_s: float) -> Measured:
        polled = self.provider.poll(max_age_s=max_age_s)
        return Measured({name: pose.tracker_from_tool for name, pose in polled.items()
                         if name in self.tool_names})
