"""The v1 wire contract: topics, telemetry validation with its reasons, OwnTracks, InfluxDB lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from fleet.daemon.collector.schema import reading_lines
from fleet.daemon.wire import (
    Battery,
    Decoder,
    DeviceRef,
    Location,
    Reason,
    Rejected,
    State,
    Status,
    Telemetry,
    agent_availability_topic,
    alert_topic,
    availability_topic,
    deadletter_payload,
    deadletter_topic,
    encode_telemetry,
    subscriptions,
    telemetry_topic,
)
from tests.harness.samples import DESIGN_EXAMPLE

NOW_MS = 1795986000000  # 2026-11-29T21:00:00Z
DAY_S = 86400
TOPIC = "fleet/v1/hq/segway/sw-03/telemetry"
FULL = DESIGN_EXAMPLE


def make_decoder(**overrides: Any) -> Decoder:
    config: dict[str, Any] = {
        "prefix": "fleet",
        "default_site": "hq",
        "kinds": ["segway", "handheld"],
        "registry": {"sw-03": DeviceRef("hq", "segway"), "hh-07": DeviceRef("north", "handheld")},
        "owntracks_map": {"alice/phone": "hh-07"},
        "max_payload_bytes": 65536,
        "max_future_s": 300,
        "max_age_s": 30 * DAY_S,
        "now_ms": lambda: NOW_MS,
    }
    return Decoder(**(config | overrides))


@pytest.fixture
def decoder() -> Decoder:
    return make_decoder()


def payload(**changes) -> bytes:
    """A minimal valid message for sw-03 with `changes` applied (None deletes a key)."""
    doc = {"schema": 1, "device": "sw-03", "ts": "2026-11-29T21:00:00Z", "battery": {"pct": 50}}
    doc |= changes
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


def rejection(decoder: Decoder, topic: str, body: bytes) -> tuple[Reason, str]:
    with pytest.raises(Rejected) as caught:
        decoder.decode(topic, body)
    return caught.value.reason, caught.value.detail


# --- every reason with its sentence -------------------------------------------------------------

REJECTIONS = [
    pytest.param(TOPIC, b"x" * 65537, Reason.TOO_LARGE, "payload is 65537 bytes; the limit is 65536 bytes", id="too_large"),
    pytest.param("fleet/v1/hq/segway/sw-03/status", payload(), Reason.BAD_TOPIC, 'topic "fleet/v1/hq/segway/sw-03/status" is not fleet/v1/{site}/{kind}/{device}/telemetry', id="bad_topic-shape"),
    pytest.param("fleet/v1/hq/segway/telemetry", payload(), Reason.BAD_TOPIC, 'topic "fleet/v1/hq/segway/telemetry" is not fleet/v1/{site}/{kind}/{device}/telemetry', id="bad_topic-short"),
    pytest.param("elsewhere/x", payload(), Reason.BAD_TOPIC, 'topic "elsewhere/x" is neither fleet/v1/{site}/{kind}/{device}/telemetry nor owntracks/{user}/{device}', id="bad_topic-foreign"),
    pytest.param(TOPIC, b'{"schema": 1,', Reason.BAD_JSON, "payload is not valid JSON: EOF while parsing a value at line 1 column 13", id="bad_json"),
    pytest.param(TOPIC, b"\xff\xfe", Reason.BAD_JSON, "payload is not valid JSON: expected value at line 1 column 1", id="bad_json-bytes"),
    pytest.param(TOPIC, b"[1, 2]", Reason.SCHEMA, "payload: expected an object, got array [1, 2]", id="schema-array"),
    pytest.param(TOPIC, payload(batery={"pct": 5}), Reason.SCHEMA, 'unknown field "batery"', id="schema-unknown-field"),
    pytest.param(TOPIC, payload(battery={"pct": 5, "volts": 3}), Reason.SCHEMA, 'unknown field "battery.volts"', id="schema-unknown-nested"),
    pytest.param(TOPIC, payload(battery={"pct": "87"}), Reason.SCHEMA, 'battery.pct: expected a number, got string "87"', id="schema-string-number"),
    pytest.param(TOPIC, payload(battery={"charging": 1}), Reason.SCHEMA, "battery.charging: expected true or false, got number 1", id="schema-int-bool"),
    pytest.param(TOPIC, payload(status={"error_code": 1.5}), Reason.SCHEMA, "status.error_code: expected an integer, got number 1.5", id="schema-float-int"),
    pytest.param(TOPIC, payload(schema=2), Reason.SCHEMA, "schema: 2 is not supported (this reads schema 1)", id="schema-version"),
    pytest.param(TOPIC, payload(schema=True), Reason.SCHEMA, "schema: expected an integer, got boolean true", id="schema-version-bool"),
    pytest.param(TOPIC, payload(schema=None), Reason.SCHEMA, "schema: required field is missing", id="schema-missing"),
    pytest.param(TOPIC, payload(ts=None), Reason.SCHEMA, "ts: required field is missing", id="ts-missing"),
    pytest.param(TOPIC, payload(ts="2026-11-29T21:00:00"), Reason.SCHEMA, 'ts: "2026-11-29T21:00:00" has no time zone; add Z or an offset like +01:00', id="ts-naive"),
    pytest.param(TOPIC, payload(ts="yesterday"), Reason.SCHEMA, 'ts: "yesterday" is not an ISO-8601 date-time', id="ts-format"),
    pytest.param(TOPIC, payload(ts=True), Reason.SCHEMA, "ts: true must be an ISO-8601 string or epoch seconds", id="ts-bool"),
    pytest.param(TOPIC, payload(ts=NOW_MS), Reason.RANGE, "ts: 1795986000000 is outside 0..1e10 epoch seconds", id="ts-milliseconds"),
    pytest.param(TOPIC, payload(battery=None), Reason.SCHEMA, "no battery, location or status group; at least one is required", id="schema-no-group"),
    pytest.param(TOPIC, payload(battery={}), Reason.SCHEMA, "battery: group is empty; send at least one of its fields or leave it out", id="schema-empty-group"),
    pytest.param(TOPIC, payload(location={"lat": 1}), Reason.SCHEMA, "location.lon: required field is missing", id="schema-lat-without-lon"),
    pytest.param(TOPIC, payload(battery=5), Reason.SCHEMA, "battery: expected an object, got number 5", id="schema-group-not-object"),
    pytest.param(TOPIC, payload(status=["idle"]), Reason.SCHEMA, 'status: expected an object, got array ["idle"]', id="schema-group-array"),
    pytest.param(TOPIC, payload(status={"state": None}), Reason.SCHEMA, "status: group is empty; send at least one of its fields or leave it out", id="schema-empty-nulls"),
    pytest.param(TOPIC, payload(battery={"charging": 1}), Reason.SCHEMA, "battery.charging: expected true or false, got number 1", id="schema-bool-as-int"),
    pytest.param(TOPIC, payload(status={"state": 1}), Reason.RANGE, "status.state: 1 is not one of 'idle', 'riding', 'charging', 'docked', 'fault' or 'off'", id="range-state-number"),
    pytest.param(TOPIC, payload(battery={"pct": 130}), Reason.RANGE, "battery.pct: 130 is outside 0..100", id="range-pct"),
    pytest.param(TOPIC, payload(location={"lat": 91, "lon": 0}), Reason.RANGE, "location.lat: 91 is outside -90..90", id="range-lat"),
    pytest.param(TOPIC, payload(status={"odometer_km": -1}), Reason.RANGE, "status.odometer_km: -1 is outside 0..10000000", id="range-odometer"),
    pytest.param(TOPIC, payload(seq=-1), Reason.RANGE, "seq: -1 must be >= 0", id="range-seq"),
    pytest.param(TOPIC, payload(seq=2**63), Reason.RANGE, "seq: 9223372036854775808 must be < 9223372036854775808", id="range-seq-int64"),
    pytest.param(TOPIC, b'{"schema":1,"device":"sw-03","ts":1,"battery":{"pct":NaN}}', Reason.RANGE, "battery.pct: NaN is not a finite number", id="range-nan"),
    pytest.param(TOPIC, b'{"schema":1,"device":"sw-03","ts":1,"battery":{"pct":1e999}}', Reason.RANGE, "battery.pct: Infinity is not a finite number", id="range-overflow"),
    pytest.param(TOPIC, payload(status={"state": "flying"}), Reason.RANGE, "status.state: \"flying\" is not one of 'idle', 'riding', 'charging', 'docked', 'fault' or 'off'", id="range-state"),
    pytest.param(TOPIC, payload(status={"firmware": '1.3"9'}), Reason.RANGE, 'status.firmware: "1.3\\"9" is not allowed: printable ASCII without quotes or backslashes', id="range-firmware-chars"),
    pytest.param(TOPIC, payload(status={"firmware": ""}), Reason.RANGE, 'status.firmware: "" has 0 characters; string should have at least 1 character', id="range-firmware-empty"),
    pytest.param(TOPIC, payload(device="sw 03"), Reason.RANGE, 'device: "sw 03" is not allowed: ids are letters, digits, "_", "." and "-", at most 64, starting with a letter or digit', id="range-device-id"),
    pytest.param(TOPIC, payload(device="sw-04"), Reason.DEVICE_MISMATCH, 'device "sw-04" does not match the topic\'s device "sw-03"', id="device_mismatch"),
    pytest.param("fleet/v1/hq/boat/sw-03/telemetry", payload(), Reason.UNKNOWN_KIND, 'kind "boat" is not one of handheld, segway', id="unknown_kind"),
    pytest.param("fleet/v1/hq/handheld/sw-03/telemetry", payload(), Reason.REGISTRY_MISMATCH, 'device "sw-03" is registered as segway at site "hq", not handheld at site "hq"', id="registry_mismatch-kind"),
    pytest.param("fleet/v1/south/segway/sw-03/telemetry", payload(), Reason.REGISTRY_MISMATCH, 'device "sw-03" is registered as segway at site "hq", not segway at site "south"', id="registry_mismatch-site"),
    pytest.param(TOPIC, payload(ts="2026-11-29T22:00:00Z"), Reason.FUTURE_TS, "ts 2026-11-29T22:00:00Z is 3600 s in the future (limit 300 s)", id="future_ts"),
    pytest.param(TOPIC, payload(ts="2026-10-30T20:59:59.500+00:00"), Reason.STALE_TS, "ts 2026-10-30T20:59:59.500Z is 2592000 s old (limit 2592000 s)", id="stale_ts"),
]  # fmt: skip


@pytest.mark.parametrize(("topic", "body", "reason", "detail"), REJECTIONS)
def test_rejection_reason_and_detail(decoder, topic, body, reason, detail):
    assert rejection(decoder, topic, body) == (reason, detail)


def test_every_reason_of_the_decoder_is_produced_by_it():
    # influx_rejected comes from the writer, internal_error from ingest (tests/daemon/collector/test_ingest.py).
    produced = {p.values[2] for p in REJECTIONS}
    assert produced == set(Reason) - {Reason.INFLUX_REJECTED, Reason.INTERNAL_ERROR}
    assert str(Reason.INFLUX_REJECTED) == "influx_rejected"


def test_several_problems_are_counted_in_the_detail(decoder):
    body = payload(battery={"pct": 130, "temp_c": 999}, seq=-1)
    reason, detail = rejection(decoder, TOPIC, body)
    assert reason is Reason.RANGE
    assert detail.endswith("(and 2 more problems)")


# --- hostile ids --------------------------------------------------------------------------------

HOSTILE_IDS = [
    pytest.param("sw 03", "contains a space", id="space"),
    pytest.param("sw,03", "contains a comma", id="comma"),
    pytest.param('sw"03', "contains a double quote", id="double-quote"),
    pytest.param("sw'03", "contains a quote", id="quote"),
    pytest.param("sw\n03", "contains a newline", id="newline"),
    pytest.param("sw=03", "contains an equals sign", id="equals"),
    pytest.param("sw\\03", "contains a backslash", id="backslash"),
    pytest.param("swé03", "contains 'é'", id="non-ascii"),
    pytest.param("", "is empty", id="empty"),
    pytest.param(".sw", "starts with '.'", id="leading-dot"),
    pytest.param("s" * 65, "is 65 characters long (max 64)", id="too-long"),
]


@pytest.mark.parametrize("segment", ["site", "kind", "device"])
@pytest.mark.parametrize(("bad", "problem"), HOSTILE_IDS)
def test_hostile_ids_in_the_topic_are_bad_topic(decoder, segment, bad, problem):
    ids = {"site": "hq", "kind": "segway", "device": "sw-03"} | {segment: bad}
    topic = f"fleet/v1/{ids['site']}/{ids['kind']}/{ids['device']}/telemetry"
    reason, detail = rejection(decoder, topic, payload())
    assert reason is Reason.BAD_TOPIC
    assert detail.startswith(f"topic's {segment} {json.dumps(bad)[:39]}")
    assert problem in detail
    assert len(detail) < 200


@pytest.mark.parametrize(("bad", "problem"), HOSTILE_IDS)
def test_topic_builders_refuse_hostile_ids(bad, problem):
    with pytest.raises(ValueError, match="ids are letters") as caught:
        telemetry_topic("fleet", "hq", "segway", bad)
    assert problem in str(caught.value)
    with pytest.raises(ValueError, match="site"):
        deadletter_topic("fleet", bad)


def test_huge_values_are_clipped_in_the_detail(decoder):
    reason, detail = rejection(decoder, TOPIC, payload(battery={"pct": "9" * 10000}))
    assert reason is Reason.SCHEMA
    assert detail == 'battery.pct: expected a number, got string "' + "9" * 38 + "…"
    reason, detail = rejection(decoder, TOPIC, payload(**{"x" * 10000: 1}))
    assert detail == 'unknown field "' + "x" * 38 + "…"


# --- order of the checks ------------------------------------------------------------------------


def test_one_megabyte_is_too_large_before_anything_is_parsed(decoder):
    body = b"{" * (1 << 20)  # unparsable; would also nest far too deep
    reason, detail = rejection(decoder, "not a topic at all", body)
    assert reason is Reason.TOO_LARGE
    assert detail == "payload is 1048576 bytes; the limit is 65536 bytes"


@pytest.mark.parametrize(
    ("topic", "body", "reason"),
    [
        pytest.param("fleet/v1/h q/segway/sw-03/telemetry", b"{", Reason.BAD_TOPIC, id="topic-before-json"),
        pytest.param("fleet/v1/hq/boat/sw-03/telemetry", b"{", Reason.UNKNOWN_KIND, id="kind-before-json"),
        pytest.param(TOPIC, b'{"device": "sw-04"', Reason.BAD_JSON, id="json-before-model"),
        pytest.param(TOPIC, payload(device="sw-04", battery={"pct": 130}), Reason.RANGE, id="model-before-device"),
        pytest.param("fleet/v1/south/segway/sw-03/telemetry", payload(device="sw-04"), Reason.DEVICE_MISMATCH, id="device-before-registry"),
        pytest.param("fleet/v1/south/segway/sw-03/telemetry", payload(ts="2030-01-01T00:00:00Z"), Reason.REGISTRY_MISMATCH, id="registry-before-ts"),
    ],
)  # fmt: skip
def test_checks_run_in_the_documented_order(decoder, topic, body, reason):
    assert rejection(decoder, topic, body)[0] is reason


# --- the time window ----------------------------------------------------------------------------


def test_ts_forms_all_land_on_the_same_millisecond(decoder):
    forms = ["2026-11-29T21:00:00.123Z", "2026-11-29T22:00:00.123+01:00", 1795986000.123]
    readings = [decoder.decode(TOPIC, payload(ts=ts)) for ts in forms]
    assert {r.ts_ms for r in readings if r is not None} == {NOW_MS + 123}


@pytest.mark.parametrize(
    ("ts_ms", "reason"),
    [
        (NOW_MS + 300_000, None),
        (NOW_MS + 300_001, Reason.FUTURE_TS),
        (NOW_MS - 30 * DAY_S * 1000, None),
        (NOW_MS - 30 * DAY_S * 1000 - 1, Reason.STALE_TS),
    ],
)
def test_ts_window_edges(decoder, ts_ms, reason):
    ts = datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat()
    if reason is None:
        reading = decoder.decode(TOPIC, payload(ts=ts))
        assert reading is not None
        assert reading.ts_ms == ts_ms
    else:
        assert rejection(decoder, TOPIC, payload(ts=ts))[0] is reason


def test_without_a_retention_old_readings_are_kept():
    reading = make_decoder(max_age_s=None).decode(TOPIC, payload(ts="2001-01-01T00:00:00Z"))
    assert reading is not None
    assert reading.ts_ms == 978307200000


def test_ts_before_1970_is_out_of_range_even_without_retention():
    decoder = make_decoder(max_age_s=None)
    reason, detail = rejection(decoder, TOPIC, payload(ts="1969-12-31T23:59:59Z"))
    assert (reason, detail) == (
        Reason.RANGE,
        'ts: "1969-12-31T23:59:59Z" is outside 1970-01-01..2262-04-11',
    )


# --- accepted readings --------------------------------------------------------------------------


def test_full_message_decodes_to_the_reading(decoder):
    reading = decoder.decode(TOPIC, json.dumps(FULL).encode())
    assert reading is not None
    assert (reading.site, reading.kind, reading.device, reading.seq) == (
        "hq",
        "segway",
        "sw-03",
        1842,
    )
    assert (reading.ts_ms, reading.source) == (NOW_MS + 123, "telemetry")
    assert reading.battery == Battery(**FULL["battery"])
    assert reading.location == Location(**FULL["location"])
    assert reading.status == Status(**FULL["status"])


def test_unregistered_device_of_a_known_kind_is_accepted(decoder):
    topic = "fleet/v1/north/handheld/hh-99/telemetry"
    reading = decoder.decode(topic, payload(device="hh-99"))
    assert reading is not None
    assert (reading.site, reading.kind, reading.device) == ("north", "handheld", "hh-99")


def test_configured_prefix_is_used(decoder):
    other = make_decoder(prefix="acme/fleet")
    assert other.decode("acme/fleet/v1/hq/segway/sw-03/telemetry", payload()) is not None
    assert rejection(other, TOPIC, payload())[0] is Reason.BAD_TOPIC


def test_encode_then_decode_round_trips(decoder):
    sent = Telemetry(
        schema=1,
        device="sw-03",
        seq=7,
        ts=datetime(2026, 11, 29, 21, 0, 0, 456789, tzinfo=UTC),
        battery=Battery(pct=55, charging=True),
        status=Status(state=State.DOCKED, firmware="2.0.1-rc"),
    )
    body = encode_telemetry(sent)
    assert body == (
        b'{"schema":1,"device":"sw-03","seq":7,"ts":"2026-11-29T21:00:00.456Z",'
        b'"battery":{"pct":55.0,"charging":true},"status":{"state":"docked","firmware":"2.0.1-rc"}}'
    )
    reading = decoder.decode(TOPIC, body)
    assert reading is not None
    assert (reading.seq, reading.ts_ms) == (7, NOW_MS + 456)
    assert (reading.battery, reading.location, reading.status) == (sent.battery, None, sent.status)


def test_sender_side_models_are_strict_too():
    # The groups are the drivers' plain dataclasses: the sender's Telemetry checks them.
    with pytest.raises(ValueError, match="pct"):
        Telemetry(
            schema=1, device="a", ts=datetime(2026, 1, 1, tzinfo=UTC), battery=Battery(pct=True)
        )
    with pytest.raises(ValueError, match="time zone"):
        Telemetry(schema=1, device="a", ts=datetime(2026, 1, 1), battery=Battery(pct=1))  # noqa: DTZ001


# --- OwnTracks ----------------------------------------------------------------------------------

OWNTRACKS = {
    "_type": "location",
    "batt": 55,
    "bs": 1,
    "lat": 41.27,
    "lon": -72.95,
    "acc": 12,
    "vel": 4,
    "cog": 270,
    "tst": 1795986000,
    "tid": "al",
    "alt": 20,
    "conn": "w",
    "topic": "owntracks/alice/phone",
}


def owntracks(**changes) -> bytes:
    doc = OWNTRACKS | changes
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


def test_owntracks_location_maps_every_field(decoder):
    reading = decoder.decode("owntracks/bob/hh-42", owntracks())
    assert reading is not None
    assert (reading.site, reading.kind, reading.device, reading.seq) == (
        "hq",
        "handheld",
        "hh-42",
        None,
    )
    assert (reading.ts_ms, reading.source, reading.status) == (NOW_MS, "owntracks", None)
    assert reading.battery == Battery(pct=55.0, charging=False)
    assert reading.location == Location(
        lat=41.27, lon=-72.95, accuracy_m=12, speed_kmh=4, heading_deg=270
    )
    assert reading_lines(reading) == [
        "battery,device=hh-42,kind=handheld,site=hq charging=false,pct=55 1795986000000",
        "location,device=hh-42,kind=handheld,site=hq accuracy_m=12,heading_deg=270,lat=41.27,"
        "lon=-72.95,speed_kmh=4 1795986000000",
    ]


@pytest.mark.parametrize(("bs", "charging"), [(0, None), (1, False), (2, True), (3, True)])
def test_owntracks_battery_status(decoder, bs, charging):
    reading = decoder.decode("owntracks/bob/hh-42", owntracks(bs=bs))
    assert reading is not None
    assert reading.battery is not None
    assert reading.battery.charging is charging


def test_owntracks_without_battery_has_no_battery_group(decoder):
    reading = decoder.decode("owntracks/bob/hh-42", owntracks(batt=None, bs=0))
    assert reading is not None
    assert reading.battery is None
    assert len(reading_lines(reading)) == 1


def test_owntracks_map_and_registry_give_device_site_and_kind(decoder):
    reading = decoder.decode("owntracks/alice/phone", owntracks())
    assert reading is not None
    assert (reading.site, reading.kind, reading.device) == ("north", "handheld", "hh-07")


@pytest.mark.parametrize("message_type", ["lwt", "transition", "waypoint", "card", "cmd"])
def test_owntracks_other_types_are_not_readings(decoder, message_type):
    assert (
        decoder.decode("owntracks/alice/phone", json.dumps({"_type": message_type}).encode())
        is None
    )


OWNTRACKS_REJECTIONS = [
    pytest.param("owntracks/alice", owntracks(), Reason.BAD_TOPIC, 'topic "owntracks/alice" is not owntracks/{user}/{device}', id="short-topic"),
    pytest.param("owntracks/bob/my phone", owntracks(), Reason.BAD_TOPIC, 'OwnTracks device "my phone" contains a space; ids are letters, digits, "_", "." and "-", at most 64, starting with a letter or digit (or map it)', id="device-id"),
    pytest.param("owntracks/bob/hh-42", b"{", Reason.BAD_JSON, "payload is not valid JSON: EOF while parsing an object at line 1 column 1", id="bad-json"),
    pytest.param("owntracks/bob/hh-42", b"[]", Reason.SCHEMA, 'payload: expected an object with a string "_type"', id="array"),
    pytest.param("owntracks/bob/hh-42", owntracks(_type=None), Reason.SCHEMA, 'payload: expected an object with a string "_type"', id="no-type"),
    pytest.param("owntracks/bob/hh-42", owntracks(lat=None), Reason.SCHEMA, "lat: required field is missing", id="no-lat"),
    pytest.param("owntracks/bob/hh-42", owntracks(tst=None), Reason.SCHEMA, "tst: required field is missing", id="no-tst"),
    pytest.param("owntracks/bob/hh-42", owntracks(batt="55"), Reason.SCHEMA, 'batt: expected a number, got string "55"', id="batt-string"),
    pytest.param("owntracks/bob/hh-42", owntracks(batt=101), Reason.RANGE, "batt: 101 is outside 0..100", id="batt-range"),
    pytest.param("owntracks/bob/hh-42", owntracks(bs=4), Reason.RANGE, "bs: 4 is outside 0..3", id="bs-range"),
    pytest.param("owntracks/bob/hh-42", owntracks(tst=1795989600), Reason.FUTURE_TS, "ts 2026-11-29T22:00:00Z is 3600 s in the future (limit 300 s)", id="future"),
]  # fmt: skip


@pytest.mark.parametrize(("topic", "body", "reason", "detail"), OWNTRACKS_REJECTIONS)
def test_owntracks_rejections(decoder, topic, body, reason, detail):
    assert rejection(decoder, topic, body) == (reason, detail)


# --- InfluxDB lines -----------------------------------------------------------------------------


def test_reading_lines_for_a_full_message(decoder):
    reading = decoder.decode(TOPIC, json.dumps(FULL).encode())
    assert reading is not None
    assert reading_lines(reading) == [
        "battery,device=sw-03,kind=segway,site=hq charging=false,current_a=-3.2,health_pct=96,"
        "pct=87.5,seq=1842i,temp_c=24.5,voltage_v=72.1 1795986000123",
        "location,device=sw-03,kind=segway,site=hq accuracy_m=5,heading_deg=180,lat=41.2705,"
        "lon=-72.947,seq=1842i,speed_kmh=8.2 1795986000123",
        'status,device=sw-03,kind=segway,site=hq error_code=0i,firmware="1.3.9",locked=false,'
        'odometer_km=1234.5,range_km=21,rssi_dbm=-61i,seq=1842i,state="riding" 1795986000123',
    ]


def test_field_types_never_flip_with_the_json_number_form(decoder):
    as_int = decoder.decode(TOPIC, payload(battery={"pct": 50}, status={"error_code": 3}))
    as_float = decoder.decode(TOPIC, payload(battery={"pct": 50.0}, status={"error_code": 3}))
    assert as_int is not None
    assert as_float is not None
    assert reading_lines(as_int) == reading_lines(as_float)
    assert reading_lines(as_int)[0].split(" ")[1] == "pct=50"
    assert "error_code=3i" in reading_lines(as_int)[1]


def test_without_seq_no_seq_field(decoder):
    reading = decoder.decode(TOPIC, payload())
    assert reading is not None
    assert reading_lines(reading) == [
        "battery,device=sw-03,kind=segway,site=hq pct=50 1795986000000"
    ]


# --- topics -------------------------------------------------------------------------------------


def test_topic_builders():
    assert telemetry_topic("fleet", "hq", "segway", "sw-03") == TOPIC
    assert (
        availability_topic("fleet", "hq", "handheld", "hh-1")
        == "fleet/v1/hq/handheld/hh-1/availability"
    )
    assert (
        agent_availability_topic("fleet", "hq", "agent-1")
        == "fleet/v1/hq/agent/agent-1/availability"
    )
    assert (
        alert_topic("fleet", "hq", "sw-03", "low_battery") == "fleet/v1/hq/alerts/sw-03/low_battery"
    )
    assert deadletter_topic("acme/fleet", "hq") == "acme/fleet/v1/hq/deadletter"
    assert subscriptions("fleet") == ["fleet/v1/+/+/+/telemetry", "owntracks/+/+"]


@pytest.mark.parametrize(
    "build",
    [
        lambda: telemetry_topic("fleet", "hq", "agent", "x"),
        lambda: availability_topic("fleet", "hq", "alerts", "x"),
        lambda: alert_topic("fleet", "hq", "sw-03", "telemetry"),
        lambda: telemetry_topic("fleet/+", "hq", "segway", "x"),
        lambda: subscriptions("fleet/#"),
        lambda: make_decoder(kinds=["segway", "agent"]),
    ],
)
def test_names_that_would_collide_or_wildcard_are_refused(build):
    with pytest.raises(ValueError, match=r"reserved|wildcard"):
        build()


# --- dead letters -------------------------------------------------------------------------------


def test_deadletter_payload_truncates_and_escapes():
    body = b'{"x": "\xff' + b"a" * 2000
    doc = json.loads(
        deadletter_payload(
            TOPIC, body, Reason.BAD_JSON, "payload is not valid JSON", NOW_MS + 5, limit=16
        )
    )
    assert doc == {
        "topic": TOPIC,
        "reason": "bad_json",
        "detail": "payload is not valid JSON",
        "payload": '{"x": "\\xffaaaaaaaa',
        "payload_bytes": 2008,
        "truncated": True,
        "received_at": "2026-11-29T21:00:00.005Z",
    }


def test_deadletter_payload_of_a_small_message_is_whole():
    doc = json.loads(deadletter_payload(TOPIC, b"{}", Reason.SCHEMA, "d", NOW_MS))
    assert (doc["payload"], doc["payload_bytes"], doc["truncated"]) == ("{}", 2, False)


@pytest.mark.parametrize(
    ("topic", "site"),
    [
        ("fleet/v1/east/segway/sw-03/telemetry", "east"),  # the topic's own site
        ("fleet/v1/no site!/segway/sw-03/telemetry", "hq"),  # not an id: the default
        ("fleet/v1/", "hq"),
        ("owntracks/alice/phone", "north"),  # the phone's registry site
        ("owntracks/bob/phone", "hq"),  # a phone the registry does not name
        ("something/else", "hq"),
    ],
)
def test_a_message_is_filed_under_its_own_site(topic: str, site: str) -> None:
    """Dead letters go to the message's site (a collector owning only some sites may write
    only their dead-letter topics), whether or not its topic or payload is valid."""
    assert make_decoder().site_of(topic) == site
