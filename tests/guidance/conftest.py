"""Fixtures shared by the guidance tests: the built-in tracked tools; our OpenIGTLink server
on a free loopback port and a pyigtl client connected to it as an independent peer (both
stopped after the test)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pyigtl
import pytest

from guidance.igtl.server import IgtlServer
from guidance.tracking.tools import ToolDefinition, load_builtin_tools


@pytest.fixture(scope="session")
def tools() -> dict[str, ToolDefinition]:
    """The built-in tools (reference, pointer, applicator) by name; read-only."""
    return load_builtin_tools()


class CountingClient(pyigtl.OpenIGTLinkClient):
    """pyigtl's client that also notes every message it receives and unpacks.

    pyigtl's own mailbox (``wait_for_message``) keeps only the newest message per device,
    so a test polling it would count its own thread's scheduling delays on a busy CPU,
    not what arrived. ``received`` lists every message in arrival order.
    """

    def __init__(self, *args, **kwargs) -> None:
        self.received: list = []
        super().__init__(*args, **kwargs)

    def _receive_message_from_socket(self, ssocket):
        with self.lock_incoming_messages:
            before = {id(m) for m in self.incoming_messages.values()}
        ok = super()._receive_message_from_socket(ssocket)
        with self.lock_incoming_messages:
            new = [m for m in self.incoming_messages.values() if id(m) not in before]
        self.received.extend(new)
        return ok

    def received_from(self, device_name: str, start: int = 0) -> list:
        """Messages of one device received since index ``start`` of :attr:`received`."""
        return [m for m in self.received[start:] if m.device_name == device_name]


@pytest.fixture
def server() -> Iterator[IgtlServer]:
    srv = IgtlServer(port=0).start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server: IgtlServer) -> Iterator[CountingClient]:
    peer = CountingClient(host="127.0.0.1", port=server.port)
    deadline = time.monotonic() + 5.0
    while server.n_clients < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert server.n_clients == 1, "pyigtl client did not connect"
    yield peer
    peer.stop()
