"""The HTTP relay of the kill-during-write test (tests/harness/relay.py) holds the next
write, not one already under way: InfluxDB can answer the test's query before the relay
has passed a write's answer on, and holding that answer held the wrong write (CI once)."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.harness.relay import HttpRelay
from tests.harness.waiting import wait_until


class _Upstream(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[bytes] = []
        self.answer_first = threading.Event()  # the first write's answer waits for this


class _Handler(BaseHTTPRequestHandler):
    server: _Upstream
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(body)
        if len(self.server.received) == 1:
            self.server.answer_first.wait(10)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[_Upstream]:
    server = _Upstream()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.answer_first.set()
    server.shutdown()
    server.server_close()


def _post(port: int, body: bytes) -> int:
    """The answer's status; 0 if the connection closed without one."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/write?db=x", body=body)
        return conn.getresponse().status
    except (http.client.HTTPException, OSError):
        return 0
    finally:
        conn.close()


def test_a_write_under_way_when_armed_is_not_held_the_next_one_is(upstream: _Upstream) -> None:
    relay = HttpRelay("127.0.0.1", upstream.server_address[1])
    try:
        statuses: list[int] = []
        first = threading.Thread(target=lambda: statuses.append(_post(relay.port, b"battery,a")))
        first.start()
        wait_until(lambda: len(upstream.received) == 1, message="first write upstream")
        relay.arm("response", marker=b"battery,")  # its answer is still to come
        upstream.answer_first.set()
        first.join(10)
        assert statuses == [204]
        assert not relay.held.is_set()

        second = threading.Thread(target=lambda: statuses.append(_post(relay.port, b"battery,b")))
        second.start()
        wait_until(relay.held.is_set, message="the next write's answer held")
        assert upstream.received == [b"battery,a", b"battery,b"]  # stored, answer held
        assert statuses == [204]
        relay.release()
        second.join(10)
        assert statuses == [204, 0]  # the held exchange is dropped, never completed
    finally:
        relay.close()
