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
from dataclasses import dataclass

from guidance.tracking.pose_filter import TrackingState
from guidance.treatment.plan_check import SEVERITY, Light

#: Text colour (CSS) of each light on the monitor's dark background: the reasons under
#: the light and every verdict that reads like one (e.g. the Monte Carlo check).
LIGHT_TEXT_COLORS = {"green": "#7be39a", "yellow": "#f0c81e", "red": "#ff6a6a",
                     "grey": "#c0c0c0"}


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
    """Tracking state of one tool for the status bar.

    ``state`` is the loop's :class:`~guidance.tracking.pose_filter.TrackingState` (decided on
    the frame clock by the pose filter), aged by :func:`state_on_screen` while no newer
    frame arrives; the monitor never decides a state of its own.
    """

    name: str
    state: TrackingState = TrackingState.UNTRACKED
    age_s: float = math.inf

    def text(self) -> str:
        if self.state is TrackingState.TRACKING:
            return f"{self.name}: tracking"
        if self.state is TrackingState.STALE and math.isfinite(self.age_s):
            return f"{self.name}: STALE {self.age_s * 1000:.0f} ms"
        return f"{self.name}: {self.state.value.upper()}"


def state_on_screen(state: TrackingState, age_s: float | None, frame_age_s: float,
                    stall_limit_s: float) -> tuple[TrackingState, float]:
    """The loop's state of a tool while its frame is on screen.

    The state itself is decided once, by the pose filter on the frame clock (TRACKING:
    measured in that frame; STALE: the last pose held, no older than the loop's staleness
    limit; UNTRACKED: no pose). The monitor only adds what the frame clock cannot see: the
    capture stalled, so the newest frame is itself old. Then nothing in it is trusted.

    Parameters
    ----------
    state : TrackingState
        What the loop said for the frame.
    age_s : float or None
        Age of the pose on the frame clock when the frame was processed (None: never seen).
    frame_age_s : float
        Wall time (s) since the frame was captured.
    stall_limit_s : float
        How long (s) the newest frame may stay on screen before its tools count as
        untracked (at least one frame period of the source).

    Returns
    -------
    (TrackingState, float)
        The loop's state, or UNTRACKED once the frame is older than ``stall_limit_s``; and
        the pose's age now (s).

    Examples
    --------
    >>> state_on_screen(TrackingState.STALE, 0.05, 0.0, 0.2)[0].value
    'stale'
    >>> state_on_screen(TrackingState.TRACKING, 0.0, 0.5, 0.2)[0].value
    'untracked'
    """
    if age_s is None or not math.isfinite(age_s):
        return TrackingState.UNTRACKED, math.inf
    frame_age_s = max(0.0, frame_age_s)
    if frame_age_s > stall_limit_s:
        return TrackingState.UNTRACKED, age_s + frame_age_s
    return state, age_s + frame_age_s


@dataclass(frozen=True)
class MonitorStatus:
    """Everything the status bar and banners show, with units."""

    tools: tuple[ToolStatus, ...] = ()
    fre_mm: float | None = None
    tre_mm: float | None = None
    fps: float = 0.0
    dose_age_s: float | None = None
    dose_pending: bool = False
    #: The full model is computing (:attr:`DoseService.refining`): its dose follows soon.
    dose_refining: bool = False
    #: The dose shown: ``"full"`` or ``"preview"`` (the fast model while the applicator
    #: moves; no DVH numbers until the full model follows).
    dose_model: str = "full"
    overlay_tools: tuple[str, ...] = ("reference", "applicator")

    @property
    def stale(self) -> bool:
        """True when a tool the overlay depends on is not currently tracked."""
        states = {t.name: t.state for t in self.tools}
        return any(states.get(name, TrackingState.UNTRACKED) is not TrackingState.TRACKING
                   for name in self.overlay_tools)

    def banner(self) -> str:
        """Banner text when the overlay must not be trusted ('' when all is current)."""
        bad = [t for t in self.tools
               if t.name in self.overlay_tools and t.state is not TrackingState.TRACKING]
        if not bad and self.stale:
            return "TRACKING LOST - overlay hidden"
        if not bad:
            return ""
        parts = [t.text() for t in bad]
        lost = all(t.state is TrackingState.UNTRACKED for t in bad)
        return "TRACKING " + ("LOST" if lost else "STALE") \
            + " - " + ", ".join(parts)

    def fields(self) -> dict[str, str]:
        """Status-bar texts keyed by field, each number with its unit."""
        def mm(value: float | None) -> str:
            return "—" if value is None or not math.isfinite(value) else f"{value:.2f} mm"

        if self.dose_age_s is None:
            dose = "dose: none"
        else:
            dose = ("dose: PREVIEW model (moving)  " if self.dose_model == "preview"
                    else "dose: full model  ") + f"age {self.dose_age_s:.1f} s" + \
                (" (updating)" if self.dose_pending else "")
        return {
            "tools": "   ".join(t.text() for t in self.tools) or "no tools",
            "registration": f"FRE {mm(self.fre_mm)}  TRE {mm(self.tre_mm)}",
            "fps": f"{self.fps:.1f} fps",
            "dose": dose,
        }


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


class LightFilter:
    """Hysteresis and dwell time on the traffic light.

    A worse light, RED or GREY is shown at once (a warning is never delayed). A better
    YELLOW or GREEN is shown only
    when the reading also passes thresholds tightened by the hysteresis margin (the
    ``strict`` light) and has done so for ``dwell_s`` without interruption, so a reading
    sitting on a threshold (8.0 mm against an 8 mm limit) cannot flip the light.

    Parameters
    ----------
    dwell_s : float
        How long (s) a better light must hold before it is shown.

    Examples
    --------
    >>> f = LightFilter(dwell_s=0.5)
    >>> f.update(Light.RED, Light.RED, 0.0).value
    'red'
    >>> f.update(Light.YELLOW, Light.YELLOW, 0.1).value   # better, not yet for 0.5 s
    'red'
    >>> f.update(Light.YELLOW, Light.YELLOW, 0.7).value
    'yellow'
    """

    def __init__(self, dwell_s: float = 0.5) -> None:
        self.dwell_s = float(dwell_s)
        self.shown = Light.GREY
        self._candidate: Light | None = None
        self._since_s = 0.0

    def peek(self, raw: Light, strict: Light, now_s: float) -> Light:
        """What :meth:`update` would show now, without changing the filter."""
        return self._decide(raw, strict, now_s)[0]

    def update(self, raw: Light, strict: Light, now_s: float) -> Light:
        """Take the newest reading; returns the light to show."""
        self.shown, self._candidate, self._since_s = self._decide(raw, strict, now_s)
        return self.shown

    def _decide(self, raw: Light, strict: Light, now_s: float
                ) -> tuple[Light, Light | None, float]:
        if SEVERITY[raw] >= SEVERITY[self.shown] or raw in (Light.RED, Light.GREY):
            return raw, None, now_s          # worse, the same, or a warning: at once
        # better: what the tightened thresholds allow, no better than the raw reading
        better = raw if SEVERITY[strict] <= SEVERITY[raw] else strict
        if SEVERITY[better] >= SEVERITY[self.shown]:
            return self.shown, None, now_s   # within the hysteresis band: keep
        if better is not self._candidate:
            return self.shown, better, now_s
        if now_s - self._since_s >= self.dwell_s:
            return better, None, now_s
        return self.shown, self._candidate, self._since_s
