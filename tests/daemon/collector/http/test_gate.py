"""The gate over a real socket: logins, sessions, CSRF, Host and Origin, public reads,
throttling, and the security headers on every answer."""

from __future__ import annotations

import logging

import pytest

from tests.daemon.collector.http.rig import PASSWORD, USER, running_api

pytestmark = pytest.mark.integration  # a real HTTP server on a free port


def test_a_change_without_a_user_is_refused_and_reaches_no_route(api):
    status, _, body = api.call("POST", "/api/v1/things", {"x": 1})
    assert status == 401
    assert "sign in first" in body["error"]
    assert api.call("DELETE", "/api/v1/things/1")[0] == 401
    assert api.changes == []


def test_login_gives_a_strict_cookie_and_a_csrf_token(api):
    status, headers, body = api.call(
        "POST", "/api/v1/session", {"user": USER, "password": PASSWORD}
    )
    assert status == 200
    assert body == {"user": USER, "csrf": body["csrf"], "public_read": True}
    cookie = headers["Set-Cookie"]
    assert cookie.startswith("fleet_session=")
    assert "; HttpOnly" in cookie
    assert "; SameSite=Strict" in cookie
    assert "; Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    pair = cookie.split(";")[0]
    assert api.call("GET", "/api/v1/session", headers={"Cookie": pair})[2] == body
    assert api.call("GET", "/api/v1/session")[2] == {
        "user": None,
        "csrf": None,
        "public_read": True,
    }


def test_a_change_needs_the_right_csrf_token_with_the_cookie(api):
    cookie, csrf = api.login()
    missing = api.call("POST", "/api/v1/things", {"x": 1}, headers={"Cookie": cookie})
    assert missing[0] == 403
    assert "CSRF token is missing" in missing[2]["error"]
    wrong = api.call(
        "POST", "/api/v1/things", {"x": 1}, headers={"Cookie": cookie, "X-CSRF-Token": "x" + csrf}
    )
    assert wrong[0] == 403
    assert "CSRF token is wrong" in wrong[2]["error"]
    # Another session's token is no good either.
    _, other_csrf = api.login()
    assert (
        api.call(
            "POST",
            "/api/v1/things",
            {"x": 1},
            headers={"Cookie": cookie, "X-CSRF-Token": other_csrf},
        )[0]
        == 403
    )
    assert api.changes == []
    status, _, body = api.call(
        "POST", "/api/v1/things", {"x": 1}, headers={"Cookie": cookie, "X-CSRF-Token": csrf}
    )
    assert (status, body) == (201, {"user": USER, "body": {"x": 1}})
    assert api.changes == [(USER, {"x": 1})]


def test_a_form_carries_its_csrf_token_as_a_field_the_route_never_sees(api):
    cookie, csrf = api.login()
    form = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
    assert api.call("POST", "/api/v1/things", b"a=1&csrf=nope", headers=form)[0] == 403
    status, _, body = api.call("POST", "/api/v1/things", f"a=1&csrf={csrf}".encode(), headers=form)
    assert (status, body["body"]) == (201, {"a": "1"})


def test_http_basic_is_a_user_without_csrf_and_a_wrong_one_is_refused_even_for_reads(api):
    status, _, body = api.call("POST", "/api/v1/things", {"x": 2}, basic=(USER, PASSWORD))
    assert (status, body["user"]) == (201, USER)
    assert api.call("GET", "/api/v1/things", basic=(USER, PASSWORD))[2] == {"user": USER}
    for basic in [(USER, "wrong"), ("nobody", PASSWORD)]:
        status, headers, body = api.call("GET", "/api/v1/things", basic=basic)
        assert (status, body) == (401, {"error": "wrong user name or password"})
        assert "Basic" not in headers.get("WWW-Authenticate", "")  # no browser prompt
    assert api.call("GET", "/api/v1/things", headers={"Authorization": "Bearer abc"})[0] == 401
    assert api.call("GET", "/api/v1/things", headers={"Authorization": "Basic %%%"})[0] == 401


