"""CT -> Monte Carlo media: the pencil beam's stopping power in every voxel."""

from __future__ import annotations

import json

import numpy as np
import pytest

from assets import asset_path
from models.dose.montecarlo.media import media_table


def test_media_and_density_reproduce_the_pencil_beam_stopping_power():
    raw = json.loads(asset_path("beams", "materials.json").read_text())["hu_to_rsp"]
    hu = np.array([-1000.0, -700.0, -100.0, 0.0, 40.0, 300.0, 1000.0, 1500.0])
    rsp = np.interp(hu, raw["hu"], raw["rsp"])          # the pencil beam's table
    table = media_table()
    medium, density = table.media_of(hu)
    names = [table.names[m - 1] for m in medium]
    assert names == ["AIR700ICRU", "LUNG700ICRU", "H2O700ICRU", "H2O700ICRU", "H2O700ICRU",
                     "ICRPBONE700ICRU", "ICRPBONE700ICRU", "ICRPBONE700ICRU"]
    ratio = {"AIR700ICRU": 0.879, "LUNG700ICRU": 0.992, "H2O700ICRU": 1.0,
             "ICRPBONE700ICRU": 0.908}
    assert density * np.array([ratio[n] for n in names]) == pytest.approx(rsp, rel=1e-12)
    assert density[3] == 1.0                              # water is water
    assert 1.7 < density[6] < 1.75                        # 1000 HU: cortical-like bone


def test_shielding_media_are_named():
    shield = media_table().shielding
    assert shield["steel"] == ("STEEL700ICRU", 8.06)
    assert shield["lead"][0] == "PB700ICRU"
