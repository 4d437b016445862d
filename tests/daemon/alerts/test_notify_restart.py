"""Pending notifications survive a restart; a full queue drops warnings before criticals.

Real receivers throughout: aiosmtpd (tests/harness/smtp.py) and a local HTTP server
(tests/harness/http_receiver.py); the pending deliveries live in the real alert state
file (daemon/alerts/store.py), as in the collector.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fleet.daemon.alerts.notify import Notifier, RetryPolicy
from fleet.daemon.alerts.store import AlertStore
from tests.daemon.alerts.test_notify import PASSWORD, mailto, webhook
from tests.harness.fleet import publisher, running_collector, settings_from, telemetry, write_config
from tests.harness.http_receiver import HttpReceiver, Reply
from tests.harness.servers import InfluxServer, MosquittoServer
from tests.harness.smtp import SmtpServer, free_port
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.integration  # a real SMTP server and HTTP receiver

PATIENT = RetryPolicy(attempts=40, initial_s=0.05, max_s=0.2, jitter=0.5)


def notifier(routes: dict[str, list[str]], store: AlertStore, **kwargs: object) -> Notifier:
    kwargs.setdefault("retry", PATIENT)
    return Notifier(
        routes,
        store=store,
        min_interval_s=0.0,
        rng=random.Random(3),
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_delivery_pending_across_a_restart_is_delivered_after_exactly_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="fleet.daemon.alerts.notify")
    port = free_port()  # the mail server is down until after the restart
    with HttpReceiver(Reply(503)) as hook:  # the webhook answers 503 until then
        routes = {"critical": [mailto(port), webhook(hook.port)]}
        store = AlertStore(tmp_path / "alerts.sqlite")
        first = notifier(routes, store)
        stop = first.start()
        first.submit("critical", "sw-03 critical", "battery 9 %", key="sw-03/battery_critical")
        wait_until(lambda: first.counters.snapshot()["critical"].retried >= 4)
        assert stop(10.0)
        assert first.counters.snapshot()["critical"].dropped == 0  # kept, not dropped
        kept = store.load_deliveries()
        assert sorted(d.tag for d in kept) == ["url0", "url1"]
        assert all(d.tries >= 1 for d in kept)
        on_disk = b"".join(f.read_bytes() for f in tmp_path.glob("alerts.sqlite*"))
        assert b"sw-03 critical" in on_disk  # the check below looks where the rows are...
        assert PASSWORD.encode() not in on_disk  # ...and the URLs' secrets are not there
        store.close()

        # The restarted process: same state file, receivers up again.
        hook.default = Reply(200)
        calls_before = len(hook.requests)
        store = AlertStore(tmp_path / "alerts.sqlite")
        with SmtpServer(port, user="station", password=PASSWORD) as smtp:
            second = notifier(routes, store)
            assert second.pending() == 2
            stop = second.start()
            try:
                wait_until(lambda: second.counters.snapshot()["critical"].delivered == 2)
                wait_until(second.idle)
            finally:
                assert stop(10.0)
            [mail] = smtp.received()
        ok = hook.requests[calls_before:]
        assert [json.loads(r.body)["title"] for r in ok] == ["sw-03 critical"]
    assert mail.subject == "sw-03 critical"
    assert store.load_deliveries() == []  # delivered ones leave the store
    # The count of tries carried over: the restarted notifier went on where the first stopped.
    tries = [
        int(m.group(1))
        for r in caplog.records
        if (m := re.search(r"delivered to .* \(try (\d+)\)", r.getMessage()))
    ]
    assert len(tries) == 2
    assert min(tries) > min(d.tries for d in kept)
    store.close()


def test_a_full_queue_drops_warnings_before_criticals(tmp_path: Path):
    store = AlertStore(tmp_path / "alerts.sqlite")
    with SmtpServer(user="station", password=PASSWORD) as smtp:
        n = notifier(
            {"warning": [mailto(smtp.port)], "critical": [mailto(smtp.port)]},
            store,
            max_pending=3,
        )
        for route, title in [
            ("warning", "W1"),
            ("critical", "C1"),
            ("warning", "W2"),
            ("critical", "C2"),  # full: W1 goes, though C1 is older
            ("critical", "C3"),  # W2 goes
            ("critical", "C4"),  # only criticals left: the oldest, C1, goes
        ]:
            n.submit(route, title, title, key=f"x/{title}")
        snap = n.counters.snapshot()
        assert (snap["warning"].dropped, snap["critical"].dropped) == (2, 1)
        assert sorted(d.title for d in store.load_deliveries()) == ["C2", "C3", "C4"]
        stop = n.start()
        try:
            wait_until(lambda: len(smtp.received()) == 3)
            wait_until(n.idle)
        finally:
            assert stop(10.0)
        assert sorted(m.subject for m in smtp.received()) == ["C2", "C3", "C4"]
    assert store.load_deliveries() == []
    store.close()


def test_a_pending_delivery_for_a_url_no_longer_configured_is_dropped_and_counted(
    tmp_path: Path,
):
    store = AlertStore(tmp_path / "alerts.sqlite")
    first = notifier({"warning": [webhook(free_port())]}, store)
    first.submit("warning", "t", "b", key="hh-1/offline")  # never started: stays pending
    assert len(store.load_deliveries()) == 1
    second = notifier({"warning": [webhook(free_port())]}, store)  # another URL now
    assert second.pending() == 0
    assert second.counters.snapshot()["warning"].dropped == 1
    assert store.load_deliveries() == []
    store.close()


def test_a_collector_restart_delivers_what_was_pending_once(
    tmp_path: Path,
    make_broker: Callable[..., MosquittoServer],
    influx: InfluxServer,
    tmp_db: str,
):
    broker = make_broker()  # own broker: no retained availability of other tests
    port = free_port()
    alerts = f"""
[alerts.kinds.segway]
disabled = ["offline", "battery_low"]
[alerts.notify]
critical = [{json.dumps(mailto(port))}]
delivery_backoff_initial_s = 0.05
delivery_backoff_max_s = 0.2
attempts = 50
min_interval_s = 0
"""
    settings = settings_from(
        write_config(tmp_path, broker=broker, influx=influx, database=tmp_db, alerts=alerts)
    )
    topic = "fleet/v1/allingtown/segway/sw-03/telemetry"
    with running_collector(settings, broker) as collector, publisher(settings) as pub:
        assert collector.alerts is not None
        n = collector.alerts.notifier
        pub.publish(topic, telemetry("sw-03", 1, _now_ms(), pct=7.0))
        wait_until(lambda: n.counters.snapshot()["critical"].retried >= 2, timeout=20)
    with SmtpServer(port, user="station", password=PASSWORD) as smtp:
        with running_collector(settings, broker) as collector:
            assert collector.alerts is not None
            n = collector.alerts.notifier
            [mail] = wait_until(smtp.received, timeout=20, message="the pending mail")
            wait_until(n.idle)
            assert n.counters.snapshot()["critical"].delivered == 1
        assert len(smtp.received()) == 1
    assert "battery 7 %" in mail.subject
    assert mail.subject.startswith("[critical]")
    store = AlertStore(settings.alerts.state_path)
    assert store.load_deliveries() == []
    store.close()


def _now_ms() -> int:
    return int(time.time() * 1000)
