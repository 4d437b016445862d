"""Hostile requests to the collector's HTTP API, over real sockets to a real HttpApi.

Acknowledgements, silences and their removal, with bodies of every shape, Content-Length
headers that lie, odd headers, methods and paths, behind the real AlertService. Every
request gets a whole HTTP answer (never a dropped connection, never a hang) and never a
500: a 500 means an exception the API did not expect, a bug wherever it was raised.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import time
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.config.collector import HttpSettings
from fleet.daemon.collector.http import HttpApi, Router, collector_routes
from fleet.daemon.collector.http.auth import hash_password
from fleet.daemon.collector.http.gate import Gate
from tests.fuzz.cases import FUZZ, check_scale, examples_for, tally
from tests.fuzz.hostile import hostile_value, nested, serialise
from tests.fuzz.rig import FIRING, alert_service
from tests.fuzz.tape import Tape

pytestmark = pytest.mark.fuzz

USER, PASSWORD = "sgt.reyes", "a long password"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
WRONG = "Basic " + base64.b64encode(f"{USER}:wrong".encode()).decode()


@dataclass(frozen=True)
class Request:
    data: bytes
    kind: str

    def __repr__(self) -> str:
        shown = self.data if len(self.data) <= 400 else self.data[:400] + b"..."
        return f"Request({self.kind}, {shown!r})"


SILENCE = {
    "device": "sw-06",
    "rule": "battery_low",
    "hours": 2,
    "reason": "in repair",
    "by": "Tech",
}


def _body(tape: Tape, kind: str) -> tuple[bytes, str]:
    """A body for `kind` and its Content-Type."""
    form = tape.weighted([(12, "fits"), (2, "json"), (1, "deep"), (1, "bytes"), (1, "big")])
    if form == "json":
        return json.dumps(hostile_value(tape)).encode("utf-8", "surrogatepass"), "application/json"
    if form == "deep":
        return serialise(tape, {"by": nested(300 + tape.below(2000), tape.below(3))})[0], ""
    if form == "bytes":
        return tape.take(tape.below(64)), tape.pick(["", "text/plain", "application/json"])
    if form == "big":
        return b"x" * (4000 + tape.below(6000)), "application/json"
    if kind == "ack":
        how = tape.weighted([(3, "json"), (2, "form"), (1, "mutated")])
        if how == "form":
            name = tape.pick(["Sgt. Reyes", tape.text(20)])
            return f"by={quote(name)}".encode(), "application/x-www-form-urlencoded"
        if how == "mutated":
            return serialise(tape, {"by": "Sgt. Reyes", tape.text(4): hostile_value(tape)})[0], ""
        return json.dumps(
            {"by": tape.pick(["Sgt. Reyes", tape.text(20)])}
        ).encode(), "application/json"
    doc: dict[str, object] = dict(SILENCE)
    for _ in range(tape.below(3)):
        key = tape.pick(["hours", "until", "hours", "device", "rule", "reason", "by", tape.text(5)])
        if tape.byte() % 4 == 3:
            doc.pop(key, None)
        else:
            doc[key] = tape.pick(
                [hostile_value(tape), 1e308, 2**63, 1e15, -1, 0.001, float("nan"), 10**30,
                 "2030-01-01T00:00:00+00:00", "2030-01-01T00:00", "9999-12-31T23:59:59+14:00",
                 "0001-01-01T00:00:00-14:00", "", "sw-06\n"]
            )  # fmt: skip
    return serialise(tape, doc)[0], "application/json"


def request(data: bytes) -> Request:
    tape = Tape(data)
    kind = tape.weighted([(4, "ack"), (3, "silence"), (2, "delete"), (1, "get"), (1, "odd")])
    device, rule = FIRING
    method, path = {
        "ack": ("POST", f"/alerts/{device}/{rule}/ack"),
        "silence": ("POST", "/silences"),
        "delete": ("DELETE", f"/silences/{tape.pick(['1', '2', '0', '99999999999999999999', '²', '١', '-1', '1e3', 'x' * 5000])}"),
        "get": ("GET", tape.pick(["/healthz", "/alerts", "/silences", "/healthz?x=1", "/", "//alerts"])),
        "odd": (tape.pick(["PUT", "HEAD", "PATCH", "OPTIONS", "get", "POST\x00", "BREW"]), "/silences"),
    }[kind]  # fmt: skip
    if tape.byte() % 8 == 7:  # a level replaced by anything (encoded as a client would, or not)
        levels = path.split("/")
        text = tape.text(30)
        levels[1 + tape.below(len(levels) - 1)] = quote(text) if tape.byte() % 2 else text
        path = "/".join(levels)
    body, content_type = _body(tape, kind) if method in ("POST", "DELETE", "PUT") else (b"", "")
    length = tape.weighted(
        [(24, str(len(body))), (1, str(len(body) + 1 + tape.below(100))), (1, str(max(0, len(body) - 1 - tape.below(10)))),
         (1, "-5"), (1, "abc"), (1, " 12 "), (1, "1" * 30), (1, "٣"), (1, None), (1, "dup")]
    )  # fmt: skip
    headers = ["Host: 127.0.0.1"]
    who = tape.weighted([(12, BASIC), (2, None), (1, WRONG), (1, "Basic %%%"), (1, "Bearer x")])
    if who is not None:  # mostly signed in, so that the hostile bodies reach the routes
        headers.append(f"Authorization: {who}")
    if content_type:
        headers.append(f"Content-Type: {content_type}")
    if length == "dup":
        headers += [f"Content-Length: {len(body)}", "Content-Length: 3"]
    elif length is not None:
        headers.append(f"Content-Length: {length}")
    extra = tape.weighted([(20, ""), (1, "Transfer-Encoding: chunked"), (1, "Expect: 100-continue"),
                           (1, f"X-{tape.text(8)}: {tape.text(40)}")])  # fmt: skip
    if extra:
        headers.append(extra)
    version = tape.weighted([(24, "HTTP/1.1"), (1, "HTTP/1.0"), (1, "HTTP/2.0"), (1, "")])
    line = f"{method} {path} {version}".rstrip()
    head = (line + "\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode(
        "utf-8", "surrogatepass"
    )
    return Request(head + body, kind)


def gate(routes: Router) -> Gate:
    """The routes behind the real gate, with one user (a cheap hash: thousands of requests)."""
    users = {USER: hash_password(PASSWORD, n=1024)}
    # Wrong passwords are throttled (429) after this many a minute: both answers are fuzzed.
    settings = HttpSettings(bind="127.0.0.1:0", users=users, login_max_failures=50)
    return Gate(routes, settings, key=b"k" * 32)


def _send(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # so that a body shorter than announced ends
    except OSError:
        pass  # answered and closed before all was sent (413, 400): read that answer
    return sock


def _answer(sock: socket.socket) -> bytes:
    with sock:
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def exchange(port: int, data: bytes) -> bytes:
    """Send, say we are done, and read the whole answer."""
    return _answer(_send(port, data))


def exchange_all(port: int, requests: list[bytes]) -> list[bytes]:
    """Several requests in flight at once (the server answers each on its own thread)."""
    socks = [_send(port, data) for data in requests]
    return [_answer(sock) for sock in socks]


def _words(request: bytes) -> list[str]:
    """The request line's words, split as the server splits them (latin-1, any whitespace)."""
    return request.split(b"\n", 1)[0].decode("iso-8859-1").split()


