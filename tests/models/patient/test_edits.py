"""Intraoperative edits: the retracted organ where the surgeon put it, in the CT and the dose."""

from __future__ import annotations

import numpy as np
import pytest

from models.base.errors import InputError
from models.patient.edits import (
    FILL_HU,
    DiscPlacement,
    EditList,
    Provenance,
    Resection,
    Retraction,
)


def _shift(mm) -> np.ndarray:
    out = np.eye(4)
    out[:3, 3] = mm
    return out


def test_retraction_moves_mask_and_hu_and_fills_the_vacated_space(coarse_phantom) -> None:
    case = coarse_phantom
    spacing = case.ct.spacing_mm
    # a whole number of voxels along each axis: the moved mask is the shifted mask exactly
    step = np.array([4 * spacing[0], -3 * spacing[1], 2 * spacing[2]])
    direction = case.ct.direction
    shift_lps = direction @ step
    edits = EditList([Retraction("BOWEL", _shift(shift_lps), fill="saline",
                                 provenance=Provenance(who="surgeon", how="test"))])
    edited = edits.apply(case)
    before = case.structures["BOWEL"].mask
    after = edited.structures["BOWEL"].mask
    expected = np.zeros_like(before)
    k, j, i = np.nonzero(before)
    keep = (i + 4 < before.shape[2]) & (j - 3 >= 0) & (k + 2 < before.shape[0])
    expected[k[keep] + 2, j[keep] - 3, i[keep] + 4] = True
    np.testing.assert_array_equal(after, expected)
    # moved tissue keeps its HU, the vacated voxels are saline
    np.testing.assert_allclose(edited.ct.array[k[keep] + 2, j[keep] - 3, i[keep] + 4],
                               case.ct.array[k[keep], j[keep], i[keep]], atol=1e-3)
    vacated = before & ~after
    assert vacated.any()
    assert np.all(edited.ct.array[vacated] == FILL_HU["saline"])
    # other organs lose the voxels the bowel took; the body outline keeps them
    for name, s in edited.structures.items():
        if name != "BOWEL" and s.roi_type != "EXTERNAL":
            assert not (s.mask & after).any(), name
    assert edited.structures["BODY"].mask.sum() == case.structures["BODY"].mask.sum()
    # the original is untouched and undo gives it back
    assert case.structures["BOWEL"].mask.sum() == before.sum()
    assert edits.undo() is not None and len(edits) == 0
    np.testing.assert_array_equal(edits.apply(case).ct.array, case.ct.array)
    assert edits.redo() is not None and len(edits) == 1


def test_json_round_trip_and_bad_entries() -> None:
    rot = np.eye(4)
    rot[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    edits = EditList([Retraction("STOMACH", rot, provenance=Provenance("RO", 12.5, "icp")),
                      Resection("CAVITY", fill="saline")])
    again = EditList.from_json(edits.to_json())
    assert again.to_json() == edits.to_json()
    with pytest.raises(InputError, match="entry 0"):
        EditList.from_json([{"kind": "retraction", "structure": "X",
                             "patient_from_retracted": [[2, 0, 0, 0]] * 4, "when_unix_s": 0}])
    with pytest.raises(InputError, match="fill 'lava'"):
        Resection("GTV", fill="lava")
    assert Retraction("STOMACH", rot).describe(np.array([10.0, 0, 0])) == \
        "STOMACH moved 14 mm, 90 deg"


def test_bowel_moved_into_the_field_gets_dose(coarse_phantom) -> None:
    """Today the bowel the surgeon moved under the applicator was invisible to the dose."""
    from guidance.treatment.dose_service import BeamChoice, electron_dose_function
    from models.evaluation.dvh import compute_dvh
    from models.patient.phantom import planned_patient_from_applicator

    case = coarse_phantom
    plan = planned_patient_from_applicator(case)
    bowel_c = case.centroid_lps("BOWEL")
    # move the bowel so that its centre sits 15 mm below the end face on the beam axis
    goal = plan[:3, :3] @ np.array([0.0, 0.0, 15.0]) + plan[:3, 3]
    edits = EditList([Retraction("BOWEL", _shift(goal - bowel_c), fill="air")])
    edited = edits.apply(case)
    beam = BeamChoice(energy_mev=8.0, applicator_diameter_mm=70.0)
    dose_fn = electron_dose_function("liac")

    def bowel_dmax(c) -> float:
        dose = dose_fn(c, plan, beam).dose
        return compute_dvh(dose, c.ct.with_array(c.structures["BOWEL"].mask),
                           prescription_gy=10.0).metrics.dmax_gy
    assert bowel_dmax(case) < 1.0
    assert bowel_dmax(edited) > 8.0


def _disc(centre) -> DiscPlacement:
    pose = np.eye(4)
    pose[:3, 3] = centre
    return DiscPlacement("lead", 80.0, 3.0, pose, Provenance("RO", 5.0, "pointer"))


def test_disc_placement_is_an_undoable_edit_carried_by_the_edited_case(coarse_phantom) -> None:
    case = coarse_phantom
    first = _disc(case.centroid_lps("CTV") + np.array([0.0, 30.0, 0.0]))
    second = _disc(case.centroid_lps("CTV") + np.array([0.0, 40.0, 0.0]))
    edits = EditList()
    edits.add(first, case)
    edits.add(second, case)
    edited = edits.apply(case)
    assert edited.disc is second and case.disc is None      # the last placement wins
    np.testing.assert_array_equal(edited.ct.array, case.ct.array)   # the CT is not burnt
    edits.undo()
    assert edits.apply(case).disc is first
    again = EditList.from_json(edits.to_json())
    assert again.to_json() == edits.to_json() and again.disc.diameter_mm == 80.0
    assert edits.descriptions(case)[0].startswith("lead disc 80 mm x 3 mm placed at")


def test_bad_edits_are_refused_with_one_message_and_nothing_applied(coarse_phantom) -> None:
    case = coarse_phantom
    edits = EditList([Retraction("BOWEL", _shift([0.0, -10.0, 0.0]))])
    before = edits.to_json()
    # a move that takes the bowel outside the CT
    lo, hi = case.ct.bounds_mm()
    with pytest.raises(InputError, match=r"retraction of BOWEL: the move takes \d+ % of it "
                                         r"outside the CT.*nothing applied"):
        edits.add(Retraction("BOWEL", _shift([0.0, 0.0, float(hi[2] - lo[2])])), case)
    # a matrix that is not rigid (a 10 % stretch)
    stretch = np.diag([1.1, 1.0, 1.0, 1.0])
    with pytest.raises(InputError, match=r"not orthonormal.*affine=True.*nothing applied"):
        edits.add(Retraction("BOWEL", stretch), case)
    # an organ the case does not have, a disc outside the CT
    with pytest.raises(InputError, match="no such structure"):
        edits.add(Retraction("SPLEEN", _shift([1.0, 0.0, 0.0])), case)
    with pytest.raises(InputError, match=r"disc placement: centre .* outside the CT"):
        edits.add(_disc(hi + 50.0), case)
    assert edits.to_json() == before
    # an affine retraction is allowed when asked for
    edits.add(Retraction("BOWEL", stretch, affine=True), case)
    assert len(edits) == 2
