"""The collector's route table over a real socket, before the real AlertService
(tests/fuzz/rig.py; no broker or database needed): every route, any query string, 404 vs 405
with Allow, path parameters checked by the contract's id rule, and bad bodies refused with a
message that names the field."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from email.message import Message
from typing import Any

import pytest

from fleet.config.collector import HttpSettings
from fleet.daemon.collector.http import HttpApi, Router, collector_routes
from fleet.daemon.collector.http.auth import hash_password
from fleet.daemon.collector.http.gate import Gate
from fleet.daemon.collector.http.router import Refused, Response
from tests.fuzz.rig import FIRING, alert_service

pytestmark = pytest.mark.integration  # a real HTTP server on a free port

HEALTHY = {"ok": True}
USER, PASSWORD = "sgt.reyes", "a long password"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
_MOVED = {
    ("GET", "/alerts"),
    ("POST", "/alerts/{device:id}/{rule:id}/ack"),
    ("GET", "/silences"),
    ("POST", "/silences"),
    ("DELETE", "/silences/{silence:int}"),
}
# Under /api/v1/, and on the previous release's paths for one release.
ROUTES = {("GET", "/healthz")} | _MOVED | {(m, "/api/v1" + p) for m, p in _MOVED}


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[int]:
    with alert_service(tmp_path_factory.mktemp("http")) as rig:
        service = rig.service
        routes = collector_routes(
            health=lambda: (HEALTHY["ok"], {"mqtt_connected": HEALTHY["ok"]}),
            alerts=lambda: [{"device": a.device} for a in service.engine.alerts(firing_only=True)],
            acknowledge=service.acknowledge,
            silences=service,
        )
        # Every route the collector has is one of these, and each is called below.
        assert {(r.method, r.pattern) for r in routes.routes} == ROUTES
        settings = HttpSettings(bind="127.0.0.1:0", users={USER: hash_password(PASSWORD, n=1024)})
        server = HttpApi("127.0.0.1", 0, Gate(routes, settings, key=b"k" * 32), timeout_s=5)
        stop = server.start()
        try:
            yield server.port
        finally:
            stop()


def send(
    port: int,
    method: str,
    path: str,
    body: object = None,
    content_type: str = "application/json",
    *,
    signed_in: bool = True,
) -> tuple[int, Message, Any]:
    """(status, headers, decoded JSON body or None) over a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        data = (
            body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
        )
        headers = {"Content-Type": content_type} if data is not None else {}
        if signed_in:  # HTTP Basic: every change needs a user (the gate's own tests: http/)
            headers["Authorization"] = BASIC
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        return response.status, response.headers, json.loads(raw) if raw else None
    finally:
        connection.close()


@pytest.mark.parametrize("query", ["", "?x", "?x=1", "?x=1&x=2&y=", "?%zz=%ff", "?" + "a&" * 200])
def test_healthz_answers_with_any_query(api, query):
    HEALTHY["ok"] = True
    assert send(api, "GET", "/healthz" + query)[::2] == (200, {"mqtt_connected": True})
    HEALTHY["ok"] = False
    try:
        assert send(api, "GET", "/healthz" + query)[::2] == (503, {"mqtt_connected": False})
    finally:
        HEALTHY["ok"] = True


def test_every_route(api):
    device, rule = FIRING
    status, _, firing = send(api, "GET", "/alerts?page=2")
    assert (status, {"device": device} in firing) == (200, True)

    status, _, acked = send(
        api, "POST", f"/alerts/{device}/{rule}/ack?from=board", {"by": "Sgt. Reyes"}
    )
    # The author is the signed-in user; a "by" in the body (the previous release's) is ignored.
    assert (status, acked) == (
        202,
        {"accepted": True, "device": device, "rule": rule, "by": USER},
    )
    form = b"by=Sgt.%20Reyes"
    status, _, acked = send(
        api, "POST", f"/alerts/{device}/{rule}/ack", form, "application/x-www-form-urlencoded"
    )
    assert (status, acked["by"]) == (202, USER)
    status, _, acked = send(api, "POST", f"/api/v1/alerts/{device}/{rule}/ack", {})
    assert (status, acked["by"]) == (202, USER)

    assert send(api, "GET", "/silences")[::2] == (200, [])
    status, _, silence = send(
        api,
        "POST",
        "/silences",
        {
            "device": "sw-06",
            "rule": None,
            "hours": 2,
            "reason": "in\nrepair\x00 now",
            "by": "Tech\r\nOrtiz",
        },
    )
    assert status == 201
    # Control characters are cleaned, not refused: a person typed them by mistake.
    assert (silence["device"], silence["rule"], silence["reason"], silence["by"]) == (
        "sw-06",
        None,
        "in repair now",
        USER,
    )
    assert send(api, "GET", "/silences")[::2] == (200, [silence])
    assert send(api, "DELETE", f"/silences/{silence['id']}")[::2] == (
        200,
        {"removed": silence["id"]},
    )
    assert send(api, "DELETE", f"/silences/{silence['id']}")[::2] == (
        404,
        {"error": f"no silence {silence['id']}"},
    )
    assert send(api, "GET", "/silences")[::2] == (200, [])


