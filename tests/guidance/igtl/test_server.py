"""OpenIGTLink server against pyigtl's client as an independent peer on loopback."""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time

import numpy as np
import pyigtl
import pytest
from pyigtl.messages import CRC64

from guidance.igtl.server import STATUS_CODES, IgtlServer, StatusMessage, parse_header
from models.base.errors import InputError
from models.base.transforms import transform_from_rotvec


def _raw(mtype: str, device: str, body: bytes, *, crc: int | None = None,
         body_size: int | None = None) -> bytes:
    header = struct.pack("> H 12s 20s I I Q Q", 1, mtype.encode(), device.encode(), 0, 0,
                         len(body) if body_size is None else body_size,
                         CRC64(body) if crc is None else crc)
    return header + body


def test_listens_on_localhost_by_default() -> None:
    srv = IgtlServer(port=0)
    assert srv.host == "127.0.0.1"
    with srv:
        assert srv._listener.getsockname()[0] == "127.0.0.1"


def test_port_in_use_is_a_clear_error(server: IgtlServer) -> None:
    with pytest.raises(InputError, match=f"127.0.0.1:{server.port}.*--igtl-port"):
        IgtlServer(port=server.port).start()


def test_transforms_arrive_at_frame_rate(server: IgtlServer, client, rng) -> None:
    rate_hz, n = 30.0, 30
    poses = [transform_from_rotvec(rng.normal(size=3) * 0.2, rng.normal(size=3) * 100)
             for _ in range(n)]
    first = len(client.received)
    start = time.monotonic()
    stamps = []
    for i, pose in enumerate(poses):
        stamp = 1_700_000_000.0 + i / rate_hz
        stamps.append(stamp)
        assert server.send_transform("Applicator", pose, timestamp_s=stamp) == 1
        time.sleep(max(0.0, start + (i + 1) / rate_hz - time.monotonic()))
    time.sleep(0.2)
    got = {m.timestamp: m.matrix for m in client.received_from("Applicator", first)}
    received = [i for i, s in enumerate(stamps) if any(abs(s - t) < 1e-6 for t in got)]
    assert len(received) >= 0.9 * n, f"only {len(received)}/{n} transforms seen"
    for i in received:
        matrix = next(m for t, m in got.items() if abs(stamps[i] - t) < 1e-6)
        np.testing.assert_allclose(matrix, poses[i], atol=0.03, rtol=0)  # float32 on the wire
    assert server.stats.sent >= n


def test_status_round_trip(server: IgtlServer, client, monkeypatch) -> None:
    monkeypatch.setitem(pyigtl.messages.message_type_to_class_constructor, "STATUS",
                        StatusMessage)
    server.send_status("Tracking", "NOT_READY", "applicator stale 350 ms", error_name="STALE")
    msg = client.wait_for_message("Tracking", timeout=3.0)
    assert msg is not None and msg.message_type == "STATUS"
    assert msg.code == STATUS_CODES["NOT_READY"] == 13
    assert msg.status_string == "applicator stale 350 ms" and msg.error_name == "STALE"
    with pytest.raises(ValueError, match="unknown"):
        server.send_status("x", "FINE")


def test_receives_transform_and_image_from_pyigtl(server: IgtlServer, client, rng) -> None:
    pose = transform_from_rotvec([0.1, -0.2, 0.3], [10.0, -20.0, 300.0])
    t0 = time.monotonic()
    client.send_message(pyigtl.TransformMessage(pose, device_name="Camera"), wait=True)
    got = server.wait_for("TRANSFORM", "Camera", timeout_s=3.0, newer_than_s=t0)
    assert got is not None
    np.testing.assert_allclose(got.message.matrix, pose, atol=1e-4, rtol=0)
    frame = rng.integers(0, 255, size=(1, 48, 64, 3), dtype=np.uint8)
    client.send_message(pyigtl.ImageMessage(frame, device_name="Video"), wait=True)
    img = server.wait_for("IMAGE", "Video", timeout_s=3.0, newer_than_s=t0)
    assert img is not None
    np.testing.assert_array_equal(img.message.image.reshape(frame.shape), frame)
    assert [m.message_type for m in server.drain()] == ["TRANSFORM", "IMAGE"]


