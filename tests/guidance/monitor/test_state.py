"""Monitor logic without Qt: rates, tool states, banners, dose scheduling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from guidance.monitor.state import (
    DoseScheduler,
    MonitorStatus,
    RateMeter,
    ToolStatus,
    pose_change,
    state_on_screen,
)
from guidance.tracking.pose_filter import TrackingState
from models.base.transforms import transform_from_rotvec

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
    assert fields["fps"] == "29.7 fps" and fields["dose"] == "dose age 0.4 s"
    dropped = MonitorStatus(tools=(ToolStatus("reference", TRACKING, 0.01),
                                   ToolStatus("applicator", STALE, 0.35)))
    assert dropped.stale
    assert dropped.banner() == "TRACKING STALE - applicator: STALE 350 ms"
    lost = MonitorStatus(tools=(ToolStatus("reference", UNTRACKED),))
    assert lost.stale and lost.banner().startswith("TRACKING LOST")
    assert MonitorStatus().fields()["registration"] == "FRE —  TRE —"
    assert MonitorStatus().banner() == "TRACKING LOST - overlay hidden"


def test_pose_change_known_motion() -> None:
    a = transform_from_rotvec([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    b = transform_from_rotvec([0.0, np.radians(3.0), 0.0], [3.0, 4.0, 0.0])
    move, turn = pose_change(a, b)
    assert move == pytest.approx(5.0, abs=1e-12) and turn == pytest.approx(3.0, abs=1e-9)


def test_dose_scheduler_latest_wins() -> None:
    sched = DoseScheduler(min_move_mm=1.0, min_turn_deg=1.0)
    p0 = np.eye(4)
    params = (9.0, 60.0)
    assert sched.offer(p0, params)           # first pose: compute
    p1 = p0.copy()
    p1[0, 3] = 5.0
    p2 = p0.copy()
    p2[0, 3] = 10.0
    assert not sched.offer(p1, params)       # busy: remembered
    assert not sched.offer(p2, params)       # newer replaces it
    nxt = sched.finished()
    assert nxt is not None and nxt[0][0, 3] == 10.0 and sched.busy
    assert sched.finished() is None and not sched.busy
    small = p2.copy()
    small[0, 3] += 0.5
    assert not sched.offer(small, params)    # below threshold: no recompute
    assert sched.offer(small, (12.0, 60.0))  # energy changed: recompute
    sched.finished()
    sched.invalidate()
    assert sched.offer(small, (12.0, 60.0))
