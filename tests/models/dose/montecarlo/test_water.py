"""Water-curve sampling of the Monte Carlo check, validated on the commissioned pencil beam.

The pencil beam is commissioned to the same curves, so its water dose read through
``mc_water_curves`` (the frames, the bevel's orientation, the averaging) must pass
``compare_mc``; a wrong-energy dose must not.
"""

from __future__ import annotations

import numpy as np
import pytest

from assets import asset_path
from models.beams.commissioning import read_beam_curves
from models.beams.library import ElectronBeam
from models.dose.montecarlo.water import compare_mc, mc_water_curves
from models.dose.water import water_dose


@pytest.fixture(scope="module")
def curves():
    return {c.key: c for c in read_beam_curves(asset_path("beams",
                                                          "liac_kali_mc_curves.json"))}


@pytest.mark.parametrize("key", [(12.0, 100.0, 0.0), (6.0, 60.0, 30.0)])
def test_commissioned_pencil_beam_passes_through_the_mc_comparison(curves, key):
    dose = water_dose(ElectronBeam("liac", *key), grid_mm=2.0).dose
    c = compare_mc(curves[key], mc_water_curves(dose, curves[key]))
    assert abs(c.d_r50_mm) <= 0.5 and abs(c.d_r90_mm) <= 0.5
    assert c.gamma_depth_percent >= 95.0 and c.gamma_x_percent >= 95.0


def test_wrong_energy_fails_the_comparison(curves):
    dose = water_dose(ElectronBeam("liac", 10.0, 100.0, 0.0), grid_mm=2.0).dose
    c = compare_mc(curves[(12.0, 100.0, 0.0)], mc_water_curves(dose,
                                                              curves[(12.0, 100.0, 0.0)]))
    assert c.d_r50_mm < -4.0 and c.gamma_depth_percent < 80.0


def test_raw_curves_are_linear_in_the_dose_and_normalise_like_the_data(curves):
    """What the source commissioning relies on: curves of a sum of runs = sum of curves."""
    from models.dose.montecarlo.water import mc_water_raw, normalised
    from models.patient.volume import Volume

    key = (12.0, 60.0, 30.0)
    a = water_dose(ElectronBeam("liac", *key), grid_mm=2.0).dose
    ramp = np.linspace(0.5, 1.5, a.array.shape[0])[:, None, None]   # another dose
    b = Volume(a.array * ramp, a.patient_from_voxel)
    both = Volume(2.0 * a.array + 0.5 * b.array, a.patient_from_voxel)
    ra, rb, rab = (mc_water_raw(v, curves[key]) for v in (a, b, both))
    for name in ("depth_dose", "profile_x", "profile_y"):
        assert getattr(rab, name) == pytest.approx(2.0 * getattr(ra, name)
                                                   + 0.5 * getattr(rb, name), rel=1e-5)
    n = normalised(ra, 60.0)
    assert n.depth_dose.max() == pytest.approx(100.0)
    assert n.profile_x[np.abs(n.lateral_mm) <= 10.0].mean() == pytest.approx(100.0)
