"""Frame sources: one life cycle; bad input gives a clear error or a counted skipped frame."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from guidance.frames import (
    Frame,
    FrameSourceError,
    ImageFolderSource,
    ListSource,
    VideoFileSource,
    WebcamSource,
)
from guidance.frames.igtl_client import OpenIGTLinkSource, image_from_message
from guidance.igtl.server import IgtlServer
from guidance.sim.camera import SimEffects, SimulatedCamera, facing_pose
from guidance.sim.source import ScenePose, SimulatedSource
from guidance.tracking.tools import load_builtin_tools
from models.base.errors import InputError


def _images(n: int) -> list[np.ndarray]:
    return [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(n)]


def test_list_source_life_cycle() -> None:
    source = ListSource(_images(3), fps=10.0, camera_id="cam")
    with pytest.raises(RuntimeError, match="not open"):
        source.read()
    with source:
        frames = list(source)
    assert not source.is_open
    assert [f.index for f in frames] == [0, 1, 2]
    assert [f.timestamp_s for f in frames] == pytest.approx([0.0, 0.1, 0.2])
    assert all(isinstance(f, Frame) and f.camera_id == "cam" for f in frames)
    source.close()  # twice is fine


def test_video_file_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (64, 48))
    for image in _images(5):
        writer.write(image)
    writer.release()
    with VideoFileSource(path) as source:
        frames = list(source)
    assert len(frames) == 5 and frames[0].image.shape == (48, 64, 3)
    assert frames[4].timestamp_s == pytest.approx(4 / 25.0)
    assert abs(int(frames[3].image.mean()) - 60) <= 3  # MJPG is lossy
    with pytest.raises(InputError, match="does not exist"):
        VideoFileSource(tmp_path / "nope.mp4").open()
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(InputError, match="not a readable video"):
        VideoFileSource(junk).open()


def test_image_folder_skips_corrupt_files(tmp_path: Path) -> None:
    for i, image in enumerate(_images(3)):
        cv2.imwrite(str(tmp_path / f"f{i:03d}.png"), image)
    (tmp_path / "f001b.png").write_bytes(b"\x89PNG broken")
    (tmp_path / "notes.txt").write_text("ignored")
    with ImageFolderSource(tmp_path, fps=5.0) as source:
        frames = list(source)
    assert len(frames) == 3 and source.frames_skipped == 1
    assert [f.index for f in frames] == [0, 1, 3]  # the index counts the bad file too
    with pytest.raises(InputError, match="does not exist"):
        ImageFolderSource(tmp_path / "missing").open()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no images"):
        ImageFolderSource(empty).open()


def test_missing_webcam_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="camera 97 is not present"):
        WebcamSource(97).open()


def test_live_source_that_stops_raises_source_error() -> None:
    class Dead(WebcamSource):
        def _open(self) -> None:
            self._cap = None

        def _read(self) -> Frame | None:
            from guidance.frames.base import SkipFrame
            raise SkipFrame("no image")

    source = Dead(0, max_failures=3)
    with source, pytest.raises(FrameSourceError, match="stopped delivering"):
        source.read()
    assert source.frames_skipped == 3


def test_simulated_source_carries_truth() -> None:
    tools = load_builtin_tools()
    k = np.array([[500.0, 0, 159.5], [0, 500.0, 119.5], [0, 0, 1]])
    pose = facing_pose(np.array([0.0, 0.0, 400.0]), np.zeros(3))
    camera = SimulatedCamera([], tools, k, image_size=(320, 240), effects=SimEffects.ideal())
    with SimulatedSource(camera, lambda i, t: ScenePose(np.eye(4), {"reference": pose}),
                         n_frames=2, fps=10.0) as source:
        frames = list(source)
    assert len(frames) == 2 and frames[1].timestamp_s == pytest.approx(0.1)
    np.testing.assert_allclose(frames[0].truth.camera_from_tool["reference"], pose)
    with pytest.raises(RuntimeError, match="closed"):  # the source closed its camera
        camera.render(np.eye(4), {})


def test_openigtlink_images_from_a_server() -> None:
    rgb = np.zeros((1, 48, 64, 3), np.uint8)
    rgb[..., 0] = 200  # red in OpenIGTLink's RGB order
    with IgtlServer(port=0) as server:
        source = OpenIGTLinkSource(port=server.port, device_name="Video", frame_timeout_s=2.0)
        with source:
            deadline = 50
            while server.n_clients == 0 and deadline:
                time.sleep(0.05)
                deadline -= 1
            server.send_image("Video", rgb)
            frame = source.read()
    assert frame.image.shape == (48, 64, 3)
    np.testing.assert_array_equal(frame.image[0, 0], [0, 0, 200])  # BGR


def test_openigtlink_without_server_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="no OpenIGTLink server"):
        OpenIGTLinkSource(port=1, connect_timeout_s=0.2).open()
    assert image_from_message(np.zeros((1, 4, 5), np.uint16)).shape == (4, 5)
    with pytest.raises(ValueError, match="not a 2-D"):
        image_from_message(np.zeros((3, 4, 5)))


@pytest.mark.parametrize("device", [-1, 1024, 2**31, True])
def test_a_camera_index_opencv_cannot_take_is_refused(device) -> None:
    """Found by the fuzzer: cv2.VideoCapture(2147483648) ends the process (segfault)."""
    from guidance.frames.opencv import WebcamSource

    with pytest.raises(InputError, match="camera index is a whole number from 0 to 1023"):
        WebcamSource(device)
