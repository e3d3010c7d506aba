"""Commissioning fit: gamma against pymedphys, the shipped fit against the shipped Monte
Carlo curves, leave-one-applicator-out prediction, interpolation, bad blocks."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pymedphys
import pytest

from assets import asset_path
from models.base.errors import InputError
from models.beams.commissioning import BeamCurves, read_beam_curves
from models.beams.library import BeamLibrary, ElectronBeam, default_library
from models.dose.commission import (
    MAX_RANGE_ERROR_MM,
    check_beam,
    fit_beam,
    gamma_pass_percent,
)


@pytest.fixture(scope="module")
def curves():
    return {c.key: c for c in read_beam_curves(asset_path("beams", "liac_kali_mc_curves.json"))}


def test_gamma_matches_pymedphys():
    ref_x = np.arange(0.0, 60.0, 2.0)
    ref = 100.0 / (1.0 + np.exp((ref_x - 35.0) / 3.0))
    eval_x = np.arange(0.0, 60.0, 0.25)
    for shift in (1.0, 2.0, 2.5):
        evaluated = (100.0 / (1.0 + np.exp((eval_x - 35.0 - shift) / 3.0))
                     * (1.0 + 0.02 * np.sin(eval_x)))
        ours = gamma_pass_percent(ref_x, ref, eval_x, evaluated)
        gamma = pymedphys.gamma((ref_x,), ref, (eval_x,), evaluated, dose_percent_threshold=2,
                                distance_mm_threshold=2, lower_percent_dose_cutoff=10,
                                interp_fraction=20, max_gamma=2.0)
        valid = np.isfinite(gamma)
        theirs = 100.0 * np.mean(gamma[valid] <= 1.0)
        assert ours == pytest.approx(theirs, abs=100.0 / valid.sum() + 1e-9)
        if shift > 1.5:
            assert 0.0 < ours < 100.0


def test_gamma_distance_criterion_on_a_shifted_falloff():
    x = np.arange(0.0, 80.0, 0.25)
    ref = 100.0 / (1.0 + np.exp((x - 40.0) / 0.5))       # ~ 45 %/mm at 50 %
    for shift, expect_all in ((1.5, True), (3.0, False)):
        moved = 100.0 / (1.0 + np.exp((x - 40.0 - shift) / 0.5))
        rate = gamma_pass_percent(x, ref, x, moved)
        assert (rate == 100.0) is expect_all


@pytest.mark.parametrize("key", [(12.0, 30.0, 0.0), (6.0, 70.0, 0.0), (10.0, 120.0, 0.0),
                                 (8.0, 100.0, 30.0), (12.0, 60.0, 45.0), (8.0, 30.0, 45.0),
                                 (12.0, 120.0, 45.0)])
def test_shipped_fit_meets_the_water_criteria(curves, key):
    check, _ = check_beam(curves[key])
    assert check.passed, check


def test_fit_places_the_heel_to_toe_slope_of_a_small_45_degree_beam(curves):
    """8 MeV, 30 mm, 45 deg: the Monte Carlo in-plane profile rises ~10 % from heel to
    toe. A tilt basis taken alone lost its heel half to the engine's clipping of negative
    pencil weights, and the fit misplaced the slope (y gamma 72.7 %); the fitted weights
    must also stay positive, or the fit's linear model is not the engine's."""
    entry, check, _ = fit_beam(curves[(8.0, 30.0, 45.0)])
    assert check.gamma_y_percent >= 95.0 and check.passed, check
    assert np.all(entry.fluence + entry.fluence_tilt > 0.0)


@pytest.mark.parametrize("energy", [6.0, 12.0])
def test_left_out_applicator_is_predicted(curves, energy):
    machine = default_library().machine("liac")
    trained = replace(machine, commissioned={k: v for k, v in machine.commissioned.items()
                                             if k[1] != 70.0})
    assert trained.commissioned_beam(ElectronBeam("liac", energy, 70.0)).diameter_mm == 70.0
    check, _ = check_beam(curves[(energy, 70.0, 0.0)], trained)
    assert abs(check.d_r50_mm) <= 1.5
    assert min(check.gamma_depth_percent, check.gamma_x_percent,
               check.gamma_y_percent) >= 90.0


def test_uncommissioned_model_misses_small_field_r50(curves):
    """Without the per-applicator fit the 30 mm R50 is ~2.7 mm short (issue 12): the check
    must see it."""
    machine = replace(default_library().machine("liac"), commissioned={})
    check, _ = check_beam(curves[(12.0, 30.0, 0.0)], machine)
    assert check.d_r50_mm < -2.0 and not check.passed


def test_interpolated_parameters_lie_between_the_neighbours():
    machine = default_library().machine("liac")
    a = machine.commissioned[(12.0, 60.0, 0.0)]
    b = machine.commissioned[(12.0, 80.0, 0.0)]
    trained = replace(machine, commissioned={(12.0, 60.0, 0.0): a, (12.0, 80.0, 0.0): b})
    mid = trained.commissioned_beam(ElectronBeam("liac", 12.0, 70.0))
    depth = 30.0
    expected = 0.5 * (np.interp(depth, a.depth_mm, a.dose_percent)
                      + np.interp(depth, b.depth_mm, b.dose_percent))
    assert np.interp(depth, mid.depth_mm, mid.dose_percent) == pytest.approx(expected)
    assert mid.sigma_scale == pytest.approx(0.5 * (a.sigma_scale + b.sigma_scale))


def test_fit_of_a_depth_dose_only_reproduces_its_ranges():
    """A measured PDD (no profiles) of 100 mm: the fitted model returns its R50/R90."""
    depth = np.arange(1.0, 70.0, 2.0)
    dose = 100.0 / (1.0 + np.exp((depth - 40.0) / 3.2)) * np.minimum(1.0, 0.9 + depth / 150)
    data = BeamCurves(12.0, 100.0, 0.0, depth, 100.0 * dose / dose.max())
    entry, check, _ = fit_beam(data)
    assert abs(check.d_r50_mm) < 0.2 and abs(check.d_r90_mm) < MAX_RANGE_ERROR_MM / 2
    assert check.gamma_depth_percent == 100.0
    assert entry.sigma_scale == 1.0


def test_bad_commissioned_block_names_the_row(tmp_path):
    raw = json.loads(asset_path("beams", "liac.json").read_text())
    raw["commissioned"]["beams"][2]["depth_mm"][3] = -1.0
    (tmp_path / "liac.json").write_text(json.dumps(raw))
    with pytest.raises(InputError, match=r"commissioned\.beams\[2\]\.depth_mm\[3\]"):
        BeamLibrary(tmp_path)
