"""The soak in the suite: 1.5 minutes of the live loop under every injected fault.

``make soak`` runs the same module for 30 minutes (``SOAK_MIN``); the bench keys come from
``iort bench --only reliability``.
"""

from __future__ import annotations

import pytest

from benchmarks.soak import FAULTS, run_soak

pytestmark = [pytest.mark.soak, pytest.mark.slow]


def test_loop_survives_every_fault_with_correct_poses_and_flat_memory() -> None:
    result = run_soak(1.5, fault_period_s=4.0)
    assert result.errors == []
    assert all(result.faults[kind] >= 1 for kind in FAULTS), result.faults
    assert result.unrecovered == 0, (result.faults, result.recovered)
    assert result.wrong_poses == 0 and result.max_pose_error_mm < 0.1
    assert result.tracked_frames > 0.8 * 30 * 60 * 1.5 * 0.5   # a loaded CPU halves the rate
    assert result.dose_failures >= 2 and result.dose_updates > 10   # failed, then went on
    assert result.wrong_dose_poses == 0
    assert result.igtl_checks > 60 and result.igtl_wrong == 0
    assert result.igtl_missing <= 0.1 * result.igtl_checks
    assert result.igtl_flap_cycles >= 200 and result.igtl_flood_mb > 50
    assert result.igtl_max_rss_mb <= result.igtl_rss_bound_mb
    assert result.mem_growth_percent < 5.0
