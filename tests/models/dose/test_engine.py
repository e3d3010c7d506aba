"""Engine reuse on unchanged poses, and the worker: non-blocking, latest request wins."""

from __future__ import annotations

import numpy as np
import pytest

from models.beams.library import ElectronBeam
from models.dose.engine import ElectronDoseEngine
from models.dose.water import water_phantom, water_pose


@pytest.fixture(scope="module")
def engine() -> ElectronDoseEngine:
    return ElectronDoseEngine(water_phantom(half_width_mm=50.0, depth_mm=40.0, spacing_mm=2.0))


BEAM = ElectronBeam("liac", 6.0, 50.0)


def test_unchanged_pose_reuses_the_result(engine):
    pose = water_pose(0.0)
    first = engine.compute(pose, BEAM)
    nudged = pose.copy()
    nudged[0, 3] += 0.05
    assert engine.compute(nudged, BEAM) is first
    moved = pose.copy()
    moved[0, 3] += 3.0
    second = engine.compute(moved, BEAM)
    assert second is not first
    assert engine.compute(moved, BEAM, prescription_gy=12.0) is not second


def test_warm_up_compiles_every_kernel_and_reports_its_time():
    from models.dose.engine import warm_up

    seconds = warm_up()
    assert 0.0 < seconds < 120.0


def test_new_prescription_rescales_without_recomputing(engine):
    pose = water_pose(0.0)
    pose[1, 3] = 7.0
    first = engine.compute(pose, BEAM, prescription_gy=10.0)
    rescaled = engine.compute(pose, BEAM, prescription_gy=15.0, isodose_percent=80.0)
    fresh = ElectronDoseEngine(engine.ct).compute(pose, BEAM, prescription_gy=15.0,
                                                  isodose_percent=80.0)
    assert rescaled.compute_ms == 0.0 and first.compute_ms > 0.0
    np.testing.assert_allclose(rescaled.dose.array, fresh.dose.array, rtol=1e-5, atol=1e-5)
    assert rescaled.mu == pytest.approx(fresh.mu, rel=1e-9)
    assert rescaled.dmax_gy == pytest.approx(15.0 / 0.8)
