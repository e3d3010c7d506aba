"""The tracking stream a session records, fed back through a new loop (replay)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from guidance.frames.base import Frame, FrameSource
from guidance.loop.guidance_loop import GuidanceLoop, LoopOptions
from guidance.record.replay import read_session, replay_session
from guidance.record.session_log import SessionLog
from guidance.record.tracking_record import record_tracking
from guidance.sim.scripted import ScriptedShot, ScriptedTrackerDevice
from tests.conftest import random_rigid


class _StampedSource(FrameSource):
    """Frames with given stamps and sizes (a live camera's clock, faults included)."""

    def __init__(self, stamps: list[float], sizes: list[tuple[int, int]]) -> None:
        super().__init__("stamped")
        self.stamps, self.sizes, self._i = stamps, sizes, 0

    def _open(self) -> None:
        self._i = 0

    def _read(self) -> Frame | None:
        if self._i >= len(self.stamps):
            return None
        i = self._i
        self._i += 1
        w, h = self.sizes[i]
        return Frame(np.zeros((h, w, 3), np.uint8), self.stamps[i], "stamped", i)


def _session(tmp_path: Path, *, frames: int = 75, frames_per_event: int = 30,
             faults: bool = True):
    """A loop over a moving applicator with clock faults, a hidden tool, a late
    registration and a frame of the wrong size, recorded; returns (log path, poses)."""
    rng = np.random.default_rng(3)
    camera_from_patient = np.eye(4)
    camera_from_patient[2, 3] = 400.0
    shots = []
    base = random_rigid(rng, 20.0)
    for i in range(frames):   # a slow slide with 0.3 mm jitter: the filter has work to do
        pose = base.copy()
        pose[:3, 3] += np.array([0.5 * i, 0.0, 0.0]) + rng.normal(0.0, 0.3, 3)
        visible = ("reference",) if 20 <= i < 26 else ("reference", "applicator")
        shots.append(ScriptedShot(camera_from_patient, pose, visible))
    stamps = [i / 30.0 for i in range(frames)]
    sizes = [(320, 240)] * frames
    if faults:
        stamps[30] = 1e6               # one stamp far ahead: skipped
        stamps[40] = float("nan")      # not a number: skipped
        for i in range(50, frames):    # the tracker restarts: clock reset by -100 s
            stamps[i] -= 100.0
        sizes[45] = (160, 120)         # half-size frame: not tracked
    device = ScriptedTrackerDevice(shots)
    loop = GuidanceLoop(_StampedSource(stamps, sizes), (), np.eye(3), device=device,
                        options=LoopOptions())
    loop.calibrated_size_px = (320, 240)
    path = tmp_path / "s.sqlite"
    poses: dict[int, np.ndarray | None] = {}
    with SessionLog.create(path, case_id="test") as slog:
        record_tracking(loop, slog, frames_per_event=frames_per_event)

        def on_event(event) -> None:
            result = getattr(event, "result", None)
            if result is None:
                return
            poses[result.frame.index] = result.patient_from_applicator
            if result.frame.index == 10:   # registered during the session
                loop.set_registration(device.patient_from_reference, fre_mm=0.7)
        loop.subscribe(on_event)
        loop.run()
    return path, poses, loop


def test_replay_reproduces_every_pose_bit_for_bit(tmp_path: Path) -> None:
    path, poses, loop = _session(tmp_path)
    assert loop.frames_skipped >= 3   # the faults really happened
    read = read_session(path)
    assert len(read.of_kind("frames")) >= 2 and not read.problems
    result = replay_session(read, None)
    assert result.frames == len(poses) == loop.frames_processed
    assert result.pose_mismatches == []
    assert result.reproduced
    # independent of the recorded outputs: a new loop over the replayed frames
    tracked = [i for i, p in poses.items() if p is not None]
    assert 10 < len(tracked) < len(poses)   # unregistered and hidden frames give no pose


def test_replay_detects_an_edited_measurement(tmp_path: Path) -> None:
    import json

    path, _, _ = _session(tmp_path)
    conn = sqlite3.connect(path)
    seq, payload = conn.execute("SELECT seq, payload FROM events WHERE kind = 'frames' "
                                "ORDER BY seq LIMIT 1").fetchone()
    data = json.loads(payload)
    record = next(r for r in data["records"] if r.get("i") == 15)
    record["m"]["applicator"][3] += 0.5          # 0.5 mm in x at frame 15
    conn.execute("UPDATE events SET payload = ? WHERE seq = ?", (json.dumps(data), seq))
    conn.commit()
    conn.close()
    result = replay_session(read_session(path), None)
    assert 15 in result.pose_mismatches and not result.reproduced


def test_frames_are_written_in_bounded_batches(tmp_path: Path) -> None:
    path, _, _ = _session(tmp_path, frames=75, frames_per_event=10)
    read = read_session(path)
    sizes = [len(e.payload["records"]) for e in read.of_kind("frames")]
    assert max(sizes) <= 11 and sum(1 for r in _all(read) if "i" in r) == 75


def _all(read):
    for e in read.of_kind("frames"):
        yield from e.payload["records"]


def test_replay_paces_by_the_recorded_frame_stamps(tmp_path: Path) -> None:
    import time

    path, _, _ = _session(tmp_path, frames=31, faults=False)
    read = read_session(path)
    start = time.monotonic()
    replay_session(read, None, speed=2.0)
    paced = time.monotonic() - start
    start = time.monotonic()
    replay_session(read, None, speed=0.0)
    fast = time.monotonic() - start
    # 31 frames 1/30 s apart = 1 s recorded; twice the speed: 0.5 s
    assert 0.5 <= paced < 0.5 + fast + 0.3


def test_camera_video_beside_the_log_is_replayed(tmp_path: Path) -> None:
    """``--record-video``: the replayed frames are the recorded camera images (lossy)."""
    import cv2

    from guidance.record.replay import replay_loop
    from guidance.record.tracking_record import video_path
    from guidance.sim.scripted import ScriptedSource

    camera_from_patient = np.eye(4)
    camera_from_patient[2, 3] = 400.0
    shots = [ScriptedShot(camera_from_patient, np.eye(4))] * 20
    rng = np.random.default_rng(0)
    # smooth images (a gradient that moves): what a codec keeps
    x = np.linspace(0, 255, 320)[None, :, None]

    def background(index: int, _shot) -> np.ndarray:
        img = np.broadcast_to(np.roll(x, 8 * index, axis=1), (240, 320, 3))
        return np.clip(img + rng.normal(0, 1, (240, 320, 3)), 0, 255).astype(np.uint8)

    device = ScriptedTrackerDevice(shots)
    source = ScriptedSource(shots, background, fps=0)
    loop = GuidanceLoop(source, (), np.eye(3), device=device,
                        patient_from_reference=device.patient_from_reference)
    originals: list[np.ndarray] = []
    loop.subscribe(lambda e: originals.append(e.result.frame.image.copy())
                   if hasattr(e, "result") else None)
    path = tmp_path / "v.sqlite"
    with SessionLog.create(path) as slog:
        recorder = record_tracking(loop, slog, video=True, video_queue_frames=64)
        loop.run()
    assert recorder.video.written == 20 and not recorder.video.error
    assert video_path(path).stat().st_mode & 0o777 == 0o600
    replay = replay_loop(read_session(path))
    replayed: list[np.ndarray] = []
    replay.loop.subscribe(lambda e: replayed.append(e.result.frame.image.copy())
                          if hasattr(e, "result") else None)
    replay.loop.run()
    assert len(replayed) == 20
    errors = [float(np.mean(np.abs(a.astype(int) - b.astype(int))))
              for a, b in zip(originals, replayed, strict=True)]
    assert max(errors) < 6.0                       # the same pictures, up to the codec
    shifted = np.mean(np.abs(originals[0].astype(int) - replayed[5].astype(int)))
    assert shifted > 3 * max(errors)               # and in the recorded order
    assert cv2.VideoCapture(str(video_path(path))).isOpened()


def test_a_slow_video_encoder_drops_frames_from_the_file_not_from_the_guidance(
        tmp_path: Path) -> None:
    from guidance.record.replay import replay_loop
    from guidance.sim.scripted import ScriptedSource

    camera_from_patient = np.eye(4)
    camera_from_patient[2, 3] = 400.0
    shots = [ScriptedShot(camera_from_patient, np.eye(4))] * 60
    device = ScriptedTrackerDevice(shots)
    image = np.full((480, 640, 3), 128, np.uint8)
    loop = GuidanceLoop(ScriptedSource(shots, image, fps=0), (), np.eye(3), device=device,
                        patient_from_reference=device.patient_from_reference)
    path = tmp_path / "slow.sqlite"
    with SessionLog.create(path) as slog:
        recorder = record_tracking(loop, slog, video=True, video_queue_frames=1)
        loop.run()
    assert loop.frames_processed == 60                      # the guidance saw every frame
    assert recorder.video.dropped > 0                        # the encoder could not keep up
    assert recorder.video.written + recorder.video.dropped == 60
    replay = replay_loop(read_session(path))
    grey = []
    replay.loop.subscribe(lambda e: grey.append(int(e.result.frame.image.mean()))
                          if hasattr(e, "result") else None)
    replay.loop.run()
    assert len(grey) == 60 and grey.count(0) == recorder.video.dropped   # black where dropped
