"""The realistic field: exact marker geometry, tracking accuracy under it, hands that hide
markers make the tool lost or degraded (never wrong), repeatable by seed."""

from __future__ import annotations

import numpy as np
import pytest

from guidance.sim.camera import SimEffects, look_at
from guidance.sim.field import FieldLayout, HandPose, RealisticField, SurgeonHands
from guidance.sim.scenario import VIEW_DIRECTION, default_camera
from guidance.tracking.markers import MarkerTracker
from guidance.tracking.tools import load_builtin_tools
from models.base.transforms import invert_rigid, transform_difference, transform_from_rotvec

CAL = default_camera()
LAYOUT = FieldLayout()
#: The applicator frame in the patient when its tube stands in the opening, beam posterior.
APPLICATOR_AXES = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


@pytest.fixture(scope="module")
def tools() -> dict:
    return load_builtin_tools()


@pytest.fixture(scope="module")
def field(tools: dict) -> RealisticField:
    with RealisticField(tools, CAL.camera_matrix, dist_coeffs=CAL.dist_coeffs,
                        rng=np.random.default_rng(3)) as renderer:
        yield renderer


def _view(rng: np.random.Generator, tools: dict, plate_distance_mm: float
          ) -> tuple[np.ndarray, np.ndarray]:
    """(camera_from_patient, patient_from_tool) with the applicator in the opening and its
    plate ``plate_distance_mm`` from the camera."""
    tool_from_applicator = tools["applicator"].tool_from_applicator
    app = np.eye(4)
    app[:3, :3] = APPLICATOR_AXES @ transform_from_rotvec(rng.normal(0, 0.12, 3),
                                                          np.zeros(3))[:3, :3]
    app[:3, 3] = LAYOUT.opening_centre_mm + np.array([0.0, 60.0, 0.0]) + rng.normal(0, 8, 3)
    patient_from_tool = app @ invert_rigid(tool_from_applicator)
    view = VIEW_DIRECTION + rng.normal(0, 0.2, 3)
    eye = patient_from_tool[:3, 3] + view / np.linalg.norm(view) * plate_distance_mm
    return invert_rigid(look_at(eye, LAYOUT.opening_centre_mm)), patient_from_tool


def _end_face_error(tools: dict, estimate: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    tfa = tools["applicator"].tool_from_applicator
    return transform_difference(estimate @ tfa, truth @ tfa)


def test_rendered_marker_corners_are_the_projected_corners(tools: dict) -> None:
    """The plate is drawn by its exact homography through the lens model: detected corners
    sit where cv2.projectPoints puts the tool's corners (no noise, no lighting change)."""
    rng = np.random.default_rng(1)
    tracker = MarkerTracker(tools, CAL.camera_matrix, CAL.dist_coeffs)
    with RealisticField(tools, CAL.camera_matrix, dist_coeffs=CAL.dist_coeffs,
                        effects=SimEffects.ideal(), rng=np.random.default_rng(0),
                        options=None) as ideal:
        camera_from_patient, patient_from_tool = _view(rng, tools, 320.0)
        shot = ideal.render(camera_from_patient, {"applicator": patient_from_tool})
    detections = tracker.detect(shot.image).select(tools["applicator"].marker_ids)
    assert len(detections) == 4
    camera_from_tool = shot.truth.camera_from_tool["applicator"]
    for marker_id, corners in zip(detections.ids, detections.corners_px, strict=True):
        marker = next(m for m in tools["applicator"].markers if m.marker_id == marker_id)
        expected = ideal.project(camera_from_tool, marker.corners_mm)
        assert np.max(np.linalg.norm(corners - expected, axis=1)) < 0.5


def test_applicator_tracked_within_1_mm_on_the_realistic_field(field: RealisticField,
                                                                tools: dict) -> None:
    """Issue 15 acceptance on a handful of frames: median <= 1 mm / 0.5 deg at 30-50 cm
    (applicator end face), noise, lamp pool, gradient, vignetting and flicker on."""
    rng = np.random.default_rng(7)
    tracker = MarkerTracker(tools, CAL.camera_matrix, CAL.dist_coeffs)
    errors = []
    for distance in np.linspace(300.0, 500.0, 6):
        camera_from_patient, patient_from_tool = _view(rng, tools, distance)
        shot = field.render(camera_from_patient, {"applicator": patient_from_tool})
        pose = tracker.track(shot.image).poses.get("applicator")
        assert pose is not None and pose.n_markers == 4
        errors.append(_end_face_error(tools, pose.camera_from_tool,
                                      shot.truth.camera_from_tool["applicator"]))
    errors = np.array(errors)
    assert np.median(errors[:, 0]) <= 1.0
    assert np.median(errors[:, 1]) <= 0.5


def _hand_over(camera_from_patient: np.ndarray, point_mm: np.ndarray, height_mm: float,
               fingers_dir: np.ndarray) -> HandPose:
    """A hand ``height_mm`` in front of ``point_mm`` toward the camera, palm to the field."""
    eye = invert_rigid(camera_from_patient)[:3, 3]
    back = (eye - point_mm) / np.linalg.norm(eye - point_mm)
    y = fingers_dir - back * (fingers_dir @ back)
    y /= np.linalg.norm(y)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2] = np.cross(y, back), y, back
    pose[:3, 3] = point_mm + back * height_mm
    return HandPose(pose, spread=0.2)


