"""Depth-dose construction and analysis against analytic truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erfc

from models.beams.depth_dose import DepthDosePoints, analyse_depth_dose, build_depth_dose


def test_analysis_of_an_erfc_falloff_matches_the_analytic_ranges():
    # D = 50 erfc((z - m) / (sqrt 2 s)): R50 = m, R90 = m - 1.28155 s, and the tangent at
    # m (slope -100 / (sqrt(2 pi) s)) meets zero at Rp = m + sqrt(pi / 2) s.
    m, s = 40.0, 6.0
    z = np.arange(0.0, 90.0, 0.05)
    dose = 50.0 * erfc((z - m) / (np.sqrt(2.0) * s))
    metrics = analyse_depth_dose(z, dose)
    assert metrics.r50_mm == pytest.approx(m, abs=0.01)
    assert metrics.r90_mm == pytest.approx(m - 1.2815516 * s, abs=0.01)
    assert metrics.rp_mm == pytest.approx(m + np.sqrt(np.pi / 2.0) * s, abs=0.05)
    assert metrics.bremsstrahlung_percent == pytest.approx(0.0, abs=0.2)   # erfc toe residue


@pytest.mark.parametrize("points", [
    DepthDosePoints(90.0, 9.0, 15.0, 23.3, 31.8, 0.3),
    DepthDosePoints(80.0, 11.0, 18.75, 25.751, 30.0, 0.5),   # steep Mobetron 6 MeV relations
    DepthDosePoints(92.5, 17.0, 28.8, 43.2, 56.2, 0.8),
])
def test_constructed_curve_passes_through_its_points_and_is_monotone(points):
    depth, dose = build_depth_dose(points)
    metrics = analyse_depth_dose(depth, dose)
    assert metrics.r90_mm == pytest.approx(points.r90_mm, abs=0.05)
    assert metrics.r50_mm == pytest.approx(points.r50_mm, abs=0.05)
    assert metrics.rp_mm == pytest.approx(points.rp_mm, abs=0.1)
    assert metrics.dmax_mm == pytest.approx(points.dmax_mm, abs=0.1)
    assert dose[0] == pytest.approx(points.surface_percent, abs=1e-9)
    beyond_max = depth > points.dmax_mm
    assert np.all(np.diff(dose[beyond_max]) <= 1e-9)
    assert np.all(np.diff(dose[depth <= points.dmax_mm]) >= -1e-9)


def test_inconsistent_points_are_refused():
    with pytest.raises(ValueError, match="dmax < R90 < R50 < Rp"):
        build_depth_dose(DepthDosePoints(90.0, 9.0, 25.0, 23.3, 31.8, 0.3))


def test_curve_that_never_falls_is_refused():
    z = np.linspace(0.0, 10.0, 20)
    with pytest.raises(ValueError, match="never falls below"):
        analyse_depth_dose(z, np.ones_like(z))


def test_uniform_lookup_matches_numpy_interp(rng):
    from models.beams.depth_dose import lookup_uniform

    depth = np.arange(0.0, 50.0, 0.1)
    table = np.sin(depth / 7.0) + 2.0
    x = rng.uniform(-1.0, 49.9, size=500)
    np.testing.assert_allclose(lookup_uniform(x, depth, table),
                               np.interp(x, depth, table), rtol=1e-10, atol=1e-10)
    assert lookup_uniform(np.array([60.0]), depth, table, beyond=-5.0)[0] == -5.0