def test_unknown_user_and_wrong_password_get_the_same_answer_and_the_password_is_never_logged(
    api, caplog
):
    caplog.set_level(logging.INFO, logger="fleet.daemon.collector.http.gate")
    unknown = api.call("POST", "/api/v1/session", {"user": "nobody", "password": "secret-one"})
    wrong = api.call("POST", "/api/v1/session", {"user": USER, "password": "secret-two"})
    assert unknown[0] == wrong[0] == 401
    assert unknown[2] == wrong[2] == {"error": "wrong user name or password"}
    assert "Set-Cookie" not in wrong[1]
    api.login()
    text = caplog.text
    assert "failed login for 'nobody'" in text
    assert f"failed login for '{USER}'" in text
    assert f"login: '{USER}'" in text
    for secret in ("secret-one", "secret-two", PASSWORD, "scrypt$"):
        assert secret not in text
    assert api.server.counters().login_failures == 2


def test_failed_logins_are_throttled_per_user_and_address():
    with running_api(login_max_failures=3) as api:
        for _ in range(3):
            assert api.call("POST", "/api/v1/session", {"user": USER, "password": "no"})[0] == 401
        status, headers, body = api.call(
            "POST", "/api/v1/session", {"user": USER, "password": PASSWORD}
        )
        assert status == 429  # even the right password, until the minute is over
        assert "too many failed logins" in body["error"]
        assert 1 <= int(headers["Retry-After"]) <= 60
        assert api.call("GET", "/api/v1/things", basic=(USER, PASSWORD))[0] == 429
        # Another user from the same address is not locked out by these failures.
        assert api.call("POST", "/api/v1/session", {"user": "x", "password": "y"})[0] == 401
        assert api.server.counters().logins_throttled == 2


def test_a_bad_login_body_is_400_naming_the_field(api):
    status, _, body = api.call("POST", "/api/v1/session", {"user": USER})
    assert (status, body["fields"]) == (400, {"password": 'give the password: "password"'})
    status, _, body = api.call("POST", "/api/v1/session", {"user": 5, "password": "x"})
    assert (status, body["fields"]) == (400, {"user": '"user" must be a string'})
    assert api.call("POST", "/api/v1/session", b"[" * 5000)[0] == 413
    assert api.call("POST", "/api/v1/session", b"[" * 2000 + b"]" * 2000)[0] == 400
    form = f"user={USER}&password={PASSWORD.replace(' ', '+')}".encode()
    status, _, body = api.call(
        "POST",
        "/api/v1/session",
        form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (status, body["user"]) == (200, USER)
    status, headers, _ = api.call("PUT", "/api/v1/session", b"{}")
    assert (status, headers["Allow"]) == (405, "DELETE, GET, HEAD, POST")


def test_logout_ends_the_session_and_is_audited():
    audited: list[tuple[str, str, str]] = []
    with running_api() as api:
        api.gate.on_audit = lambda user, action, detail: audited.append((user, action, detail))
        cookie, csrf = api.login()
        assert api.call("DELETE", "/api/v1/session", headers={"Cookie": cookie})[0] == 403
        status, headers, body = api.call(
            "DELETE", "/api/v1/session", headers={"Cookie": cookie, "X-CSRF-Token": csrf}
        )
        assert (status, body) == (200, {"user": None, "csrf": None})
        assert "Max-Age=0" in headers["Set-Cookie"]
        changed = api.call(
            "POST", "/api/v1/things", {}, headers={"Cookie": cookie, "X-CSRF-Token": csrf}
        )
        assert changed[0] == 401
        assert api.call("GET", "/api/v1/session", headers={"Cookie": cookie})[2]["user"] is None
    assert [(u, a) for u, a, _ in audited] == [(USER, "login"), (USER, "logout")]
    assert audited[0][2] == "from 127.0.0.1"


def test_a_user_removed_from_the_config_is_refused_at_once(api):
    cookie, csrf = api.login()
    api.gate.users.replace({})
    status, _, _ = api.call(
        "POST", "/api/v1/things", {}, headers={"Cookie": cookie, "X-CSRF-Token": csrf}
    )
    assert status == 401
    assert api.call("GET", "/api/v1/things", basic=(USER, PASSWORD))[0] == 401


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example", "localhost.", "[::2]"]
)
def test_a_foreign_host_is_421_dns_rebinding(api, host):
    status, _, body = api.call("GET", "/api/v1/things", host=host)
    assert status == 421
    assert body["error"].endswith("is not one of http.allowed_hosts")
    assert api.call("GET", "/healthz", host=host)[0] == 421


