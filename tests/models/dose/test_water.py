"""Water-phantom calculations: output factors in the beam data match the model; depth curves."""

from __future__ import annotations

import pytest

from models.beams.library import ElectronBeam, default_library
from models.dose.electron import compute_electron_dose
from models.dose.water import depth_curve, model_output_factor, water_phantom, water_pose


@pytest.mark.parametrize("beam", [ElectronBeam("liac", 12.0, 30.0, 0.0),
                                  ElectronBeam("liac", 6.0, 50.0, 45.0),
                                  ElectronBeam("mobetron", 9.0, 25.0, 15.0)])
def test_shipped_output_factors_are_the_models(beam):
    tabulated = default_library().machine(beam.machine).output_factor(beam)
    assert tabulated == pytest.approx(model_output_factor(beam, None), abs=2e-4)


def test_mu_uses_the_tabulated_output_factor():
    beam = ElectronBeam("liac", 12.0, 100.0, 45.0)
    factor = default_library().machine("liac").output_factor(beam)
    ct = water_phantom(half_width_mm=110.0, depth_mm=80.0, spacing_mm=2.0)
    result = compute_electron_dose(ct, water_pose(45.0), beam, prescription_gy=9.0)
    assert result.output_factor == factor
    assert result.mu == pytest.approx(100.0 * 10.0 / factor, rel=1e-9)   # 9 Gy / 0.9


def test_smaller_applicator_has_shallower_r50_at_high_energy():
    small = depth_curve(ElectronBeam("liac", 12.0, 30.0), grid_mm=2.0).metrics
    large = depth_curve(ElectronBeam("liac", 12.0, 100.0), grid_mm=2.0).metrics
    assert small.r50_mm < large.r50_mm - 3.0       # lateral equilibrium lost on the axis
    assert small.dmax_mm <= large.dmax_mm + 1.0
