"""The listener against slow, many and large clients: the request deadline, the cap on
connections, the body limit; real sockets to a real HttpApi."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.daemon.collector.http.rig import PASSWORD, USER, running_api
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.integration  # a real HTTP server on a free port


def partial_head(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /api/v1/things HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed (EOF or reset); the socket has nothing else to read."""
    sock.settimeout(0.05)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_fifty_idle_slow_connections_neither_block_a_request_nor_outlive_the_deadline():
    with running_api(header_deadline_s=2.0, request_timeout_s=30.0) as api:
        slow = [partial_head(api.port) for _ in range(50)]
        try:
            wait_until(lambda: api.server.counters().open == 50, message="50 slow clients in")
            started = time.monotonic()
            assert api.call("GET", "/api/v1/things")[0] == 200
            assert time.monotonic() - started < 1.0  # not queued behind the slow ones
            assert api.call("POST", "/api/v1/things", {"a": 1}, basic=(USER, PASSWORD))[0] == 201
            # Each slow client is cut off by the deadline (2 s), long before a read timeout (30 s).
            wait_until(
                lambda: all(closed_by_server(s) for s in slow),
                timeout=10,
                message="slow clients dropped at the deadline",
            )
            assert time.monotonic() - started < 10
            wait_until(lambda: api.server.counters().open == 0, message="their threads ended")
            assert api.server.counters().timeouts == 50
        finally:
            for sock in slow:
                sock.close()


def test_a_client_trickling_a_byte_at_a_time_is_cut_off_at_the_deadline():
    with running_api(header_deadline_s=1.5, request_timeout_s=5.0) as api:
        sock = socket.create_connection(("127.0.0.1", api.port), timeout=10)
        stop = threading.Event()
        ended: list[float] = []
        started = time.monotonic()

        def trickle() -> None:
            data = b"GET /api/v1/things HTTP/1.1\r\nX-Long: " + b"a" * 1000
            try:
                for byte in data:
                    sock.sendall(bytes([byte]))
                    if stop.wait(0.05):  # the pace of the attack: each read well within 5 s
                        return
            except OSError:
                ended.append(time.monotonic() - started)

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        try:
            wait_until(lambda: ended, timeout=10, message="the trickling client cut off")
            assert 1.4 <= ended[0] < 4.0
            assert api.server.counters().timeouts == 1
        finally:
            stop.set()
            thread.join(5)
            sock.close()


def test_past_max_connections_a_client_gets_503_at_once_and_is_counted():
    with running_api(max_connections=4, header_deadline_s=30.0) as api:
        held = [partial_head(api.port) for _ in range(4)]
        try:
            wait_until(lambda: api.server.counters().open == 4, message="4 connections held")
            with socket.create_connection(("127.0.0.1", api.port), timeout=5) as extra:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                answer = b""
                while chunk := extra.recv(4096):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 503 ")
            assert b'"error": "too many connections; try again shortly"' in answer
            counters = api.server.counters()
            assert (counters.refused, counters.open) == (1, 4)
        finally:
            for sock in held:
                sock.close()
        wait_until(lambda: api.server.counters().open == 0, message="held connections closed")
        assert api.call("GET", "/healthz")[0] == 200


def test_a_2_mb_body_is_413_and_the_connection_closed():
    with running_api() as api:
        status, headers, body = api.call(
            "POST", "/api/v1/things", b"x" * 2_000_000, basic=(USER, PASSWORD)
        )
        assert status == 413
        assert body == {"error": "body is 2000000 bytes; the limit is 4096"}
        assert headers["Connection"] == "close"
        assert api.changes == []
        # Unauthenticated, it is refused before the body is looked at, and closed the same way.
        status, headers, _ = api.call("POST", "/api/v1/things", b"x" * 2_000_000)
        assert (status, headers["Connection"]) == (401, "close")
        assert api.call("GET", "/healthz")[0] == 200


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"[" * 2000 + b"]" * 2000, "nested too deeply"),
        (b'{"a": ' * 300 + b"[" * 800 + b"]" * 800 + b"}" * 300, "nested too deeply"),
        (b"[1, 2]", "send a JSON object"),
        (b"{", "body is not valid JSON"),
    ],
)
def test_a_hostile_json_body_is_400_with_a_reason(body, error):
    with running_api() as api:
        status, _, answer = api.call(
            "POST",
            "/api/v1/things",
            body,
            basic=(USER, PASSWORD),
            headers={"Content-Type": "application/json"},
        )
        assert status == 400
        assert error in answer["error"]
        assert api.call("GET", "/healthz")[0] == 200
