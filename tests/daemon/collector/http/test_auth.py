"""Passwords, the verified-password cache, signed sessions, throttling and the key file."""

from __future__ import annotations

import stat
import time

import pytest

from fleet.daemon.collector.http import auth
from fleet.daemon.collector.http.auth import (
    Sessions,
    Throttle,
    Users,
    hash_password,
    load_or_create_key,
    verify_password,
)
from tests.daemon.collector.http.rig import FAST


def test_a_hash_verifies_its_password_only():
    stored = hash_password("correct horse battery", **FAST)
    scheme, n, r, p, _salt, _digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "1024", "8", "1")
    assert "correct" not in stored
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)
    assert not verify_password("", stored)
    # A fresh salt each time: two users with one password do not share a hash.
    assert hash_password("correct horse battery", **FAST) != stored


@pytest.mark.parametrize(
    "stored",
    ["", "scrypt$1$2", "bcrypt$1024$8$1$AA$AA", "scrypt$x$8$1$AA$AA", "scrypt$3$8$1$AA$AA",
     "scrypt$1024$8$1$!!$AA", "scrypt$1099511627776$8$1$AA$AA"],
)  # fmt: skip
def test_a_malformed_hash_is_no_match_not_a_crash(stored):
    assert verify_password("anything", stored) is False


def test_the_default_cost_is_the_documented_one():
    started = time.perf_counter()
    stored = hash_password("correct horse battery")
    spent = time.perf_counter() - started
    assert stored.startswith("scrypt$16384$8$1$")
    assert 0.01 < spent < 2.0  # ~80 ms on the reference machine; bounds that cannot flake


def test_a_verified_password_is_remembered_but_a_changed_hash_is_not():
    users = Users({"reyes": hash_password("first password", **FAST)})
    calls: list[str] = []
    real = auth.verify_password

    def counting(password: str, stored: str) -> bool:
        calls.append(stored)
        return real(password, stored)

    auth.verify_password = counting
    try:
        assert users.check("reyes", "first password")
        assert users.check("reyes", "first password")
        assert len(calls) == 1  # the second came from the cache
        assert not users.check("reyes", "wrong password")
        assert len(calls) == 2  # a wrong one always pays scrypt
        users.replace({"reyes": hash_password("second password", **FAST)})
        assert not users.check("reyes", "first password")
        assert users.check("reyes", "second password")
        assert not users.check("nobody", "first password")
    finally:
        auth.verify_password = real


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def make_sessions(clock: Clock, hours: float = 12) -> tuple[Users, Sessions]:
    users = Users({"reyes": hash_password("pw-reyes-123", **FAST), "ortiz": "scrypt$1$1$1$AA$AA"})
    return users, Sessions(b"s" * 32, users, hours=hours, clock=clock)


def test_a_session_cookie_round_trips_and_its_csrf_is_bound_to_it():
    clock = Clock()
    _, sessions = make_sessions(clock)
    cookie, session = sessions.issue("reyes")
    checked = sessions.check(cookie)
    assert checked == session
    assert checked is not None
    assert checked.user == "reyes"
    _other_cookie, other = sessions.issue("reyes")
    assert other.csrf != session.csrf
    assert sessions.csrf_ok(session, session.csrf)
    assert not sessions.csrf_ok(session, other.csrf)
    assert not sessions.csrf_ok(session, None)
    assert not sessions.csrf_ok(session, "")


def test_a_tampered_cookie_is_no_session():
    clock = Clock()
    _, sessions = make_sessions(clock)
    cookie, _ = sessions.issue("reyes")
    name, expires, nonce, sig = cookie.split(".")
    ortiz = auth._b64(b"ortiz")
    tampered = [
        f"{ortiz}.{expires}.{nonce}.{sig}",  # another user
        f"{name}.{int(expires) + 3600}.{nonce}.{sig}",  # longer life
        f"{name}.{expires}.{nonce}x.{sig}",
        f"{name}.{expires}.{nonce}.{sig[:-2]}AA",
        f"{name}.{expires}.{nonce}",
        f"{name}.1e9.{nonce}.{sig}",
        "",
        "....",
        "%%%.1.2.3",
    ]
    for value in tampered:
        assert sessions.check(value) is None, value
    # Signed with another key (another installation): refused too.
    foreign = Sessions(b"t" * 32, Users({}), hours=12, clock=clock)
    foreign_users = Users({"reyes": "x"})
    assert Sessions(b"t" * 32, foreign_users, hours=12, clock=clock).check(cookie) is None
    assert foreign.check(cookie) is None


def test_a_session_expires_unless_used_and_slides_when_used():
    clock = Clock()
    _, sessions = make_sessions(clock, hours=1)
    cookie, session = sessions.issue("reyes")
    clock.now += 30
    assert sessions.renewal(session) is None  # renewed at most once a minute
    clock.now += 3000  # 50 min 30 s in: still good, and renewed
    renewed = sessions.renewal(session)
    assert renewed is not None
    clock.now += 1200  # 70 min after the first cookie, 20 after the renewal
    assert sessions.check(cookie) is None
    again = sessions.check(renewed)
    assert again is not None
    assert again.csrf == session.csrf
    clock.now += 3600
    assert sessions.check(renewed) is None


def test_a_removed_user_or_a_new_password_ends_the_session_at_once():
    clock = Clock()
    users, sessions = make_sessions(clock)
    cookie, _ = sessions.issue("reyes")
    users.replace({"reyes": hash_password("a new password", **FAST)})
    assert sessions.check(cookie) is None
    cookie, _ = sessions.issue("reyes")
    assert sessions.check(cookie) is not None
    users.replace({"ortiz": "scrypt$1$1$1$AA$AA"})
    assert sessions.check(cookie) is None


def test_logout_revokes_the_session_and_its_renewals():
    clock = Clock()
    _, sessions = make_sessions(clock)
    cookie, session = sessions.issue("reyes")
    clock.now += 120
    renewed = sessions.renewal(session)
    assert renewed is not None
    sessions.revoke(session)
    assert sessions.check(cookie) is None
    assert sessions.check(renewed) is None
    assert sessions.check(sessions.issue("reyes")[0]) is not None


def test_the_cookie_header_is_httponly_strict_and_secure_over_tls():
    plain = auth.cookie_header("v", max_age=60, secure=False)
    assert plain == "fleet_session=v; Max-Age=60; Path=/; HttpOnly; SameSite=Strict"
    assert auth.cookie_header("v", max_age=60, secure=True).endswith("; Secure")


def test_throttle_counts_per_user_and_address_within_a_minute():
    now = [100.0]
    throttle = Throttle(3, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.wait_s("reyes", "10.0.0.5") == 0
        throttle.failed("reyes", "10.0.0.5")
    assert throttle.wait_s("reyes", "10.0.0.5") == pytest.approx(60)
    assert throttle.wait_s("reyes", "10.0.0.6") == 0  # another address
    assert throttle.wait_s("ortiz", "10.0.0.5") == 0  # another user
    now[0] += 60.5
    assert throttle.wait_s("reyes", "10.0.0.5") == 0
    throttle.failed("reyes", "10.0.0.5")
    throttle.succeeded("reyes", "10.0.0.5")
    assert throttle.wait_s("reyes", "10.0.0.5") == 0


def test_the_key_file_is_made_0600_once_and_kept(tmp_path):
    path = tmp_path / "state" / "spool.session-key"
    key = load_or_create_key(path)
    assert len(key) == auth.KEY_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key
    path.write_text("not hex\n")
    with pytest.raises(ValueError, match="does not hold a session key"):
        load_or_create_key(path)
