"""CT -> density -> tissue table against independent numbers: water, ICRP bone from its
elemental composition (PDG radiation lengths), lung density, dose-to-medium ratio."""

from __future__ import annotations

import numpy as np
import pytest

from models.dose.materials import shield_material, tissue_lookup

#: ICRP cortical bone (ICRU 46) mass fractions and elemental radiation lengths (g/cm2, PDG).
ICRP_BONE = {"H": (0.047, 63.04), "C": (0.144, 42.70), "N": (0.042, 37.99),
             "O": (0.446, 34.24), "Mg": (0.002, 25.03), "P": (0.105, 21.21),
             "S": (0.003, 19.28), "Ca": (0.209, 16.14)}


def test_water_is_water():
    t = tissue_lookup()
    for what in ("density_g_cm3", "rsp", "scatter", "stopping_ratio"):
        assert float(t.at(0.0, what)) == pytest.approx(1.0, abs=1e-9)
    assert float(t.at(0.0, "ebf_a")) == 0.0


def test_bone_scatters_more_than_it_stops_as_its_composition_says():
    t = tissue_lookup()
    hu = float(np.interp(1.85, t.density_g_cm3[1200:], t.hu[1200:]))  # ICRP bone density
    x0 = 1.0 / sum(w / x for w, x in ICRP_BONE.values())               # ~27.5 g/cm2
    assert float(t.at(hu, "scatter")) == pytest.approx(1.85 * 36.08 / x0, rel=0.03)
    # ESTAR: ICRP bone / water mass collision stopping power ~0.91 at 5-10 MeV
    assert float(t.at(hu, "rsp")) == pytest.approx(1.85 * 0.91, rel=0.03)
    assert float(t.at(hu, "stopping_ratio")) == pytest.approx(0.91, abs=0.02)
    assert 0.02 < float(t.at(hu, "ebf_a")) < 0.06       # far below lead's 0.735


def test_lung_density_and_monotone_stopping():
    t = tissue_lookup()
    assert float(t.at(-700.0, "density_g_cm3")) == pytest.approx(0.30, abs=0.03)
    assert np.all(np.diff(t.density_g_cm3) >= 0.0)
    assert t.name[int(-700 - t.hu[0])] == "lung"


def test_metals_scatter_far_more_than_water():
    # PDG: lead X0 6.37 g/cm2 at 11.35 g/cm3, iron 13.84 g/cm2 at 7.87 g/cm3
    assert shield_material("lead").scatter_per_mm == pytest.approx(11.35 * 36.08 / 6.37,
                                                                   rel=0.01)
    assert shield_material("steel").scatter_per_mm == pytest.approx(7.87 * 36.08 / 13.84,
                                                                    rel=0.02)
