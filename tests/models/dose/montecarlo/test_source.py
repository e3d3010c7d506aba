"""Source model: aperture beamlets (flat and bevelled), radial fluence, shipped and fallback
models."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from models.base.errors import InputError
from models.beams.applicator import Applicator
from models.beams.library import ElectronBeam
from models.dose.montecarlo.source import (
    RIM_NODES_MM,
    RadialFluence,
    SourceModel,
    _radial_fits,
    aperture_beamlets,
    rim_distance_mm,
    source_model,
)


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


def _model_with(*fits: RadialFluence) -> SourceModel:
    base = source_model(ElectronBeam("liac", 12.0, 100.0))
    return replace(base, radial=fits)


def test_radial_fluence_is_piecewise_linear_in_the_rim_distance():
    f = RadialFluence(60.0, 0.0, (0.0, 4.0, 10.0), np.array([[1.0, 0.5, 0.2],
                                                             [0.0, 1.0, 0.0]]))
    d = np.array([-1.0, 0.0, 2.0, 4.0, 7.0, 10.0, 25.0])
    got = f.at(d)
    assert got[0].tolist() == pytest.approx([1.0, 1.0, 0.75, 0.5, 0.35, 0.2, 0.2])
    assert got[1].tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 0.5, 0.0, 0.0])
    with pytest.raises(InputError, match="nodes must increase"):
        RadialFluence(60.0, 0.0, (0.0, 4.0, 4.0), np.ones((2, 3)))
    with pytest.raises(InputError, match=">= 0"):
        RadialFluence(60.0, 0.0, (0.0, 4.0), np.array([[1.0, -0.1]]))


def test_beamlet_fluence_follows_the_fit_and_sums_to_one():
    app = Applicator(60.0, 0.0)
    rim_heavy = RadialFluence(60.0, 0.0, RIM_NODES_MM, np.array([[2.0, 1.0, 1.0, 1.0],
                                                                 [1.0, 0.0, 0.0, 0.0]]))
    model = _model_with(rim_heavy)
    b = aperture_beamlets(app, model.virtual_ssd_mm)
    f = model.beamlet_fluence(app, b)
    assert f.shape == (2, b.count) and f.sum() == pytest.approx(1.0)
    d = rim_distance_mm(app, b)
    # direct: twice as many electrons per beamlet at the rim as inside 4 mm from it
    assert f[0, d.argmin()] / f[0, d.argmax()] == pytest.approx(2.0 * (1 - d.min() / 4.0)
                                                                + d.min() / 4.0, rel=1e-6)
    assert np.all(f[1, d >= 4.0] == 0.0) and f[1, d < 1.0].min() > 0
    # no radial fit: uniform, the components shared like the spectrum weights
    uniform = replace(model, radial=()).beamlet_fluence(app, b)
    assert np.ptp(uniform[0]) == 0 and uniform.sum(axis=1) == pytest.approx(
        model.weights.sum(axis=1))


def test_radial_fluence_is_interpolated_between_fitted_diameters():
    a = RadialFluence(60.0, 0.0, RIM_NODES_MM, np.full((2, 4), 1.0))
    b = RadialFluence(100.0, 0.0, RIM_NODES_MM, np.full((2, 4), 3.0))
    bevel = RadialFluence(60.0, 30.0, RIM_NODES_MM, np.full((2, 4), 7.0),
                          np.full((2, 4), 5.0))
    model = _model_with(a, b, bevel)
    f, how = model.radial_fluence(Applicator(60.0, 0.0))
    assert f.fluence[0, 0] == 1.0 and f.toe_fluence is None and how == "fitted for 60 mm 0 deg"
    f, how = model.radial_fluence(Applicator(70.0, 0.0))
    assert f.fluence[0, 0] == pytest.approx(1.5) and f.diameter_mm == 70.0
    assert "interpolated from the fits for 60 and 100" in how
    f, how = model.radial_fluence(Applicator(120.0, 0.0))
    assert f.fluence[0, 0] == pytest.approx(3.0)
    f, how = model.radial_fluence(Applicator(80.0, 45.0))   # nearest bevel: 30 deg
    assert f.fluence[0, 0] == pytest.approx(7.0) and f.toe_fluence[0, 0] == 5.0
    assert "30 deg" in how and f.diameter_mm == 80.0     # heel to toe across 80 mm


def test_bevel_fluence_runs_linearly_from_heel_to_toe():
    app = Applicator(60.0, 30.0)
    fit = RadialFluence(60.0, 30.0, RIM_NODES_MM, np.full((2, 4), 2.0), np.full((2, 4), 1.0))
    model = _model_with(fit)
    b = aperture_beamlets(app, model.virtual_ssd_mm)
    f = model.beamlet_fluence(app, b)
    y = (b.corner_mm + 0.5 * (b.side1_mm + b.side2_mm))[:, 1]
    heel, toe, mid = f[0, y.argmin()], f[0, y.argmax()], f[0, np.abs(y).argmin()]
    t = lambda v: 0.5 + 0.5 * v / 30.0          # noqa: E731 -- heel 0 .. toe 1
    assert heel / toe == pytest.approx((2 - t(y.min())) / (2 - t(y.max())))
    assert mid / toe == pytest.approx((2 - t(y[np.abs(y).argmin()])) / (2 - t(y.max())))


def test_bevel_fluence_has_inner_nodes_from_heel_to_toe():
    """Heel 2, the line through the axis (t = 0.5) 0.5, toe 1: piecewise linear in y."""
    fit = RadialFluence(60.0, 30.0, RIM_NODES_MM, np.full((2, 4), 2.0), np.full((2, 4), 1.0),
                        None, (0.5,), np.full((1, 2, 4), 0.5))
    y = np.array([-30.0, -15.0, 0.0, 7.5, 30.0, 40.0])
    got = fit.at(np.full(y.size, 25.0), y)
    assert got[0].tolist() == pytest.approx([2.0, 1.25, 0.5, 0.625, 1.0, 1.0])
    ts, stack = fit.y_nodes
    assert ts == (0.0, 0.5, 1.0) and stack.shape == (3, 2, 4)
    # mixed with a linear fit: on the union of the nodes, the linear one's centre its mean
    linear = RadialFluence(100.0, 30.0, RIM_NODES_MM, np.full((2, 4), 4.0),
                           np.full((2, 4), 2.0))
    mix = fit.mixed(linear, 0.5, 80.0)
    assert mix.inner_y == (0.5,) and mix.diameter_mm == 80.0
    assert mix.at(np.full(3, 25.0), np.array([-40.0, 0.0, 40.0]))[0].tolist() == (
        pytest.approx([3.0, 0.5 * (0.5 + 3.0), 1.5]))
    model = _model_with(fit, linear)
    f, how = model.radial_fluence(Applicator(80.0, 30.0))
    assert f.inner_fluence[0, 0, 0] == pytest.approx(1.75) and "60 and 100" in how
    with pytest.raises(InputError, match="inner_y"):
        RadialFluence(60.0, 30.0, RIM_NODES_MM, np.ones((2, 4)), np.ones((2, 4)), None,
                      (0.5, 0.4), np.ones((2, 2, 4)))
    with pytest.raises(InputError, match="inner_y"):
        RadialFluence(60.0, 30.0, RIM_NODES_MM, np.ones((2, 4)), None, None, (0.5,),
                      np.ones((1, 2, 4)))
    with pytest.raises(InputError, match="inner_y"):       # nodes' fluence, no nodes
        RadialFluence(60.0, 30.0, RIM_NODES_MM, np.ones((2, 4)), np.ones((2, 4)), None, (),
                      np.ones((1, 2, 4)))
    entry = {"radial": {"nodes_mm": list(RIM_NODES_MM), "applicators": [
        {"diameter_mm": 60, "bevel_deg": 30, "fluence": np.full((2, 4), 2.0).tolist(),
         "toe_fluence": np.ones((2, 4)).tolist(), "inner_y": [0.5],
         "inner_fluence": np.full((1, 2, 4), 0.5).tolist()}]}}
    (read,) = _radial_fits(entry, ElectronBeam("liac", 12.0, 60.0, 30.0), 2)
    assert read.at(np.array([25.0]), np.array([0.0]))[0, 0] == pytest.approx(0.5)


def test_malformed_radial_entry_names_the_file():
    beam = ElectronBeam("liac", 12.0, 100.0)
    with pytest.raises(InputError, match=r"mc_source\.json liac 12 MeV radial"):
        _radial_fits({"radial": {"nodes_mm": [0, 4], "applicators": [{"diameter_mm": 60}]}},
                     beam, 2)
    with pytest.raises(InputError, match="one fluence row per component"):
        _radial_fits({"radial": {"nodes_mm": [0, 4], "applicators": [
            {"diameter_mm": 60, "bevel_deg": 0, "fluence": [[1, 1]]}]}}, beam, 2)


def test_applicator_spectrum_is_validated_and_names_the_field():
    with pytest.raises(InputError, match="spectrum_weights"):
        RadialFluence(60.0, 0.0, RIM_NODES_MM, np.ones((2, 4)), None, np.ones((1, 4)))
    with pytest.raises(InputError, match="spectrum_weights"):
        RadialFluence(60.0, 0.0, RIM_NODES_MM, np.ones((2, 4)), None,
                      np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    with pytest.raises(InputError, match="spectrum_weights"):
        RadialFluence(60.0, 0.0, RIM_NODES_MM, np.ones((2, 4)), None,
                      np.array([[1.0, -0.1, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]))
    with pytest.raises(InputError, match="spectrum_weights"):   # bins of the energy
        _model_with(RadialFluence(60.0, 0.0, RIM_NODES_MM, np.ones((2, 4)), None,
                                  np.ones((2, 3))))
    entry = {"edges_mev": [1, 2, 3, 4, 5], "radial": {"nodes_mm": [0, 4], "applicators": [
        {"diameter_mm": 60, "bevel_deg": 0, "fluence": [[1, 1], [1, 1]],
         "spectrum_weights": [[1, 1, 1], [1, 1, 1]]}]}}
    with pytest.raises(InputError, match=r"mc_source\.json liac 12 MeV radial 60 mm 0 deg: "
                                         "spectrum_weights"):
        _radial_fits(entry, ElectronBeam("liac", 12.0, 100.0), 2)
    # rows are normalised: the spectrum's shape, the shares stay the fluence's
    f = RadialFluence(60.0, 0.0, RIM_NODES_MM, np.ones((2, 4)), None,
                      np.array([[2.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 5.0]]))
    assert f.spectrum_weights.tolist() == [[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]


def test_applicator_spectrum_is_interpolated_in_diameter():
    own = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    a = RadialFluence(60.0, 0.0, RIM_NODES_MM, np.full((2, 4), 1.0), None, own)
    b = RadialFluence(100.0, 0.0, RIM_NODES_MM, np.full((2, 4), 3.0))
    model = _model_with(a, b)
    energy = model.weights / model.weights.sum(axis=1, keepdims=True)
    w, how = model.spectrum(Applicator(60.0, 0.0))
    assert w.tolist() == own.tolist() and how == "fitted for 60 mm 0 deg"
    w, how = model.spectrum(Applicator(100.0, 0.0))
    assert w == pytest.approx(energy) and "of the energy" in how
    w, how = model.spectrum(Applicator(70.0, 0.0))          # a quarter of the way
    assert w == pytest.approx(0.75 * own + 0.25 * energy)
    assert how == "interpolated between 60 mm own and 100 mm of the energy (0 deg)"
    assert w.sum(axis=1) == pytest.approx([1.0, 1.0])
    # the fluence's how says which spectrum (only when a fit has its own)
    assert model.radial_fluence(Applicator(60.0, 0.0))[1] == (
        "fitted for 60 mm 0 deg; spectrum fitted for 60 mm 0 deg")
    assert _model_with(b).radial_fluence(Applicator(60.0, 0.0))[1] == (
        "taken from the fit for 100 mm 0 deg")


def test_models_without_applicator_spectra_keep_the_energy_spectrum():
    shipped = source_model(ElectronBeam("liac", 8.0, 70.0))        # fitted without
    plain = _model_with(RadialFluence(60.0, 0.0, RIM_NODES_MM, np.ones((2, 4))))
    for model in (shipped, plain):
        w, how = model.spectrum(Applicator(70.0, 0.0))
        assert "of the energy" in how and "spectrum" not in model.radial_fluence(
            Applicator(70.0, 0.0))[1]
        for c in range(w.shape[0]):
            assert w[c] == pytest.approx(model.component(c)[1])
    old = {"edges_mev": [1, 2, 3], "radial": {"nodes_mm": [0, 4], "applicators": [
        {"diameter_mm": 60, "bevel_deg": 0, "fluence": [[1, 1], [1, 1]]}]}}
    (fit,) = _radial_fits(old, ElectronBeam("liac", 12.0, 100.0), 2)
    assert fit.spectrum_weights is None
