"""Line protocol: golden lines, and influxdb_client's Point as the oracle for everything else."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from fleet.daemon.collector.lineproto import FieldValue, format_line, line, series_key
from fleet.daemon.collector.schema import reading_lines
from fleet.daemon.wire import Battery, DecodedReading, State, Status
from fleet.drivers.readings import GROUPS, field_names
from tests.daemon.wire.test_wire_properties import VALID_TELEMETRY, decoder

TAGS = {"site": "hq", "kind": "segway", "device": "sw-03"}


def point_line(
    measurement: str,
    tags: dict[str, str | None],
    fields: dict[str, FieldValue | None],
    ts_ms: int,
) -> str:
    p = Point(measurement)
    for key, value in tags.items():
        p.tag(key, value)
    for name, field_value in fields.items():
        p.field(name, field_value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # Point warns about "#" measurements
        return str(p.time(ts_ms, WritePrecision.MS).to_line_protocol())


GOLDEN = [
    pytest.param(
        "battery",
        TAGS,
        {"pct": 87.5, "voltage_v": 72.0, "charging": False, "seq": 1842},
        1764450000123,
        "battery,device=sw-03,kind=segway,site=hq charging=false,pct=87.5,seq=1842i,voltage_v=72"
        " 1764450000123",
        id="telemetry",
    ),
    pytest.param(
        "battery",
        TAGS,
        {"pct": 25.0, "cell_spread_v": 0.031, "pack_ids": "C01061400098,C01061400117", "seq": 7},
        1764450000123,
        'battery,device=sw-03,kind=segway,site=hq cell_spread_v=0.031,pack_ids="C01061400098,'
        'C01061400117",pct=25,seq=7i 1764450000123',
        id="telemetry-pack-fields",
    ),
    pytest.param("m", {}, {"f": 1}, 5, "m f=1i 5", id="no-tags"),
    pytest.param(
        "my meas,x=1", {}, {"f": True}, 5, r"my\ meas\,x=1 f=true 5", id="measurement-escapes"
    ),
    pytest.param(
        "m",
        {"k ,=": "v ,=", "t": "a\nb\tc\rd"},
        {"f": 1.5},
        5,
        r"m,k\ \,\==v\ \,\=,t=a\nb\tc\rd f=1.5 5",
        id="tag-escapes",
    ),
    pytest.param("m", {"k": "a\\"}, {"f": 1.5}, 5, "m,k=a\\  f=1.5 5", id="tag-value-backslash"),
    pytest.param(
        "m", {"b": "", "a": None, "": "x", "c": "y"}, {"f": 0.0}, 5, "m,c=y f=0 5", id="empty-tags"
    ),
    pytest.param(
        "m", {"z": "1", "a": "2"}, {"z": 1, "a": 2}, 5, "m,a=2,z=1 a=2i,z=1i 5", id="sorted"
    ),
    pytest.param(
        "m",
        {},
        {"s": 'say "hi"\\ \n ok', "e": ""},
        5,
        'm e="",s="say \\"hi\\"\\\\ \n ok" 5',
        id="string-escapes",
    ),
    pytest.param(
        "m",
        {},
        {"a": 1e16, "b": -0.0, "c": 1e-7, "d": 0.1, "e": 123456789.0, "f": -1.25},
        -5,
        "m a=1e+16,b=-0,c=1e-07,d=0.1,e=123456789,f=-1.25 -5",
        id="floats",
    ),
    pytest.param(
        "m",
        {},
        {"max": 2**63 - 1, "min": -(2**63), "t": True},
        0,
        "m max=9223372036854775807i,min=-9223372036854775808i,t=true 0",
        id="int64-limits",
    ),
    pytest.param("m", {}, {"a": None, "b": 2.5}, 5, "m b=2.5 5", id="none-field-skipped"),
    pytest.param("m", {}, {"f k,=": 1}, 5, r"m f\ k\,\==1i 5", id="field-key-escapes"),
]


@pytest.mark.parametrize(("measurement", "tags", "fields", "ts_ms", "expected"), GOLDEN)
def test_golden_lines(measurement, tags, fields, ts_ms, expected):
    assert line(measurement, tags, fields, ts_ms) == expected
    assert point_line(measurement, tags, fields, ts_ms) == expected


REFUSED = [
    pytest.param("m", {}, {"f": math.nan}, 5, "not a finite number", id="nan"),
    pytest.param("m", {}, {"f": -math.inf}, 5, "not a finite number", id="inf"),
    pytest.param("m", {}, {"f": 2**63}, 5, "signed 64-bit", id="uint"),
    pytest.param("m", {}, {"f": -(2**63) - 1}, 5, "signed 64-bit", id="below-int64"),
    pytest.param("m", {}, {}, 5, "no field", id="no-field"),
    pytest.param("m", {}, {"a": None}, 5, "no field", id="only-none"),
    pytest.param("", {}, {"f": 1}, 5, "measurement is empty", id="empty-measurement"),
    pytest.param("#m", {}, {"f": 1}, 5, "comment", id="comment-measurement"),
    pytest.param("m", {}, {"": 1}, 5, "field key is empty", id="empty-field-key"),
    pytest.param("m\\", {}, {"f": 1}, 5, "backslash", id="measurement-backslash"),
    pytest.param("m", {"k\\": "v"}, {"f": 1}, 5, "backslash", id="tag-key-backslash"),
    pytest.param("m", {}, {"f\\,b": 1}, 5, "backslash", id="field-key-backslash"),
    pytest.param("m", {}, {"f": 1}, 2**62, "timestamp", id="ts-beyond-2262"),
    pytest.param("m", {}, {"f": 1}, True, "timestamp", id="ts-bool"),
]


@pytest.mark.parametrize(("measurement", "tags", "fields", "ts_ms", "message"), REFUSED)
def test_refused_on_purpose(measurement, tags, fields, ts_ms, message):
    with pytest.raises(ValueError, match=message):
        line(measurement, tags, fields, ts_ms)


def test_unsupported_type_is_a_type_error():
    with pytest.raises(TypeError, match="bytes"):
        line("m", {}, {"f": b"x"}, 5)  # type: ignore[dict-item]


def test_series_key_is_cached_and_order_independent():
    first = series_key("battery", {"site": "hq", "kind": "segway", "device": "sw-03"})
    again = series_key("battery", {"device": "sw-03", "site": "hq", "kind": "segway"})
    assert first == "battery,device=sw-03,kind=segway,site=hq"
    assert again is first


def test_format_line_takes_fields_in_the_given_order():
    prefix = series_key("m", {"t": "x"})
    assert format_line(prefix, [("a", 1.0), ("b", None), ("c", "s")], 7) == 'm,t=x a=1,c="s" 7'


# --- Point as the oracle ------------------------------------------------------------------------

# Characters that line protocol treats specially, plus a little ordinary text.
HOSTILE = st.text(alphabet=st.sampled_from(list(" ,=\"'\\#\n\t\r_aZé")), max_size=6)
NAMES = HOSTILE | st.text(max_size=6)
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    NAMES,
)


def refused_on_purpose(measurement, tags, fields, ts_ms) -> bool:
    """The documented differences from Point, stated independently of the implementation."""
    present = {k: v for k, v in fields.items() if v is not None}
    tag_keys = [k for k, v in tags.items() if k and v]
    return (
        not present
        or not measurement
        or measurement.startswith("#")
        or "\\" in measurement
        or any("\\" in k for k in tag_keys)
        or any(not k or "\\" in k for k in present)
        or any(isinstance(v, float) and not math.isfinite(v) for v in present.values())
        or any(type(v) is int and not -(2**63) <= v < 2**63 for v in present.values())
        or not -(2**63 // 10**6) <= ts_ms <= 2**63 // 10**6
    )


@given(
    measurement=NAMES,
    tags=st.dictionaries(NAMES, st.none() | NAMES, max_size=4),
    fields=st.dictionaries(NAMES, VALUES, max_size=5),
    ts_ms=st.integers(min_value=-(2**64), max_value=2**64),
)
@example(measurement="m", tags={"k": "v\\"}, fields={"f": 1.0}, ts_ms=0)
@example(measurement="m", tags={}, fields={"f": 2**63 - 1, "g": -(2**63)}, ts_ms=0)
def test_identical_to_point_unless_refused_on_purpose(measurement, tags, fields, ts_ms):
    expected = point_line(measurement, tags, fields, ts_ms)
    if refused_on_purpose(measurement, tags, fields, ts_ms):
        with pytest.raises(ValueError):  # noqa: PT011 - each reason has its own golden test
            line(measurement, tags, fields, ts_ms)
    else:
        assert line(measurement, tags, fields, ts_ms) == expected


# --- the schema's telemetry lines are Point's too -------------------------------------------


@settings(max_examples=200)
@given(message=VALID_TELEMETRY)
def test_reading_lines_are_the_lines_point_writes(message):
    """Every contract field (the additions too) in Point's order, types and escapes."""
    doc, _ = message
    reading = decoder().decode("fleet/v1/hq/segway/sw-03/telemetry", json.dumps(doc).encode())
    assert reading is not None
    tags: dict[str, str | None] = {"site": "hq", "kind": "segway", "device": "sw-03"}
    groups = {"battery": reading.battery, "location": reading.location, "status": reading.status}
    expected = [
        point_line(name, tags, dataclasses.asdict(group) | {"seq": reading.seq}, reading.ts_ms)
        for name, group in groups.items()
        if group is not None
    ]
    assert reading_lines(reading) == expected


