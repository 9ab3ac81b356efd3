"""The stand-in Hub: loopback-only, bounded and stopped (the notebooks' hub run shows the libraries use it)."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

import pytest
from standin_hub import serve  # pytest puts tests/ (no __init__.py) on sys.path


def status(url: str) -> int:
    """The HTTP status of one GET request."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_loopback_only_unserved_requests_recorded_and_the_port_closes(tmp_path, capsys):
    """It listens on 127.0.0.1 only; an unknown route is a 404 in hub.unserved (logged once); a stuck client does not
    hold up the end of the block, after which the port is closed."""
    with serve(tmp_path) as hub:
        assert hub.endpoint.startswith("http://127.0.0.1:")
        port = int(hub.endpoint.rsplit(":", 1)[1])
        stuck = socket.create_connection(("127.0.0.1", port), timeout=2)  # a client that never finishes its request
        stuck.sendall(b"GET /api/models/org/tiny HTTP/1.1\r\n")
        assert [status(f"{hub.endpoint}/api/spaces/x/y") for _ in range(2)] == [404, 404]
        started = time.perf_counter()
    assert time.perf_counter() - started < 2, "a stuck client held up the shutdown"
    stuck.close()
    assert hub.unserved == ["GET /api/spaces/x/y", "GET /api/spaces/x/y"]
    assert capsys.readouterr().err.count("not served: GET /api/spaces/x/y") == 1
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
