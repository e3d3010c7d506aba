"""Accept/reject of registrations against user thresholds, with the reasons named."""

from __future__ import annotations

import numpy as np
import pytest

from guidance.registration.decision import (
    RegistrationThresholds,
    assess_paired_point,
    assess_surface,
)
from guidance.registration.paired_point import register_paired_points
from guidance.registration.surface import SurfaceRegistrationResult

FIXED = np.array([[-80.0, 0, 50], [75, 0, 60], [-70, 0, -60], [80, 0, -55], [0, 10, 90]])


def test_good_paired_point_is_accepted(rng: np.random.Generator) -> None:
    fit = register_paired_points(FIXED, FIXED + rng.normal(0, 0.3, FIXED.shape))
    decision = assess_paired_point(fit, predicted_tre_mm=0.5)
    assert decision.accepted and decision.reasons == ()


def test_one_bad_fiducial_is_named() -> None:
    moving = FIXED.copy()
    moving[2] += [12.0, 0, 0]
    fit = register_paired_points(FIXED, moving)
    decision = assess_paired_point(fit, names=("A", "B", "C", "D", "E"),
                                   thresholds=RegistrationThresholds(max_fre_mm=10.0))
    assert not decision.accepted
    assert any("fiducial C" in r for r in decision.reasons)


def test_every_failed_limit_is_listed() -> None:
    fit = register_paired_points(FIXED[:3], FIXED[:3] + np.array([[0, 0, 3.0], [0, 0, -3.0],
                                                                  [3, 0, 0]]))
    reasons = assess_paired_point(fit, predicted_tre_mm=5.0,
                                  thresholds=RegistrationThresholds(max_fre_mm=0.5)).reasons
    assert any("only 3 fiducials" in r for r in reasons)
    assert any(r.startswith("FRE") for r in reasons)
    assert any("predicted TRE" in r for r in reasons)


def test_surface_checks_rms_fitness_and_agreement() -> None:
    good = SurfaceRegistrationResult(np.eye(4), inlier_rms_mm=0.4, fitness=0.97,
                                     n_points=1000, time_s=0.1)
    assert assess_surface(good).accepted
    shifted = np.eye(4)
    shifted[:3, 3] = [0, 0, 5.0]
    decision = assess_surface(good, paired_point_target_from_source=shifted,
                              check_points_mm=np.zeros((1, 3)))
    assert not decision.accepted and "differ by 5.00 mm" in decision.reasons[0]
    poor = SurfaceRegistrationResult(np.eye(4), inlier_rms_mm=2.5, fitness=0.5,
                                     n_points=1000, time_s=0.1)
    assert len(assess_surface(poor).reasons) == 2


def test_thresholds_validate() -> None:
    with pytest.raises(ValueError, match="min_icp_fitness"):
        RegistrationThresholds(min_icp_fitness=1.5)
    with pytest.raises(ValueError, match="max_fre_mm"):
        RegistrationThresholds(max_fre_mm=-1.0)
