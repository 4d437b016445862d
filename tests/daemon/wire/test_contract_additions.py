"""The v1 contract's optional additions: status.speed_kmh, battery.cell_spread_v and
battery.pack_ids. Old messages decode and store as before; bad values are refused with a
sentence; the fields reach the InfluxDB lines with stable types."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from fleet.daemon.collector.schema import GROUP_FIELDS, reading_lines
from fleet.daemon.wire import Battery, Location, Reason, State, Status, Telemetry, encode_telemetry
from fleet.drivers.readings import (
    GROUPS,
    LIMITS,
    PACK_IDS_MAX,
    field_names,
    pack_ids_label,
    within,
)
from tests.daemon.wire.test_wire import FULL, TOPIC, make_decoder, payload, rejection
from tests.daemon.wire.test_wire_properties import TYPES

PACKS = "C01061400098,C01061400117"
LONG = ",".join(["C01061400098"] * 5)  # five packs: 64 characters, the most pack_ids takes
RULE = (
    "pack serial numbers separated by commas: printable ASCII without spaces, quotes or "
    "backslashes, no empty serial"
)


# --- old messages are untouched ---------------------------------------------------------------


def test_a_v1_message_without_the_new_fields_decodes_and_stores_as_before():
    reading = make_decoder().decode(TOPIC, json.dumps(FULL).encode())
    assert reading is not None
    assert reading.status is not None
    assert reading.battery is not None
    assert (reading.status.speed_kmh, reading.battery.cell_spread_v) == (None, None)
    assert reading.battery.pack_ids is None
    # Byte for byte the lines of before the additions (the golden of test_wire).
    assert reading_lines(reading) == [
        "battery,device=sw-03,kind=segway,site=hq charging=false,current_a=-3.2,health_pct=96,"
        "pct=87.5,seq=1842i,temp_c=24.5,voltage_v=72.1 1795986000123",
        "location,device=sw-03,kind=segway,site=hq accuracy_m=5,heading_deg=180,lat=41.2705,"
        "lon=-72.947,seq=1842i,speed_kmh=8.2 1795986000123",
        'status,device=sw-03,kind=segway,site=hq error_code=0i,firmware="1.3.9",locked=false,'
        'odometer_km=1234.5,range_km=21,rssi_dbm=-61i,seq=1842i,state="riding" 1795986000123',
    ]


def test_an_agent_of_before_sends_what_it_sent():
    """An unchanged reading encodes to the same JSON: None fields are left out."""
    sent = Telemetry(
        schema=1,
        device="sw-03",
        seq=7,
        ts=datetime(2026, 11, 29, 21, 0, tzinfo=UTC),
        battery=Battery(pct=55, charging=True),
        status=Status(state=State.DOCKED),
    )
    assert encode_telemetry(sent) == (
        b'{"schema":1,"device":"sw-03","seq":7,"ts":"2026-11-29T21:00:00.000Z",'
        b'"battery":{"pct":55.0,"charging":true},"status":{"state":"docked"}}'
    )


# --- the new fields, accepted -------------------------------------------------------------------


def test_the_new_fields_decode_and_reach_their_measurements():
    body = payload(
        battery={"pct": 25, "cell_spread_v": 0, "pack_ids": PACKS},
        status={"speed_kmh": -4},  # a status group of a speed only: no position needed
    )
    reading = make_decoder().decode(TOPIC, body)
    assert reading is not None
    assert reading.location is None
    assert reading.battery == Battery(pct=25.0, cell_spread_v=0.0, pack_ids=PACKS)
    assert reading.status == Status(speed_kmh=-4.0)
    # Numbers sent as JSON ints are floats all the same: the field type never flips.
    assert reading_lines(reading) == [
        f'battery,device=sw-03,kind=segway,site=hq cell_spread_v=0,pack_ids="{PACKS}",pct=25 '
        "1795986000000",
        "status,device=sw-03,kind=segway,site=hq speed_kmh=-4 1795986000000",
    ]
    assert type(reading.status.speed_kmh) is float
    assert type(reading.battery.cell_spread_v) is float


def test_the_agent_side_round_trips_the_new_fields():
    sent = Telemetry(
        schema=1,
        device="sw-03",
        ts=datetime(2026, 11, 29, 21, 0, tzinfo=UTC),
        battery=Battery(cell_spread_v=0.012, pack_ids=PACKS),
        status=Status(state=State.RIDING, speed_kmh=12.3),
    )
    body = encode_telemetry(sent)
    assert b'"status":{"state":"riding","speed_kmh":12.3}' in body
    reading = make_decoder().decode(TOPIC, body)
    assert reading is not None
    assert (reading.battery, reading.status) == (sent.battery, sent.status)


@pytest.mark.parametrize(
    ("group", "field", "edges"),
    [("status", "speed_kmh", (-100, 400)), ("battery", "cell_spread_v", (0, 10))],
)
def test_range_edges_are_inside(group, field, edges):
    for value in edges:
        assert make_decoder().decode(TOPIC, payload(**{group: {field: value}})) is not None


def test_pack_ids_of_the_longest_length_is_accepted():
    assert len(LONG) == PACK_IDS_MAX
    reading = make_decoder().decode(TOPIC, payload(battery={"pack_ids": LONG}))
    assert reading is not None
    assert reading.battery is not None
    assert reading.battery.pack_ids == LONG


# --- the new fields, refused with a sentence ----------------------------------------------------

REFUSED = [
    pytest.param({"status": {"speed_kmh": 400.5}}, Reason.RANGE, "status.speed_kmh: 400.5 is outside -100..400", id="speed-high"),
    pytest.param({"status": {"speed_kmh": -101}}, Reason.RANGE, "status.speed_kmh: -101 is outside -100..400", id="speed-low"),
    pytest.param({"status": {"speed_kmh": "12"}}, Reason.SCHEMA, 'status.speed_kmh: expected a number, got string "12"', id="speed-string"),
    pytest.param({"status": {"speed_kmh": True}}, Reason.SCHEMA, "status.speed_kmh: expected a number, got boolean true", id="speed-bool"),
    pytest.param({"battery": {"cell_spread_v": -0.001}}, Reason.RANGE, "battery.cell_spread_v: -0.001 is outside 0..10", id="spread-negative"),
    pytest.param({"battery": {"cell_spread_v": 10.5}}, Reason.RANGE, "battery.cell_spread_v: 10.5 is outside 0..10", id="spread-high"),
    pytest.param({"battery": {"cell_spread_v": [0.1]}}, Reason.SCHEMA, "battery.cell_spread_v: expected a number, got array [0.1]", id="spread-array"),
    pytest.param({"battery": {"pack_ids": "C0106 1400098"}}, Reason.RANGE, f'battery.pack_ids: "C0106 1400098" is not allowed: {RULE}', id="packs-space"),
    pytest.param({"battery": {"pack_ids": 'C01"06'}}, Reason.RANGE, f'battery.pack_ids: "C01\\"06" is not allowed: {RULE}', id="packs-quote"),
    pytest.param({"battery": {"pack_ids": "A,,B"}}, Reason.RANGE, f'battery.pack_ids: "A,,B" is not allowed: {RULE}', id="packs-empty-serial"),
    pytest.param({"battery": {"pack_ids": "A,"}}, Reason.RANGE, f'battery.pack_ids: "A," is not allowed: {RULE}', id="packs-trailing-comma"),
    pytest.param({"battery": {"pack_ids": ""}}, Reason.RANGE, 'battery.pack_ids: "" has 0 characters; string should have at least 1 character', id="packs-empty"),
    pytest.param({"battery": {"pack_ids": LONG + "1"}}, Reason.RANGE, 'battery.pack_ids: "C01061400098,C01061400098,C01061400098… has 65 characters; string should have at most 64 characters', id="packs-long"),
    pytest.param({"battery": {"pack_ids": ["A", "B"]}}, Reason.SCHEMA, 'battery.pack_ids: expected a string, got array ["A", "B"]', id="packs-array"),
    pytest.param({"battery": {"pack_ids": 98}}, Reason.SCHEMA, "battery.pack_ids: expected a string, got number 98", id="packs-number"),
]  # fmt: skip


@pytest.mark.parametrize(("groups", "reason", "detail"), REFUSED)
def test_bad_values_of_the_new_fields_are_refused_with_a_reason(groups, reason, detail):
    assert rejection(make_decoder(), TOPIC, payload(**groups)) == (reason, detail)


def test_the_sender_refuses_them_too():
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValidationError, match=r"status\.speed_kmh"):
        Telemetry(schema=1, device="a", ts=ts, status=Status(speed_kmh=401.0))
    with pytest.raises(ValidationError, match=r"battery\.pack_ids"):
        Telemetry(schema=1, device="a", ts=ts, battery=Battery(pack_ids="A B"))


# --- one set of limits, keyed by group ----------------------------------------------------------


def test_limits_are_keyed_by_group_and_field():
    ranged = {
        (group, name)
        for group, cls in GROUPS.items()
        for name in field_names(cls)
        if (group, name) in LIMITS
    }
    assert set(LIMITS) == ranged
    assert LIMITS["status", "speed_kmh"] == LIMITS["location", "speed_kmh"] == (-100, 400)
    assert LIMITS["battery", "cell_spread_v"] == (0, 10)


def test_within_needs_the_group_for_a_field_two_groups_have():
    with pytest.raises(KeyError, match="location and status"):
        within("speed_kmh", 10.0)
    with pytest.raises(KeyError, match="no ranged field"):
        within("speed", 10.0)
    assert within("speed_kmh", 400.0, group="status") == 400.0
    assert within("speed_kmh", 400.1, group="status") is None
    assert within("cell_spread_v", 0.02) == 0.02  # unique names need no group


def test_the_property_tests_and_the_schema_know_every_field():
    """A field added to the contract without the property tests knowing fails here."""
    assert {g: tuple(kinds) for g, kinds in TYPES.items()} == {
        g: field_names(cls) for g, cls in GROUPS.items()
    }
    for group, cls in GROUPS.items():
        assert set(GROUP_FIELDS[group]) == {*field_names(cls), "seq"}


# --- pack_ids_label: what a driver hands over -----------------------------------------------------


@pytest.mark.parametrize(
    ("serials", "label"),
    [
        (["C01061400098", "C01061400117"], "C01061400098,C01061400117"),
        (["C01061400098", None], "C01061400098,?"),  # the pack's place is kept
        ([None, " C0106,1400117 "], "?,C01061400117"),
        ([None, ""], None),
        ([], None),
        (['"\\ '], None),
        (["C01061400098"] * 5, LONG),
        (["C01061400098"] * 6, None),  # a cut list would name a pack that is not there
    ],
)
def test_pack_ids_label(serials, label):
    assert pack_ids_label(serials) == label


_BATTERY = TypeAdapter(Battery)


# Hostile characters and some ordinary ones; a fixed alphabet also spares the unicode tables.
_SERIAL_TEXT = st.text(alphabet=st.sampled_from(list(" ,\"'\\\t\n?é😀aZ09-_.#")), max_size=20)


@settings(max_examples=50)
@given(st.lists(st.none() | _SERIAL_TEXT, max_size=6))
def test_pack_ids_label_always_gives_what_the_contract_takes(serials):
    label = pack_ids_label(serials)
    if label is not None:
        assert _BATTERY.validate_python({"pack_ids": label}).pack_ids == label
        assert label.count(",") == len(serials) - 1


def test_location_keeps_its_own_speed():
    loc = Location(lat=1.0, lon=2.0, speed_kmh=5.0)
    reading = make_decoder().decode(
        TOPIC, payload(location={"lat": 1.0, "lon": 2.0, "speed_kmh": 5}, status={"speed_kmh": 7})
    )
    assert reading is not None
    assert reading.location == loc
    assert reading.status == Status(speed_kmh=7.0)
