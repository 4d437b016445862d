"""/metrics: the Prometheus text exposition, read back with prometheus_client's own parser;
and the numbers of a real collector on a real broker and InfluxDB."""

from __future__ import annotations

import math
import time
from email.message import Message

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleet.daemon.board.model import Readiness, Verdict
from fleet.daemon.collector.http.router import Request
from fleet.daemon.collector.metrics import (
    CONTENT_TYPE,
    Metric,
    board_metric,
    collector_metrics,
    gauge,
    metrics_route,
    render,
)
from tests.harness.fleet import publisher, running_collector, settings_from, telemetry, write_config
from tests.harness.waiting import wait_until


def parse(body: bytes) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """family name -> {sorted labels: value}, sample names kept (counters end in _total)."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def families(body: bytes) -> dict[str, tuple[str, str]]:
    """family name -> (type, help)"""
    return {
        f.name: (f.type, f.documentation)
        for f in text_string_to_metric_families(body.decode("utf-8"))
    }


def test_label_values_and_help_are_escaped():
    hostile = 'a "quoted" back\\slash and\nnewline, comma=} {x="y"}'
    body = render(
        [
            Metric(
                "fleet_things_total",
                "counter",
                "Help with a back\\slash\nand a newline.",
                [({"device": hostile, "site": "s1"}, 3)],
            )
        ]
    )
    parsed = parse(body)
    assert parsed["fleet_things_total"] == {(("device", hostile), ("site", "s1")): 3.0}
    kind, help_text = families(body)["fleet_things"]
    assert kind == "counter"
    assert help_text == "Help with a back\\slash\nand a newline."
    # One line per sample: the newline in the label value is escaped, not written.
    assert body.decode().count("\n") == 3


def test_numbers_integers_floats_and_special_values():
    body = render(
        [
            gauge("fleet_big", "A large integer.", 1_234_567_890),
            gauge("fleet_fraction", "A fraction.", 0.125),
            gauge("fleet_nan", "Not a number.", math.nan),
            gauge("fleet_inf", "Infinite.", math.inf),
            gauge("fleet_neg_inf", "Minus infinite.", -math.inf),
        ]
    )
    text = body.decode()
    assert "fleet_big 1234567890\n" in text  # not 1.23456789e+09
    parsed = parse(body)
    assert parsed["fleet_fraction"][()] == 0.125
    assert math.isnan(parsed["fleet_nan"][()])
    assert parsed["fleet_inf"][()] == math.inf
    assert parsed["fleet_neg_inf"][()] == -math.inf


def test_a_family_without_samples_is_still_valid():
    body = render([Metric("fleet_empty_total", "counter", "Nothing yet.", [])])
    assert families(body) == {"fleet_empty": ("counter", "Nothing yet.")}


@pytest.mark.parametrize(
    ("name", "kind", "labels", "why"),
    [
        ("fleet-bad", "gauge", {}, "metric name"),
        ("9fleet", "gauge", {}, "metric name"),
        ("fleet_count", "counter", {}, "must end in _total"),
        ("fleet_x", "gauge", {"bad-label": "v"}, "label name"),
        ("fleet_x", "gauge", {"__reserved": "v"}, "label name"),
    ],
)
def test_bad_names_are_refused_where_the_metric_is_defined(name, kind, labels, why):
    with pytest.raises(ValueError, match=why):
        Metric(name, kind, "help", [(labels, 1)])


def test_a_family_twice_is_refused():
    with pytest.raises(ValueError, match="twice"):
        render([gauge("fleet_x", "one", 1), gauge("fleet_x", "two", 2)])


def verdict(device: str, site: str, state: Readiness) -> Verdict:
    return Verdict(device, site, "segway", None, state, "because")


def test_board_counts_every_state_of_every_site():
    metric = board_metric(
        [
            verdict("a", "north", Readiness.READY),
            verdict("b", "north", Readiness.READY),
            verdict("c", "north", Readiness.LOW),
            verdict("d", "south", Readiness.OFFLINE),
        ]
    )
    parsed = parse(render([metric]))["fleet_devices"]
    assert len(parsed) == 2 * len(Readiness)  # zeros included: no missing series
    assert parsed[(("site", "north"), ("state", "ready"))] == 2
    assert parsed[(("site", "north"), ("state", "low"))] == 1
    assert parsed[(("site", "north"), ("state", "offline"))] == 0
    assert parsed[(("site", "south"), ("state", "offline"))] == 1
    assert sum(parsed.values()) == 4


def test_no_devices_no_samples():
    assert parse(render([board_metric([])])) == {}


# --- a real collector -------------------------------------------------------------------------


@pytest.fixture
def mqtt_broker(make_broker):
    """Its own broker: no retained messages of other tests."""
    return make_broker()


@pytest.fixture
def settings(tmp_path, mqtt_broker, influx, tmp_db):
    return settings_from(write_config(tmp_path, broker=mqtt_broker, influx=influx, database=tmp_db))


def scrape(collector, **parts) -> tuple[int, str, bytes]:
    request = Request("GET", "/metrics", "", {}, Message(), lambda: b"")
    response = metrics_route(collector, **parts)(request)
    return response.status, response.content_type, response.body


def test_a_real_collector_counts_what_it_received(settings, mqtt_broker):
    topic = "fleet/v1/allingtown/segway/sw-07/telemetry"
    now_ms = int(time.time() * 1000)
    with running_collector(settings, mqtt_broker) as collector, publisher(settings) as pub:
        status, content_type, body = scrape(collector)
        assert status == 200
        assert content_type == CONTENT_TYPE
        before = parse(body)
        assert before["fleet_mqtt_connected"][()] == 1
        assert before["fleet_messages_received_total"][()] == 0

        for seq in range(3):
            pub.publish(topic, telemetry("sw-07", seq, now_ms + seq * 1000, pct=8.0))
        pub.publish(topic, telemetry("sw-07", 3, now_ms + 3000, pct=130.0))
        pub.publish(topic, b"not json at all")

        def written() -> dict[str, dict[tuple[tuple[str, str], ...], float]] | None:
            now = parse(scrape(collector)[2])
            done = now["fleet_points_written_total"][()] >= 3
            return now if done and now["fleet_messages_received_total"][()] == 5 else None

        after = wait_until(written, timeout=20, message="readings written and counted")
        assert after is not None
        assert after["fleet_messages_accepted_total"][()] == 3
        rejected = after["fleet_messages_rejected_total"]
        assert rejected[(("reason", "range"),)] == 1
        assert rejected[(("reason", "bad_json"),)] == 1
        assert sum(rejected.values()) == 2
        assert after["fleet_dead_lettered_total"][()] == 2
        # Every reason is a series, zero or not.
        assert (("reason", "too_large"),) in rejected
        assert after["fleet_spool_points"][()] >= 0

        # 8 % is below battery_critical's 10 %: the engine fires at once.
        def firing() -> float:
            alerts = parse(scrape(collector)[2])["fleet_alerts_firing"]
            return alerts[(("severity", "critical"),)]

        assert wait_until(firing, timeout=20, message="battery_critical firing") >= 1

        # The board and HTTP parts, when the caller passes them.
        board = [verdict("sw-07", "allingtown", Readiness.LOW)]
        parts = parse(
            scrape(collector, verdicts=lambda: board, http_counts=lambda: {"requests_2xx": 4})[2]
        )
        assert parts["fleet_devices"][(("site", "allingtown"), ("state", "low"))] == 1
        assert parts["fleet_http_events_total"][(("event", "requests_2xx"),)] == 4


def test_every_counter_is_named_total_and_every_family_has_help(settings, mqtt_broker):
    with running_collector(settings, mqtt_broker) as collector:
        metrics = collector_metrics(collector)
    names = [m.name for m in metrics]
    assert len(names) == len(set(names))
    for m in metrics:
        assert m.name.startswith("fleet_")
        assert m.help.endswith(".")
        assert (m.kind == "counter") == m.name.endswith("_total")
    # It parses as a whole.
    assert families(render(metrics))
