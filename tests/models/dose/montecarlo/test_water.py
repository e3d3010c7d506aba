"""Water-curve sampling of the Monte Carlo check, validated on the commissioned pencil beam.

The pencil beam is commissioned to the same curves, so its water dose read through
``mc_water_curves`` (the frames, the bevel's orientation, the averaging) must pass
``compare_mc``; a wrong-energy dose must not.
"""

from __future__ import annotations

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
