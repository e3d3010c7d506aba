"""Monitor logic without Qt: rates, tool states, banners, dose scheduling."""

from __future__ import annotations

import math

import pytest

from guidance.monitor.state import (
    MonitorStatus,
    RateMeter,
    ToolStatus,
    state_on_screen,
)
from guidance.tracking.pose_filter import TrackingState

TRACKING, STALE, UNTRACKED = TrackingState.TRACKING, TrackingState.STALE, TrackingState.UNTRACKED


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_rate_meter_counts_frames_in_window() -> None:
    clock = FakeClock()
    meter = RateMeter(window_s=1.0, clock=clock)
    assert meter.rate_hz == 0.0
    for _ in range(31):
        meter.tick()
        clock.t += 1.0 / 30.0
    assert meter.rate_hz == pytest.approx(30.0, rel=1e-6)
    clock.t += 5.0
    assert meter.rate_hz == 0.0


def test_state_on_screen_keeps_the_loops_state_until_the_capture_stalls() -> None:
    # never seen: untracked whatever the loop's state says
    assert state_on_screen(TRACKING, None, 0.0, 0.2) == (UNTRACKED, math.inf)
    # the loop's verdict stands while the frame is fresh: a held pose stays STALE
    # (the old wall-clock rule called a 50 ms old held pose 'tracking')
    assert state_on_screen(STALE, 0.05, 0.0, 0.2) == (STALE, pytest.approx(0.05))
    assert state_on_screen(TRACKING, 0.0, 0.2, 0.2) == (TRACKING, pytest.approx(0.2))
    assert state_on_screen(UNTRACKED, 0.3, 0.0, 0.2)[0] is UNTRACKED
    # the newest frame is older than the stall limit: nothing in it is trusted
    assert state_on_screen(TRACKING, 0.0, 0.21, 0.2)[0] is UNTRACKED
    assert state_on_screen(TRACKING, 0.0, 0.5, 1.0)[0] is TRACKING


def test_status_texts_have_units_and_banner_on_dropout() -> None:
    ok = MonitorStatus(tools=(ToolStatus("reference", TRACKING, 0.01),
                              ToolStatus("applicator", TRACKING, 0.02)),
                       fre_mm=0.61, tre_mm=1.234, fps=29.7, dose_age_s=0.4)
    assert not ok.stale and ok.banner() == ""
    fields = ok.fields()
    assert fields["registration"] == "FRE 0.61 mm  TRE 1.23 mm"
    assert fields["fps"] == "29.7 fps" and fields["dose"] == "dose: full model  age 0.4 s"
    moving = MonitorStatus(dose_age_s=0.1, dose_pending=True, dose_model="preview")
    assert moving.fields()["dose"] == "dose: PREVIEW model (moving)  age 0.1 s (updating)"
    dropped = MonitorStatus(tools=(ToolStatus("reference", TRACKING, 0.01),
                                   ToolStatus("applicator", STALE, 0.35)))
    assert dropped.stale
    assert dropped.banner() == "TRACKING STALE - applicator: STALE 350 ms"
    lost = MonitorStatus(tools=(ToolStatus("reference", UNTRACKED),))
    assert lost.stale and lost.banner().startswith("TRACKING LOST")
    assert MonitorStatus().fields()["registration"] == "FRE —  TRE —"
    assert MonitorStatus().banner() == "TRACKING LOST - overlay hidden"


def test_light_filter_holds_a_reading_on_the_threshold() -> None:
    """8.0 mm against an 8 mm yellow limit, noise of 0.01 mm: the light must not flip."""
    from guidance.monitor.state import LightFilter
    from guidance.treatment.plan_check import Light, PlanTolerance, traffic_light

    tol = PlanTolerance()
    tight = tol.tightened(0.5, 0.5)
    f = LightFilter(dwell_s=0.5)
    shown = []
    for i in range(100):
        distance = 8.0 + (0.01 if i % 2 else -0.01)
        raw = traffic_light(distance, 1.0, tol)
        strict = traffic_light(distance, 1.0, tight)
        shown.append(f.update(raw, strict, i * 0.033))
    assert set(shown[1:]) == {Light.RED}   # red at once, never back to yellow on 7.99 mm
    # a clear improvement shows, but only after the dwell time
    times = [3.3 + k * 0.033 for k in range(30)]
    lights = [f.update(Light.YELLOW, traffic_light(7.0, 1.0, tight), t) for t in times]
    first_yellow = times[lights.index(Light.YELLOW)]
    assert 0.5 <= first_yellow - times[0] < 0.6
