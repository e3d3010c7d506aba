"""OpenIGTLink server: streams tool poses and status out, accepts poses and images in.

Peers (3D Slicer's OpenIGTLinkIF, PLUS, a ``pyigtl`` client) connect over TCP. The server
sends ``TRANSFORM`` messages (applicator, pointer, reference, ... as ``patient_from_tool``
or ``camera_from_tool``) and ``STATUS`` messages, and receives ``TRANSFORM`` and ``IMAGE``
messages from external trackers and cameras (and ``STRING``/``POINT``/``POSITION``, which
pyigtl also decodes).

Protocol: OpenIGTLink v1/v2 header (58 bytes, big endian: version, type[12], device[20],
timestamp sec + fraction, body size, CRC-64 ECMA-182) + body; see
http://openigtlink.org/developers/spec. Message bodies are encoded and decoded with
``pyigtl``'s message classes (its ``STATUS`` is missing and is implemented here).

Robustness choices
------------------
* Listens on ``127.0.0.1`` unless another host is given.
* One event-loop thread (:mod:`selectors`) serves the listening socket and every client
  with non-blocking sockets: 900 idle connections cost no thread each, and partial sends
  are resumed where they stopped (``pyigtl``'s own ``sendall`` on a socket with a 10 ms
  timeout fails for multi-megabyte IMAGEs). A client that stops reading fills its queue,
  bounded in messages and bytes; the oldest messages are dropped (logged).
* A message with a bad CRC, an unknown type or an undecodable body is dropped with a log
  line and the connection keeps going. A body larger than ``max_body_bytes`` is read and
  discarded in chunks (bounded memory) and logged. A header that is not OpenIGTLink at
  all (garbage type/name, absurd size) means the stream is out of sync: that connection is
  closed with a log line; the server keeps accepting others.
* The event loop checks a stop flag at least every ``poll_s`` (and at once when woken);
  :meth:`IgtlServer.stop` joins it with a timeout. A failing ``accept`` (EMFILE) pauses
  accepting briefly; connections beyond ``max_clients`` are closed at once; warnings of
  one kind are rate-limited.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyigtl
from pyigtl.messages import CRC64, MessageBase

from models.base.errors import InputError
from models.base.validation import as_transform

log = logging.getLogger(__name__)

#: Default OpenIGTLink port (the protocol's registered port).
DEFAULT_PORT = 18944
HEADER_SIZE = MessageBase.IGTL_HEADER_SIZE
_HEADER = struct.Struct("> H 12s 20s I I Q Q")
#: Above this declared size the stream is considered garbage, not a big message.
_ABSURD_BODY_BYTES = 1 << 34

#: OpenIGTLink STATUS codes (spec v2).
STATUS_CODES: dict[str, int] = {
    "INVALID": 0, "OK": 1, "UNKNOWN_ERROR": 2, "PANICK_MODE": 3, "NOT_FOUND": 4,
    "ACCESS_DENIED": 5, "BUSY": 6, "TIME_OUT": 7, "OVERFLOW": 8, "CHECKSUM_ERROR": 9,
    "CONFIG_ERROR": 10, "RESOURCE_ERROR": 11, "UNKNOWN_INSTRUCTION": 12, "NOT_READY": 13,
    "MANUAL_MODE": 14, "DISABLED": 15, "NOT_PRESENT": 16, "UNKNOWN_VERSION": 17,
    "HARDWARE_FAILURE": 18, "SHUT_DOWN": 19,
}


class StatusMessage(MessageBase):
    """OpenIGTLink ``STATUS`` message (pyigtl has none): code, subcode, error name, text.

    Body: ``uint16 code, int64 subcode, char[20] error_name, char[] status_string``
    (null-terminated), big endian (OpenIGTLink spec v2, STATUS).
    """

    _FIXED = struct.Struct("> H q 20s")

    def __init__(self, code: int = 1, message: str = "", *, subcode: int = 0,
                 error_name: str = "", timestamp: float | None = None,
                 device_name: str | None = None) -> None:
        super().__init__(timestamp=timestamp, device_name=device_name)
        self._message_type = "STATUS"
        self.code = int(code)
        self.subcode = int(subcode)
        self.error_name = str(error_name)[:20]
        self.status_string = str(message)
        self._valid_message = True

    def content_asstring(self) -> str:
        return (f"Code: {self.code}\nSubcode: {self.subcode}\nError name: {self.error_name}\n"
                f"Status: {self.status_string}")

    def _pack_content(self) -> bytes:
        return (self._FIXED.pack(self.code, self.subcode, self.error_name.encode("ascii"))
                + self.status_string.encode("utf8") + b"\x00")

    def _unpack_content(self, content: bytes) -> None:
        if len(content) < self._FIXED.size:
            raise InputError(f"STATUS body of {len(content)} bytes is shorter than "
                             f"{self._FIXED.size}")
        code, subcode, name = self._FIXED.unpack(content[: self._FIXED.size])
        self.code, self.subcode = int(code), int(subcode)
        self.error_name = name.rstrip(b"\x00").decode("ascii", "replace")
        self.status_string = content[self._FIXED.size:].split(b"\x00", 1)[0].decode(
            "utf8", "replace")


#: Message types this server decodes (pyigtl's classes plus our STATUS).
MESSAGE_CLASSES: dict[str, type[MessageBase]] = {
    "TRANSFORM": pyigtl.TransformMessage,
    "IMAGE": pyigtl.ImageMessage,
    "STRING": pyigtl.StringMessage,
    "POINT": pyigtl.PointMessage,
    "POSITION": pyigtl.PositionMessage,
    "STATUS": StatusMessage,
}


#: Warnings of one kind logged per second at most (a flood must not fill the disk).
WARNINGS_PER_S = 10


@dataclass
class ServerStats:
    """Counters since start (read them for the status bar and tests)."""

    connections: int = 0
    received: int = 0
    sent: int = 0
    dropped_malformed: int = 0
    dropped_oversized: int = 0
    dropped_unknown: int = 0
    dropped_send_queue: int = 0
    disconnected_garbage: int = 0
    refused_clients: int = 0
    dropped_devices: int = 0
    accept_errors: int = 0
    log_lines_suppressed: int = 0
    last_error: str = ""


@dataclass
class ReceivedMessage:
    """One decoded incoming message.

    ``message`` is the pyigtl object (``.matrix`` for TRANSFORM, ``.image`` and
    ``.ijk_to_world_matrix`` for IMAGE); ``received_s`` is ``time.monotonic()`` at arrival.
    """

    message_type: str
    device_name: str
    timestamp_s: float
    message: MessageBase
    received_s: float = field(default_factory=time.monotonic)


class _HeaderError(Exception):
    """The bytes received are not an OpenIGTLink header: the stream is out of sync."""


def parse_header(header: bytes) -> tuple[int, str, str, float, int, int]:
    """Decode and sanity-check a 58-byte header.

    Returns ``(version, message_type, device_name, timestamp_s, body_size, crc)``.
    Raises ``_HeaderError`` when the bytes cannot be an OpenIGTLink header.
    """
    version, mtype, device, sec, frac, body_size, crc = _HEADER.unpack(header)
    try:
        type_text = mtype.rstrip(b"\x00").decode("ascii")
        device_text = device.split(b"\x00", 1)[0].decode("utf8")
    except UnicodeDecodeError as exc:
        raise _HeaderError("type or device name is not text") from exc
    if version not in (1, 2, 3) or not type_text or not all(
            c.isalnum() or c in "_+-" for c in type_text):
        raise _HeaderError(f"version {version}, type {type_text!r}")
    if body_size > _ABSURD_BODY_BYTES:
        raise _HeaderError(f"declared body size {body_size} bytes")
    timestamp = sec + frac / 2.0**32
    return version, type_text, device_text, timestamp, body_size, crc


@dataclass(frozen=True)
class StreamMessage:
    """One complete message cut from a byte stream by :class:`MessageStream`."""

    version: int
    message_type: str
    device_name: str
    timestamp_s: float
    body: bytes
    crc: int


@dataclass(frozen=True)
class OversizedMessage:
    """A message whose declared body exceeded the limit; its bytes were discarded."""

    message_type: str
    device_name: str
    body_size: int


class MessageStream:
    """Cut an OpenIGTLink byte stream into messages, incrementally and in bounded memory.

    :meth:`feed` takes whatever ``recv`` returned and gives back the messages it
    completed. A body above ``max_body_bytes`` is skipped as it streams in (never held);
    a header that is not OpenIGTLink raises ``_HeaderError`` (the connection must close:
    the stream is out of sync). At most one header plus one body up to
    ``max_body_bytes`` is buffered.

    Examples
    --------
    >>> data = pyigtl.StringMessage("hi", device_name="Note").pack()
    >>> stream = MessageStream(max_body_bytes=1024)
    >>> stream.feed(data[:30]), [m.device_name for m in stream.feed(data[30:])]
    ([], ['Note'])
    """

    def __init__(self, max_body_bytes: int) -> None:
        self.max_body_bytes = int(max_body_bytes)
        self._buffer = bytearray()
        self._header: tuple[int, str, str, float, int, int] | None = None
        self._skip = 0

    @property
    def mid_message(self) -> bool:
        """Whether part of a message has arrived and the rest is awaited."""
        return bool(self._buffer) or self._header is not None or self._skip > 0

    def feed(self, data: bytes) -> list[StreamMessage | OversizedMessage]:
        """Messages completed by ``data`` (in order)."""
        out: list[StreamMessage | OversizedMessage] = []
        view = memoryview(data)
        while view.nbytes:
            if self._skip:
                used = min(self._skip, view.nbytes)
                self._skip -= used
                view = view[used:]
                continue
            if self._header is None:
                need = HEADER_SIZE - len(self._buffer)
                self._buffer += view[:need]
                view = view[need:]
                if len(self._buffer) < HEADER_SIZE:
                    break
                header = parse_header(bytes(self._buffer))
                self._buffer.clear()
                if header[4] > self.max_body_bytes:
                    self._skip = header[4]
                    out.append(OversizedMessage(header[1], header[2], header[4]))
                    continue
                self._header = header
            size = self._header[4]
            need = size - len(self._buffer)
            self._buffer += view[:need]
            view = view[need:]
            if len(self._buffer) < size:
                break
            version, mtype, device, stamp, _, crc = self._header
            out.append(StreamMessage(version, mtype, device, stamp, bytes(self._buffer), crc))
            self._buffer.clear()
            self._header = None
        return out


class _Client:
    """One connected peer, served by the server's event loop (no thread of its own)."""

    def __init__(self, server: IgtlServer, sock: socket.socket, address: tuple) -> None:
        self.server = server
        self.sock = sock
        self.address = address
        self.stream = MessageStream(server.max_body_bytes)
        #: Packed messages waiting to be sent; the first may be partly sent already.
        self.queue: collections.deque[memoryview] = collections.deque()
        self.queued_bytes = 0
        #: 1 while the first queued message is partly on the wire (it is never dropped).
        self.started = 0
        self.last_progress_s = time.monotonic()
        self.closed = False
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def enqueue(self, data: bytes) -> None:
        """Queue a packed message, dropping the oldest not yet started beyond the bounds
        (called with the server lock held)."""
        server = self.server
        while len(self.queue) > self.started and (
                len(self.queue) >= server.send_queue_size
                or self.queued_bytes + len(data) > server.send_queue_bytes):
            dropped = self.queue[self.started]
            del self.queue[self.started]
            self.queued_bytes -= dropped.nbytes
            server.stats.dropped_send_queue += 1
            server._pending_warnings.append(("send-queue", "OpenIGTLink client %s is not "
                                             "reading; dropped the oldest queued message",
                                             (self.address,)))
        self.queue.append(memoryview(data))
        self.queued_bytes += len(data)


