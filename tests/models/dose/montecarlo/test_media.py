"""CT -> Monte Carlo media: the pencil beam's stopping power in every voxel."""

from __future__ import annotations

import numpy as np
import pytest

from models.dose.montecarlo.media import media_table


def test_media_and_density_reproduce_the_pencil_beam_stopping_power():
    from models.dose.materials import tissue_lookup

    hu = np.array([-1000.0, -700.0, -100.0, 0.0, 40.0, 300.0, 1000.0, 1500.0])
    table_pb = tissue_lookup()                           # the pencil beam's own table
    rsp = np.interp(hu, table_pb.hu, table_pb.rsp)
    table = media_table()
    medium, density = table.media_of(hu)
    names = [table.names[m - 1] for m in medium]
    assert names == ["AIR700ICRU", "LUNG700ICRU", "H2O700ICRU", "H2O700ICRU", "H2O700ICRU",
                     "ICRPBONE700ICRU", "ICRPBONE700ICRU", "ICRPBONE700ICRU"]
    ratio = {"AIR700ICRU": 0.879, "LUNG700ICRU": 0.992, "H2O700ICRU": 1.0,
             "ICRPBONE700ICRU": 0.908}
    assert density * np.array([ratio[n] for n in names]) == pytest.approx(rsp, rel=1e-12)
    assert density[3] == 1.0                              # water is water
    assert 1.55 < density[6] < 1.8    # 1000 HU: bone (Schneider 2000 gives ~1.6 g/cm3)


def test_shielding_media_are_named():
    shield = media_table().shielding
    assert shield["steel"] == ("STEEL700ICRU", 8.06)
    assert shield["lead"][0] == "PB700ICRU"
