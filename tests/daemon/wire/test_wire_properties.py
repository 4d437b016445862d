"""Hypothesis against the decoder: nothing but a DecodedReading, None or Rejected comes out, and every
DecodedReading's InfluxDB lines parse back to exactly the values that came in."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from fleet.daemon.collector.schema import reading_lines
from fleet.daemon.wire import DecodedReading, Decoder, DeviceRef, Rejected

NOW_MS = 1795986000000  # 2026-11-29T21:00:00Z
WINDOW_MS = (NOW_MS - 30 * 86400_000, NOW_MS + 300_000)
FLOAT, INT, BOOL, STR = "float", "int", "bool", "str"
TYPES = {
    "battery": {"pct": FLOAT, "voltage_v": FLOAT, "current_a": FLOAT, "temp_c": FLOAT, "charging": BOOL, "health_pct": FLOAT, "cell_spread_v": FLOAT, "pack_ids": STR},
    "location": {"lat": FLOAT, "lon": FLOAT, "accuracy_m": FLOAT, "speed_kmh": FLOAT, "heading_deg": FLOAT},
    "status": {"state": STR, "odometer_km": FLOAT, "range_km": FLOAT, "error_code": INT, "locked": BOOL, "rssi_dbm": INT, "firmware": STR, "speed_kmh": FLOAT},
}  # fmt: skip


def decoder() -> Decoder:
    return Decoder(
        prefix="fleet",
        default_site="hq",
        kinds=["segway", "handheld"],
        registry={"sw-03": DeviceRef("hq", "segway")},
        owntracks_map={"alice/phone": "hh-07"},
        max_payload_bytes=4096,
        max_future_s=300,
        max_age_s=30 * 86400,
        now_ms=lambda: NOW_MS,
    )


# --- strategies ---------------------------------------------------------------------------------

HOSTILE = st.text(alphabet=st.sampled_from(list(" ,=\"'\\#\n\t\r/+_.-aZ9é\x00")), max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | HOSTILE
    | st.text(max_size=8)
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(HOSTILE, inner, max_size=3),
    max_leaves=8,
)
# One pack serial: the firmware characters without space and comma (the separator).
SERIAL = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="\"'\\,"), min_size=1, max_size=15)  # fmt: skip
PACK_IDS = st.lists(SERIAL, min_size=1, max_size=4).map(",".join)  # at most 63 characters
FIRMWARE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="\"'\\"), min_size=1, max_size=32)  # fmt: skip
VALID = {
    "pct": st.floats(0, 100) | st.integers(0, 100),
    "voltage_v": st.floats(0, 200),
    "current_a": st.floats(-1000, 1000),
    "temp_c": st.floats(-60, 150) | st.integers(-60, 150),
    "charging": st.booleans(),
    "health_pct": st.floats(0, 100),
    "cell_spread_v": st.floats(0, 10) | st.integers(0, 10),
    "pack_ids": PACK_IDS,
    "lat": st.floats(-90, 90),
    "lon": st.floats(-180, 180),
    "accuracy_m": st.floats(0, 100_000) | st.integers(0, 100_000),
    "speed_kmh": st.floats(-100, 400) | st.integers(-100, 400),  # location's and status's
    "heading_deg": st.floats(0, 360),
    "state": st.sampled_from(["idle", "riding", "charging", "docked", "fault", "off"]),
    "odometer_km": st.floats(0, 10**7),
    "range_km": st.floats(0, 10_000),
    "error_code": st.integers(0, 65535),
    "locked": st.booleans(),
    "rssi_dbm": st.integers(-150, 20),
    "firmware": FIRMWARE,
}


def ts_value(ms: int, form: int, offset_min: int) -> object:
    """One instant written as epoch seconds or as ISO-8601 in some zone."""
    if form == 0:
        return ms / 1000
    zone = timezone(timedelta(minutes=offset_min))
    return (
        datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone).isoformat(timespec="milliseconds")
    )


TS_MS = st.integers(*WINDOW_MS)


def group(name: str) -> st.SearchStrategy[dict[str, Any]]:
    required = {"lat", "lon"} if name == "location" else set()
    return st.fixed_dictionaries(
        {k: VALID[k] for k in TYPES[name] if k in required},
        optional={k: VALID[k] for k in TYPES[name] if k not in required},
    ).filter(bool)


def _build(ms: int, form: int, offset: int, doc: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return {"ts": ts_value(ms, form, offset)} | doc, ms


# A valid message and the ts in ms it carries.
VALID_TELEMETRY = st.builds(
    _build,
    TS_MS,
    st.integers(0, 1),
    st.integers(-14 * 60, 14 * 60),
    st.fixed_dictionaries(
        {"schema": st.just(1), "device": st.just("sw-03")},
        optional={"seq": st.integers(0, 2**63 - 1), **{name: group(name) for name in TYPES}},
    ).filter(lambda doc: any(name in doc for name in TYPES)),
)


@st.composite
def near_valid_telemetry(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    """A valid message with at most one thing wrong: a value replaced, or a key added."""
    doc, ts_ms = draw(VALID_TELEMETRY)
    mutation = draw(st.sampled_from(["none", "value", "key"]))
    if mutation == "value":
        # Not ts: a replaced ts that still parses would carry another instant.
        paths: list[tuple[str | None, str]] = [
            (None, key) for key in doc if key not in TYPES and key != "ts"
        ]
        paths += [(name, key) for name in TYPES if name in doc for key in doc[name]]
        parent, leaf = draw(st.sampled_from(paths))
        (doc if parent is None else doc[parent])[leaf] = draw(SCALARS)
    elif mutation == "key":
        where = draw(st.sampled_from([None, *(name for name in TYPES if name in doc)]))
        (doc if where is None else doc[where])[draw(HOSTILE)] = draw(JSONISH)
    return doc, ts_ms


# --- a line protocol reader, written from the spec --------------------------------------------


def split_unescaped(text: str, separator: str) -> list[str]:
    """Split at `separator` unless escaped with a backslash or inside a double-quoted string."""
    parts, current, quoted, i = [], "", False, 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current += text[i : i + 2]
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
        i += 1
    return [*parts, current]


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, tuple[str, Any]], int]:
    series, fields, ts = split_unescaped(line, " ")
    measurement, *tags = split_unescaped(series, ",")
    tag_map: dict[str, str] = {}
    for tag in tags:
        key, value = split_unescaped(tag, "=")
        tag_map[unescape(key)] = unescape(value)
    field_map: dict[str, tuple[str, Any]] = {}
    for field in split_unescaped(fields, ","):
        key, raw = split_unescaped(field, "=")
        if raw.startswith('"'):
            parsed: tuple[str, Any] = (STR, unescape(raw[1:-1]))
        elif raw in ("true", "false"):
            parsed = (BOOL, raw == "true")
        elif raw.endswith("i"):
            parsed = (INT, int(raw[:-1]))
        else:
            parsed = (FLOAT, float(raw))
        field_map[unescape(key)] = parsed
    return unescape(measurement), tag_map, field_map, int(ts)


def expected_fields(
    name: str, values: dict[str, Any], seq: int | None
) -> dict[str, tuple[str, Any]]:
    kinds = TYPES[name]
    out: dict[str, tuple[str, Any]] = {
        key: (kinds[key], float(value) if kinds[key] == FLOAT else value)
        for key, value in values.items()
        if value is not None
    }
    if seq is not None:
        out["seq"] = (INT, seq)
    return out


def check_lines(reading: DecodedReading, groups: dict[str, dict[str, Any]], ts_ms: int) -> None:
    lines = reading_lines(reading)
    parsed = {measurement: rest for measurement, *rest in map(parse_line, lines)}
    assert len(parsed) == len(lines)
    assert set(parsed) == {name for name, values in groups.items() if values}
    for name, (tags, fields, line_ts) in parsed.items():
        assert tags == {"site": reading.site, "kind": reading.kind, "device": reading.device}
        assert fields == expected_fields(name, groups[name], reading.seq)
        assert line_ts == ts_ms


# --- properties ---------------------------------------------------------------------------------

TOPICS = st.sampled_from(
    ["fleet/v1/hq/segway/sw-03/telemetry", "owntracks/alice/phone", "owntracks/bob/hh-1"]
) | st.builds("/".join, st.lists(HOSTILE, min_size=1, max_size=7))


def outcome(topic: str, payload: bytes) -> DecodedReading | Rejected | None:
    """What decode gives; a Rejected is returned, so that anything else escaping fails the test."""
    try:
        result = decoder().decode(topic, payload)
    except Rejected as rejected:
        event(f"rejected: {rejected.reason}")
        return rejected
    event("reading" if result is not None else "ignored")
    return result


def is_clean(rejected: Rejected) -> bool:
    return 0 < len(rejected.detail) < 400


@given(topic=TOPICS, payload=st.binary(max_size=300))
def test_arbitrary_bytes_give_only_the_three_outcomes(topic, payload):
    result = outcome(topic, payload)
    assert result is None or isinstance(result, DecodedReading) or is_clean(result)


@given(topic=TOPICS, doc=JSONISH | st.dictionaries(st.sampled_from(["_type", "lat", "lon", "tst", "batt", "bs"]) | HOSTILE, SCALARS))  # fmt: skip
def test_arbitrary_json_gives_only_the_three_outcomes(topic, doc):
    result = outcome(topic, json.dumps(doc).encode())
    if isinstance(result, Rejected):
        assert is_clean(result)
    elif result is not None:
        check_lines(
            result, {"battery": {}, "location": {}, "status": {}} | _groups(result), result.ts_ms
        )


def _groups(reading: DecodedReading) -> dict[str, dict[str, Any]]:
    return {
        name: dataclasses.asdict(group)
        for name, group in (("battery", reading.battery), ("location", reading.location), ("status", reading.status))
        if group is not None
    }  # fmt: skip


@given(message=near_valid_telemetry())
def test_near_valid_telemetry_either_fails_cleanly_or_keeps_every_value(message):
    doc, ts_ms = message
    reading = outcome("fleet/v1/hq/segway/sw-03/telemetry", json.dumps(doc).encode())
    if isinstance(reading, Rejected):
        assert is_clean(reading)
        return
    assert reading is not None
    check_lines(reading, {name: doc.get(name) or {} for name in TYPES}, ts_ms)
    assert reading.seq == doc.get("seq")


@given(message=VALID_TELEMETRY)
def test_valid_telemetry_is_accepted_and_keeps_every_value(message):
    doc, ts_ms = message
    reading = decoder().decode("fleet/v1/hq/segway/sw-03/telemetry", json.dumps(doc).encode())
    assert reading is not None
    check_lines(reading, {name: doc.get(name) or {} for name in TYPES}, ts_ms)


@given(
    ms=st.integers(WINDOW_MS[0] + 1000, WINDOW_MS[1]),
    batt=st.none() | st.integers(0, 100),
    bs=st.none() | st.integers(0, 3),
    lat=st.floats(-90, 90),
    lon=st.floats(-180, 180),
    extra=st.dictionaries(HOSTILE.filter(lambda k: k not in {"batt", "bs", "lat", "lon", "tst", "acc", "vel", "cog"}), JSONISH, max_size=3),
)  # fmt: skip
def test_owntracks_locations_keep_their_values(ms, batt, bs, lat, lon, extra):
    doc = extra | {"_type": "location", "lat": lat, "lon": lon, "tst": ms // 1000}
    doc |= {k: v for k, v in (("batt", batt), ("bs", bs)) if v is not None}
    reading = decoder().decode("owntracks/alice/phone", json.dumps(doc).encode())
    assert reading is not None
    charging = {None: None, 0: None, 1: False, 2: True, 3: True}[bs]
    battery = {k: v for k, v in (("pct", batt), ("charging", charging)) if v is not None}
    groups = {"battery": battery, "location": {"lat": lat, "lon": lon}, "status": {}}
    check_lines(reading, groups, ms // 1000 * 1000)