def test_large_images_reach_pyigtl_every_time(server: IgtlServer, client, rng) -> None:
    """8 MB IMAGEs (the size pyigtl's own server fails to send) arrive intact."""
    image = rng.integers(0, 255, size=(1, 1024, 2048, 4), dtype=np.uint8)  # 8 MiB
    for k in range(3):
        image[0, 0, 0, 0] = k
        server.send_image("Big", image)
        msg = client.wait_for_message("Big", timeout=10.0)
        assert msg is not None, f"image {k} lost"
        assert msg.image.size == image.size
        assert msg.image.reshape(-1)[0] == k


def test_malformed_messages_dropped_server_keeps_serving(server: IgtlServer,
                                                          caplog) -> None:
    server.max_body_bytes = 4096
    good = pyigtl.TransformMessage(np.eye(4), device_name="Ok").pack()
    caplog.set_level(logging.INFO, logger="guidance.igtl.server")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5.0) as raw:
        raw.sendall(_raw("TRANSFORM", "BadCrc", b"\x00" * 48, crc=12345))
        raw.sendall(_raw("TRANSFORM", "Short", b"\x00" * 10))
        raw.sendall(_raw("IMAGE", "Huge", b"\x01" * 10000))
        raw.sendall(_raw("FOOBAR", "Unknown", b"abc"))
        nan_matrix = struct.pack("> 12f", *([float("nan")] * 12))
        raw.sendall(_raw("TRANSFORM", "NaN", nan_matrix))
        raw.sendall(good)
        ok = server.wait_for("TRANSFORM", "Ok", timeout_s=5.0)
        assert ok is not None, "valid message after bad ones was not received"
        assert server.stats.dropped_malformed == 3
        assert server.stats.dropped_oversized == 1
        assert server.stats.dropped_unknown == 1
        for word in ("BadCrc", "CRC mismatch", "Short", "Huge", "exceeds the limit", "NaN"):
            assert word in caplog.text
        # Garbage that is no header at all: this connection closes, the server goes on.
        raw.sendall(b"\xff" * 58)
        deadline = time.monotonic() + 5.0
        while server.stats.disconnected_garbage < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.stats.disconnected_garbage == 1
        assert "not OpenIGTLink" in caplog.text
        raw.settimeout(5.0)
        assert raw.recv(10) == b""  # closed by the server
    peer = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=server.port)
    try:
        deadline = time.monotonic() + 5.0
        while server.n_clients < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        server.send_transform("After", np.eye(4))
        assert peer.wait_for_message("After", timeout=5.0) is not None
    finally:
        peer.stop()


def test_stalled_peer_is_dropped(caplog) -> None:
    with IgtlServer(port=0, body_timeout_s=0.3) as srv:
        caplog.set_level(logging.WARNING, logger="guidance.igtl.server")
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5.0) as raw:
            raw.sendall(_raw("TRANSFORM", "Slow", b"\x00" * 48)[:70])  # header + 12 bytes
            raw.settimeout(5.0)
            assert raw.recv(10) == b""
        assert "stalled" in caplog.text


def test_stop_is_bounded_with_clients_connected() -> None:
    srv = IgtlServer(port=0).start()
    peers = [pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=srv.port) for _ in range(2)]
    deadline = time.monotonic() + 5.0
    while srv.n_clients < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert srv.n_clients == 2
    start = time.monotonic()
    srv.stop(timeout_s=2.0)
    assert time.monotonic() - start < 2.5
    assert not any(t.name.startswith("igtl-") for t in threading.enumerate())
    for peer in peers:
        peer.stop()


