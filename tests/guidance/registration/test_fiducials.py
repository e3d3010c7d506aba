"""Fiducial collection: averaging, slip detection, registration with predicted TRE."""

from __future__ import annotations

import numpy as np
import pytest

from guidance.registration.fiducials import FiducialCollector
from guidance.registration.tre import predict_tre_mm
from models.base.transforms import invert_rigid, transform_from_rotvec

FIDS = {"A": np.array([-80.0, -100, 50]), "B": np.array([75.0, -98, 60]),
        "C": np.array([-70.0, -95, -60]), "D": np.array([80.0, -97, -55])}


def test_collect_and_register(rng: np.random.Generator) -> None:
    patient_from_reference = transform_from_rotvec([0.2, -0.4, 0.1], [30.0, -50.0, 12.0])
    reference_from_patient = invert_rigid(patient_from_reference)
    collector = FiducialCollector(FIDS, samples_per_fiducial=4)
    for name, point in FIDS.items():
        tip = reference_from_patient[:3, :3] @ point + reference_from_patient[:3, 3]
        for _ in range(4):
            assert collector.add(name, tip + rng.normal(0, 0.2, 3))
        assert collector.is_done(name)
    assert collector.complete
    target = np.array([0.0, -20.0, 0.0])
    reg = collector.register(target_patient_mm=target, fle_mm=0.4)
    np.testing.assert_allclose(reg.patient_from_reference, patient_from_reference, atol=0.5)
    assert reg.predicted_tre_mm == pytest.approx(predict_tre_mm(np.array(list(FIDS.values())),
                                                                target, 0.4)[0])
    assert set(reg.residuals_by_name()) == set(FIDS) and reg.fre_mm < 0.5


def test_slipped_pointer_restarts_the_fiducial() -> None:
    collector = FiducialCollector(FIDS, samples_per_fiducial=3, max_spread_mm=1.0)
    collector.add("A", np.zeros(3))
    collector.add("A", np.zeros(3))
    assert not collector.add("A", np.array([5.0, 0, 0]))
    assert not collector.is_done("A")
    with pytest.raises(KeyError, match="unknown fiducial"):
        collector.add("Z", np.zeros(3))
    with pytest.raises(ValueError, match="only 0 fiducials"):
        collector.register()
    with pytest.raises(ValueError, match=">= 3 fiducials"):
        FiducialCollector({"A": np.zeros(3)})
