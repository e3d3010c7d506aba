"""External tracker poses (OpenIGTLink TRANSFORMs from a pyigtl peer) through the loop."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pyigtl
import pytest

from calibration.camera import CameraCalibration
from calibration.io import save_calibration
from guidance.cli.commands.run import _camera_frames, _check_tracker, _feed, _read_option_files
from guidance.cli.main import build_parser, main
from guidance.frames.base import Frame
from guidance.igtl.server import IgtlServer
from guidance.loop.guidance_loop import FrameProcessed, GuidanceLoop, LoopOptions, ToolStateChanged
from guidance.tracking.external import (
    DEFAULT_DEVICE_NAMES,
    IgtlToolPoses,
    TrackerClockSource,
    parse_device_names,
)
from guidance.tracking.pose_filter import FilterOptions, TrackingState
from models.base.errors import InputError
from models.base.transforms import transform_from_rotvec

K = np.array([[700.0, 0, 319.5], [0, 700.0, 239.5], [0, 0, 1]])
IMAGE = np.zeros((48, 64, 3), np.uint8)
#: Generous limit: the loaded 2-core test machine must not turn a fresh message old.
LIMIT_S = 1.0
OPTIONS = LoopOptions(filter=FilterOptions(staleness_limit_s=LIMIT_S))
PATIENT_FROM_REFERENCE = transform_from_rotvec([0.3, -0.5, 0.2], [-150.0, -130.0, -20.0])


def _send(server: IgtlServer, client, device: str, matrix: np.ndarray) -> None:
    """Send a TRANSFORM from the pyigtl peer and wait until the server has it."""
    t0 = time.monotonic()
    client.send_message(pyigtl.TransformMessage(matrix, device_name=device), wait=True)
    assert server.wait_for("TRANSFORM", device, timeout_s=5.0, newer_than_s=t0) is not None


def _exact_pose(rng: np.random.Generator) -> np.ndarray:
    """A rigid pose that float32 carries without rounding: a signed-permutation rotation
    (det +1, generally not symmetric, so a missing inverse or a swapped product shows) and a
    translation in 1/8 mm steps."""
    rot = np.eye(3)[rng.permutation(3)] * rng.choice([-1.0, 1.0], size=3)[:, None]
    if np.linalg.det(rot) < 0:
        rot[0] *= -1.0
    pose = np.eye(4)
    pose[:3, :3] = rot
    pose[:3, 3] = rng.integers(-4000, 4000, size=3) / 8.0
    return pose


def _loop(server: IgtlServer, devices: dict[str, str] | None = None, *,
          options: LoopOptions = OPTIONS, **kw) -> GuidanceLoop:
    poses = IgtlToolPoses(server, devices, **kw)
    return GuidanceLoop(TrackerClockSource(poses), {}, K, tool_poses=poses,
                        patient_from_reference=PATIENT_FROM_REFERENCE, options=options)


def _frame(t_s: float, index: int = 0) -> Frame:
    return Frame(image=IMAGE, timestamp_s=t_s, camera_id="test", index=index)


def test_applicator_and_pointer_in_patient_without_camera(server, client, rng) -> None:
    ref, app, ptr = (_exact_pose(rng) for _ in range(3))
    loop = _loop(server)
    for device, pose in (("ReferenceToTracker", ref), ("ApplicatorToTracker", app),
                         ("PointerToTracker", ptr)):
        _send(server, client, device, pose)
    result = loop.process(_frame(10.0))
    truth = PATIENT_FROM_REFERENCE @ np.linalg.inv(ref) @ app
    np.testing.assert_allclose(result.patient_from_applicator, truth, atol=1e-6, rtol=0)
    tip_ref = np.linalg.solve(ref, np.append(ptr[:3, 3], 1.0))[:3]
    np.testing.assert_allclose(result.pointer_tip_reference_mm, tip_ref, atol=1e-6, rtol=0)
    np.testing.assert_allclose(result.pointer_tip_patient_mm,
                               (PATIENT_FROM_REFERENCE @ np.append(tip_ref, 1.0))[:3],
                               atol=1e-6, rtol=0)
    assert result.camera_from_patient is None  # no camera pose: no overlay
    assert not result.overlay_allowed
    for tool in ("reference", "applicator", "pointer"):
        assert result.state(tool) is TrackingState.TRACKING
    assert result.state("camera") is TrackingState.UNTRACKED
    np.testing.assert_allclose(result.tools["applicator"].tracker_from_tool, app, atol=1e-9,
                               rtol=0)


def test_general_rotations_within_float32_wire_precision(server, client, rng) -> None:
    ref = transform_from_rotvec(rng.normal(size=3), rng.uniform(-500, 500, size=3))
    app = transform_from_rotvec(rng.normal(size=3), rng.uniform(-500, 500, size=3))
    loop = _loop(server)
    _send(server, client, "ReferenceToTracker", ref)
    _send(server, client, "ApplicatorToTracker", app)
    result = loop.process(_frame(0.0))
    truth = PATIENT_FROM_REFERENCE @ np.linalg.inv(ref) @ app
    # float32 rounds each entry by <= 2**-24 relative: translations of <= 870 mm by
    # <= 5e-5 mm, rotations by <= 6e-8 (times lever arms <= 870 mm: <= 5e-5 mm); summed
    # over the three factors this stays below 3e-4 mm.
    np.testing.assert_allclose(result.patient_from_applicator[:3, 3], truth[:3, 3], atol=3e-4,
                               rtol=0)
    np.testing.assert_allclose(result.patient_from_applicator[:3, :3], truth[:3, :3],
                               atol=1e-6, rtol=0)


def test_tracked_camera_gives_the_overlay_pose(server, client, rng) -> None:
    ref, app, camera_marker, marker_from_camera = (_exact_pose(rng) for _ in range(4))
    loop = _loop(server, marker_from_frame={"camera": marker_from_camera})
    _send(server, client, "ReferenceToTracker", ref)
    _send(server, client, "ApplicatorToTracker", app)
    _send(server, client, "CameraToTracker", camera_marker)
    result = loop.process(_frame(0.0))
    tracker_from_camera = camera_marker @ marker_from_camera
    truth = np.linalg.inv(tracker_from_camera) @ ref @ np.linalg.inv(PATIENT_FROM_REFERENCE)
    np.testing.assert_allclose(result.camera_from_patient, truth, atol=1e-6, rtol=0)
    assert result.overlay_allowed
    np.testing.assert_allclose(result.patient_from_applicator,
                               PATIENT_FROM_REFERENCE @ np.linalg.inv(ref) @ app, atol=1e-6,
                               rtol=0)
    np.testing.assert_allclose(result.tools["applicator"].camera_from_tool,
                               np.linalg.inv(tracker_from_camera) @ app, atol=1e-6, rtol=0)


def test_pointer_tip_offset_from_pivot_calibration(server, client, rng) -> None:
    ref, ptr = _exact_pose(rng), _exact_pose(rng)
    marker_from_tip = np.eye(4)
    marker_from_tip[:3, 3] = [0.0, -120.0, -90.0]
    loop = _loop(server, marker_from_frame={"pointer": marker_from_tip})
    _send(server, client, "ReferenceToTracker", ref)
    _send(server, client, "PointerToTracker", ptr)
    result = loop.process(_frame(0.0))
    truth = np.linalg.solve(ref, ptr @ np.array([0.0, -120.0, -90.0, 1.0]))[:3]
    np.testing.assert_allclose(result.pointer_tip_reference_mm, truth, atol=1e-6, rtol=0)


def test_silent_tool_goes_stale_then_untracked(server, client, rng) -> None:
    ref, app = _exact_pose(rng), _exact_pose(rng)
    loop = _loop(server)
    events = []
    loop.subscribe(lambda e: events.append(e) if isinstance(e, ToolStateChanged) else None)
    _send(server, client, "ReferenceToTracker", ref)
    _send(server, client, "ApplicatorToTracker", app)
    assert loop.process(_frame(0.0)).state("applicator") is TrackingState.TRACKING
    _send(server, client, "ReferenceToTracker", ref)  # only the reference keeps talking
    stale = loop.process(_frame(0.5))
    assert stale.state("reference") is TrackingState.TRACKING
    assert stale.state("applicator") is TrackingState.STALE
    assert stale.tools["applicator"].age_s == pytest.approx(0.5, abs=1e-9)
    assert stale.patient_from_applicator is not None  # held, flagged stale
    _send(server, client, "ReferenceToTracker", ref)
    lost = loop.process(_frame(0.5 + LIMIT_S))
    assert lost.state("applicator") is TrackingState.UNTRACKED
    assert lost.patient_from_applicator is None
    assert lost.tools["applicator"].tracker_from_tool is None
    changes = [(e.tool, e.old, e.new) for e in events if e.tool == "applicator"]
    assert changes == [("applicator", TrackingState.UNTRACKED, TrackingState.TRACKING),
                       ("applicator", TrackingState.TRACKING, TrackingState.STALE),
                       ("applicator", TrackingState.STALE, TrackingState.UNTRACKED)]
    _send(server, client, "ApplicatorToTracker", app)  # re-acquired
    back = loop.process(_frame(2.0))
    assert back.state("applicator") is TrackingState.TRACKING
    np.testing.assert_allclose(back.patient_from_applicator,
                               PATIENT_FROM_REFERENCE @ np.linalg.inv(ref) @ app, atol=1e-6,
                               rtol=0)


def test_message_older_than_the_limit_is_not_used(server, client, rng) -> None:
    poses = IgtlToolPoses(server, {"reference": "ReferenceToTracker"})
    _send(server, client, "ReferenceToTracker", _exact_pose(rng))
    time.sleep(0.15)
    assert poses.poll(max_age_s=0.1) == {}
    assert poses.stats.dropped_old == 1
    assert poses.poll() == {}  # the same message is not reported twice


def test_bad_transforms_dropped_and_unknown_devices_ignored(server, client, rng,
                                                            caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="guidance.tracking.external")
    ref = _exact_pose(rng)
    loop = _loop(server)
    scaled = ref.copy()
    scaled[:3, :3] *= 1.5
    _send(server, client, "ReferenceToTracker", scaled)
    _send(server, client, "FooToTracker", ref)  # not configured
    result = loop.process(_frame(0.0))
    assert result.state("reference") is TrackingState.UNTRACKED
    assert "FooToTracker" not in caplog.text and "Foo" not in str(list(result.tools))
    assert "'ReferenceToTracker' (reference) dropped" in caplog.text
    mirrored = ref.copy()
    mirrored[:3, 0] *= -1.0
    _send(server, client, "ReferenceToTracker", mirrored)
    assert loop.process(_frame(0.1)).state("reference") is TrackingState.UNTRACKED
    assert "reflection" in caplog.text
    nan = ref.copy()
    nan[0, 3] = np.nan
    dropped_before = server.stats.dropped_malformed
    client.send_message(pyigtl.TransformMessage(nan, device_name="ReferenceToTracker"),
                        wait=True)
    deadline = time.monotonic() + 5.0
    while server.stats.dropped_malformed == dropped_before and time.monotonic() < deadline:
        time.sleep(0.005)
    assert server.stats.dropped_malformed == dropped_before + 1  # the server drops NaN
    assert loop.process(_frame(0.2)).state("reference") is TrackingState.UNTRACKED
    assert loop.tool_poses.stats.dropped_nonrigid == 2
    _send(server, client, "ReferenceToTracker", ref)  # a good one after the bad ones
    good = loop.process(_frame(0.3))
    assert good.state("reference") is TrackingState.TRACKING
    np.testing.assert_allclose(good.tools["reference"].tracker_from_tool, ref, atol=1e-9,
                               rtol=0)


def test_clock_source_runs_the_loop_from_a_streaming_tracker(server, client, rng) -> None:
    """A pyigtl peer streams at ~50 Hz for 0.5 s, then stops: the loop ticks, tracks, and
    loses the applicator by itself (bounded)."""
    ref, app = _exact_pose(rng), _exact_pose(rng)
    loop = _loop(server, {"reference": "ReferenceToTracker",
                          "applicator": "ApplicatorToTracker"},
                 options=LoopOptions(filter=FilterOptions(staleness_limit_s=0.2)))
    results = []
    loop.subscribe(lambda e: results.append(e.result) if isinstance(e, FrameProcessed) else None)

    def stream() -> None:
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            client.send_message(pyigtl.TransformMessage(ref, device_name="ReferenceToTracker"))
            client.send_message(pyigtl.TransformMessage(app, device_name="ApplicatorToTracker"))
            time.sleep(0.02)

    sender = threading.Thread(target=stream, daemon=True)
    sender.start()
    start = time.monotonic()
    with loop.source:
        while time.monotonic() - start < 1.2:
            assert loop.step() is not False
    sender.join(2.0)
    tracked = [r for r in results if r.state("applicator") is TrackingState.TRACKING]
    assert len(tracked) >= 5
    truth = PATIENT_FROM_REFERENCE @ np.linalg.inv(ref) @ app
    for r in tracked:
        np.testing.assert_allclose(r.patient_from_applicator, truth, atol=1e-6, rtol=0)
    assert results[-1].state("applicator") is TrackingState.UNTRACKED
    assert results[-1].patient_from_applicator is None
    gaps = np.diff([r.frame.timestamp_s for r in results])
    assert gaps.max() < 0.05 + 0.1  # ticks keep coming after the tracker went silent


def test_parse_device_names() -> None:
    names = parse_device_names("pointer=StylusTipToTracker, camera=")
    assert names["pointer"] == "StylusTipToTracker"
    assert "camera" not in names
    assert names["reference"] == DEFAULT_DEVICE_NAMES["reference"]
    for bad in ("pointer", "=X", "pointer=" + "x" * 21):
        with pytest.raises(InputError, match="--tracker-devices"):
            parse_device_names(bad)


def test_provider_rejects_bad_configuration(server) -> None:
    with pytest.raises(ValueError, match="one device"):
        IgtlToolPoses(server, {"reference": "A", "pointer": "A"})
    with pytest.raises(ValueError, match="without a device"):
        IgtlToolPoses(server, {"reference": "A"}, marker_from_frame={"camera": np.eye(4)})
    with pytest.raises(TypeError, match="IgtlServer"):
        IgtlToolPoses(object())


def _run_args(*argv: str):
    return build_parser().parse_args(["run", "phantom", *argv])


def test_run_feed_without_camera_gives_applicator_in_patient(server, client, rng,
                                                             tmp_path: Path) -> None:
    """``iort run --tracker igtl`` (source none): the monitor's feed from a pyigtl tracker."""
    registration = tmp_path / "registration.json"
    registration.write_text(json.dumps(
        {"patient_from_reference": PATIENT_FROM_REFERENCE.tolist()}))
    args = _run_args("--tracker", "igtl", "--registration", str(registration),
                     "--tracker-devices", "applicator=AppToTracker,pointer=")
    _check_tracker(args)
    assert args.source == "none"  # the default source with --tracker igtl
    inputs = _read_option_files(args, None, np.eye(4))
    feed = _feed(args, inputs, _camera_frames(args, inputs, server), None, server)
    try:
        assert isinstance(feed.loop.source, TrackerClockSource)
        assert set(feed.loop.tool_poses.tool_names) == {"reference", "applicator"}
        ref, app = _exact_pose(rng), _exact_pose(rng)
        _send(server, client, "ReferenceToTracker", ref)
        _send(server, client, "AppToTracker", app)
        update = feed.read()
        assert update.camera_from_patient is None
        np.testing.assert_allclose(update.patient_from_applicator,
                                   PATIENT_FROM_REFERENCE @ np.linalg.inv(ref) @ app,
                                   atol=1e-6, rtol=0)
        assert update.tool_age_s("applicator") == 0.0
    finally:
        feed.close()