class IgtlServer:
    """OpenIGTLink server (TCP) for tool poses, status and incoming images.

    One event-loop thread (:mod:`selectors`) accepts, reads and writes every connection
    with non-blocking sockets: idle or slow peers cost a socket and a few buffers, never
    a thread, and a peer that stops reading only fills its own bounded queue.

    Parameters
    ----------
    port : int, default 18944
        TCP port; 0 picks a free port (read :attr:`port` after :meth:`start`).
    host : str, default "127.0.0.1"
        Interface to listen on. Only give another address on a trusted network.
    max_body_bytes : int, default 64 MiB
        Larger incoming messages are discarded as they stream in, and logged.
    on_message : callable, optional
        Called from the event-loop thread with each :class:`ReceivedMessage`; keep it short.
    send_queue_size : int, default 256
        Messages queued per client before the oldest are dropped.
    send_queue_bytes : int, default 64 MiB
        Bytes queued per client before the oldest messages are dropped.
    poll_s : float, default 0.05
        Longest time the event loop waits before checking for :meth:`stop` and stalls.
    body_timeout_s : float, default 5
        A peer silent this long in the middle of a message is disconnected.
    max_clients : int, default 32
        Connections beyond this are closed at once.
    received_queue_bytes : int, default 64 MiB
        Bodies kept for :meth:`drain`, and separately for :meth:`latest`, beyond this are
        dropped, oldest first (images fill a count-bounded queue with gigabytes).
    max_devices : int, default 256
        Distinct (type, device) pairs kept for :meth:`latest`; the least recently updated
        is forgotten beyond this.

    Warnings of one kind are logged at most :data:`WARNINGS_PER_S` times a second (the
    count of the others is in :attr:`stats`); a failing ``accept`` (e.g. EMFILE, out of file
    descriptors) pauses accepting briefly instead of ending the server.

    Examples
    --------
    >>> with IgtlServer(port=0) as server:
    ...     _ = server.send_transform("Applicator", np.eye(4))  # clients it went to
    ...     server.port > 0
    True
    """

    def __init__(self, port: int = DEFAULT_PORT, *, host: str = "127.0.0.1",
                 max_body_bytes: int = 64 << 20,
                 on_message: Callable[[ReceivedMessage], None] | None = None,
                 send_queue_size: int = 256, poll_s: float = 0.05,
                 body_timeout_s: float = 5.0, received_queue_size: int = 1000,
                 max_clients: int = 32, received_queue_bytes: int = 64 << 20,
                 max_devices: int = 256, send_queue_bytes: int = 64 << 20) -> None:
        if not 0 <= int(port) <= 65535:
            raise InputError(f"port must be 0..65535, got {port}")
        if int(max_body_bytes) <= 0:
            raise InputError(f"max_body_bytes must be positive, got {max_body_bytes}")
        self.host = host
        self.port = int(port)
        self.max_body_bytes = int(max_body_bytes)
        self.on_message = on_message
        self.send_queue_size = int(send_queue_size)
        self.send_queue_bytes = int(send_queue_bytes)
        self.poll_s = float(poll_s)
        self.body_timeout_s = float(body_timeout_s)
        self.stats = ServerStats()
        self._latest: dict[tuple[str, str], tuple[ReceivedMessage, int]] = {}
        self._latest_bytes = 0
        self._received: collections.deque[tuple[ReceivedMessage, int]] = collections.deque(
            maxlen=received_queue_size)
        self._received_bytes = 0
        self.max_clients = int(max_clients)
        self.received_queue_bytes = int(received_queue_bytes)
        self.max_devices = int(max_devices)
        self._warned_s: dict[str, tuple[float, int]] = {}
        self._pending_warnings: list[tuple[str, str, tuple]] = []
        self._clients: list[_Client] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._accept_resume_s = 0.0
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------- life cycle
    def start(self) -> IgtlServer:
        """Bind, listen and start the event loop (returns self)."""
        if self._listener is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise InputError(f"OpenIGTLink: cannot listen on {self.host}:{self.port} "
                          f"({exc.strerror}); choose another port with --igtl-port") from exc
        sock.listen(64)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._listener = sock
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(sock, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="igtl-io", daemon=True)
        self._thread.start()
        log.info("OpenIGTLink server listening on %s:%d", self.host, self.port)
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        """Close every connection and the listening socket; join the event loop."""
        self._stop.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        self._thread = None
        self._close_all()

    def __enter__(self) -> IgtlServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def n_clients(self) -> int:
        """Number of connected clients."""
        with self._lock:
            return len(self._clients)

    def _wake(self) -> None:
        """Make the event loop look at the send queues now."""
        wake = self._wake_w
        if wake is not None:
            with contextlib.suppress(OSError):   # full: a wake-up is pending anyway
                wake.send(b"\x00")

    def _close_all(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients), []
        for client in clients:
            client.closed = True
            with contextlib.suppress(OSError):
                client.sock.close()
        selector, self._selector = self._selector, None
        if selector is not None:
            with contextlib.suppress(Exception):
                selector.close()
        for name in ("_listener", "_wake_r", "_wake_w"):
            sock = getattr(self, name)
            setattr(self, name, None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()

    # ------------------------------------------------------------- event loop
    def _run(self) -> None:
        selector = self._selector
        assert selector is not None
        try:
            while not self._stop.is_set():
                self._update_interest(selector)
                for key, events in selector.select(self.poll_s):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)   # type: ignore[union-attr]
                    else:
                        client: _Client = key.data
                        if events & selectors.EVENT_WRITE and not client.closed:
                            self._write(client)
                        if events & selectors.EVENT_READ and not client.closed:
                            self._read(client)
                self._drop_stalled()
                self._resume_accepting(selector)
                self._flush_warnings()
        except Exception:  # a defect here must not pass silently: log it, close all
            log.exception("OpenIGTLink event loop failed; server stopped")
        finally:
            self._close_all()

    def _update_interest(self, selector: selectors.BaseSelector) -> None:
        """Watch a client for writing only while it has something queued."""
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            if client.closed:
                continue
            wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.queue else 0)
            try:
                key = selector.get_key(client.sock)
            except KeyError:
                selector.register(client.sock, wanted, client)
                continue
            if key.events != wanted:
                selector.modify(client.sock, wanted, client)

    def _accept(self) -> None:
        listener = self._listener
        if listener is None:
            return
        for _ in range(64):   # a burst of connections, then serve the others again
            try:
                conn, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE/ENFILE/ENOBUFS: wait for descriptors to free up
                self._count("accept_errors", f"accept failed: {exc}")
                self._warn("accept", "OpenIGTLink: accept failed (%s); retrying", exc)
                self._pause_accepting()
                return
            self._admit(conn, address)

    def _pause_accepting(self) -> None:
        selector = self._selector
        self._accept_resume_s = time.monotonic() + min(1.0, 10 * self.poll_s)
        if selector is not None and self._listener is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                selector.unregister(self._listener)

    def _resume_accepting(self, selector: selectors.BaseSelector) -> None:
        if not self._accept_resume_s or time.monotonic() < self._accept_resume_s:
            return
        self._accept_resume_s = 0.0
        if self._listener is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                selector.register(self._listener, selectors.EVENT_READ, "accept")

    def _admit(self, conn: socket.socket, address: tuple) -> None:
        """List a new client, or close it when :attr:`max_clients` are connected."""
        with self._lock:
            full = len(self._clients) >= self.max_clients
        if full:   # peers that closed since the last read must not hold their places
            self._reap_closed()
            with self._lock:
                full = len(self._clients) >= self.max_clients
        if full:
            self._count("refused_clients", f"{address}: {self.max_clients} clients connected")
            self._warn("full", "OpenIGTLink: %d clients connected; refused %s",
                       self.max_clients, address)
            with contextlib.suppress(OSError):
                conn.close()
            return
        try:
            client = _Client(self, conn, address)
        except OSError as exc:  # the peer is already gone
            with contextlib.suppress(OSError):
                conn.close()
            log.info("OpenIGTLink client %s left before it was set up (%s)", address, exc)
            return
        with self._lock:
            self._clients.append(client)
        if self._selector is not None:
            self._selector.register(conn, selectors.EVENT_READ, client)
        self._count("connections")
        log.info("OpenIGTLink client connected: %s", address)

    def _reap_closed(self) -> None:
        """Disconnect the clients whose peer has closed (a zero-byte peek)."""
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            try:
                data = client.sock.recv(1, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                self._disconnect(client, f"gone ({exc})")
                continue
            if not data:
                self._disconnect(client, "closed by the peer")

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._disconnect(client, f"receive failed ({exc})")
            return
        if not data:
            self._disconnect(client, "closed by the peer")
            return
        client.last_progress_s = time.monotonic()
        try:
            messages = client.stream.feed(data)
        except _HeaderError as exc:
            self._count("disconnected_garbage", f"not OpenIGTLink: {exc}")
            self._warn("garbage", "OpenIGTLink client %s sent a header that is not "
                       "OpenIGTLink (%s); closing this connection", client.address, exc)
            self._disconnect(client, "out of sync")
            return
        for message in messages:
            if isinstance(message, OversizedMessage):
                self._count("dropped_oversized", f"{message.message_type} "
                            f"{message.device_name!r}: {message.body_size} bytes")
                self._warn("oversized", "OpenIGTLink %s %r from %s: body of %d bytes exceeds "
                           "the limit of %d; dropped", message.message_type,
                           message.device_name, client.address, message.body_size,
                           self.max_body_bytes)
                continue
            self._handle(message.version, message.message_type, message.device_name,
                         message.timestamp_s, message.body, message.crc, client.address)

    def _write(self, client: _Client) -> None:
        while True:
            with self._lock:
                if not client.queue:
                    return
                view = client.queue[0]
            try:
                sent = client.sock.send(view)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.info("OpenIGTLink client %s: send failed (%s); closing", client.address,
                         exc)
                self._disconnect(client, "send failed")
                return
            with self._lock:
                if not client.queue or client.queue[0] is not view:
                    continue   # dropped meanwhile (only an unstarted message can be)
                client.queued_bytes -= sent
                if sent < view.nbytes:
                    client.queue[0] = view[sent:]
                    client.started = 1
                    return
                client.queue.popleft()
                client.started = 0
                self.stats.sent += 1

    def _drop_stalled(self) -> None:
        now = time.monotonic()
        with self._lock:
            stalled = [c for c in self._clients if c.stream.mid_message
                       and now - c.last_progress_s > self.body_timeout_s]
        for client in stalled:
            self._warn("stalled", "OpenIGTLink client %s stalled mid-message; closing",
                       client.address)
            self._disconnect(client, "stalled")

    def _disconnect(self, client: _Client, reason: str) -> None:
        if client.closed:
            return
        client.closed = True
        selector = self._selector
        if selector is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                selector.unregister(client.sock)
        with contextlib.suppress(OSError):
            client.sock.close()
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)
        log.info("OpenIGTLink client disconnected: %s (%s)", client.address, reason)

    def _warn(self, key: str, message: str, *args: object) -> None:
        """``log.warning``, at most :data:`WARNINGS_PER_S` a second per ``key`` (the rest
        are counted in ``stats.log_lines_suppressed``)."""
        now = time.monotonic()
        with self._lock:
            start, count = self._warned_s.get(key, (-math.inf, 0))
            if now - start >= 1.0:
                start, count = now, 0
            if count >= WARNINGS_PER_S:
                self.stats.log_lines_suppressed += 1
                return
            self._warned_s[key] = (start, count + 1)
        log.warning(message, *args)

    def _flush_warnings(self) -> None:
        """Log the warnings queued while the lock was held (send-queue drops)."""
        with self._lock:
            pending, self._pending_warnings = self._pending_warnings, []
        for key, message, args in pending:
            self._warn(key, message, *args)

    def _count(self, name: str, error: str = "") -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)
            if error:
                self.stats.last_error = error

    # ---------------------------------------------------------------- sending
    def send(self, message: MessageBase) -> int:
        """Queue a pyigtl message for every connected client; returns the number of clients."""
        if not message.is_valid:
            raise InputError(f"{message.message_type} message has no valid content")
        data = message.pack()
        with self._lock:
            clients = [c for c in self._clients if not c.closed]
            for client in clients:
                client.enqueue(data)
        if clients:
            self._wake()
        return len(clients)

    def send_transform(self, device_name: str, matrix: np.ndarray, *,
                       timestamp_s: float | None = None) -> int:
        """Send a 4x4 transform (mm) named ``device_name`` (e.g. ``"ApplicatorToPatient"``)."""
        m = as_transform(matrix, name=f"transform {device_name!r}")
        return self.send(pyigtl.TransformMessage(m, timestamp=timestamp_s,
                                                 device_name=device_name))

    def send_status(self, device_name: str, code: int | str = "OK", message: str = "", *,
                    subcode: int = 0, error_name: str = "") -> int:
        """Send a STATUS (``code`` as number or name from :data:`STATUS_CODES`)."""
        if isinstance(code, str):
            if code not in STATUS_CODES:
                raise InputError(f"status code {code!r} unknown; choose one of: "
                                 f"{', '.join(STATUS_CODES)}")
            code = STATUS_CODES[code]
        return self.send(StatusMessage(code, message, subcode=subcode, error_name=error_name,
                                       device_name=device_name))

    def send_image(self, device_name: str, image: np.ndarray,
                   ijk_to_world: np.ndarray | None = None) -> int:
        """Send an IMAGE (``image`` as pyigtl expects: (k, j, i) or (k, j, i, c))."""
        return self.send(pyigtl.ImageMessage(image, ijk_to_world_matrix=ijk_to_world,
                                             device_name=device_name))

    # -------------------------------------------------------------- receiving
    def _handle(self, version: int, mtype: str, device: str, stamp: float, body: bytes,
                crc: int, address: tuple) -> None:
        if CRC64(body) != crc:
            self._count("dropped_malformed", f"{mtype} {device!r}: CRC mismatch")
            self._warn("crc", "OpenIGTLink %s %r from %s: CRC mismatch; dropped", mtype,
                       device, address)
            return
        cls = MESSAGE_CLASSES.get(mtype)
        if cls is None:
            self._count("dropped_unknown")
            log.info("OpenIGTLink %s %r from %s: type not handled; ignored", mtype, device,
                     address)
            return
        message = cls()
        try:
            message.unpack({"header_version": version, "message_type": mtype,
                            "device_name": device, "timestamp": stamp}, body)
            if mtype == "TRANSFORM" and not np.all(np.isfinite(message.matrix)):
                raise InputError("matrix is not finite")
            if mtype == "IMAGE" and 0 in np.shape(message.image):
                raise InputError(f"image of size {np.shape(message.image)} has no pixels")
        except Exception as exc:  # any decoding failure of untrusted bytes is a bad message
            self._count("dropped_malformed", f"{mtype} {device!r}: {exc}")
            self._warn("decode", "OpenIGTLink %s %r from %s could not be decoded (%s); "
                       "dropped", mtype, device, address, exc)
            return
        self._keep(ReceivedMessage(mtype, device, stamp, message), len(body))

    def _keep(self, received: ReceivedMessage, size: int) -> None:
        """Store a decoded message for :meth:`latest` and :meth:`drain`, within the bounds
        (devices in number, both stores in bytes)."""
        key = (received.message_type, received.device_name)
        with self._lock:
            old = self._latest.pop(key, None)
            if old is not None:
                self._latest_bytes -= old[1]
            self._latest[key] = (received, size)   # most recently updated last
            self._latest_bytes += size
            while len(self._latest) > 1 and (len(self._latest) > self.max_devices or
                                             self._latest_bytes > self.received_queue_bytes):
                self._latest_bytes -= self._latest.pop(next(iter(self._latest)))[1]
                self.stats.dropped_devices += 1
            if len(self._received) == self._received.maxlen:
                self._received_bytes -= self._received[0][1]
            self._received.append((received, size))
            self._received_bytes += size
            while self._received_bytes > self.received_queue_bytes and len(self._received) > 1:
                self._received_bytes -= self._received.popleft()[1]
            self.stats.received += 1
        if self.on_message is not None:
            try:
                self.on_message(received)
            except Exception:
                log.exception("OpenIGTLink on_message callback failed")

    def latest(self, message_type: str, device_name: str) -> ReceivedMessage | None:
        """The most recent message of this type and device, or None."""
        with self._lock:
            found = self._latest.get((message_type, device_name))
        return None if found is None else found[0]

    def drain(self) -> list[ReceivedMessage]:
        """All messages received since the last call, oldest first."""
        with self._lock:
            out = [received for received, _ in self._received]
            self._received.clear()
            self._received_bytes = 0
        return out

    def wait_for(self, message_type: str, device_name: str, *, timeout_s: float,
                 newer_than_s: float = -1.0) -> ReceivedMessage | None:
        """Wait (bounded) for a message received after ``newer_than_s`` (monotonic s)."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.latest(message_type, device_name)
            if found is not None and found.received_s > newer_than_s:
                return found
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.002)