@pytest.mark.parametrize("shift_mm", [0.0, 55.0, 85.0])
def test_a_hand_over_the_plate_makes_the_tool_lost_or_degraded(field: RealisticField,
                                                                tools: dict,
                                                                shift_mm: float) -> None:
    """A gloved hand over the applicator's plate (centred, over half of it, at its edge):
    the truth lists the hidden markers; the tracker gives no pose or one from visible
    markers only, and any pose it gives is still right (<= 2 mm / 1 deg)."""
    rng = np.random.default_rng(11)
    tracker = MarkerTracker(tools, CAL.camera_matrix, CAL.dist_coeffs)
    camera_from_patient, patient_from_tool = _view(rng, tools, 380.0)
    plate_centre = patient_from_tool[:3, 3]
    side = patient_from_tool[:3, 0]
    hand = _hand_over(camera_from_patient, plate_centre + side * shift_mm, 60.0,
                      patient_from_tool[:3, 1])
    shot = field.render(camera_from_patient, {"applicator": patient_from_tool},
                        patient_from_hands=[hand])
    hidden = set(shot.truth.occluded_marker_ids)
    assert hidden, "the hand must hide at least one marker"
    pose = tracker.track(shot.image).poses.get("applicator")
    if pose is None:
        return                                           # lost: reported, not guessed
    assert not hidden & set(pose.marker_ids) or len(hidden) < 4
    assert pose.n_markers < 4 or len(hidden) < 4
    position_mm, angle_deg = _end_face_error(tools, pose.camera_from_tool,
                                             shot.truth.camera_from_tool["applicator"])
    assert position_mm <= 2.0 and angle_deg <= 1.0


def test_centred_hand_hides_the_whole_plate(field: RealisticField, tools: dict) -> None:
    rng = np.random.default_rng(11)
    tracker = MarkerTracker(tools, CAL.camera_matrix, CAL.dist_coeffs)
    camera_from_patient, patient_from_tool = _view(rng, tools, 380.0)
    hand = _hand_over(camera_from_patient, patient_from_tool[:3, 3], 60.0,
                      patient_from_tool[:3, 1])
    shot = field.render(camera_from_patient, {"applicator": patient_from_tool},
                        patient_from_hands=[hand])
    assert set(shot.truth.occluded_marker_ids) >= set(tools["applicator"].marker_ids)
    assert "applicator" not in tracker.track(shot.image).poses


def test_same_seed_same_frames_other_seed_other_frames(tools: dict) -> None:
    rng = np.random.default_rng(5)
    camera_from_patient, patient_from_tool = _view(rng, tools, 400.0)
    hands = SurgeonHands(LAYOUT, np.random.default_rng(2), period_s=4.0).at(1.0)
    images = []
    for seed in (4, 4, 5):
        with RealisticField(tools, CAL.camera_matrix, dist_coeffs=CAL.dist_coeffs,
                            image_size=(640, 360), rng=np.random.default_rng(seed)) as cam:
            images.append([cam.render(camera_from_patient, {"applicator": patient_from_tool},
                                      patient_from_hands=hands).image for _ in range(2)])
    np.testing.assert_array_equal(images[0][0], images[1][0])
    np.testing.assert_array_equal(images[0][1], images[1][1])
    assert np.mean(np.abs(images[0][0].astype(int) - images[2][0].astype(int))) > 1.0


def test_surgeon_hand_waits_for_start_then_passes() -> None:
    hands = SurgeonHands(LAYOUT, np.random.default_rng(0), period_s=4.0, start_s=10.0)
    assert len(hands.at(5.0)) == 1                       # the assistant's hand only
    assert len(hands.at(11.0)) == 1                      # half a period after the start
    assert len(hands.at(13.0)) == 2                      # the surgeon reaches in
    assert len(hands.at(15.5)) == 1                      # and has withdrawn


def test_scenario_on_the_realistic_field() -> None:
    """The simulated procedure with field="realistic": frames carry the truth, the hands
    join after the registration, the reference plate is tracked to its truth."""
    from guidance.sim.scenario import Scenario, ScenarioOptions
    from models.base.errors import InputError
    from models.patient.phantom import make_phantom

    case = make_phantom(spacing_mm=(3.0, 3.0, 4.0))
    with pytest.raises(InputError, match="field"):
        Scenario(case, CAL, ScenarioOptions(frames=4, field="cartoon"))
    scenario = Scenario(case, CAL, ScenarioOptions(frames=12, field="realistic",
                                                   hand_period_s=0.4))
    tracker = MarkerTracker(scenario.tools, CAL.camera_matrix, CAL.dist_coeffs)
    source = scenario.source()
    with source:
        frames = [source.read() for _ in range(12)]
        assert source.read() is None
    assert all(f.image.shape == (720, 1280, 3) for f in frames)
    first = frames[0]
    pose = tracker.track(first.image).poses["reference"]
    position_mm, angle_deg = transform_difference(pose.camera_from_tool,
                                                  first.truth.camera_from_tool["reference"])
    assert position_mm < 1.0 and angle_deg < 0.5
    dt = scenario.options.frame_interval_s
    assert all(len(scenario(i, i * dt).hands) == 1 for i in range(scenario.registration_frames))
    assert max(len(scenario(i, i * dt).hands) for i in range(12)) == 2
