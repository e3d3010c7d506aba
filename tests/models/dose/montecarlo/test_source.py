"""Source model: aperture beamlets (flat and bevelled), shipped and fallback models."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.beams.applicator import Applicator
from models.beams.library import ElectronBeam
from models.dose.montecarlo.source import aperture_beamlets, source_model


@pytest.mark.parametrize("diameter, bevel", [(30.0, 0.0), (100.0, 0.0), (60.0, 30.0)])
def test_beamlets_tile_the_aperture_on_the_end_face(diameter, bevel):
    app = Applicator(diameter, bevel)
    b = aperture_beamlets(app, 600.0)
    # area seen along the beam: the circle (staircase edge of 2 mm squares)
    area = b.count * 4.0
    assert area == pytest.approx(math.pi * app.radius_mm ** 2, rel=0.04)
    # every corner of every beamlet lies in the face z = y tan(bevel)
    for corner in (b.corner_mm, b.corner_mm + b.side1_mm, b.corner_mm + b.side2_mm):
        assert corner[:, 2] == pytest.approx(corner[:, 1] * app.slope, abs=1e-9)
    centre = b.corner_mm + 0.5 * (b.side1_mm + b.side2_mm)
    assert np.all(np.hypot(centre[:, 0], centre[:, 1]) <= app.radius_mm)
    assert b.source_mm.tolist() == [0.0, 0.0, -600.0]


def test_shipped_and_fallback_models():
    liac = source_model(ElectronBeam("liac", 12.0, 100.0))
    assert liac.commissioned
    assert liac.weights.sum() == pytest.approx(1.0)
    assert np.all(liac.weights >= 0) and liac.edges_mev.size == liac.weights.shape[1] + 1
    assert liac.weights.shape[0] == len(liac.source_sigma_mm) == 2
    # mean surface energy near E0 = 2.33 MeV/cm x R50 (43.2 mm) of the commissioning data
    assert liac.mean_energy_mev == pytest.approx(2.33 * 4.32, abs=1.0)
    mob = source_model(ElectronBeam("mobetron", 9.0, 50.0))
    assert not mob.commissioned and "not commissioned" in mob.provenance
