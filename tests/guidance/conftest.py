"""Fixtures shared by the OpenIGTLink tests: our server on a free loopback port and a
pyigtl client connected to it as an independent peer (both stopped after the test)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pyigtl
import pytest

from guidance.igtl_server import IgtlServer


@pytest.fixture
def server() -> Iterator[IgtlServer]:
    srv = IgtlServer(port=0).start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server: IgtlServer) -> Iterator[pyigtl.OpenIGTLinkClient]:
    peer = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=server.port)
    deadline = time.monotonic() + 5.0
    while server.n_clients < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert server.n_clients == 1, "pyigtl client did not connect"
    yield peer
    peer.stop()
