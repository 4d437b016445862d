"""The agent's encoder: a driver's `Reading` goes out as v1 telemetry the collector takes back
unchanged, empty groups are left out, and a reading outside the contract never leaves."""

from __future__ import annotations

import json
import math

import pytest

from fleet.daemon import wire
from fleet.daemon.agent.telemetry import encode
from fleet.drivers.readings import Battery, Location, Reading, State, Status

TS_MS = 1795986000123  # 2026-11-29T21:00:00.123Z
FULL = Reading(
    "sw-03",
    TS_MS,
    battery=Battery(pct=87.5, voltage_v=72.1, current_a=-3.2, temp_c=24.5, charging=False),
    location=Location(lat=41.2705, lon=-72.947, accuracy_m=5.0, speed_kmh=-1.5),
    status=Status(state=State.RIDING, odometer_km=1234.5, error_code=0, rssi_dbm=-61, firmware="1.3.9"),
)  # fmt: skip


def decoder() -> wire.Decoder:
    return wire.Decoder(
        prefix="fleet",
        default_site="hq",
        kinds=["segway"],
        registry={},
        owntracks_map={},
        max_payload_bytes=65536,
        max_future_s=300,
        max_age_s=None,
        now_ms=lambda: TS_MS,
    )


def test_a_full_reading_comes_back_from_the_collector_as_it_was_sent():
    body = encode(FULL, 42)
    doc = json.loads(body)
    assert (doc["seq"], doc["ts"], doc["status"]["state"]) == (
        42,
        "2026-11-29T21:00:00.123Z",
        "riding",
    )
    assert "health_pct" not in doc["battery"]  # None is left out, not sent as null
    got = decoder().decode("fleet/v1/hq/segway/sw-03/telemetry", body)
    assert got is not None
    assert (got.device, got.seq, got.ts_ms) == ("sw-03", 42, TS_MS)
    assert (got.battery, got.location, got.status) == (FULL.battery, FULL.location, FULL.status)


def test_empty_groups_are_left_out():
    doc = json.loads(
        encode(Reading("sw-03", TS_MS, battery=Battery(), status=Status(locked=True)), 1)
    )
    assert "battery" not in doc
    assert doc["status"] == {"locked": True}


def test_a_reading_with_nothing_in_it_is_refused():
    with pytest.raises(ValueError, match="no battery, location or status group"):
        encode(Reading("sw-03", TS_MS, battery=Battery(), status=Status()), 1)


@pytest.mark.parametrize(
    ("reading", "field"),
    [
        (Reading("sw-03", TS_MS, battery=Battery(pct=120.0)), "battery.pct"),
        (Reading("sw-03", TS_MS, battery=Battery(temp_c=math.nan)), "battery.temp_c"),
        (Reading("sw-03", TS_MS, location=Location(lat=91.0, lon=0.0)), "location.lat"),
        (Reading("sw-03", TS_MS, status=Status(firmware='1"2')), "status.firmware"),
        (Reading("sw-03", TS_MS, status=Status(error_code=True)), "status.error_code"),
        (Reading("sw 03", TS_MS, battery=Battery(pct=5.0)), "device"),
    ],
)
def test_a_reading_outside_the_contract_never_leaves(reading, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        encode(reading, 1)