def test_parse_header_matches_pyigtl() -> None:
    packed = pyigtl.TransformMessage(np.eye(4), timestamp=1234.5, device_name="Tool").pack()
    version, mtype, device, stamp, size, crc = parse_header(packed[:58])
    theirs = pyigtl.MessageBase.parse_header(packed[:58])
    assert (mtype, device, size) == (theirs["message_type"], theirs["device_name"],
                                     theirs["body_size"]) == ("TRANSFORM", "Tool", 48)
    assert stamp == pytest.approx(theirs["timestamp"], abs=1e-6)
    assert crc == CRC64(packed[58:]) and version == 1


# --- bounded under abuse: clients, memory, log lines, accept failures --------------------

def _wait(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)
    return predicate()


def test_connect_close_cycles_leave_no_dead_clients() -> None:
    """500 connect+close cycles used to leave 368 closed peers in the client list."""
    with IgtlServer(port=0) as srv:
        for _ in range(300):
            socket.create_connection(("127.0.0.1", srv.port), timeout=5.0).close()
        assert _wait(lambda: srv.n_clients == 0), srv.n_clients
        assert srv.send_transform("T", np.eye(4)) == 0


def test_idle_connections_beyond_the_limit_are_refused_good_client_served() -> None:
    with IgtlServer(port=0, max_clients=4) as srv:
        idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=5.0)
                for _ in range(20)]
        try:
            assert _wait(lambda: srv.stats.refused_clients >= 16)
            assert srv.n_clients == 4
            threads = [t for t in threading.enumerate() if t.name.startswith("igtl-")]
            assert len(threads) <= 2 * 4 + 1
        finally:
            for sock in idle:
                sock.close()
        assert _wait(lambda: srv.n_clients == 0)
        peer = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=srv.port)
        try:
            assert _wait(lambda: srv.n_clients == 1)
            srv.send_transform("Good", np.eye(4))
            assert peer.wait_for_message("Good", timeout=5.0) is not None
        finally:
            peer.stop()


def test_accept_failure_does_not_end_the_server() -> None:
    """One EMFILE used to end the accept thread for the rest of the session."""
    import errno

    with IgtlServer(port=0, poll_s=0.01) as srv:
        real = srv._listener
        failures = {"left": 3}

        class Flaky:
            def accept(self):
                if failures["left"]:
                    failures["left"] -= 1
                    raise OSError(errno.EMFILE, "Too many open files")
                return real.accept()

            def fileno(self):
                return real.fileno()

        srv._listener = Flaky()
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5.0)
        try:
            assert _wait(lambda: srv.stats.accept_errors == 3 and srv.n_clients >= 1)
            assert srv._thread.is_alive()
        finally:
            sock.close()
            srv._listener = real


def test_idle_connections_cost_no_thread_and_the_good_client_is_served() -> None:
    """900 idle connections used to make 1,810 threads and starve the good client."""
    with IgtlServer(port=0, max_clients=300) as srv:
        idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=5.0)
                for _ in range(250)]
        try:
            assert _wait(lambda: srv.n_clients == 250, timeout_s=10.0), srv.n_clients
            assert [t.name for t in threading.enumerate() if t.name.startswith("igtl-")] \
                == ["igtl-io"]
            peer = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=srv.port)
            try:
                assert _wait(lambda: srv.n_clients == 251)
                for k in range(20):
                    srv.send_transform("Good", transform_from_rotvec([0, 0, 0.01 * k],
                                                                     [k, 0, 0]))
                got = peer.wait_for_message("Good", timeout=5.0)
                assert got is not None
                start = time.monotonic()
                peer.send_message(pyigtl.TransformMessage(np.eye(4), device_name="Back"),
                                  wait=True)
                assert srv.wait_for("TRANSFORM", "Back", timeout_s=5.0) is not None
                assert time.monotonic() - start < 2.0
            finally:
                peer.stop()
        finally:
            for sock in idle:
                sock.close()
        assert _wait(lambda: srv.n_clients == 0, timeout_s=10.0)


