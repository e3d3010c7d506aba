"""Electron pencil-beam: published depth-dose points, errors, prescription convention."""

from __future__ import annotations

import numpy as np
import pytest

from models.beams import ElectronBeam
from models.dose.depth_dose import analyse_depth_dose
from models.dose.electron import compute_electron_dose
from models.dose.water import water_phantom, water_pose
from models.errors import InputError

#: Published LIAC commissioning values, 100 mm flat applicator in water (issue 5).
LIAC_PUBLISHED = {6: (15.0, 23.3, 31.8), 8: (19.2, 29.2, 39.3), 10: (24.1, 36.4, 47.9),
                  12: (28.8, 43.2, 56.2)}


@pytest.fixture(scope="module")
def water() -> object:
    return water_phantom(half_width_mm=90.0, depth_mm=100.0, spacing_mm=1.0)


def cax_curve(result) -> tuple[np.ndarray, np.ndarray]:
    """Central-axis depth (mm from the surface) and dose of a flat applicator on water."""
    dose = result.dose
    c = dose.shape[1] // 2
    ijk = np.array([[c, c, k] for k in range(dose.shape[0])], dtype=np.float64)
    depth = dose.voxel_to_patient(ijk)[:, 2]
    keep = depth >= 0.0
    return depth[keep], dose.array[keep, c, c]


@pytest.mark.parametrize("energy", sorted(LIAC_PUBLISHED))
def test_liac_reproduces_published_ranges(water, energy):
    result = compute_electron_dose(water, water_pose(0.0), ElectronBeam("liac", energy, 100.0))
    metrics = analyse_depth_dose(*cax_curve(result))
    r90, r50, rp = LIAC_PUBLISHED[energy]
    assert metrics.r90_mm == pytest.approx(r90, abs=1.0)
    assert metrics.r50_mm == pytest.approx(r50, abs=1.0)
    assert metrics.rp_mm == pytest.approx(rp, abs=1.0)
    assert 90.0 <= metrics.surface_percent <= 93.5


def test_prescription_is_delivered_at_the_90_percent_isodose(water):
    result = compute_electron_dose(water, water_pose(0.0), ElectronBeam("liac", 10, 100.0),
                                   prescription_gy=12.0)
    depth, dose = cax_curve(result)
    assert dose.max() == pytest.approx(12.0 / 0.9, rel=1e-6)
    assert result.isodose_gy() == pytest.approx(12.0, rel=1e-12)
    assert result.mu > 0


def test_unknown_energy_names_valid_choices(water):
    with pytest.raises(InputError, match="6, 8, 10, 12"):
        compute_electron_dose(water, water_pose(0.0), ElectronBeam("liac", 9, 100.0))


def test_pose_outside_ct_is_refused(water):
    pose = water_pose(0.0)
    pose[:3, 3] = [500.0, 0.0, 0.0]
    with pytest.raises(InputError, match="outside the CT"):
        compute_electron_dose(water, pose, ElectronBeam("liac", 6, 100.0))


def test_nan_pose_is_refused(water):
    pose = water_pose(0.0)
    pose[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compute_electron_dose(water, pose, ElectronBeam("liac", 6, 100.0))