@pytest.mark.parametrize("host", ["127.0.0.1", "LOCALHOST:8080", "[::1]:1", "localhost"])
def test_the_local_names_are_accepted_by_default(api, host):
    assert api.call("GET", "/api/v1/things", host=host)[0] == 200


def test_allowed_hosts_names_the_station_and_star_must_be_explicit():
    with running_api(allowed_hosts=["board.station.lan", "kiosk:8443"]) as api:
        assert api.call("GET", "/healthz", host="board.station.lan:8080")[0] == 200
        assert api.call("GET", "/healthz", host="kiosk:8443")[0] == 200
        assert api.call("GET", "/healthz", host="kiosk:80")[0] == 421
        assert api.call("GET", "/healthz", host="127.0.0.1")[0] == 421
        assert api.server.counters().refused_host == 2
    with running_api(allowed_hosts=["*"]) as api:
        assert api.call("GET", "/healthz", host="anything.example")[0] == 200


def test_an_unsafe_request_from_another_origin_is_403(api):
    cookie, csrf = api.login()
    session = {"Cookie": cookie, "X-CSRF-Token": csrf}
    port = api.port
    for origin in ["http://evil.example", f"https://127.0.0.1:{port}", "null", "http://127.0.0.1"]:
        status, _, body = api.call(
            "POST", "/api/v1/things", {}, headers={**session, "Origin": origin}
        )
        assert status == 403, origin
        assert "is not this server" in body["error"]
    assert (
        api.call("POST", "/api/v1/session", {"user": USER, "password": PASSWORD},
                 headers={"Origin": "http://evil.example"})[0]
        == 403
    )  # fmt: skip
    good = {**session, "Origin": f"http://127.0.0.1:{port}"}
    assert api.call("POST", "/api/v1/things", {}, headers=good)[0] == 201
    # A read from another origin is fine: the browser keeps the answer from that page.
    assert api.call("GET", "/api/v1/things", headers={"Origin": "http://evil.example"})[0] == 200


def test_without_public_read_reading_needs_a_user_but_healthz_stays_open():
    with running_api(public_read=False) as api:
        status, _, body = api.call("GET", "/api/v1/things")
        assert status == 401
        assert "sign in to read" in body["error"]
        assert api.call("GET", "/healthz")[0] == 200
        assert api.call("GET", "/api/v1/session")[2]["public_read"] is False
        cookie, _ = api.login()
        assert api.call("GET", "/api/v1/things", headers={"Cookie": cookie})[2] == {"user": USER}
        assert api.call("GET", "/api/v1/things", basic=(USER, PASSWORD))[0] == 200


def test_every_answer_has_the_security_headers(api):
    answers = [
        api.call("GET", "/healthz"),
        api.call("GET", "/nowhere"),
        api.call("POST", "/api/v1/things", {}),
        api.call("GET", "/healthz", host="evil.example"),
        api.call("BREW", "/healthz"),  # the server's own refusal (501)
    ]
    for status, headers, _ in answers:
        assert headers["Content-Security-Policy"].startswith("default-src 'self'"), status
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Cache-Control"] == "no-store"
    assert [a[0] for a in answers] == [200, 404, 401, 421, 501]
