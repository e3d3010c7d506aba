"""Built-in phantom: determinism, anatomy, HU ranges, cavity, fiducials, planned pose."""

from __future__ import annotations

import numpy as np
import pytest

from models.base.transforms import apply_transform
from models.patient.phantom import (
    CAVITY_FLOOR_Y_MM,
    FIDUCIAL_NAMES,
    PHANTOM_CTV_NORMAL_LPS,
    STRUCTURE_NAMES,
    make_phantom,
    planned_patient_from_applicator,
)

COARSE = (3.0, 3.0, 4.0)


@pytest.fixture(scope="module")
def case():
    return make_phantom(spacing_mm=COARSE, seed=0)


def _inside(case, name: str, points: np.ndarray) -> np.ndarray:
    mask = case.structures[name].mask.astype(np.float32)
    return case.ct.with_array(mask).sample(np.atleast_2d(points), order=0) > 0.5


def test_same_seed_gives_identical_case(case) -> None:
    again = make_phantom(spacing_mm=COARSE, seed=0)
    np.testing.assert_array_equal(again.ct.array, case.ct.array)
    for name in STRUCTURE_NAMES:
        np.testing.assert_array_equal(again.structures[name].mask, case.structures[name].mask)
    for name in FIDUCIAL_NAMES:
        np.testing.assert_array_equal(again.fiducials_lps[name], case.fiducials_lps[name])


def test_other_seed_moves_bowel_but_not_target(case) -> None:
    other = make_phantom(spacing_mm=COARSE, seed=1)
    assert not np.array_equal(other.ct.array, case.ct.array)
    assert not np.array_equal(other.structures["BOWEL"].mask, case.structures["BOWEL"].mask)
    np.testing.assert_array_equal(other.structures["CTV"].mask, case.structures["CTV"].mask)


def test_structures_and_types(case) -> None:
    assert tuple(case.structures) == STRUCTURE_NAMES
    assert case.structures["BODY"].roi_type == "EXTERNAL"
    assert case.structures["CTV"].roi_type == "CTV"
    for name in STRUCTURE_NAMES:
        assert case.structures[name].mask.shape == case.ct.shape
        assert case.structures[name].voxel_count > 50, name
    # organs lie inside the body and do not overlap each other
    body = case.structures["BODY"].mask
    organs = [n for n in STRUCTURE_NAMES if n not in ("BODY", "CAVITY")]
    total = sum(case.structures[n].mask.astype(int) for n in organs)
    assert total.max() == 1
    assert not np.any((total > 0) & ~body)
    assert not np.any(case.structures["CAVITY"].mask & body)


@pytest.mark.parametrize(("name", "lo", "hi"), [
    ("LIVER", 45.0, 65.0), ("KIDNEY_L", 20.0, 40.0), ("PANCREAS", 30.0, 50.0),
    ("CTV", 35.0, 55.0), ("CAVITY", -1010.0, -960.0),
])
def test_median_hu_is_realistic(case, name: str, lo: float, hi: float) -> None:
    median = float(np.median(case.ct.array[case.structures[name].mask]))
    assert lo <= median <= hi


def test_bone_fat_air_hu(case) -> None:
    hu = case.ct.array
    spine = hu[case.structures["SPINE"].mask]
    assert 400.0 <= np.median(spine) <= 1200.0
    assert np.percentile(spine, 95) <= 1250.0
    body = case.structures["BODY"].mask
    fat_fraction = np.mean((hu[body] > -130) & (hu[body] < -60))
    assert fat_fraction > 0.2
    assert np.median(hu[~body & ~case.structures["CAVITY"].mask]) < -990.0
    assert np.all(hu == np.rint(hu)) and hu.dtype == np.float32


def test_cavity_opens_anteriorly_down_to_the_floor(case) -> None:
    pose = planned_patient_from_applicator(case)
    origin = pose[:3, 3]
    # along the cavity axis from outside the patient (anterior) to the floor: all air
    ys = np.arange(-130.0, CAVITY_FLOOR_Y_MM - 4.0, 2.0)
    line = np.column_stack([np.full_like(ys, origin[0]), ys, np.full_like(ys, origin[2])])
    assert np.all(case.ct.sample(line, order=1) < -900.0)
    # the cavity reaches the anterior skin level
    cavity_y = case.ct.voxel_centres()[case.structures["CAVITY"].mask][:, 1]
    assert cavity_y.min() < -95.0


def test_planned_pose_rests_on_ctv(case) -> None:
    pose = planned_patient_from_applicator(case)
    rot = pose[:3, :3]
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(rot[:, 2], PHANTOM_CTV_NORMAL_LPS, atol=1e-12)
    in_front, behind = apply_transform(pose, [[0.0, 0.0, -4.0], [0.0, 0.0, 5.0]])
    assert _inside(case, "CAVITY", in_front)[0]
    assert _inside(case, "CTV", behind)[0]
    # the CTV centroid lies on the beam axis, a few mm deep
    centroid_app = apply_transform(np.linalg.inv(pose), case.centroid_lps("CTV"))[0]
    assert np.hypot(centroid_app[0], centroid_app[1]) < 2.0
    assert 2.0 < centroid_app[2] < 10.0


def test_fiducials_on_anterior_skin_around_cavity(case) -> None:
    pose = planned_patient_from_applicator(case)
    points = np.array([case.fiducials_lps[n] for n in FIDUCIAL_NAMES])
    assert points.shape == (5, 3)
    body = case.structures["BODY"].mask.astype(np.float32)
    body_vol = case.ct.with_array(body)
    # just posterior of each fiducial is body, just anterior is air: it sits on the skin
    assert np.all(body_vol.sample(points + np.array([0.0, 4.0, 0.0]), order=1) > 0.5)
    assert np.all(body_vol.sample(points - np.array([0.0, 4.0, 0.0]), order=1) < 0.5)
    radial = np.hypot(points[:, 0] - pose[0, 3], points[:, 2] - pose[2, 3])
    assert np.all((radial > 60.0) & (radial < 95.0))
    # not coplanar (registration needs depth spread)
    centred = points - points.mean(axis=0)
    assert np.linalg.svd(centred, compute_uv=False)[-1] > 5.0
    # visible as beads in the CT
    assert np.all(case.ct.sample(points, order=1) > 300.0)


def test_default_grid_shape() -> None:
    case = make_phantom(spacing_mm=(4.0, 4.0, 5.0))
    np.testing.assert_allclose(case.ct.spacing_mm, [4.0, 4.0, 5.0])
    np.testing.assert_allclose(case.ct.direction, np.eye(3))


@pytest.mark.parametrize("bad", [(0.0, 1.0, 1.0), (1.0, 1.0), (20.0, 1.0, 1.0)])
def test_bad_spacing_rejected(bad) -> None:
    with pytest.raises(ValueError, match="spacing_mm"):
        make_phantom(spacing_mm=bad)
