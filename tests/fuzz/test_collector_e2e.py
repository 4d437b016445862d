"""A hostile mix at scale through the real broker and collector, then good sentinel readings.

Thousands of messages from the fuzz strategies (telemetry, OwnTracks, acknowledgements and
availability; nesting 3,000 deep, 2 MB acknowledgements, seq jumps to 2^62 ...) are
published to a real Mosquitto ahead of good readings. Then: every sentinel is in InfluxDB,
every hostile message the collector heard is counted (received = accepted + rejected +
ignored), and the ingest thread never restarted.
"""

from __future__ import annotations

import json
import logging
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.daemon import wire
from fleet.daemon.collector.app import Collector
from tests.fuzz.cases import FUZZ, tally
from tests.fuzz.hostile import (
    Message,
    owntracks_catalogue,
    owntracks_messages,
    telemetry_catalogue,
    telemetry_messages,
)
from tests.fuzz.test_control import control_case
from tests.harness.fleet import publisher, settings_from, telemetry, write_config
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.fuzz

HOSTILE = 3000
SENTINELS = 20
FILTERS = [
    "fleet/v1/+/+/+/telemetry",
    "owntracks/+/+",
    "fleet/v1/+/+/+/availability",
    "fleet/v1/+/alerts/+/+/ack",
]


def matches(topic_filter: str, topic: str) -> bool:
    levels, wanted = topic.split("/"), topic_filter.split("/")
    return len(levels) == len(wanted) and all(
        w in ("+", t) for w, t in zip(wanted, levels, strict=True)
    )


def publishable(topic: str) -> bool:
    """What a broker takes as a topic name: no wildcards, no NUL, no control characters."""
    return bool(topic) and not any(
        c in "+#" or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF
        for c in topic
    )


def fixed_mix(now_ms: int) -> list[Message]:
    """The burst of issue 8, always in the mix."""
    deep = b'{"by":' * 3000 + b'"x"' + b"}" * 3000
    return [
        Message("fleet/v1/allingtown/segway/sw-jump/telemetry", telemetry("sw-jump", 1, now_ms)),
        Message("fleet/v1/allingtown/segway/sw-jump/telemetry", telemetry("sw-jump", 2**62, now_ms)),
        Message("fleet/v1/allingtown/alerts/sw-jump/battery_low/ack", deep),
        Message("fleet/v1/allingtown/alerts/sw-jump/battery_low/ack", b"y" * (2 << 20)),
        Message("fleet/v1/allingtown/segway/sw-deep/telemetry", b"[" * 2000 + b"]" * 2000),
    ]  # fmt: skip


def test_hostile_mix_then_sentinels_on_the_real_servers(
    tmp_path, mqtt_broker, influx, tmp_db, caplog
):
    t = tally("collector end to end")
    caplog.set_level(logging.ERROR, logger="daemon")
    settings_ = settings_from(
        write_config(tmp_path, broker=mqtt_broker, influx=influx, database=tmp_db)
    )
    now_ms = int(time.time() * 1000)
    telemetry_docs, owntracks_docs = (
        telemetry_catalogue(256, now_ms),
        owntracks_catalogue(256, now_ms),
    )
    prefix = settings_.mqtt.topic_prefix

    collector = Collector(settings_)
    runs = 0
    run = collector.ingest.run

    def counted_run(stop):  # the supervisor calls this again on every restart
        nonlocal runs
        runs += 1
        run(stop)

    collector.ingest.run = counted_run  # type: ignore[method-assign]
    since = mqtt_broker.log_offset()
    undo = collector.start()
    try:
        mqtt_broker.wait_subscribed(settings_.mqtt.client_id, "owntracks/+/+", since=since)
        expected = 0  # messages the ingest thread hears (not the ones the alert service takes)
        with publisher(settings_) as pub:

            def send(topic: str, payload: bytes) -> None:
                nonlocal expected
                if not publishable(topic):
                    t.add("not publishable")
                    return
                pub.publish(topic, payload)
                if any(matches(f, topic) for f in FILTERS):
                    control = wire.parse_control(prefix, topic)
                    expected += control is None
                    t.add("data" if control is None else "control")
                else:
                    t.add("no subscriber")

            for m in fixed_mix(now_ms):
                send(m.topic, m.payload)

            @settings(FUZZ, max_examples=HOSTILE)
            @given(
                st.one_of(
                    telemetry_messages(telemetry_docs),
                    owntracks_messages(owntracks_docs),
                    st.binary(max_size=64).map(control_case).map(lambda c: Message(*c)),
                )
            )
            def one(m: Message) -> None:
                t.examples += 1
                topic = m.topic.replace("fleet/v1/hq/", "fleet/v1/allingtown/", 1)
                send(topic, m.payload)

            one()
            for n in range(1, SENTINELS + 1):
                device = f"sentinel-{n}"
                topic = f"fleet/v1/allingtown/segway/{device}/telemetry"
                pub.publish(topic, telemetry(device, n, int(time.time() * 1000), pct=42.5))
            expected += SENTINELS

        c = collector.ingest.counters

        def stored() -> int:
            rows = influx.rows(
                "SELECT count(pct) FROM battery WHERE device =~ /^sentinel-/ GROUP BY device",
                tmp_db,
            )
            return len(rows)

        wait_until(lambda: stored() == SENTINELS, timeout=60, message="every sentinel in InfluxDB")
        wait_until(lambda: c.received >= expected, timeout=30, message="every message counted")
        internal = c.rejected.get(wire.Reason.INTERNAL_ERROR, 0)
        assert internal == 0, f"{internal} message(s) failed inside the collector (internal_error)"
        assert c.received == expected
        assert c.received == c.accepted + c.ignored + sum(c.rejected.values()), json.dumps(
            {
                "received": c.received,
                "accepted": c.accepted,
                "ignored": c.ignored,
                "rejected": c.rejected,
            }
        )
        assert runs == 1, f"the ingest thread was restarted {runs - 1} time(s)"
        assert not [r for r in caplog.records if "crashed" in r.getMessage()]
        t.outcomes.update({"received": c.received, "accepted": c.accepted, "ignored": c.ignored,
                           "rejected": sum(c.rejected.values())})  # fmt: skip
    finally:
        undo()