@pytest.mark.parametrize("prefix", ["", "/api/v1"])
def test_a_change_without_a_user_is_401_and_changes_nothing(api, prefix):
    device, rule = FIRING
    for method, path, body in [
        ("POST", f"{prefix}/alerts/{device}/{rule}/ack", {"by": "Sgt. Reyes"}),
        ("POST", f"{prefix}/silences", SILENCE),
        ("DELETE", f"{prefix}/silences/1", None),
    ]:
        status, _, answer = send(api, method, path, body, signed_in=False)
        assert status == 401, path
        assert answer["error"].startswith("sign in first")
    assert send(api, "GET", f"{prefix}/silences", signed_in=False)[::2] == (200, [])


def test_head_is_get_without_the_body(api):
    connection = http.client.HTTPConnection("127.0.0.1", api, timeout=10)
    try:
        connection.request("HEAD", "/healthz?x=1")
        response = connection.getresponse()
        assert response.status == 200
        assert int(response.headers["Content-Length"]) == len(b'{"mqtt_connected": true}')
        assert response.read() == b""
    finally:
        connection.close()


@pytest.mark.parametrize(
    "path",
    ["/nowhere", "/", "/alerts/", "/alerts//", "/healthz/x", "/silences/1/2", "/alerts/sw-05/x"],
)
def test_an_unknown_path_is_404(api, path):
    assert send(api, "GET", path)[::2] == (404, {"error": "not found"})


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/healthz", "GET, HEAD"),
        ("DELETE", "/alerts?x=1", "GET, HEAD"),
        ("GET", "/alerts/sw-05/battery_critical/ack", "POST"),
        ("PUT", "/silences", "GET, HEAD, POST"),
        ("PATCH", "/silences", "GET, HEAD, POST"),
        ("OPTIONS", "/silences", "GET, HEAD, POST"),
        ("GET", "/silences/1", "DELETE"),
        ("POST", "/silences/not-a-number", "DELETE"),  # the method is wrong whatever the id
    ],
)
def test_a_wrong_method_is_405_with_allow(api, method, path, allow):
    status, headers, body = send(
        api, method, path, {} if method in ("POST", "PUT", "PATCH") else None
    )
    assert (status, headers["Allow"]) == (405, allow)
    assert body == {"error": f"{method} is not allowed here; use {allow}"}


def test_an_unknown_method_is_501_in_json(api):
    status, _, body = send(api, "BREW", "/silences")
    assert status == 501
    assert "BREW" in body["error"]


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/alerts/sw%2F05/battery_critical/ack", 'device "sw/05" contains a slash'),
        ("/alerts/sw-05/battery%20critical/ack", 'rule "battery critical" contains a space'),
        ("/alerts/-sw/battery_critical/ack", "device \"-sw\" starts with '-'"),
        ("/silences/%C2%B2", 'no silence "\u00b2": not a number of up to 18 digits'),
        ("/silences/" + "9" * 19, "not a number of up to 18 digits"),
    ],
)
def test_a_path_parameter_breaking_its_rule_is_404_with_the_reason(api, path, error):
    method = "DELETE" if path.startswith("/silences") else "POST"
    status, _, body = send(api, method, path, {"by": "x"} if method == "POST" else None)
    assert status == 404
    assert error in body["error"]


def test_a_percent_encoded_id_is_the_id(api):
    device, rule = FIRING
    status, _, acked = send(api, "POST", f"/alerts/sw%2D05/{rule}/ack", {"by": "Sgt. Reyes"})
    assert (status, acked["device"]) == (202, device)


SILENCE = {"device": "sw-06", "hours": 2, "reason": "in repair", "by": "Tech"}


def _with(**changes: object) -> dict[str, object]:
    body = {**SILENCE, **changes}
    return {k: v for k, v in body.items() if v is not ...}