# Any value in any field, as a hand-made reading could hold (a reading built by the seed,
# a test): the generated writers' shortcuts for the contract's types must not change a byte,
# and whatever they do not shortcut goes through format_field, Point's formatting or refusal.
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.sampled_from(list(' ,="\\\n_aZé')), max_size=6),
    st.sampled_from(list(State)),
)


@st.composite
def hand_made_readings(draw: st.DrawFn) -> DecodedReading:
    groups: dict[str, Any] = dict.fromkeys(GROUPS)
    for name, cls in GROUPS.items():
        if draw(st.booleans()):
            values: dict[str, Any] = {f: draw(st.none() | ANY_VALUE) for f in field_names(cls)}
            groups[name] = cls(**values)
    seq = draw(st.none() | st.integers(min_value=-(2**64), max_value=2**64))
    ts_ms = draw(st.integers(min_value=-(2**62), max_value=2**62))
    return DecodedReading("hq", "segway", "sw-03", seq, ts_ms, **groups, source="test")


@settings(max_examples=200)
@given(reading=hand_made_readings())
@example(reading=DecodedReading("hq", "segway", "sw-03", None, 5, Battery(pct=50), None, None, "t"))
@example(reading=DecodedReading("hq", "k", "d", 2**63, 5, None, None, Status(state=State.OFF), "t"))
@example(reading=DecodedReading("hq", "k", "d", 1, 5, Battery(pct=math.nan), None, None, "t"))
@example(reading=DecodedReading("hq", "k", "d", 1, 5, None, None, Status(error_code=2**63), "t"))
@example(reading=DecodedReading("hq", "k", "d", 1, 5, None, None, Status(rssi_dbm=-(2**63)), "t"))
def test_reading_lines_of_any_values_are_points_or_refused(reading):
    tags: dict[str, str | None] = {
        "site": reading.site,
        "kind": reading.kind,
        "device": reading.device,
    }
    groups = {"battery": reading.battery, "location": reading.location, "status": reading.status}
    present = {name: g for name, g in groups.items() if g is not None}
    fields = {name: dataclasses.asdict(g) | {"seq": reading.seq} for name, g in present.items()}
    if any(refused_on_purpose(name, tags, f, reading.ts_ms) for name, f in fields.items()):
        with pytest.raises(ValueError):  # noqa: PT011 - the reasons have their golden tests
            reading_lines(reading)
    else:
        expected = [point_line(name, tags, f, reading.ts_ms) for name, f in fields.items()]
        assert reading_lines(reading) == expected