def check_answer(answer: bytes, request: bytes = b"") -> int:
    """The answer's status; 0 for an HTTP/0.9 answer (a request line without a version: the
    answer is the body alone, with no status line to read)."""
    assert answer, "the connection closed without an answer"
    if not answer.startswith(b"HTTP/"):
        # The server's own refusals (a request line it cannot read, an unknown method) are
        # JSON like every other answer since the route table came; before it they were the
        # standard library's HTML page.
        assert len(_words(request)) == 2, answer[:200]
        decoded = json.loads(answer)
        assert isinstance(decoded, dict | list), answer[:200]
        return 0
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1."), f"not an HTTP answer: {answer[:200]!r}"
    status = int(status_line.split()[1])
    assert status != 500, f"internal error: {body[:300]!r}"
    assert b"application/json" in head, f"every answer is JSON: {head[:300]!r}"
    words = _words(request)
    if len(words) == 3 and words[0] == "HEAD" and words[2] in ("HTTP/1.0", "HTTP/1.1"):
        # A HEAD the server read (not one whose line it refused) is answered without a body.
        assert body == b"", f"an answer to HEAD has no body: {body[:100]!r}"
        return status
    decoded = json.loads(body)
    if status >= 400:
        assert isinstance(decoded, dict)
        assert isinstance(decoded.get("error"), str)
        assert decoded["error"]
    if status == 405:
        assert re.search(rb"\r\nAllow: [A-Z, ]+\r\n", head), head[:300]
    return status