@pytest.mark.parametrize(
    ("body", "field", "error"),
    [
        (_with(device=...), "body", 'name a "device", a "rule" or both'),
        (_with(device=5), "device", '"device" must be a string'),
        (_with(device="sw 06"), "device", 'device "sw 06" contains a space'),
        (_with(rule="a" * 65), "rule", "is 65 characters long (max 64)"),
        (_with(hours=0), "hours", '"hours" must be more than 0 and at most a year (8784)'),
        (_with(hours=-1), "hours", '"hours" must be more than 0'),
        (_with(hours=8785), "hours", '"hours" must be more than 0'),
        (_with(hours=1e308), "hours", '"hours" must be more than 0'),
        (_with(hours=float("nan")), "hours", '"hours" must be more than 0'),
        (_with(hours=float("inf")), "hours", '"hours" must be more than 0'),
        (_with(hours=True), "hours", '"hours" must be a number'),
        (_with(hours="2"), "hours", '"hours" must be a number'),
        (_with(hours=..., until="2030-01-01T00:00"), "until", '"until" needs a time zone'),
        (_with(hours=..., until="tomorrow"), "until", '"until" is not an ISO-8601 time'),
        (_with(hours=..., until=1893456000), "until", '"until" must be an ISO-8601 time'),
        (_with(until="2030-01-01T00:00:00+00:00"), "body", 'give "until" or "hours", not both'),
        (_with(hours=...), "body", 'say until when: "until" (ISO-8601 with zone) or "hours"'),
        (_with(by=["Tech"]), "by", '"by" must be a string'),
        (_with(reason=...), "reason", 'say why: "reason"'),
        (_with(rul="battery_low"), "rul", '"rul" is not a field of this request'),
    ],
)
def test_a_bad_silence_is_400_naming_the_field(api, body, field, error):
    status, _, answer = send(api, "POST", "/silences", json.dumps(body).encode())
    assert status == 400
    assert error in answer["error"]
    assert error in answer["fields"][field]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (_with(hours=..., until="2020-01-01T00:00:00+00:00"), "the silence must end in the future"),
        (_with(hours=..., until="2100-01-01T00:00:00+00:00"), "a silence lasts at most a year"),
        (b"[]", "send a JSON object"),
        (b"{", "body is not valid JSON"),
        (b"", 'say why: "reason"'),
        (b"[" * 2000 + b"]" * 2000, "nested too deeply"),
    ],
)
def test_a_silence_the_clock_or_the_parser_refuses_is_400(api, body, error):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, _, answer = send(api, "POST", "/silences", data)
    assert status == 400
    assert error in answer["error"]


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (b'{"by": 5}', "application/json", '"by" must be a string'),
        (b'{"by": "a\\nb"}', "application/json", '"by": the name must be printable text'),
        (b'{"by": "x", "note": 1}', "application/json", '"note" is not a field of this request'),
        (b"by=a%0Ab", "application/x-www-form-urlencoded", "the name must be printable text"),
        (b"{", "application/json", "body is not valid JSON"),
    ],
)
def test_a_bad_acknowledgement_is_400_naming_the_field(api, body, content_type, error):
    device, rule = FIRING
    status, _, answer = send(api, "POST", f"/alerts/{device}/{rule}/ack", body, content_type)
    assert status == 400
    assert error in answer["error"]


def test_without_an_alert_engine_its_routes_are_not_there():
    routes = collector_routes(health=lambda: (True, {}), alerts=None, acknowledge=None)
    assert [(r.method, r.pattern) for r in routes.routes] == [("GET", "/healthz")]


def _dispatch(router: Router, method: str, target: str) -> Response:
    return router.dispatch(method, target, Message(), lambda: b"")


def test_the_router_types_parameters_and_refuses_ambiguity():
    router = Router()
    seen: list[object] = []

    def handler(request):
        seen.append(dict(request.params))
        seen.append(request.query())
        return Response.json(200, {})

    router.get("/a/{n:int}/{name:id}", handler)
    assert _dispatch(router, "GET", "/a/007/sw%2D05?q").status == 200
    assert _dispatch(router, "GET", "http://station:8080/a/1/x").status == 200  # absolute-form
    assert seen == [{"n": 7, "name": "sw-05"}, {"q": [""]}, {"n": 1, "name": "x"}, {}]
    with pytest.raises(Refused, match="more than 50 fields"):
        _dispatch(router, "GET", "/a/1/x?" + "a&" * 51)
    with pytest.raises(Refused) as refused:
        _dispatch(router, "GET", "*")
    assert refused.value.status == 400
    with pytest.raises(ValueError, match="routed twice"):
        router.get("/a/{m:int}/{other:id}", handler)
    with pytest.raises(ValueError, match="has no type"):
        router.get("/b/{x:float}", handler)
