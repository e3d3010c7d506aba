"""Background Monte Carlo runner: progress through the queue, cancel ends it cleanly."""

from __future__ import annotations

import time

import pytest

from guidance.treatment.mc_runner import McCheckRunner
from models.dose.montecarlo.engine import ompmc_available

pytestmark = pytest.mark.skipif(not ompmc_available(), reason="ompmc not installed")


def test_cancelled_run_reports_cancelled(coarse_phantom):
    from models.dicom.rt_export import resolve_plan

    spec = resolve_plan(coarse_phantom)
    runner = McCheckRunner(coarse_phantom, spec, grid_mm=4.0, histories=40_000)
    runner.cancel()                       # asked to stop before the first batch ends
    with runner:
        deadline = time.monotonic() + 240.0
        while not runner.poll().finished and time.monotonic() < deadline:
            time.sleep(0.2)
    assert runner.last.error == "cancelled"
    assert runner.last.result is None
