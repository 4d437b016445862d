"""Generated readings written to a real InfluxDB come back with the same values, types and
series; hostile strings through lineproto cannot inject anything."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.daemon.collector.lineproto import line
from fleet.daemon.collector.schema import reading_lines
from tests.daemon.wire.test_wire_properties import FLOAT, TYPES, VALID_TELEMETRY, decoder
from tests.harness.servers import InfluxServer

INFLUX_TYPES = {FLOAT: "float", "int": "integer", "bool": "boolean", "str": "string"}
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def db(influx: InfluxServer) -> Iterator[str]:
    # One database for all examples (hypothesis shares it); each example has its own series.
    name = f"roundtrip_{next(_numbers)}"
    influx.create_database(name)
    yield name
    influx.drop_database(name)


def series_of(influx: InfluxServer, db: str, query: str) -> dict[str, list[dict[str, Any]]]:
    """measurement -> its rows as {column: value}, nulls left out."""
    found: dict[str, list[dict[str, Any]]] = {}
    for result in influx.query(query, db)["results"]:
        for series in result.get("series", []):
            found[series["name"]] = [
                {c: v for c, v in zip(series["columns"], row, strict=True) if v is not None}
                for row in series["values"]
            ]
    return found


def field_types(influx: InfluxServer, db: str) -> dict[tuple[str, str], str]:
    types = {}
    for result in influx.query("SHOW FIELD KEYS", db)["results"]:
        for series in result.get("series", []):
            for key, kind in series["values"]:
                types[series["name"], key] = kind
    return types


@settings(max_examples=40, deadline=None)
@given(message=VALID_TELEMETRY)
def test_generated_readings_come_back_identical(influx, db, message):
    doc, ts_ms = message
    device = f"rt-{next(_numbers)}"
    topic = f"fleet/v1/hq/segway/{device}/telemetry"
    reading = decoder().decode(topic, json.dumps(doc | {"device": device}).encode())
    assert reading is not None
    lines = "\n".join(reading_lines(reading))
    influx.write(db, lines)
    influx.write(db, lines)  # the same reading twice is one point: writes are idempotent

    got = series_of(
        influx, db, f"SELECT * FROM battery, location, status WHERE device = '{device}'"
    )
    expected = {}
    for name, kinds in TYPES.items():
        if doc.get(name):
            fields = {k: float(v) if kinds[k] == FLOAT else v for k, v in doc[name].items()}
            if "seq" in doc:
                fields["seq"] = doc["seq"]
            tags = {"site": "hq", "kind": "segway", "device": device}
            expected[name] = [{"time": ts_ms, **tags, **fields}]
    assert got == expected

    types = field_types(influx, db)
    for name, kinds in TYPES.items():
        for key in doc.get(name) or {}:
            assert types[name, key] == INFLUX_TYPES[kinds[key]]
        if doc.get(name) and "seq" in doc:
            assert types[name, "seq"] == "integer"


# Tag values and field keys as hostile as lineproto accepts and InfluxDB keeps exactly (Point's
# \n \t \r escapes and a trailing backslash in a tag value are lossy by design: see lineproto).
_SPECIAL = list(" ,=\"'\\#/+*_-.aZé😀")
TAG_VALUES = st.text(alphabet=st.sampled_from(_SPECIAL), min_size=1, max_size=10).filter(
    lambda v: not v.endswith("\\")
)
FIELD_KEYS = st.text(
    alphabet=st.sampled_from([c for c in _SPECIAL if c != "\\"]), min_size=1, max_size=10
).filter(lambda k: k not in {"time", "id", "k"})
STRINGS = st.text(max_size=40)  # any text, newlines, quotes and backslashes included


@settings(max_examples=40, deadline=None)
@given(tag_value=TAG_VALUES, field_key=FIELD_KEYS, text=STRINGS, number=st.floats(allow_nan=False, allow_infinity=False))  # fmt: skip
def test_hostile_strings_cannot_inject(influx, db, tag_value, field_key, text, number):
    ident = str(next(_numbers))
    fields = {field_key: text, "n": number} if field_key != "n" else {field_key: text}
    influx.write(db, line("hostile", {"k": tag_value, "id": ident}, fields, 1000))
    rows = series_of(influx, db, f"SELECT * FROM hostile WHERE id = '{ident}'")["hostile"]
    if "n" in rows[0]:
        rows[0]["n"] = float(rows[0]["n"])  # JSON gives a whole float as an int
    assert rows == [{"time": 1000, "id": ident, "k": tag_value, **fields}]
    values = influx.rows('SHOW TAG VALUES FROM hostile WITH KEY = "k"', db)
    assert {"key": "k", "value": tag_value} in values
