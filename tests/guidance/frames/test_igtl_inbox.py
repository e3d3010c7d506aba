"""Frames over OpenIGTLink IMAGE from a pyigtl peer, as a frame source."""

from __future__ import annotations

import threading
import time

import numpy as np
import pyigtl
import pytest

from guidance.frames.base import FrameSourceError
from guidance.frames.igtl_inbox import IgtlImageSource
from guidance.igtl.server import IgtlServer
from models.base.errors import InputError


@pytest.fixture
def server():
    srv = IgtlServer(port=0).start()
    yield srv
    srv.stop()


def _connected(server: IgtlServer) -> pyigtl.OpenIGTLinkClient:
    client = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=server.port)
    deadline = time.monotonic() + 5.0
    while server.n_clients < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    return client


def test_frames_arrive_as_bgr_in_order(server, rng) -> None:
    client = _connected(server)
    try:
        frames = [rng.integers(0, 255, size=(1, 36, 48, 3), dtype=np.uint8) for _ in range(3)]
        client.send_message(pyigtl.ImageMessage(frames[0], device_name="Video"), wait=True)
        source = IgtlImageSource(server, "Video", first_frame_timeout_s=5.0, max_gap_s=0.5)
        source.open()
        first = source.read()
        np.testing.assert_array_equal(first.image, frames[0][0][..., ::-1])
        for frame in frames[1:]:
            client.send_message(pyigtl.ImageMessage(frame, device_name="Video"), wait=True)
            got = source.read()
            np.testing.assert_array_equal(got.image, frame[0][..., ::-1])
        assert [source.frames_read, got.index] == [3, 2]
        # a volume (not a video frame) is skipped and counted, the stream goes on
        sent = time.monotonic()
        client.send_message(pyigtl.ImageMessage(np.zeros((2, 4, 4, 3), np.uint8),
                                                device_name="Video"), wait=True)
        assert server.wait_for("IMAGE", "Video", timeout_s=5.0, newer_than_s=sent)
        later = threading.Timer(0.2, lambda: client.send_message(
            pyigtl.ImageMessage(frames[0], device_name="Video"), wait=True))
        later.start()
        assert source.read() is not None and source.frames_skipped == 1
        later.join()
        # silence: the live stream counts as gone
        with pytest.raises(FrameSourceError, match="nothing for"):
            source.read()
        source.close()
    finally:
        client.stop()


def test_no_sender_is_a_clear_error(server) -> None:
    source = IgtlImageSource(server, "Video", first_frame_timeout_s=0.2)
    with pytest.raises(InputError, match="no IMAGE 'Video'"):
        source.open()