def test_a_client_that_stops_reading_is_bounded_in_bytes(rng) -> None:
    """A peer that never reads must not make the server queue gigabytes of IMAGEs."""
    with IgtlServer(port=0, send_queue_bytes=4_000_000) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5.0) as lazy:
            lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            assert _wait(lambda: srv.n_clients == 1)
            image = rng.integers(0, 255, size=(1, 480, 640, 3), dtype=np.uint8)   # 0.9 MB
            for _ in range(60):
                srv.send_image("Video", image)
            time.sleep(0.2)
            client = srv._clients[0]
            assert client.queued_bytes <= 4_000_000 + image.nbytes
            assert srv.stats.dropped_send_queue >= 40


def test_message_stream_cuts_messages_at_any_chunking(rng) -> None:
    from guidance.igtl.server import MessageStream, OversizedMessage, StreamMessage

    packed = [pyigtl.TransformMessage(np.eye(4), device_name=f"T{k}").pack() for k in range(5)]
    packed.insert(2, _raw("IMAGE", "Huge", b"\x01" * 5000))
    data = b"".join(packed)
    cuts = np.sort(rng.choice(len(data), size=40, replace=False))
    stream = MessageStream(max_body_bytes=1000)
    out = []
    for chunk in np.split(np.frombuffer(data, np.uint8), cuts):
        out += stream.feed(chunk.tobytes())
    assert [type(m) for m in out] == [StreamMessage] * 2 + [OversizedMessage] + \
        [StreamMessage] * 3
    assert [m.device_name for m in out] == ["T0", "T1", "Huge", "T2", "T3", "T4"]
    assert all(m.body == packed[k][58:] for k, m in enumerate(out)
               if isinstance(m, StreamMessage))
    assert not stream.mid_message


def test_received_images_are_bounded_in_bytes_and_devices_in_number(server: IgtlServer,
                                                                    rng) -> None:
    """A never-drained queue of 1,000 VGA frames used to hold ~900 MB."""
    server.received_queue_bytes = 2_000_000
    server.max_devices = 50
    image = rng.integers(0, 255, size=(1, 240, 320), dtype=np.uint8)   # 76.8 kB each
    frame = pyigtl.ImageMessage(image, device_name="Cam").pack()
    names = b"".join(pyigtl.StringMessage("x", device_name=f"D{n}").pack() for n in range(200))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5.0) as raw:
        raw.sendall(frame * 60 + names)
        assert _wait(lambda: server.stats.received >= 260, timeout_s=20.0)
    kept = server._received_bytes
    assert kept <= 2_000_000 and len(server._latest) == 50
    assert server.latest("STRING", "D199") is not None and server.latest("STRING", "D0") is None
    assert len(server.drain()) > 0 and server._received_bytes == 0


def test_a_flood_of_bad_messages_logs_a_bounded_number_of_lines(server: IgtlServer,
                                                               caplog) -> None:
    caplog.set_level(logging.WARNING, logger="guidance.igtl.server")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5.0) as raw:
        raw.sendall(_raw("TRANSFORM", "BadCrc", b"\x00" * 48, crc=1) * 2000)
        assert _wait(lambda: server.stats.dropped_malformed >= 2000, timeout_s=20.0)
    lines = [r for r in caplog.records if "CRC mismatch" in r.getMessage()]
    assert 1 <= len(lines) <= 10 * 30   # at most 10 a second, however long the flood
    assert server.stats.log_lines_suppressed >= 2000 - len(lines)


def test_image_without_pixels_is_dropped_not_passed_on(server: IgtlServer, client) -> None:
    """Width-0 IMAGEs used to reach the capture worker and raise cv2.error there."""
    empty = pyigtl.ImageMessage(np.zeros((1, 0, 4), np.uint8), device_name="Zero")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5.0) as raw:
        for _ in range(5):
            raw.sendall(empty.pack())
        assert _wait(lambda: server.stats.dropped_malformed >= 5)
    assert server.latest("IMAGE", "Zero") is None
