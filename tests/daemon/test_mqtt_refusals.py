"""The refusal record of the MQTT link, without a broker: which topic class, what is kept,
what is logged when (a clock the test moves), and that an acknowledgement replaces what
was kept for its message id."""

from __future__ import annotations

import logging

import pytest

from fleet.daemon.mqtt_refusals import PublishRefusals, topic_class

NOT_AUTHORIZED = 0x87


@pytest.mark.parametrize(
    ("topic", "kind"),
    [
        ("fleet/v1/allingtown/segway/sw-01/telemetry", "telemetry"),
        ("fleet/v1/allingtown/segway/sw-01/availability", "availability"),
        ("fleet/v1/allingtown/agent/dock-a/availability", "agent availability"),
        ("fleet/v1/allingtown/alerts/sw-01/battery_low", "alert"),
        ("fleet/v1/allingtown/alerts/sw-01/battery_low/ack", "acknowledgement"),
        ("fleet/v1/allingtown/deadletter", "dead letter"),
        ("owntracks/alice/phone", "owntracks"),
        ("fleet/v1/allingtown/bridge/x/link", "other"),
        ("fleet", "other"),
        ("", "other"),
    ],
)
def test_topic_classes(topic: str, kind: str) -> None:
    assert topic_class(topic) == kind


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [r.getMessage() for r in caplog.records]
    caplog.clear()
    return lines


def test_kept_per_message_id_until_taken(caplog: pytest.LogCaptureFixture) -> None:
    refusals = PublishRefusals()
    with caplog.at_level(logging.WARNING):
        refusals.acknowledged(1, "fleet/v1/a/segway/x/telemetry", NOT_AUTHORIZED, "Not authorized")
        refusals.acknowledged(2, "fleet/v1/a/segway/x/telemetry", 0x00, "Success")
        refusals.acknowledged(3, "fleet/v1/a/segway/x/telemetry", 0x10, "No matching subscribers")
        refusals.acknowledged(4, "fleet/v1/a/segway/x/telemetry", 0x97, "Quota exceeded")
    got = refusals.take([1, 2, 3, 4, 5])
    assert sorted(got) == [1, 4]
    assert got[1].describe() == "Not authorized (0x87)"
    assert got[4].describe() == "Quota exceeded (0x97)"
    assert refusals.take([1, 4]) == {}
    assert refusals.counts() == {"telemetry": 2}
    assert refusals.total == 2


def test_an_acknowledgement_replaces_a_refusal_left_for_its_message_id() -> None:
    """Message ids come round again: a refusal nobody took (an availability message) must
    not stand for the next message with that id, which the broker took."""
    refusals = PublishRefusals()
    refusals.acknowledged(7, "fleet/v1/a/segway/x/availability", NOT_AUTHORIZED, "Not authorized")
    refusals.acknowledged(7, "fleet/v1/a/segway/x/telemetry", 0x00, "Success")
    assert refusals.take([7]) == {}
    assert refusals.counts() == {"availability": 1}  # the refusal still counts


def test_logged_once_then_counted_per_interval_per_class(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    refusals = PublishRefusals(interval_s=60, clock=clock)
    telemetry = "fleet/v1/a/segway/x/telemetry"
    with caplog.at_level(logging.WARNING, logger="fleet.daemon.mqtt"):
        refusals.acknowledged(1, telemetry, NOT_AUTHORIZED, "Not authorized")
        first = messages(caplog)
        assert len(first) == 1
        assert "refused a telemetry publish to 'fleet/v1/a/segway/x/telemetry'" in first[0]
        assert "Not authorized (0x87)" in first[0]
        for mid in range(2, 12):  # ten more within the minute: counted, not logged
            clock.now += 1
            refusals.acknowledged(mid, telemetry, NOT_AUTHORIZED, "Not authorized")
        refusals.acknowledged(50, "owntracks/bob/phone", NOT_AUTHORIZED, "Not authorized")
        assert [m.split(" publish")[0] for m in messages(caplog)] == [
            "MQTT broker refused a owntracks"  # another class: its own first line
        ]
        clock.now += 60
        refusals.acknowledged(12, telemetry, NOT_AUTHORIZED, "Not authorized")
        later = messages(caplog)
        assert len(later) == 1
        assert "refused 10 more telemetry publish(es) in the last 60 s" in later[0]
        clock.now += 1
        refusals.acknowledged(13, telemetry, NOT_AUTHORIZED, "Not authorized")
        assert messages(caplog) == []
        refusals.log_unlogged()  # at a stop: what was not logged yet
        assert len(last := messages(caplog)) == 1
        assert "refused 1 more telemetry publish(es) not logged yet" in last[0]
        refusals.log_unlogged()
        assert messages(caplog) == []
    assert refusals.counts() == {"telemetry": 13, "owntracks": 1}


def test_a_topic_is_shown_escaped_and_clipped(caplog: pytest.LogCaptureFixture) -> None:
    refusals = PublishRefusals()
    hostile = "fleet/v1/a/\x1b[31m/" + "x" * 500
    with caplog.at_level(logging.WARNING):
        refusals.acknowledged(1, hostile, NOT_AUTHORIZED, "Not authorized")
    (line,) = messages(caplog)
    assert "\x1b" not in line
    assert "x" * 300 not in line
