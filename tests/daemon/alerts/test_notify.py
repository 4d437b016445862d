"""Notification delivery through apprise to a real SMTP server and a real HTTP receiver.

Every test sends over real sockets: aiosmtpd receives the mail, HttpReceiver
the JSON webhook. Retries use a policy of tens of milliseconds so the tests
stay quick; the production policy is checked on its own.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator

import pytest

from fleet.daemon.alerts.notify import Notifier, RetryPolicy
from fleet.daemon.alerts.redact import redact
from tests.harness.http_receiver import HttpReceiver, Reply
from tests.harness.smtp import SmtpServer, free_port
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.integration  # a real SMTP server and HTTP receiver

PASSWORD = "Pw-7zq!Kx3"  # distinctive, so a leak cannot hide in ordinary text
TOKEN = "tok9f8e7d6c5b4a"
TITLE = "Segway sw-03 (Allingtown): battery 9 % - critical"
BODY = "Segway sw-03 (Allingtown): battery 9 % - critical, not charging, last seen 21:04"
FAST = RetryPolicy(attempts=6, initial_s=0.05, max_s=0.2, jitter=0.5)


def mailto(port: int, password: str = PASSWORD) -> str:
    return (
        f"mailto://station:{password}@127.0.0.1:{port}"
        "?from=alerts@fleet.example&to=maint@fleet.example&cto=2"
    )


def webhook(port: int) -> str:
    return f"json://127.0.0.1:{port}/hook?-token={TOKEN}&rto=2&cto=2"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer(user="station", password=PASSWORD) as server:
        yield server


@pytest.fixture
def make_notifier() -> Iterator[Callable[..., Notifier]]:
    """Notifiers with quick retries and no apprise throttle, started unless asked
    not to, stopped (and checked joined) at the end of the test."""
    undos: list[Callable[[float], bool]] = []

    def make(routes: dict[str, list[str]], *, start: bool = True, **kwargs: object) -> Notifier:
        kwargs.setdefault("retry", FAST)
        kwargs.setdefault("min_interval_s", 0.0)
        kwargs.setdefault("rng", random.Random(7))
        notifier = Notifier(routes, **kwargs)  # type: ignore[arg-type]
        if start:
            undos.append(notifier.start())
        return notifier

    yield make
    for undo in undos:
        assert undo(10.0), "notifier worker did not stop"


def test_mail_carries_the_alert_text(smtp: SmtpServer, make_notifier) -> None:
    notifier = make_notifier({"critical": [mailto(smtp.port)]})
    notifier.submit("critical", TITLE, BODY, key="sw-03/battery_critical", notify_type="failure")
    [mail] = wait_until(smtp.received, message="mail received")
    assert mail.subject == TITLE
    assert mail.text.strip() == BODY
    assert mail.rcpt_tos == ("maint@fleet.example",)
    assert mail.mail_from == "alerts@fleet.example"
    assert mail.login == "station"  # authenticated with the configured password
    wait_until(notifier.idle)
    c = notifier.counters.snapshot()["critical"]
    assert (c.submitted, c.delivered, c.retried, c.failed, c.dropped) == (1, 1, 0, 0, 0)


def test_json_webhook_gets_title_message_and_type(make_notifier) -> None:
    with HttpReceiver(Reply(200)) as receiver:
        notifier = make_notifier({"warning": [webhook(receiver.port)]})
        notifier.submit("warning", TITLE, BODY, key="sw-03/battery_low", notify_type="warning")
        [request] = wait_until(lambda: list(receiver.requests), message="webhook called")
    assert request.method == "POST"
    assert request.path == "/hook"
    assert request.query == {"token": [TOKEN]}
    assert request.headers["content-type"] == "application/json"
    payload = json.loads(request.body)
    assert payload["title"] == TITLE
    assert payload["message"] == BODY
    assert payload["type"] == "warning"
    wait_until(lambda: notifier.counters.snapshot()["warning"].delivered == 1)


def test_a_failing_url_is_retried_alone(smtp: SmtpServer, make_notifier) -> None:
    with HttpReceiver(Reply(200)) as receiver:
        receiver.script.extend([Reply(500), Reply(500)])
        notifier = make_notifier({"critical": [mailto(smtp.port), webhook(receiver.port)]})
        notifier.submit("critical", TITLE, BODY, key="sw-03/battery_critical")
        wait_until(lambda: notifier.counters.snapshot()["critical"].delivered == 2)
        wait_until(notifier.idle)
        # Idle: nothing pending or in flight, so these counts are final.
        assert len(receiver.requests) == 3
        accepted = [r for r in receiver.requests[2:] if json.loads(r.body)["message"] == BODY]
        assert len(accepted) == 1
    assert len(smtp.received()) == 1  # the mail went once, not once per webhook try
    c = notifier.counters.snapshot()["critical"]
    assert (c.delivered, c.retried, c.failed, c.dropped) == (2, 2, 0, 0)


def test_retries_are_bounded(smtp: SmtpServer, make_notifier) -> None:
    dead = free_port()
    notifier = make_notifier(
        {"critical": [mailto(smtp.port), webhook(dead)]},
        retry=RetryPolicy(attempts=3, initial_s=0.02, max_s=0.05),
    )
    notifier.submit("critical", TITLE, BODY, key="sw-03/battery_critical")
    wait_until(lambda: notifier.counters.snapshot()["critical"].failed == 1)
    wait_until(notifier.idle)
    c = notifier.counters.snapshot()["critical"]
    assert (c.delivered, c.retried, c.failed) == (1, 2, 1)
    assert len(smtp.received()) == 1


def test_submit_does_not_wait_for_a_server_that_is_down(make_notifier) -> None:
    port = free_port()
    notifier = make_notifier(
        {"critical": [mailto(port)]}, retry=RetryPolicy(attempts=200, initial_s=0.05, max_s=0.2)
    )
    started = time.perf_counter()
    notifier.submit("critical", TITLE, BODY, key="sw-03/battery_critical")
    elapsed = time.perf_counter() - started
    # The server does not exist yet: submit cannot have waited for it.
    assert elapsed < 0.05, f"submit took {elapsed * 1000:.1f} ms"
    wait_until(lambda: notifier.counters.snapshot()["critical"].retried >= 1)
    with SmtpServer(port, user="station", password=PASSWORD) as server:
        [mail] = wait_until(server.received, message="mail once the server is up")
        wait_until(notifier.idle)
        assert len(server.received()) == 1
    assert mail.subject == TITLE
    assert notifier.counters.snapshot()["critical"].delivered == 1


def test_full_queue_drops_the_oldest(
    smtp: SmtpServer, make_notifier, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fleet.daemon.alerts.notify")
    notifier = make_notifier({"warning": [mailto(smtp.port)]}, start=False, max_pending=3)
    for n in range(5):
        notifier.submit("warning", f"alert {n}", BODY, key=f"hh-{n}/offline")
    assert notifier.pending() == 3
    assert notifier.counters.snapshot()["warning"].dropped == 2
    drops = [r for r in caplog.records if "queue full" in r.getMessage()]
    assert [r.levelno for r in drops] == [logging.WARNING] * 2
    assert "hh-0/offline" in drops[0].getMessage()
    undo = notifier.start()
    try:
        wait_until(lambda: len(smtp.received()) == 3)
        wait_until(notifier.idle)
    finally:
        assert undo(10.0)
    assert [m.subject for m in smtp.received()] == ["alert 2", "alert 3", "alert 4"]


def test_empty_and_unknown_routes_send_nothing(make_notifier) -> None:
    notifier = make_notifier({"warning": []})
    notifier.submit("warning", TITLE, BODY, key="sw-03/battery_low")
    notifier.submit("nosuch", TITLE, BODY, key="sw-03/battery_low")
    snap = notifier.counters.snapshot()
    assert (snap["warning"].submitted, snap["warning"].skipped) == (1, 1)
    assert snap["nosuch"].skipped == 1
    assert notifier.pending() == 0
    fields = notifier.counters.fields()
    assert fields["notify_skipped"] == 2
    assert fields["notify_warning_skipped"] == 1


def test_secrets_never_reach_the_logs(
    smtp: SmtpServer, make_notifier, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("", "apprise", "urllib3", "fleet.daemon.alerts.notify"):
        caplog.set_level(logging.DEBUG, logger=name or None)
    dead = free_port()
    with HttpReceiver(Reply(200)) as receiver:
        receiver.script.append(Reply(500))
        notifier = make_notifier(
            {"critical": [mailto(smtp.port), mailto(dead), webhook(receiver.port)]},
            retry=RetryPolicy(attempts=2, initial_s=0.02, max_s=0.05),
        )
        notifier.submit("critical", TITLE, BODY, key="sw-03/battery_critical")
        wait_until(lambda: notifier.counters.snapshot()["critical"].failed == 1)
        wait_until(notifier.idle)
    assert len(smtp.received()) == 1  # the password did its job with the server...
    text = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert PASSWORD not in text  # ...and appears nowhere in the logs
    assert TOKEN not in text
    # The capture did see apprise's own debug lines and our failure reports.
    assert any(r.name == "apprise" and r.levelno == logging.DEBUG for r in caplog.records)
    assert "mailto://station:****@127.0.0.1" in text
    assert PASSWORD not in repr(notifier.routes())
    assert redact(f"x {PASSWORD} y") == "x **** y"


def test_invalid_url_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError, match=r"route 'critical': URL #2") as raised:
        Notifier({"critical": [mailto(25), f"nosuchscheme://station:{PASSWORD}@x"]})
    assert PASSWORD not in str(raised.value)


def test_stop_drops_what_is_still_pending(make_notifier) -> None:
    notifier = make_notifier(
        {"critical": [webhook(free_port())]},
        start=False,
        retry=RetryPolicy(attempts=8, initial_s=60, max_s=60),
    )
    undo = notifier.start()
    notifier.submit("critical", TITLE, BODY, key="sw-03/battery_critical")
    wait_until(lambda: notifier.counters.snapshot()["critical"].retried == 1)
    started = time.perf_counter()
    assert undo(5.0)
    assert time.perf_counter() - started < 1.0  # does not sit out the 60 s backoff
    assert notifier.counters.snapshot()["critical"].dropped == 1
    assert notifier.pending() == 0


@pytest.mark.parametrize("retry", [1, 2, 3, 5, 7, 12])
def test_backoff_grows_with_jitter_inside_its_bounds(retry: int) -> None:
    policy = RetryPolicy()
    nominal = min(policy.max_s, policy.initial_s * policy.factor ** (retry - 1))
    rng = random.Random(retry)
    delays = [policy.delay_s(retry, rng) for _ in range(200)]
    assert all(nominal * (1 - policy.jitter) <= d <= nominal for d in delays)
    assert len({round(d, 6) for d in delays}) > 100  # jittered, not one value


def test_default_policy_spans_about_half_an_hour() -> None:
    policy = RetryPolicy()
    rng = random.Random(1)
    low = sum(policy.delay_s(n, rng) for n in range(1, policy.attempts)) / 60
    nominal = sum(
        min(policy.max_s, policy.initial_s * policy.factor ** (n - 1))
        for n in range(1, policy.attempts)
    )
    assert policy.attempts == 8
    assert 15 <= low <= 40
    assert 25 * 60 <= nominal <= 40 * 60
