"""What the OR monitor shows, computed without Qt: status texts, rates, dose scheduling.

The Qt window (:mod:`guidance.monitor.qt.window`) only copies these values into widgets, so the
rules
(when is tracking stale, when is a dose recomputed, what the status bar says) are tested
headless.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from models.base.transforms import angle_between_transforms_deg
from models.base.validation import as_transform

#: Tool states as the tracking loop reports them.
TRACKING, STALE, UNTRACKED = "tracking", "stale", "untracked"
#: Default age (s) above which a pose is stale and no overlay is drawn from it.
DEFAULT_STALE_S = 0.2


class RateMeter:
    """Events per second over a sliding time window (frame rate of the views)."""

    def __init__(self, window_s: float = 2.0, clock: Callable[[], float] = time.monotonic):
        self.window_s = float(window_s)
        self._clock = clock
        self._times: collections.deque[float] = collections.deque()

    def tick(self) -> None:
        """Record one event now."""
        now = self._clock()
        self._times.append(now)
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()

    @property
    def rate_hz(self) -> float:
        """Events per second in the window (0 with fewer than two events)."""
        now = self._clock()
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)


@dataclass(frozen=True)
class ToolStatus:
    """Tracking state of one tool for the status bar."""

    name: str
    state: str = UNTRACKED
    age_s: float = math.inf

    def text(self) -> str:
        if self.state == TRACKING:
            return f"{self.name}: tracking"
        if self.state == STALE and math.isfinite(self.age_s):
            return f"{self.name}: STALE {self.age_s * 1000:.0f} ms"
        return f"{self.name}: {self.state.upper()}"


def tool_state(age_s: float | None, stale_after_s: float = DEFAULT_STALE_S) -> str:
    """State from the age of the newest pose: tracking, stale, or untracked (never seen)."""
    if age_s is None or not math.isfinite(age_s):
        return UNTRACKED
    return TRACKING if age_s <= stale_after_s else STALE


@dataclass(frozen=True)
class MonitorStatus:
    """Everything the status bar and banners show, with units."""

    tools: tuple[ToolStatus, ...] = ()
    fre_mm: float | None = None
    tre_mm: float | None = None
    fps: float = 0.0
    dose_age_s: float | None = None
    dose_pending: bool = False
    overlay_tools: tuple[str, ...] = ("reference", "applicator")

    @property
    def stale(self) -> bool:
        """True when a tool the overlay depends on is not currently tracked."""
        states = {t.name: t.state for t in self.tools}
        return any(states.get(name, UNTRACKED) != TRACKING for name in self.overlay_tools)

    def banner(self) -> str:
        """Banner text when the overlay must not be trusted ('' when all is current)."""
        bad = [t for t in self.tools if t.name in self.overlay_tools and t.state != TRACKING]
        if not bad and self.stale:
            return "TRACKING LOST - overlay hidden"
        if not bad:
            return ""
        parts = [t.text() for t in bad]
        return "TRACKING " + ("LOST" if all(t.state == UNTRACKED for t in bad) else "STALE") \
            + " - " + ", ".join(parts)

    def fields(self) -> dict[str, str]:
        """Status-bar texts keyed by field, each number with its unit."""
        def mm(value: float | None) -> str:
            return "—" if value is None or not math.isfinite(value) else f"{value:.2f} mm"

        if self.dose_age_s is None:
            dose = "dose: none"
        else:
            dose = f"dose age {self.dose_age_s:.1f} s" + (" (updating)" if self.dose_pending
                                                          else "")
        return {
            "tools": "   ".join(t.text() for t in self.tools) or "no tools",
            "registration": f"FRE {mm(self.fre_mm)}  TRE {mm(self.tre_mm)}",
            "fps": f"{self.fps:.1f} fps",
            "dose": dose,
        }


def pose_change(a_from_b: np.ndarray, c_from_b: np.ndarray) -> tuple[float, float]:
    """Translation (mm) and rotation (deg) between two poses of the same frame."""
    a = as_transform(a_from_b, name="a_from_b")
    c = as_transform(c_from_b, name="c_from_b")
    return float(np.linalg.norm(c[:3, 3] - a[:3, 3])), angle_between_transforms_deg(a, c)


@dataclass
class DoseScheduler:
    """Decides when to recompute the dose from the tracked applicator pose.

    Latest wins: a computation starts as soon as the worker is free and the pose (or the
    beam parameters) changed by more than the thresholds since the last computed one. When
    the applicator stops, at most one stale computation is still running, so the dose for
    the final pose is visible after at most two computation times.
    """

    min_move_mm: float = 1.0
    min_turn_deg: float = 1.0
    _computed_pose: np.ndarray | None = None
    _computed_params: object = None
    busy: bool = False
    _pending: tuple[np.ndarray, object] | None = field(default=None, repr=False)

    def needs(self, patient_from_applicator: np.ndarray, params: object) -> bool:
        """True when this pose/params differs enough from the last computed one."""
        if self._computed_pose is None or params != self._computed_params:
            return True
        move, turn = pose_change(self._computed_pose, patient_from_applicator)
        return move > self.min_move_mm or turn > self.min_turn_deg

    def offer(self, patient_from_applicator: np.ndarray, params: object) -> bool:
        """Offer the newest pose; True means: start a computation with it now.

        ``params`` is anything comparable with ``==`` (the beam choice): a change forces
        a recomputation.
        """
        if not self.needs(patient_from_applicator, params):
            self._pending = None
            return False
        if self.busy:
            self._pending = (np.array(patient_from_applicator, dtype=np.float64), params)
            return False
        self.busy = True
        self._computed_pose = np.array(patient_from_applicator, dtype=np.float64)
        self._computed_params = params
        self._pending = None
        return True

    def finished(self) -> tuple[np.ndarray, object] | None:
        """Mark the running computation done; returns the pose to compute next, if any."""
        self.busy = False
        pending, self._pending = self._pending, None
        if pending is not None and self.offer(*pending):
            return pending
        return None

    def invalidate(self) -> None:
        """Forget the last computed pose (e.g. after the CT or registration changed)."""
        self._computed_pose = None


def coverage_table(metrics: Mapping[str, object], *, target: str = "CTV") -> list[str]:
    """Lines for the oncologist panel: V90/D90 of the target, max/mean of the organs."""
    lines = []
    if target in metrics:
        m = metrics[target]
        lines.append(f"{target}: V90 {m.v90_percent:.1f} %  D90 {m.d90_gy:.2f} Gy  "
                     f"Dmin {m.dmin_gy:.2f} Gy")
    for name, m in metrics.items():
        if name == target:
            continue
        lines.append(f"{name}: Dmax {m.dmax_gy:.2f} Gy  D2 {m.d2_gy:.2f} Gy  "
                     f"Dmean {m.dmean_gy:.2f} Gy")
    return lines