def test_run_rejects_inconsistent_tracker_options(monkeypatch, capsys,
                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("DISPLAY", ":99")
    cases = [(["--tracker", "igtl", "--igtl-port", "0"], "needs the OpenIGTLink server"),
             (["--source", "none"], "--source none needs --tracker igtl"),
             (["--tracker", "igtl", "--source", "scripted"], "cannot drive --source scripted"),
             (["--tracker", "igtl", "--tracker-devices", "pointer"], "not TOOL=DEVICE"),
             (["--tracker", "igtl", "--tracker-devices", "reference=,pointer=,applicator="],
              "no tool left to track without a camera")]
    for k, (argv, message) in enumerate(cases):
        assert main(["run", "phantom", "--session-log", str(tmp_path / f"s{k}.sqlite"),
                     *argv]) == 2, argv
        assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # rejected before a session log was created


def test_run_feed_with_camera_and_hand_eye_gives_overlay_pose(server, client, rng,
                                                              tmp_path: Path) -> None:
    """A real camera (image folder) drives the clock; the tracked camera plus the hand-eye
    file give ``camera_from_patient`` for the overlay."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(3):
        cv2.imwrite(str(frames / f"{k:03d}.png"), np.zeros((480, 640, 3), np.uint8))
    calibration = tmp_path / "camera.json"
    save_calibration(CameraCalibration(camera_matrix=K, dist_coeffs=np.zeros(5),
                                       image_size=(640, 480), rms_px=0.3,
                                       per_view_px=np.array([0.3])), calibration)
    ref, app, camera_marker, marker_from_camera = (_exact_pose(rng) for _ in range(4))
    (tmp_path / "handeye.json").write_text(json.dumps(
        {"gripper_from_camera": marker_from_camera.tolist()}))
    (tmp_path / "registration.json").write_text(json.dumps(
        {"patient_from_reference": PATIENT_FROM_REFERENCE.tolist()}))
    args = _run_args("--tracker", "igtl", "--source", str(frames), "--calibration",
                     str(calibration), "--hand-eye", str(tmp_path / "handeye.json"),
                     "--registration", str(tmp_path / "registration.json"))
    _check_tracker(args)
    inputs = _read_option_files(args, None, np.eye(4))
    feed = _feed(args, inputs, _camera_frames(args, inputs, server), None, server)
    try:
        for device, pose in (("ReferenceToTracker", ref), ("ApplicatorToTracker", app),
                             ("CameraToTracker", camera_marker)):
            _send(server, client, device, pose)
        update = feed.read()
        truth = (np.linalg.inv(camera_marker @ marker_from_camera) @ ref
                 @ np.linalg.inv(PATIENT_FROM_REFERENCE))
        np.testing.assert_allclose(update.camera_from_patient, truth, atol=1e-6, rtol=0)
        np.testing.assert_allclose(update.patient_from_applicator,
                                   PATIENT_FROM_REFERENCE @ np.linalg.inv(ref) @ app,
                                   atol=1e-6, rtol=0)
        assert update.image_rgb.shape == (480, 640, 3)
    finally:
        feed.close()
