"""The shipped Monte Carlo source model against the commissioning data (issue 16's water
criterion), from the check runs stored by ``benchmarks/mc/commission_source.py``.

The stored runs are the model's evidence: they carry a digest of the source entry they
were run with, so changing ``assets/beams/mc_source.json`` without running the checks
again fails here; and the numbers are recomputed from the stored Monte Carlo curves with
the same comparison the pencil beam's commissioning uses.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from assets import asset_path
from benchmarks.mc.commission_source import OUT_CURVES, model_digest
from models.beams.commissioning import read_beam_curves
from models.dose.montecarlo.water import McWaterCurves, compare_mc

#: Issue 16: "60/80/100 mm flat and one 30 deg bevel applicator at 6 and 12 MeV".
ACCEPTANCE = [(e, d, b) for e in (6.0, 12.0)
              for d, b in ((60.0, 0.0), (80.0, 0.0), (100.0, 0.0), (60.0, 30.0))]

#: Combinations the shipped source does not yet bring within the criteria (measured with
#: 10^6 histories per 100 mm field; docs/montecarlo.md). Strict: when a new fit meets
#: them, this list must shrink.
NOT_MET: dict[tuple[float, float, float], str] = {}


def _case(key):
    marks = ([pytest.mark.xfail(strict=True, reason=NOT_MET[key])] if key in NOT_MET
             else [])
    return pytest.param(key, marks=marks, id=f"{key[0]:g}MeV-{key[1]:g}mm-{key[2]:g}deg")


@pytest.fixture(scope="module")
def stored():
    return json.loads(OUT_CURVES.read_text())


@pytest.fixture(scope="module")
def data():
    return {c.key: c for c in read_beam_curves(asset_path("beams",
                                                          "liac_kali_mc_curves.json"))}


def _run(stored: dict, key) -> dict:
    rows = [r for r in stored["results"] if (r["energy_mev"], r["diameter_mm"],
                                             r["bevel_deg"]) == key]
    assert rows, f"no stored Monte Carlo check for {key}"
    return rows[0]


def test_stored_checks_were_run_with_the_shipped_source(stored):
    shipped = json.loads(asset_path("beams", "mc_source.json").read_text())
    for entry in shipped["models"]:
        assert stored["source_digest"][f"{entry['energy_mev']:g}"] == model_digest(entry), (
            f"{entry['energy_mev']:g} MeV: mc_source.json changed since the checks ran; run "
            "python -m benchmarks.mc.commission_source again")


def _compared(stored: dict, data: dict, key):
    run = _run(stored, key)
    c = run["curves"]
    mc = McWaterCurves(np.array(c["depth_mm"]), np.array(c["depth_dose_percent"]),
                       np.array(c["lateral_mm"]), np.array(c["profile_x_percent"]),
                       np.array(c["profile_y_percent"]))
    return run, compare_mc(data[key], mc)


@pytest.mark.parametrize("key", ACCEPTANCE, ids=lambda k: f"{k[0]:g}MeV-{k[1]:g}mm-{k[2]:g}deg")
def test_stored_numbers_are_those_of_the_stored_curves(stored, data, key):
    run, got = _compared(stored, data, key)
    for name in ("d_r50_mm", "d_r90_mm"):
        assert getattr(got, name) == pytest.approx(run[name], abs=0.05), name
    for name in ("gamma_depth_percent", "gamma_x_percent", "gamma_y_percent"):
        assert getattr(got, name) == pytest.approx(run[name], abs=0.1), name
    assert "fitted" in run["radial_fluence"] and run["histories"] >= 100_000


@pytest.mark.parametrize("key", [_case(k) for k in ACCEPTANCE])
def test_monte_carlo_reproduces_the_water_data(stored, data, key):
    _, got = _compared(stored, data, key)
    assert abs(got.d_r50_mm) <= 1.0 and abs(got.d_r90_mm) <= 1.0
    assert min(got.gamma_depth_percent, got.gamma_x_percent, got.gamma_y_percent) >= 95.0
