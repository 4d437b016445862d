"""Who may speak for a device: OwnTracks identities in the decoder, availability by registry."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fleet.daemon.wire import (
    Control,
    ControlRegistry,
    Decoder,
    DeviceRef,
    Reason,
    Rejected,
    agent_availability_topic,
    alert_ack_topic,
    availability_topic,
    parse_control,
)

NOW_S = 1795986000  # 2026-11-29T21:00:00Z
REGISTRY = {
    "sw-01": DeviceRef("allingtown", "segway"),
    "hh-02": DeviceRef("westhaven", "handheld"),
}


def make_decoder() -> Decoder:
    return Decoder(
        prefix="fleet",
        default_site="allingtown",
        kinds=["segway", "handheld"],
        registry=REGISTRY,
        owntracks_map={"reyes/hh-02": "hh-02"},
        max_payload_bytes=65536,
        max_future_s=300,
        max_age_s=None,
        now_ms=lambda: NOW_S * 1000,
    )


@pytest.fixture
def decoder() -> Decoder:
    return make_decoder()


def location(**changes: Any) -> bytes:
    return json.dumps({"_type": "location", "batt": 55, "lat": 41.27, "lon": -72.95,
                       "tst": NOW_S} | changes).encode()  # fmt: skip


def refusal(decoder: Decoder, topic: str, payload: bytes) -> tuple[Reason, str]:
    with pytest.raises(Rejected) as caught:
        decoder.decode(topic, payload)
    return caught.value.reason, caught.value.detail


# --- OwnTracks ----------------------------------------------------------------------------------


def test_the_registered_pair_is_its_device(decoder):
    reading = decoder.decode("owntracks/reyes/hh-02", location())
    assert reading is not None
    assert (reading.site, reading.kind, reading.device) == ("westhaven", "handheld", "hh-02")


@pytest.mark.parametrize(
    ("topic", "detail"),
    [
        pytest.param(
            "owntracks/mallory/sw-01",
            '"owntracks/mallory/sw-01" is not the registered OwnTracks identity of device '
            '"sw-01" (sw-01 has none); not stored as sw-01',
            id="registered-without-identity",
        ),
        pytest.param(
            "owntracks/mallory/hh-02",
            '"owntracks/mallory/hh-02" is not the registered OwnTracks identity of device '
            '"hh-02" (reyes/hh-02 is); not stored as hh-02',
            id="registered-with-another-identity",
        ),
        pytest.param(
            "owntracks/reyes/sw-01",  # a registered user, but not this pair
            '"owntracks/reyes/sw-01" is not the registered OwnTracks identity of device '
            '"sw-01" (sw-01 has none); not stored as sw-01',
            id="registered-user-other-device",
        ),
    ],
)
def test_an_unregistered_pair_naming_a_registered_device_is_refused(decoder, topic, detail):
    assert refusal(decoder, topic, location()) == (Reason.REGISTRY_MISMATCH, detail)


@pytest.mark.parametrize("payload", [b'{"_type": "lwt", "tst": 1}', b"not json at all"])
def test_the_identity_is_judged_before_the_payload(decoder, payload):
    """Whatever the message (not a reading, not even JSON), the topic already refuses it."""
    assert refusal(decoder, "owntracks/mallory/sw-01", payload)[0] is Reason.REGISTRY_MISMATCH


def test_an_unregistered_pair_of_an_unregistered_device_is_accepted_at_the_default_site(decoder):
    reading = decoder.decode("owntracks/eve/phone", location())
    assert reading is not None
    assert (reading.site, reading.kind, reading.device) == ("allingtown", "handheld", "phone")


def test_a_second_unregistered_user_cannot_report_as_the_first_ones_phone(decoder):
    assert decoder.decode("owntracks/eve/phone", location()) is not None
    reason, detail = refusal(decoder, "owntracks/bob/phone", location(tst=NOW_S + 1))
    assert (reason, detail) == (
        Reason.REGISTRY_MISMATCH,
        '"owntracks/bob/phone": unregistered device "phone" already reports as OwnTracks user '
        '"eve" (since the collector started); register each phone (owntracks = "user/device")',
    )
    # The first one goes on; bob's other phone, of another id, is his.
    assert decoder.decode("owntracks/eve/phone", location(tst=NOW_S + 2)) is not None
    assert decoder.decode("owntracks/bob/tablet", location()) is not None


def test_only_a_valid_reading_claims_an_unregistered_phone(decoder):
    """Garbage or a non-location message from one user does not lock the id against another."""
    with pytest.raises(Rejected):
        decoder.decode("owntracks/mallory/phone", b"{")
    assert decoder.decode("owntracks/mallory/phone", b'{"_type": "lwt", "tst": 1}') is None
    assert decoder.decode("owntracks/eve/phone", location()) is not None
    assert refusal(decoder, "owntracks/mallory/phone", location())[0] is Reason.REGISTRY_MISMATCH


def test_claims_are_bounded_oldest_first(decoder):
    """A publisher inventing ids cannot grow the decoder without bound: the oldest claim goes."""
    assert decoder.decode("owntracks/eve/phone", location()) is not None
    for n in range(4096):
        assert decoder.decode(f"owntracks/flood/ph-{n}", location()) is not None
    # eve's claim, the oldest, is gone (the refusal is the product's: claims are a safety net).
    assert decoder.decode("owntracks/bob/phone", location()) is not None
    assert refusal(decoder, "owntracks/bob/ph-4095", location())[0] is Reason.REGISTRY_MISMATCH


# --- availability -------------------------------------------------------------------------------

AGENTS = ControlRegistry(
    agents={"agent-1": "allingtown", "agent-w": "westhaven"},
    agent_devices={"sw-01": "agent-1"},
    devices=REGISTRY,
)
NO_AGENTS = ControlRegistry(devices=REGISTRY)


def control(topic: str) -> Control:
    parsed = parse_control("fleet", topic)
    assert parsed is not None, topic
    assert parsed.topic("fleet") == topic
    return parsed


@pytest.mark.parametrize(
    ("registry", "topic", "refusal"),
    [
        # Agents registered: only theirs, on their own site's topic.
        (AGENTS, agent_availability_topic("fleet", "allingtown", "agent-1"), None),
        (AGENTS, agent_availability_topic("fleet", "allingtown", "rogue"),
         'agent "rogue" is not registered in [[agents]]'),
        (AGENTS, agent_availability_topic("fleet", "allingtown", "agent-w"),
         'agent "agent-w" is registered for site "westhaven", not "allingtown"'),
        # None registered: every agent counts, as before [[agents]] existed.
        (NO_AGENTS, agent_availability_topic("fleet", "allingtown", "rogue"), None),
        # A device: only where its registry entry says; with agents, only one an agent reads.
        (AGENTS, availability_topic("fleet", "allingtown", "segway", "sw-01"), None),
        (AGENTS, availability_topic("fleet", "westhaven", "segway", "sw-01"),
         'device "sw-01" is registered as segway at site "allingtown", '
         'not segway at site "westhaven"'),
        (AGENTS, availability_topic("fleet", "allingtown", "handheld", "sw-01"),
         'device "sw-01" is registered as segway at site "allingtown", '
         'not handheld at site "allingtown"'),
        (AGENTS, availability_topic("fleet", "westhaven", "handheld", "hh-02"),
         'device "hh-02" is not read by any agent in [[agents]]'),
        (AGENTS, availability_topic("fleet", "allingtown", "segway", "sw-77"),
         'device "sw-77" is not read by any agent in [[agents]]'),
        (NO_AGENTS, availability_topic("fleet", "westhaven", "segway", "sw-01"),
         'device "sw-01" is registered as segway at site "allingtown", '
         'not segway at site "westhaven"'),
        (NO_AGENTS, availability_topic("fleet", "westhaven", "handheld", "hh-02"), None),
        (NO_AGENTS, availability_topic("fleet", "allingtown", "segway", "sw-77"), None),
        # Acknowledgements are judged against the alert, not here.
        (AGENTS, alert_ack_topic("fleet", "westhaven", "sw-01", "battery_low"), None),
    ],
)  # fmt: skip
def test_whose_availability_counts(registry, topic, refusal):
    assert registry.availability_refusal(control(topic)) == refusal


def test_the_reserved_kind_alerts_still_has_its_topic_told():
    """`alerts` cannot be built as a device kind, yet such a topic parses as availability."""
    parsed = control("fleet/v1/allingtown/alerts/sw-01/availability")
    assert (parsed.what, parsed.kind) == ("availability", "alerts")
    assert AGENTS.availability_refusal(parsed) == (
        'device "sw-01" is registered as segway at site "allingtown", '
        'not alerts at site "allingtown"'
    )
