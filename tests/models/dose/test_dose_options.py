"""Dose to water / to medium and the fast preview of the electron engine."""

from __future__ import annotations

import numpy as np
import pytest

from models.base.errors import InputError
from models.beams.library import ElectronBeam
from models.dose.electron import PREVIEW_GRID_MM, compute_electron_dose
from models.dose.engine import ElectronDoseEngine
from models.dose.materials import tissue_lookup
from models.dose.water import water_phantom, water_pose


@pytest.fixture(scope="module")
def bone_slab():
    ct = water_phantom(half_width_mm=70.0, depth_mm=80.0, spacing_mm=2.0)
    z = ct.voxel_to_patient(np.array([[0.0, 0.0, k] for k in range(ct.shape[0])]))[:, 2]
    array = ct.array.copy()
    array[(z > 10.0) & (z < 20.0)] = 1400.0
    return ct.with_array(array)


def test_dose_to_medium_is_dose_to_water_times_the_stopping_ratio(bone_slab):
    beam = ElectronBeam("liac", 12.0, 60.0)
    water = compute_electron_dose(bone_slab, water_pose(0.0), beam)
    medium = compute_electron_dose(bone_slab, water_pose(0.0), beam, dose_to="medium")
    assert (water.dose_to, medium.dose_to) == ("water", "medium")
    assert medium.mu == pytest.approx(water.mu) and medium.dmax_gy == water.dmax_gy
    in_bone = water.dose.sample(np.array([[0.0, 0.0, 15.0]]))[0]
    in_bone_m = medium.dose.sample(np.array([[0.0, 0.0, 15.0]]))[0]
    ratio = float(tissue_lookup().at(1400.0, "stopping_ratio"))
    assert ratio == pytest.approx(0.916, abs=0.01)              # ESTAR ICRP bone / water
    assert in_bone_m / in_bone == pytest.approx(ratio, rel=0.01)
    in_water = np.array([[0.0, 0.0, 30.0]])
    assert medium.dose.sample(in_water)[0] == pytest.approx(water.dose.sample(in_water)[0],
                                                            rel=1e-6)


def test_preview_is_coarse_fast_and_close_to_the_full_model():
    ct = water_phantom(half_width_mm=90.0, depth_mm=90.0, spacing_mm=2.0)
    beam = ElectronBeam("liac", 12.0, 100.0)
    full = compute_electron_dose(ct, water_pose(0.0), beam)
    preview = compute_electron_dose(ct, water_pose(0.0), beam, model="preview")
    assert (full.model, preview.model) == ("full", "preview")
    assert preview.grid_mm == PREVIEW_GRID_MM
    assert preview.dose.array.size < full.dose.array.size / 5
    # clinical axis within 3 % of the maximum where the dose is above 10 %
    z = np.arange(1.0, 55.0, 1.0)
    line = np.stack([0 * z, 0 * z, z], axis=1)
    a, b = full.dose.sample(line), preview.dose.sample(line)
    keep = a > 0.1 * a.max()
    assert np.abs(a - b)[keep].max() < 0.03 * a.max()


def test_engine_keeps_preview_and_full_apart():
    engine = ElectronDoseEngine(water_phantom(half_width_mm=60.0, depth_mm=60.0,
                                              spacing_mm=2.0))
    beam = ElectronBeam("liac", 6.0, 50.0)
    preview = engine.compute(water_pose(0.0), beam, model="preview")
    full = engine.compute(water_pose(0.0), beam)
    assert (preview.model, full.model) == ("preview", "full")
    with pytest.raises(InputError, match="model"):
        engine.compute(water_pose(0.0), beam, model="fast")
    with pytest.raises(InputError, match="dose_to"):
        engine.compute(water_pose(0.0), beam, dose_to="bone")


def test_uncommissioned_bevel_keeps_the_flat_fall_off_width():
    """Read along the clinical axis (L = d / cos b) the stretched pencil curve has the flat
    curve's R90-R50 width; its R90 moves to R90 cos b (the pencils' geometry)."""
    from models.beams.depth_dose import analyse_depth_dose
    from models.dose.electron import bevel_depth_dose

    depth = np.arange(0.0, 80.0, 0.5)
    flat = 100.0 / (1.0 + np.exp((depth - 40.0) / 3.0)) * np.minimum(1.0, 0.85 + depth / 60)
    flat = 100.0 * flat / flat.max()
    same_depth, same = bevel_depth_dose(depth, flat, 0.0)
    assert np.array_equal(same, flat) and np.array_equal(same_depth, depth)
    ref = analyse_depth_dose(depth, flat)
    cos_b = np.cos(np.radians(30.0))
    lb, gb = bevel_depth_dose(depth, flat, 30.0)
    on_axis = analyse_depth_dose(depth, np.interp(depth / cos_b, lb, gb))
    assert on_axis.r50_mm - on_axis.r90_mm == pytest.approx(ref.r50_mm - ref.r90_mm, abs=0.3)
    assert on_axis.r90_mm == pytest.approx(ref.r90_mm * cos_b, abs=0.3)


def test_tissue_backscatter_decays_upstream_of_one_interface():
    from models.dose.electron import electron_model, tissue_backscatter
    from models.dose.materials import backscatter_constants

    model = electron_model(ElectronBeam("liac", 12.0, 100.0))
    zeff = np.repeat(np.arange(0.0, 41.0, 1.0)[:, None], 3, axis=1)   # 1 mm water steps
    a = np.zeros((40, 3))
    a[20:, 1] = 0.12                                  # bone from 20 mm in pencil 1 only
    boost = tissue_backscatter(zeff, a, model)
    b, relax = backscatter_constants()
    e20 = model.energy.mean_energy_mev * (1.0 - 20.0 / model.energy.points.rp_mm)
    for k in (19, 15, 5):
        expected = 0.12 * np.exp(-b * e20) * np.exp(-(20.0 - k) / relax)
        assert boost[k, 1] - 1.0 == pytest.approx(expected, rel=1e-9)
    assert np.all(boost[:, [0, 2]] == 1.0) and np.all(boost[20:, 1] == 1.0)
    assert tissue_backscatter(zeff, np.zeros((40, 3)), model) is None
