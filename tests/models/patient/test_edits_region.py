"""A drawn resection region (sphere or cylinder at the applicator tip), without a structure."""

from __future__ import annotations

import numpy as np
import pytest

from models.base.errors import InputError
from models.patient.edits import (
    FILL_HU,
    REGION_NAME,
    DiscPlacement,
    EditList,
    Resection,
    ResectionRegion,
)


def _pose(centre) -> np.ndarray:
    out = np.eye(4)
    out[:3, 3] = centre
    return out


def test_a_sphere_at_the_applicator_tip_fills_its_voxels_inside_the_body(coarse_phantom) -> None:
    case = coarse_phantom
    from models.patient.phantom import planned_patient_from_applicator

    applicator = planned_patient_from_applicator(case)
    region = ResectionRegion.below_applicator("sphere", applicator, 15.0, 12.0)
    # the centre is 15 mm down the beam axis from the end-face centre
    np.testing.assert_allclose(region.centre_lps, applicator[:3, 3] + 15.0 * applicator[:3, 2])
    edited = EditList([Resection(REGION_NAME, fill="saline", region=region)]).apply(case)
    # independent truth: every voxel centre within 12 mm of the centre, inside the body
    k, j, i = np.indices(case.ct.shape)
    pts = case.ct.voxel_to_patient(np.column_stack([i.ravel(), j.ravel(), k.ravel()]))
    ball = (np.linalg.norm(pts - region.centre_lps, axis=1) <= 12.0).reshape(case.ct.shape)
    body = np.logical_or.reduce([s.mask for s in case.structures.values()
                                 if s.roi_type in ("EXTERNAL", "CAVITY")])
    inside = ball & body
    assert inside.sum() > 50
    assert np.all(edited.ct.array[inside] == FILL_HU["saline"])
    np.testing.assert_array_equal(edited.ct.array[~inside], case.ct.array[~inside])
    assert not np.all(case.ct.array[inside] == FILL_HU["saline"])   # the original is kept
    for name, s in case.structures.items():                          # no mask changed
        np.testing.assert_array_equal(edited.structures[name].mask, s.mask)
    edits = EditList([Resection(REGION_NAME, fill="saline", region=region)])
    line = edits.descriptions(case)[0]
    assert line.startswith("sphere r 12 mm at (") and line.endswith("resected, filled with saline")
    # saved and read back: the same region, the same edited CT
    again = EditList.from_json(edits.to_json())
    assert again.to_json() == edits.to_json()
    np.testing.assert_array_equal(again.apply(case).ct.array, edited.ct.array)


def test_bad_regions_are_refused_with_one_message(coarse_phantom) -> None:
    with pytest.raises(InputError, match="shape 'cube'"):
        ResectionRegion("cube", np.eye(4), 10.0)
    with pytest.raises(InputError, match="radius_mm must be a finite positive"):
        ResectionRegion("sphere", np.eye(4), 0.0)
    with pytest.raises(InputError, match="cylinder length_mm"):
        ResectionRegion("cylinder", np.eye(4), 10.0)
    with pytest.raises(InputError, match="region depth_mm"):
        ResectionRegion.below_applicator("sphere", np.eye(4), -1.0, 10.0)
    # a sphere in the air around the body (the CT's corner): nothing to fill
    corner = coarse_phantom.ct.voxel_to_patient(np.zeros((1, 3)))[0]
    with pytest.raises(InputError, match=r"outside the body; .* nothing applied"):
        EditList([Resection(REGION_NAME, region=ResectionRegion(
            "sphere", _pose(corner), 10.0))]).apply(coarse_phantom)
    far = ResectionRegion("sphere", _pose([5000.0, 0.0, 0.0]), 10.0)
    edits = EditList()
    with pytest.raises(InputError, match=r"outside the CT; .* nothing applied"):
        edits.add(Resection(REGION_NAME, region=far), coarse_phantom)
    assert len(edits) == 0


def test_a_disc_below_the_applicator_has_its_upstream_face_at_the_depth() -> None:
    from models.dose.disc import disc_in_beam

    turn = np.eye(4)
    turn[:3, :3] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]      # beam along -y of the patient
    turn[:3, 3] = (10.0, 20.0, 30.0)
    disc = DiscPlacement.below_applicator("lead", 60.0, 4.0, turn, 25.0)
    np.testing.assert_allclose(disc.centre_lps, (10.0, 20.0 - 27.0, 30.0))
    seen = disc_in_beam(disc, turn)
    assert (seen.depth_mm, seen.thickness_mm, seen.centre_x_mm, seen.centre_y_mm) == \
        pytest.approx((25.0, 4.0, 0.0, 0.0))
    with pytest.raises(InputError, match="disc depth_mm"):
        DiscPlacement.below_applicator("lead", 60.0, 4.0, turn, 0.0)


def test_a_drawn_cylinder_air_vs_saline_shifts_r50_by_the_water_equivalent_path() -> None:
    """A 10 mm cylinder along the beam, centred 11 mm under the end face and wider than
    the field: filled with air instead of saline, R50 lies deeper by the water-equivalent
    thickness of the region on the axis (its voxels there x 2 mm x (RSP saline - RSP air))."""
    from models.beams.depth_dose import analyse_depth_dose
    from models.beams.library import ElectronBeam
    from models.dose.electron import compute_electron_dose
    from models.dose.materials import hu_rsp_table
    from models.dose.water import water_phantom, water_pose
    from models.patient.case import Case

    ct = water_phantom(half_width_mm=60.0, depth_mm=90.0, spacing_mm=2.0)
    case = Case(ct, {})
    pose = water_pose(0.0)
    region = ResectionRegion.below_applicator("cylinder", pose, 11.0, 85.0, 10.0)
    mask = region.mask_on(ct)
    on_axis = int(np.count_nonzero(mask[:, ct.shape[1] // 2, ct.shape[2] // 2]))
    assert on_axis == 5                                   # voxel centres 7 ... 15 mm deep
    beam = ElectronBeam("liac", 10.0, 80.0)
    depth = np.arange(0.0, 80.0, 0.25)
    axis = np.column_stack([np.zeros_like(depth), np.zeros_like(depth), depth])

    def r50_mm(fill: str) -> float:
        edited = EditList([Resection(REGION_NAME, fill=fill, region=region)]).apply(case)
        assert np.all(edited.ct.array[mask] == FILL_HU[fill])
        dose = compute_electron_dose(edited.ct, pose, beam).dose
        return analyse_depth_dose(depth, dose.sample(axis)).r50_mm
    rsp = hu_rsp_table()
    predicted_mm = on_axis * 2.0 * float(rsp(np.array([FILL_HU["saline"]]))[0]
                                         - rsp(np.array([FILL_HU["air"]]))[0])
    shift_mm = r50_mm("air") - r50_mm("saline")
    assert predicted_mm == pytest.approx(9.99, abs=0.01)
    assert shift_mm == pytest.approx(predicted_mm, abs=0.5)
