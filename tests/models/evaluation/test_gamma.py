"""3-D gamma pass rate: analytic linear ramp, identity, against pymedphys."""

from __future__ import annotations

import numpy as np
import pymedphys
import pytest

from models.base.errors import InputError
from models.evaluation.gamma import gamma_pass_rate


def _ramp(shape, slope_per_mm, h):
    k = np.arange(shape[0])[:, None, None] * h
    return np.broadcast_to(10.0 + slope_per_mm * k, shape).copy()


@pytest.mark.parametrize("shift_mm, passes", [(1.0, True), (3.0, False)])
def test_linear_ramp_matches_the_analytic_gamma(shift_mm, passes):
    # D = a z, evaluated shifted by s: gamma^2 = a^2 s^2 / (dD^2 + a^2 DTA^2) exactly
    h, a = 1.0, 2.0                       # % per mm of a 100 % normalisation
    ref = _ramp((40, 6, 6), a, h)
    ev = _ramp((40, 6, 6), a, h) - a * shift_mm
    dd = 3.0                              # 3 % of norm 100
    expected = a * a * shift_mm ** 2 / (dd ** 2 + a * a * 2.0 ** 2) <= 1.0
    assert expected is passes
    inner = np.zeros(ref.shape, dtype=bool)
    inner[5:-5, 1:-1, 1:-1] = True        # away from the edge where "nearest" clamps
    g = gamma_pass_rate(ref, ev, (h, h, h), dose_percent=3.0, distance_mm=2.0,
                        cutoff_percent=0.0, mask=inner, norm=100.0)
    assert g.pass_percent == (100.0 if passes else 0.0)


def test_identical_doses_pass_everywhere_and_cutoff_counts_points():
    rng = np.random.default_rng(3)
    ref = rng.uniform(0.0, 1.0, (10, 11, 12))
    g = gamma_pass_rate(ref, ref, (2.0, 2.0, 2.0), dose_percent=2.0, distance_mm=2.0,
                        cutoff_percent=50.0)
    assert g.pass_percent == 100.0
    assert g.points == int(np.count_nonzero(ref >= 0.5 * ref.max()))


def test_close_to_pymedphys_on_a_shifted_noisy_field():
    rng = np.random.default_rng(1)
    k, j, i = np.meshgrid(np.arange(16), np.arange(15), np.arange(14), indexing="ij")
    h = 2.0
    ref = np.exp(-((i - 7) ** 2 + (j - 7) ** 2) / 30.0) * np.clip(
        1 - (k * h - 12) ** 2 / 400, 0, None)
    ev = np.roll(ref, 1, axis=0) * 1.02 + rng.normal(0, 0.01, ref.shape)
    mine = gamma_pass_rate(ref, ev, (h, h, h), dose_percent=2.0, distance_mm=2.0)
    axes = tuple(np.arange(n) * h for n in ref.shape)
    theirs = pymedphys.gamma(axes, ref, axes, ev, dose_percent_threshold=2,
                             distance_mm_threshold=2, lower_percent_dose_cutoff=10)
    valid = np.isfinite(theirs)
    assert mine.points == int(valid.sum())
    assert mine.pass_percent == pytest.approx(100 * np.mean(theirs[valid] <= 1), abs=2.0)


def test_shapes_must_agree():
    with pytest.raises(InputError, match="one grid"):
        gamma_pass_rate(np.ones((3, 3, 3)), np.ones((3, 3, 4)), (1, 1, 1), dose_percent=2,
                        distance_mm=2)
