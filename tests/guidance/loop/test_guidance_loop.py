"""GuidanceLoop on simulated sessions: states, events, registration, applicator, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import pyvista as pv

from guidance.frames import ListSource, WebcamSource
from guidance.loop.guidance_loop import (
    FrameProcessed,
    FrameSkipped,
    GuidanceLoop,
    RegistrationChanged,
    SourceEnded,
    SourceFailed,
    ToolStateChanged,
)
from guidance.registration.fiducials import FiducialCollector
from guidance.sim.camera import CameraPath, SceneMesh, SimEffects, SimulatedCamera, facing_pose
from guidance.sim.source import RegistrationScenario, ScenePose, SimulatedSource
from guidance.tracking.pose_filter import TrackingState
from models.base.transforms import invert_rigid, transform_difference

K = np.array([[700.0, 0, 399.5], [0, 700.0, 224.5], [0, 0, 1]])
SIZE = (800, 450)
FIDUCIALS = {"F1": np.array([-70.0, -100.0, 50.0]), "F2": np.array([65.0, -98.0, 55.0]),
             "F3": np.array([-60.0, -95.0, -60.0]), "F4": np.array([70.0, -97.0, -50.0]),
             "F5": np.array([0.0, -105.0, 80.0])}
TARGET = np.array([0.0, -30.0, 0.0])


def _skin() -> list[SceneMesh]:
    plane = pv.Plane(center=(0, -95, 0), direction=(0, -1, 0), i_size=500, j_size=500)
    return [SceneMesh(plane, (215, 175, 150))]


def _scenario(tools: dict, **kw) -> RegistrationScenario:
    path = CameraPath(target_mm=np.array([0.0, -95.0, 0.0]), distance_mm=430.0, sway_mm=25.0)
    eye = invert_rigid(path.camera_from_frame(0.0))[:3, 3]
    return RegistrationScenario(
        camera_path=path, tools=tools,
        patient_from_reference=facing_pose(np.array([-150.0, -130.0, -20.0]), eye),
        fiducials_patient_mm=FIDUCIALS, patient_from_applicator=facing_pose(
            np.array([10.0, -40.0, 5.0]), np.array([10.0, 300.0, 5.0])),  # +z posterior
        lean_toward_mm=np.array([0.0, -95.0, 0.0]), **kw)


def test_session_registers_and_tracks_applicator(tools: dict) -> None:
    """Pointer touches 5 fiducials -> paired-point registration -> applicator in patient."""
    scenario = _scenario(tools, frames_per_fiducial=4, applicator_frames=6)
    camera = SimulatedCamera(_skin(), tools, K, image_size=SIZE, effects=SimEffects(),
                             rng=np.random.default_rng(11))
    loop = GuidanceLoop(SimulatedSource(camera, scenario), tools, K)
    collector = FiducialCollector(FIDUCIALS, samples_per_fiducial=3)
    events: list = []
    applicator_errors = []

    def on_event(event: object) -> None:
        events.append(event)
        if not isinstance(event, FrameProcessed):
            return
        result = event.result
        name = scenario.fiducial_at(result.frame.index)
        if name is not None and result.pointer_tip_reference_mm is not None:
            collector.add(name, result.pointer_tip_reference_mm)
        if collector.complete and loop.patient_from_reference is None:
            reg = collector.register(target_patient_mm=TARGET, fle_mm=0.5)
            loop.set_registration(reg.patient_from_reference, fre_mm=reg.fre_mm)
        if result.patient_from_applicator is not None:
            applicator_errors.append(transform_difference(result.patient_from_applicator,
                                                          scenario.patient_from_applicator))
            truth = result.frame.truth.camera_from_patient
            assert transform_difference(result.camera_from_patient, truth)[0] < 2.0

    loop.subscribe(on_event)
    summary = loop.run()
    assert summary.frames_processed == scenario.n_frames and summary.failure is None
    # registration: patient_from_reference recovered, TRE at the target small
    truth = scenario.patient_from_reference
    est = loop.patient_from_reference
    tre = np.linalg.norm(est[:3, :3] @ (invert_rigid(truth)[:3, :3] @ TARGET
                                        + invert_rigid(truth)[:3, 3]) + est[:3, 3] - TARGET)
    assert tre < 2.0 and loop.registration_fre_mm < 1.0
    errors = np.array(applicator_errors)
    assert len(errors) == 6
    assert np.median(errors[:, 0]) < 2.0 and np.median(errors[:, 1]) < 1.0
    kinds = [type(e) for e in events]
    assert kinds.count(RegistrationChanged) == 1 and kinds[-1] is SourceEnded
    changes = [(e.tool, e.new) for e in events if isinstance(e, ToolStateChanged)]
    assert ("pointer", TrackingState.STALE) in changes
    assert ("applicator", TrackingState.TRACKING) in changes


def test_stale_and_lost_reported_within_one_frame(tools: dict) -> None:
    """Reference hidden from frame 10 at 24 fps: stale at 10, lost at the first frame older
    than 0.2 s (frame 14: 5/24 = 0.208 s), and no camera_from_patient from then on."""
    path = CameraPath(target_mm=np.zeros(3), view_dir=np.array([0.0, -1.0, 0.0]),
                      distance_mm=400.0, sway_mm=0.0)
    eye = invert_rigid(path.camera_from_frame(0.0))[:3, 3]
    reference = facing_pose(np.array([0.0, 0.0, 0.0]), eye)

    def script(index: int, t_s: float) -> ScenePose:
        poses = {"reference": reference} if index < 10 else {}
        return ScenePose(path.camera_from_frame(t_s), poses)

    camera = SimulatedCamera([], tools, K, image_size=SIZE, effects=SimEffects.ideal())
    loop = GuidanceLoop(SimulatedSource(camera, script, n_frames=18, fps=24.0), tools, K,
                        patient_from_reference=np.eye(4))
    changes = []
    results = []
    loop.subscribe(lambda e: changes.append(e) if isinstance(e, ToolStateChanged) else None)
    loop.subscribe(lambda e: results.append(e.result) if isinstance(e, FrameProcessed) else None)
    loop.run()
    ref_changes = [(e.frame_index, e.new) for e in changes if e.tool == "reference"]
    assert ref_changes == [(0, TrackingState.TRACKING), (10, TrackingState.STALE),
                           (14, TrackingState.UNTRACKED)]
    for result in results:
        if result.frame.index >= 14:
            assert result.camera_from_patient is None and not result.overlay_allowed
        else:
            assert result.overlay_allowed
            assert result.tools["reference"].age_s <= loop.options.staleness_limit_s


def test_dose_is_requested_only_when_moved(tools: dict) -> None:
    """The loop's tracked applicator, offered to the one dose scheduler, asks for a dose on
    the first pose and after a real move, not on every frame."""
    from guidance.loop.guidance_loop import FrameProcessed
    from guidance.tracking.pose_filter import TrackingState
    from guidance.treatment.dose_service import DoseScheduler

    path = CameraPath(target_mm=np.zeros(3), distance_mm=450.0, sway_mm=0.0)
    eye = invert_rigid(path.camera_from_frame(0.0))[:3, 3]
    reference = facing_pose(np.array([-120.0, 0.0, 0.0]), eye)

    def script(index: int, t_s: float) -> ScenePose:
        shift = 0.0 if index < 4 else 10.0  # applicator moves 10 mm at frame 4
        app = facing_pose(np.array([60.0 + shift, 0.0, 0.0]), eye)
        return ScenePose(path.camera_from_frame(t_s), {"reference": reference,
                                                       "applicator": app})

    calls = []
    scheduler = DoseScheduler(min_move_mm=2.0, min_turn_deg=2.0)

    def offer(event) -> None:
        if not isinstance(event, FrameProcessed):
            return
        result = event.result
        pose = result.patient_from_applicator
        if pose is None or result.state("applicator") is not TrackingState.TRACKING:
            return
        if scheduler.offer(pose, "beam"):
            calls.append(pose)
            scheduler.finished()   # computed at once

    camera = SimulatedCamera([], tools, K, image_size=SIZE, effects=SimEffects.ideal())
    loop = GuidanceLoop(SimulatedSource(camera, script, n_frames=8), tools, K,
                        patient_from_reference=np.eye(4))
    loop.subscribe(offer)
    loop.run()
    # first pose, then the move (the filter may take a few frames to settle past 2 mm)
    assert 2 <= len(calls) <= 4
    assert calls[-1][0, 3] - calls[0][0, 3] > 8.0


def test_bad_frames_are_skipped_and_counted(tools: dict) -> None:
    good = np.full((120, 160, 3), 90, np.uint8)
    frames = [good, None, np.zeros((10, 10), np.float32), good, np.zeros((0,), np.uint8), good]
    loop = GuidanceLoop(ListSource(frames), tools, K)
    skipped = []
    loop.subscribe(lambda e: skipped.append(e) if isinstance(e, FrameSkipped) else None)
    summary = loop.run()
    assert summary.frames_processed == 3 and summary.frames_skipped == 3
    assert len(skipped) == 3 and summary.failure is None


def test_broken_subscriber_does_not_stop_the_loop(tools: dict) -> None:
    def boom(_event: object) -> None:
        raise RuntimeError("subscriber bug")

    loop = GuidanceLoop(ListSource([np.zeros((100, 100), np.uint8)] * 3), tools, K)
    loop.subscribe(boom)
    assert loop.run().frames_processed == 3
    assert loop.subscriber_errors >= 3


def test_missing_camera_ends_with_source_failed(tools: dict) -> None:
    loop = GuidanceLoop(WebcamSource(97), tools, K)
    failures = []
    loop.subscribe(lambda e: failures.append(e) if isinstance(e, SourceFailed) else None)
    summary = loop.run()
    assert summary.frames_processed == 0
    assert "camera 97" in summary.failure and len(failures) == 1


def test_frame_time_going_back_is_skipped(tools: dict) -> None:
    from guidance.frames import Frame

    loop = GuidanceLoop(ListSource([]), tools, K)
    image = np.zeros((50, 50), np.uint8)
    assert loop.process(Frame(image, 1.0, "c", 0)) is not None
    assert loop.process(Frame(image, 0.5, "c", 1)) is None
    assert loop.frames_skipped == 1


def test_rejects_bad_arguments(tools: dict) -> None:
    with pytest.raises(TypeError, match="FrameSource"):
        GuidanceLoop([np.zeros((2, 2))], tools, K)
    with pytest.raises(ValueError, match="camera_matrix"):
        GuidanceLoop(ListSource([]), tools, np.eye(2))
    with pytest.raises(ValueError, match="reflection"):
        GuidanceLoop(ListSource([]), tools, K, patient_from_reference=np.diag([1, 1, -1, 1.0]))


def test_planar_flip_resolved_with_history(tools: dict) -> None:
    """An ambiguous pose: the candidate nearer the previous pose wins; with no history the
    measurement is not used."""
    from guidance.frames import Frame
    from guidance.tracking.markers import MarkerDetections, ToolPose, TrackingResult
    from models.base.transforms import transform_from_rotvec

    truth = transform_from_rotvec(np.radians([10.0, 0, 0]), [0.0, 0.0, 500.0])
    flipped = transform_from_rotvec(np.radians([-25.0, 0, 0]), [0.0, 0.0, 500.0])
    clear = ToolPose("pointer", truth, 0.1, (4,), 4)
    ambiguous = ToolPose("pointer", flipped, 0.1, (4,), 4, ambiguous=True,
                         alternative=truth, alternative_rms_px=0.12)
    script = iter([ambiguous, clear, ambiguous])
    loop = GuidanceLoop(ListSource([]), tools, K)
    loop.device.tracker.track = lambda image: TrackingResult(MarkerDetections.empty(),
                                                             {"pointer": next(script)})
    image = np.zeros((10, 10), np.uint8)
    first = loop.process(Frame(image, 0.0, "c", 0))
    assert first.state("pointer") is TrackingState.UNTRACKED  # no history: not trusted
    loop.process(Frame(image, 0.033, "c", 1))
    third = loop.process(Frame(image, 0.066, "c", 2))
    assert third.state("pointer") is TrackingState.TRACKING
    assert transform_difference(third.tools["pointer"].camera_from_tool, truth)[1] < 0.5


def test_step_returns_false_at_the_end(tools: dict) -> None:
    """Callers drive the loop with ``while (result := loop.step()) is not False``."""
    source = ListSource([np.zeros((20, 20), np.uint8), None])
    loop = GuidanceLoop(source, tools, K)
    source.open()
    outcomes = []
    while (result := loop.step()) is not False:
        outcomes.append(result)
    assert len(outcomes) == 1 and outcomes[0].frame.index == 0
    assert loop.finished and loop.failure is None and loop.frames_skipped == 1
    assert loop.step() is False


def test_dropout_and_hands_degrade_gracefully(tools: dict) -> None:
    """Random marker dropout, hands and motion blur: the loop keeps going, poses stay right
    when given, and the reference is tracked most of the time."""
    path = CameraPath(target_mm=np.zeros(3), distance_mm=420.0, sway_mm=30.0)
    eye = invert_rigid(path.camera_from_frame(0.0))[:3, 3]
    reference = facing_pose(np.array([-60.0, 0.0, 0.0]), eye)
    effects = SimEffects(marker_dropout_prob=0.4, hand_prob=0.3, motion_blur_exposure=0.3)
    camera = SimulatedCamera([], tools, K, image_size=SIZE, effects=effects,
                             rng=np.random.default_rng(5))
    source = SimulatedSource(
        camera, lambda i, t: ScenePose(path.camera_from_frame(t), {"reference": reference}),
        n_frames=24)
    loop = GuidanceLoop(source, tools, K, patient_from_reference=np.eye(4))
    results = []
    loop.subscribe(lambda e: results.append(e.result) if isinstance(e, FrameProcessed) else None)
    summary = loop.run()
    assert summary.frames_processed == 24 and summary.failure is None
    tracked = [r for r in results if r.state("reference") is TrackingState.TRACKING]
    assert len(tracked) >= 12
    for r in tracked:
        error_mm, _ = transform_difference(r.tools["reference"].camera_from_tool,
                                           r.frame.truth.camera_from_tool["reference"])
        assert error_mm < 3.0


# --- frames that do not fit the calibration, clocks that misbehave -----------------------

def _frame(t_s: float, index: int, size=(50, 40)):
    from guidance.frames import Frame

    return Frame(np.zeros((size[1], size[0]), np.uint8), t_s, "c", index)


def _skips(loop: GuidanceLoop) -> list[str]:
    reasons: list[str] = []
    loop.subscribe(lambda e: reasons.append(e.reason) if isinstance(e, FrameSkipped) else None)
    return reasons


def test_frames_of_another_size_than_calibrated_are_not_tracked(tools: dict) -> None:
    """Half-size frames used to be tracked as TRACKING with 227 mm applicator error."""
    scenario = _scenario(tools, frames_per_fiducial=1, applicator_frames=4)
    camera = SimulatedCamera(_skin(), tools, K / np.array([[2], [2], [1]]),
                             image_size=(SIZE[0] // 2, SIZE[1] // 2), effects=SimEffects(),
                             rng=np.random.default_rng(5))
    loop = GuidanceLoop(SimulatedSource(camera, scenario), tools, K)
    loop.calibrated_size_px = SIZE
    reasons = _skips(loop)
    summary = loop.run()
    assert summary.frames_processed == 0 and summary.frames_skipped == len(reasons) > 0
    assert all("calibrated for 800x450 px frames but the camera delivers 400x225 px" in r
               for r in reasons)
    assert loop.state("applicator") is TrackingState.UNTRACKED


def test_without_a_calibrated_size_the_first_frame_size_is_kept(tools: dict) -> None:
    loop = GuidanceLoop(ListSource([]), tools, K)
    reasons = _skips(loop)
    assert loop.process(_frame(0.0, 0)) is not None
    assert loop.process(_frame(0.1, 1, size=(25, 20))) is None
    assert loop.process(_frame(0.2, 2)) is not None
    assert len(reasons) == 1 and "50x40" in reasons[0] and "25x20" in reasons[0]


@pytest.mark.parametrize("bad_s", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_timestamp_is_skipped_and_does_not_poison_the_filters(tools: dict,
                                                                         bad_s: float) -> None:
    loop = GuidanceLoop(ListSource([]), tools, K)
    reasons = _skips(loop)
    assert loop.process(_frame(1.0, 0)) is not None
    assert loop.process(_frame(bad_s, 1)) is None
    for n in range(2, 12):
        assert loop.process(_frame(1.0 + n / 30, n)) is not None
    assert loop.frames_skipped == 1 and "not a finite number" in reasons[0]


@pytest.mark.parametrize("jump_s", [1e6, 3600.0])
def test_one_far_future_stamp_does_not_skip_every_later_frame(tools: dict,
                                                              jump_s: float) -> None:
    loop = GuidanceLoop(ListSource([]), tools, K)
    reasons = _skips(loop)
    for n in range(5):
        assert loop.process(_frame(10.0 + n / 30, n)) is not None
    assert loop.process(_frame(10.0 + jump_s, 5)) is None
    processed = [loop.process(_frame(10.0 + n / 30, n)) is not None for n in range(6, 36)]
    assert all(processed) and loop.frames_skipped == 1
    assert "ahead" in reasons[0]


@pytest.mark.parametrize("reset_s", [-100.0, 1e4])
def test_clock_reset_is_detected_and_resynchronised(tools: dict, reset_s: float) -> None:
    """A tracker restarting (-100 s) used to skip every frame until the clock caught up."""
    from guidance.loop.guidance_loop import ClockResynchronised

    loop = GuidanceLoop(ListSource([]), tools, K)
    events: list = []
    loop.subscribe(events.append)
    for n in range(30):
        assert loop.process(_frame(200.0 + n / 30, n)) is not None
    after = [loop.process(_frame(200.0 + reset_s + n / 30, 30 + n)) is not None
             for n in range(60)]
    assert after[0] is False and all(after[1:])   # one frame lost, then back in step
    resyncs = [e for e in events if isinstance(e, ClockResynchronised)]
    assert len(resyncs) == 1 and resyncs[0].to_s == pytest.approx(200.0 + reset_s + 1 / 30)
    assert loop.frames_skipped == 1 and loop.frames_processed == 89
