"""The phantom scenario's retraction step through the real loop: markers rendered, tracked,
the bowel coupled to the retractor, frozen at release, undone bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from guidance.loop.guidance_loop import GuidanceLoop
from guidance.monitor.anatomy import AnatomyEditor
from guidance.registration.retraction import RetractorCoupling
from guidance.sim.scenario import Scenario, ScenarioOptions, default_camera
from models.base.transforms import apply_transform, invert_rigid, transform_difference

pytestmark = pytest.mark.slow


def _error_at(pose: np.ndarray, truth: np.ndarray, point: np.ndarray) -> float:
    """How far ``pose`` puts ``point`` from where ``truth`` puts it (mm)."""
    return float(np.linalg.norm(apply_transform(pose @ invert_rigid(truth), point[None])[0]
                                - point))


def test_the_bowel_follows_the_tracked_retractor_stays_after_release_and_undo_restores(
        coarse_phantom) -> None:
    case = coarse_phantom
    calibration = default_camera()
    options = ScenarioOptions(frames=17, frames_per_fiducial=1, retraction_frames=8, seed=3)
    with Scenario(case, calibration, options) as scenario:
        assert [scenario.phase_at(i) for i in (4, 5, 12, 13)] == [
            "registration", "retraction", "retraction", "treatment"]
        assert scenario.retraction_event_at(5) == "grab"
        assert scenario.retraction_event_at(12) == "release"
        # the true move at release: 35 mm, 4 deg
        final = scenario.patient_from_retracted_at(12)
        centre = case.centroid_lps("BOWEL")
        assert np.linalg.norm(apply_transform(final, centre[None])[0] - centre) == \
            pytest.approx(35.1, abs=0.1)
        # the truth registration: what is measured here is the tracking alone
        loop = GuidanceLoop(scenario.source(), scenario.tools, calibration.camera_matrix,
                            calibration.dist_coeffs,
                            patient_from_reference=scenario.patient_from_reference)
        editor = AnatomyEditor(case)
        coupling = None
        grab_pose = grab_truth = None
        follow, bound = [], []
        after_release = []
        loop.source.open()
        try:
            while (result := loop.step()) is not False:
                if result is None:
                    continue
                i = result.frame.index
                pose = loop.patient_from_tool(result, "retractor")
                if scenario.phase_at(i) == "retraction":
                    assert pose is not None, f"retractor not tracked in frame {i}"
                    truth = scenario.patient_from_retractor_at(i)
                    if coupling is None:
                        coupling = RetractorCoupling("BOWEL")
                        coupling.grab(pose)
                        grab_pose, grab_truth = pose, truth
                    moved = coupling.follow(pose)
                    editor.preview("BOWEL", moved)
                    want = scenario.patient_from_retracted_at(i) @ invert_rigid(
                        scenario.patient_from_retracted_at(5))
                    follow.append(_error_at(moved, want, centre))
                    # the tracking error of the retractor at grab and now, at the organ
                    bound.append(_error_at(grab_pose, grab_truth, centre)
                                 + _error_at(pose, truth, centre))
                    if scenario.retraction_event_at(i) == "release":
                        editor.add(coupling.release(who="surgeon"))
                        frozen = editor.retraction_of("BOWEL").copy()
                elif coupling is not None:      # treatment: the retractor is put aside
                    coupling.follow(pose)
                    after_release.append(editor.retraction_of("BOWEL"))
        finally:
            loop.source.close()
    assert len(follow) == 8 and len(after_release) == 4
    follow, bound = np.array(follow), np.array(bound)
    assert np.all(follow <= bound + 1e-6), (follow, bound)     # within the tracking error
    assert follow.max() < 2.0
    for pose in after_release:                                   # stays where released
        np.testing.assert_array_equal(pose, frozen)
    move_mm, turn_deg = transform_difference(frozen, final)
    assert move_mm < 2.0 and turn_deg < 1.0
    assert editor.descriptions()[0] in ("BOWEL moved 35 mm, 4 deg", "BOWEL moved 36 mm, 4 deg")
    editor.undo()                                                # bit for bit
    np.testing.assert_array_equal(editor.case.ct.array, case.ct.array)
    for name, s in case.structures.items():
        np.testing.assert_array_equal(editor.case.structures[name].mask, s.mask)