def test_http_requests(tmp_path):
    t = tally("http api")
    with alert_service(tmp_path) as rig:
        service = rig.service
        routes = collector_routes(
            health=lambda: (True, {"mqtt_connected": True}),
            alerts=lambda: [{"device": a.device} for a in service.engine.alerts(firing_only=True)],
            acknowledge=service.acknowledge,
            silences=service,
        )
        api = HttpApi("127.0.0.1", 0, gate(routes), timeout_s=5)
        stop = api.start()
        try:
            # Four requests in flight per example: concurrency is part of the hostility, and
            # the round trips overlap instead of adding up.
            @settings(FUZZ, max_examples=examples_for(4))
            @given(
                st.lists(st.binary(min_size=48, max_size=128).map(request), min_size=4, max_size=4)
            )
            def one(reqs: list[Request]) -> None:
                t.examples += 1
                answers = exchange_all(api.port, [req.data for req in reqs])
                for req, answer in zip(reqs, answers, strict=True):
                    t.add(str(check_answer(answer, req.data)))

            one()
            assert check_answer(exchange(api.port, b"GET /healthz HTTP/1.1\r\n\r\n")) == 200
            rig.check_drained()
        finally:
            stop()
    check_scale(t)


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    """A real HttpApi before the real AlertService; a quiet client is dropped after 0.5 s."""
    with alert_service(tmp_path_factory.mktemp("http")) as rig:
        routes = collector_routes(
            health=lambda: (True, {}),
            alerts=None,
            acknowledge=rig.service.acknowledge,
            silences=rig.service,
        )
        api = HttpApi("127.0.0.1", 0, gate(routes), timeout_s=0.5)
        stop = api.start()
        try:
            yield api.port
        finally:
            stop()


def test_a_client_that_stops_sending_is_dropped_without_holding_a_thread(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        auth = f"Authorization: {BASIC}\r\n".encode()
        sock.sendall(
            b"POST /alerts/sw-05/x/ack HTTP/1.1\r\n" + auth + b"Content-Length: 100\r\n\r\n{"
        )
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed by the server, not answered
        assert time.monotonic() - started < 5
    assert check_answer(exchange(port, b"GET /healthz HTTP/1.1\r\n\r\n")) == 200


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "error"),
    [
        ("/alerts/sw-05/x/ack", "Content-Length: abc", b"", 400, "is not a byte count"),
        ("/alerts/sw-05/x/ack", "Content-Length: -5", b"", 400, "is not a byte count"),
        ("/alerts/sw-05/x/ack", "Content-Length: 99999", b"{}", 413, "the limit is 4096"),
        ("/alerts/sw-05/x/ack", "Content-Length: 10", b'{"by":', 400, "ended after 6 of 10 bytes"),
        ("/alerts/sw-05/x/ack", "Transfer-Encoding: chunked", b"3\r\nby=\r\n0\r\n\r\n", 411, "Content-Length"),
        ("/alerts/sw-05/x/ack", "Content-Length: 14", b'{"by": "a\\nb"}', 400, "printable"),
        ("/alerts/sw 05/x/ack", "Content-Length: 0", b"", 400, ""),  # refused by the server's parser
        ("/alerts/sw%2F05/x/ack", "Content-Length: 0", b"", 404, "contains"),
        ("/silences", "Content-Length: 4000", b"[" * 2000 + b"]" * 2000, 400, "nested too deeply"),
        ("/silences/\xb2", "", b"", 404, "no silence"),  # "²": int() reads it as 2
        ("/silences/" + "9" * 5000, "", b"", 404, "no silence"),
    ],
)  # fmt: skip
def test_lying_or_hostile_requests_get_a_reason(port, path, headers, body, status, error):
    method = "DELETE" if path.startswith("/silences/") else "POST"
    head = f"{method} {path} HTTP/1.1\r\nAuthorization: {BASIC}\r\n{headers}\r\n\r\n".encode(
        "latin-1"
    )
    answer = exchange(port, head + body)
    assert check_answer(answer) == status
    if error:
        assert error in json.loads(answer.partition(b"\r\n\r\n")[2])["error"]
