"""Fuzz OpenIGTLink decoding: valid messages of every handled type, then edited.

Edits hit the header (type, device name, version, timestamp, declared size) and the body
(bytes flipped, cut or extended), mostly with the CRC recomputed so the damage reaches the
decoders rather than the checksum. Oracle: :meth:`IgtlServer._handle` never raises; a
message it keeps means what its bytes say (a TRANSFORM's 12 big-endian floats, finite; an
IMAGE with pixels whose size matches its header), the OR-side consumers
(:func:`image_from_message`, :class:`IgtlToolPoses`) refuse or give a valid frame / rigid
pose, and the number of devices kept stays bounded.
"""

from __future__ import annotations

import struct

import numpy as np
import pyigtl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyigtl.messages import CRC64

from tests.fuzz.harness import fuzz_settings, mutated_bytes, run_case

pytestmark = pytest.mark.fuzz

_POSE = np.array([[0.0, -1.0, 0.0, 10.5], [1.0, 0.0, 0.0, -20.0], [0.0, 0.0, 1.0, 300.0],
                  [0.0, 0.0, 0.0, 1.0]])


def _messages() -> list[bytes]:
    from guidance.igtl.server import StatusMessage

    rng = np.random.default_rng(3)
    return [
        pyigtl.TransformMessage(_POSE, device_name="ApplicatorToTracker").pack(),
        pyigtl.ImageMessage(rng.integers(0, 255, (1, 6, 8, 3), dtype=np.uint8),
                            device_name="Video").pack(),
        pyigtl.ImageMessage(rng.integers(0, 4000, (1, 5, 7), dtype=np.uint16),
                            device_name="Grey").pack(),
        pyigtl.StringMessage("hello", device_name="Text").pack(),
        pyigtl.PointMessage([[1.0, 2.0, 3.0]], device_name="Points").pack(),
        pyigtl.PositionMessage([1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 1.0],
                               device_name="Position").pack(),
        StatusMessage(1, "ok", device_name="Status").pack(),
    ]


_BASE = _messages()
_HEADER = struct.Struct("> H 12s 20s I I Q Q")


@st.composite
def igtl_message(draw: st.DrawFn) -> bytes:
    """One message, header and/or body edited; CRC usually made to match the new body."""
    data = draw(st.sampled_from(_BASE))
    version, mtype, device, sec, frac, size, crc = _HEADER.unpack(data[:58])
    body = data[58:]
    if draw(st.booleans()):
        body = draw(mutated_bytes(body, max_edits=3))
    if draw(st.integers(0, 3)) == 0:
        field = draw(st.sampled_from(["type", "device", "version", "stamp"]))
        if field == "type":
            mtype = draw(st.sampled_from([b"TRANSFORM", b"IMAGE", b"STRING", b"POINT",
                                          b"POSITION", b"STATUS", b"GET_IMAGE", b"\xff" * 12,
                                          b"", b"CAPABILITY"]))
        elif field == "device":
            device = draw(st.binary(max_size=20))
        elif field == "version":
            version = draw(st.sampled_from([0, 1, 2, 3, 4, 65535]))
        else:
            sec = draw(st.sampled_from([0, 2**32 - 1]))
    size = len(body)
    if draw(st.integers(0, 9)) > 0:
        crc = CRC64(body)
    return _HEADER.pack(version, mtype, device, sec, frac, size, crc) + body


def _decoded_transform(body: bytes) -> np.ndarray:
    values = np.array(struct.unpack(">12f", body), dtype=np.float64)
    matrix = np.eye(4)
    matrix[:3, :3] = values[:9].reshape(3, 3).T
    matrix[:3, 3] = values[9:]
    return matrix


def check_igtl(data: bytes) -> None:
    from guidance.frames.igtl_client import image_from_message
    from guidance.igtl.server import IgtlServer, _HeaderError, parse_header
    from guidance.tracking.external import IgtlToolPoses

    server = IgtlServer(port=0, max_devices=4)   # not started: _handle needs no socket
    try:
        header = run_case("igtl_decode", None, lambda: parse_header(data[:58]))
    except _HeaderError:
        return   # the stream is out of sync: the connection is closed
    version, mtype, device, stamp, size, crc = header
    body = data[58:58 + size]
    server._handle(version, mtype, device, stamp, body, crc, ("fuzz", 0))
    assert len(server._latest) <= 4
    kept = server.drain()
    if not kept:
        return
    (received,) = kept
    message = received.message
    if mtype == "TRANSFORM":
        assert len(body) == 48, f"TRANSFORM body of {len(body)} bytes accepted"
        matrix = np.asarray(message.matrix, dtype=np.float64)
        assert np.all(np.isfinite(matrix))
        np.testing.assert_array_equal(matrix, _decoded_transform(body))
        poses = IgtlToolPoses(server, {"applicator": device or "x"})
        for pose in poses.poll().values():
            m = pose.tracker_from_tool
            np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-6)
            assert np.linalg.det(m[:3, :3]) > 0 and np.all(np.isfinite(m))
    elif mtype == "IMAGE":
        pixels = np.asarray(message.image)
        assert pixels.size > 0, "IMAGE without pixels kept"
        frame = run_case("igtl_decode", None, lambda: image_from_message(pixels))
        if frame is not None:
            assert frame.dtype == np.uint8 and frame.ndim in (2, 3) and frame.size > 0
            assert frame.shape[:2] == pixels.shape[-3:-1] or frame.shape[:2] == \
                pixels.shape[-2:], (frame.shape, pixels.shape)


@fuzz_settings()
@given(igtl_message())
def test_igtl_message_decoding(data) -> None:
    check_igtl(data)


@st.composite
def igtl_stream(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """Several (edited) messages back to back, cut into random chunks as recv gives them."""
    data = b"".join(draw(st.lists(igtl_message(), min_size=1, max_size=6)))
    if draw(st.integers(0, 4)) == 0:
        data = draw(mutated_bytes(data, max_edits=2))   # lies about sizes, lost bytes
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    return data, cuts


def check_igtl_stream(case: tuple[bytes, list[int]]) -> None:
    from guidance.igtl.server import (
        IgtlServer,
        MessageStream,
        OversizedMessage,
        _HeaderError,
    )

    data, cuts = case
    server = IgtlServer(port=0, max_devices=4, received_queue_bytes=4096)
    stream = MessageStream(max_body_bytes=2048)

    def feed() -> int:
        got = 0
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            for message in stream.feed(data[start:end]):
                got += 1
                assert len(stream._buffer) <= 58 + 2048
                if isinstance(message, OversizedMessage):
                    assert message.body_size > 2048
                    continue
                assert len(message.body) <= 2048
                server._handle(message.version, message.message_type, message.device_name,
                               message.timestamp_s, message.body, message.crc, ("fuzz", 0))
        return got

    try:
        run_case("igtl_stream", None, feed)
    except _HeaderError:
        pass   # out of sync: the server closes this connection
    assert len(server._latest) <= 4 and server._received_bytes <= 4096 + 2048


@fuzz_settings()
@given(igtl_stream())
def test_igtl_stream_cutting(case) -> None:
    check_igtl_stream(case)
