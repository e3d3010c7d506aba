"""Pose smoothing with a latency bound, and the tracking state of each tool.

Smoothing is the One-Euro filter (G. Casiez, N. Roussel, D. Vogel, "1 € Filter: a simple
speed-based low-pass filter for noisy input in interactive systems", CHI 2012,
doi:10.1145/2207676.2208639): a first-order low-pass whose cutoff rises with speed, so a
still tool is steady and a moving one lags little. Translation is filtered per axis;
rotation by moving the filtered rotation a fraction ``alpha`` of the way (geodesically)
toward each measurement. The cutoff never drops below ``1 / (2 pi max_lag_s)``, which
bounds the filter's time constant (its lag) by ``max_lag_s``.

States (:class:`TrackingState`), decided on the frame clock (``Frame.timestamp_s``):

* ``TRACKING`` — measured in this frame;
* ``STALE`` — not measured in this frame, last measurement no older than
  ``staleness_limit_s``: the last filtered pose is held (never extrapolated) and flagged;
* ``UNTRACKED`` — never measured, or the last measurement is older than the limit: no pose.
  The change is reported on the first frame past the limit ("lost").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy.spatial.transform import Rotation

from models.base.errors import InputError
from models.base.validation import as_positive, as_transform

#: Default age (s) after which a held pose is no longer used for the overlay.
DEFAULT_STALENESS_LIMIT_S = 0.2


class TrackingState(StrEnum):
    """Tracking state of one tool."""

    UNTRACKED = "untracked"
    TRACKING = "tracking"
    STALE = "stale"


@dataclass(frozen=True)
class FilterOptions:
    """One-Euro parameters and staleness rules.

    Attributes
    ----------
    min_cutoff_hz : float
        Cutoff when the tool is still (lower = steadier, more lag).
    beta_s_per_mm : float
        Cutoff increase per mm/s of translational speed.
    beta_s_per_deg : float
        Cutoff increase per deg/s of rotational speed.
    derivative_cutoff_hz : float
        Cutoff of the speed estimate.
    max_lag_s : float
        Upper bound of the filter time constant (sets a floor under the cutoff).
    staleness_limit_s : float
        Age after which a held pose is dropped (UNTRACKED).
    reset_jump_mm : float
        A measurement this far from the previous measurement restarts the filter (re-acquisition,
        flip) instead of being smoothed into it.
    enabled : bool
        False passes measurements through unfiltered (states still apply).
    """

    min_cutoff_hz: float = 1.5
    beta_s_per_mm: float = 0.3
    beta_s_per_deg: float = 0.5
    derivative_cutoff_hz: float = 1.0
    max_lag_s: float = 0.1
    staleness_limit_s: float = DEFAULT_STALENESS_LIMIT_S
    reset_jump_mm: float = 30.0
    enabled: bool = True

    def __post_init__(self) -> None:
        for name in ("min_cutoff_hz", "derivative_cutoff_hz", "max_lag_s",
                     "staleness_limit_s", "reset_jump_mm"):
            as_positive(getattr(self, name), name=name)
        for name in ("beta_s_per_mm", "beta_s_per_deg"):
            as_positive(getattr(self, name), name=name, allow_zero=True)


@dataclass(frozen=True)
class FilteredPose:
    """Output of the pose filter for one frame.

    Attributes
    ----------
    state : TrackingState
    pose : (4, 4) array or None
        Filtered ``camera_from_tool`` (None when UNTRACKED).
    age_s : float
        Frame time minus the time of the last measurement (inf if never measured).
    measured_s : float
        Time of the last measurement (nan if never).
    """

    state: TrackingState
    pose: np.ndarray | None
    age_s: float
    measured_s: float


def _alpha(cutoff_hz: float, dt_s: float) -> float:
    tau = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt_s)


class PoseFilter:
    """One-Euro pose filter with tracking states for one tool.

    Examples
    --------
    >>> f = PoseFilter()
    >>> f.update(0.0, np.eye(4)).state.value
    'tracking'
    >>> f.update(0.1, None).state.value
    'stale'
    >>> f.update(0.35, None).state.value
    'untracked'
    """

    def __init__(self, options: FilterOptions | None = None) -> None:
        self.options = options if options is not None else FilterOptions()
        self.reset()

    def reset(self) -> None:
        """Forget everything (next measurement starts a new track)."""
        self._pose: np.ndarray | None = None
        self._raw: np.ndarray | None = None
        self._t_last: float = float("nan")
        self._speed_mm_s = 0.0
        self._speed_deg_s = 0.0
        self._t_frame: float = float("nan")

    @property
    def state(self) -> TrackingState:
        """State after the last :meth:`update`."""
        return self._state_at(self._t_frame, measured_now=self._t_frame == self._t_last)

    @property
    def pose(self) -> np.ndarray | None:
        """Last filtered pose (copy), None when untracked."""
        return None if self._pose is None else self._pose.copy()

    def _state_at(self, t_s: float, *, measured_now: bool) -> TrackingState:
        if self._pose is None or math.isnan(t_s):
            return TrackingState.UNTRACKED
        if measured_now:
            return TrackingState.TRACKING
        if t_s - self._t_last <= self.options.staleness_limit_s:
            return TrackingState.STALE
        return TrackingState.UNTRACKED

    def update(self, t_s: float, camera_from_tool: np.ndarray | None) -> FilteredPose:
        """Feed one frame: a measurement (4x4) or None when the tool was not seen.

        ``t_s`` must not decrease; frames with equal time are treated as repeats.
        """
        t_s = float(t_s)
        if not math.isnan(self._t_frame) and t_s < self._t_frame:
            raise InputError(f"frame time went backwards: {t_s} < {self._t_frame}")
        self._t_frame = t_s
        if camera_from_tool is not None:
            measurement = as_transform(camera_from_tool, name="camera_from_tool", rigid=True,
                                       atol=1e-5)
            self._absorb(t_s, measurement)
            return FilteredPose(TrackingState.TRACKING, self._pose.copy(), 0.0, t_s)
        state = self._state_at(t_s, measured_now=False)
        age = t_s - self._t_last if self._pose is not None else float("inf")
        if state is TrackingState.UNTRACKED:
            self._pose = None  # lost: the next measurement starts afresh
            return FilteredPose(state, None, age, self._t_last)
        return FilteredPose(state, self._pose.copy(), age, self._t_last)

    def _absorb(self, t_s: float, measurement: np.ndarray) -> None:
        opts = self.options
        previous = self._pose
        last_raw, self._raw = self._raw, measurement
        if (previous is None or last_raw is None or not opts.enabled
                or np.linalg.norm(measurement[:3, 3] - last_raw[:3, 3]) > opts.reset_jump_mm
                or t_s - self._t_last > opts.staleness_limit_s):
            self._pose = measurement.copy()
            self._t_last = t_s
            self._speed_mm_s = 0.0
            self._speed_deg_s = 0.0
            return
        dt = t_s - self._t_last
        if dt <= 0:  # repeated timestamp: keep the latest measurement, no smoothing step
            self._pose = measurement.copy()
            return
        delta_rot = Rotation.from_matrix(previous[:3, :3].T @ measurement[:3, :3]).as_rotvec()
        delta_t = measurement[:3, 3] - previous[:3, 3]
        a_d = _alpha(opts.derivative_cutoff_hz, dt)
        self._speed_mm_s += a_d * (np.linalg.norm(delta_t) / dt - self._speed_mm_s)
        self._speed_deg_s += a_d * (math.degrees(np.linalg.norm(delta_rot)) / dt
                                    - self._speed_deg_s)
        floor_hz = 1.0 / (2.0 * math.pi * opts.max_lag_s)
        cut_t = max(opts.min_cutoff_hz + opts.beta_s_per_mm * self._speed_mm_s, floor_hz)
        cut_r = max(opts.min_cutoff_hz + opts.beta_s_per_deg * self._speed_deg_s, floor_hz)
        a_t = _alpha(cut_t, dt)
        a_r = _alpha(cut_r, dt)
        pose = np.eye(4)
        pose[:3, :3] = previous[:3, :3] @ Rotation.from_rotvec(a_r * delta_rot).as_matrix()
        pose[:3, 3] = previous[:3, 3] + a_t * delta_t
        self._pose = pose
        self._t_last = t_s
