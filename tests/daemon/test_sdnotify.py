"""The notify protocol against a real AF_UNIX datagram socket posing as $NOTIFY_SOCKET."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import pytest

from fleet.daemon.sdnotify import SdNotify
from tests.harness.sdnotify import NotifySocket


@pytest.fixture
def sock(tmp_path: Path):
    s = NotifySocket(tmp_path)
    yield s
    s.close()


def test_without_notify_socket_every_call_is_a_no_op():
    sd = SdNotify(environ={})
    assert not sd.enabled
    assert sd.ping_every_s is None
    assert (sd.ready("x"), sd.status("x"), sd.watchdog(), sd.stopping()) == (False,) * 4
    assert (sd.sent, sd.failures) == (0, 0)


def test_ready_status_watchdog_and_stopping_arrive_as_datagrams(sock):
    sd = SdNotify(environ=sock.env())
    assert sd.ready("serving")
    assert sd.status("412 msg/s")
    assert sd.watchdog()
    assert sd.stopping("stopping")
    sd.close()
    sock.drain()
    assert sock.raw == [
        b"READY=1\nSTATUS=serving",
        b"STATUS=412 msg/s",
        b"WATCHDOG=1",
        b"STOPPING=1\nSTATUS=stopping",
    ]
    assert sd.sent == 4


def test_a_leading_at_sign_is_the_abstract_namespace():
    name = f"@fleet-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    sock = NotifySocket(name)
    try:
        sd = SdNotify(environ={"NOTIFY_SOCKET": name})
        assert sd.send("READY=1")
        sd.close()
        assert sock.drain() == [{"READY": "1"}]
    finally:
        sock.close()


def test_a_status_stays_one_bounded_line(sock):
    sd = SdNotify(environ=sock.env())
    sd.status("line one\nWATCHDOG=1\r\n  and more " + "x" * 1000)
    sd.close()
    (datagram,) = sock.drain()
    assert list(datagram) == ["STATUS"]  # the newline smuggled no second assignment in
    assert datagram["STATUS"].startswith("line one WATCHDOG=1 and more xxx")
    assert len(datagram["STATUS"]) <= 400


def test_a_failed_send_never_raises_is_counted_and_logged_once(tmp_path, caplog):
    path = tmp_path / "notify"  # nobody listens there yet
    sd = SdNotify(environ={"NOTIFY_SOCKET": str(path)})
    with caplog.at_level(logging.INFO, logger="fleet.daemon.sdnotify"):
        assert not sd.watchdog()
        assert not sd.status("x")
        assert not sd.watchdog()
        assert sd.failures == 3
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert "could not notify systemd" in warnings[0].getMessage()
        sock = NotifySocket(tmp_path)  # systemd is back (same path)
        try:
            assert sd.watchdog()
            assert sock.drain() == [{"WATCHDOG": "1"}]
        finally:
            sd.close()
            sock.close()
    assert "works again (3 messages failed)" in caplog.text


def test_a_notify_socket_that_is_no_address_is_refused_with_a_reason(caplog):
    sd = SdNotify(environ={"NOTIFY_SOCKET": "relative/notify"})
    assert not sd.enabled
    assert not sd.send("READY=1")
    assert "neither a path nor an abstract name" in caplog.text


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "60000000"}, 30.0),  # WatchdogSec=60s: ping every 30 s
        ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "4242"}, 0.2),  # that pid is ours
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),  # someone else's
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "me"}, None),
    ],
)
def test_the_ping_interval_is_half_of_watchdog_usec_for_the_named_pid(env, expected):
    sd = SdNotify(environ={"NOTIFY_SOCKET": "/run/systemd/notify", **env}, pid=4242)
    assert sd.ping_every_s == expected


def test_the_real_environment_is_read_by_default(sock, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", sock.env_value)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    sd = SdNotify()
    assert sd.ping_every_s == 1.0
    assert sd.watchdog()
    sd.close()
    assert sock.drain() == [{"WATCHDOG": "1"}]
