"""The msgspec fast path against the pydantic models: generated from the contract, and the same
outcome for every message (the same reading, value and type, or the same reason and sentence).

The differential run (tests/fuzz/test_decoder.py, 10,000 cases) writes its JSON text with
`telemetry_text` and `owntracks_text` below, so that it reaches what json.dumps never writes:
duplicate keys, number spellings (1e2, -0, 5.0 for an integer), escapes, whitespace, a
trailing newline in a string; its hostile surfaces are compared the same way.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import msgspec
import pytest
from annotated_types import Interval
from pydantic import BaseModel, StringConstraints, field_validator

from fleet.daemon.wire import Decoder, DeviceRef, Rejected, fast
from fleet.drivers.readings import GROUPS, LIMITS, field_names
from tests.fuzz.tape import Tape

NOW_MS = 1795986000000  # 2026-11-29T21:00:00Z
TOPIC = "fleet/v1/hq/segway/sw-03/telemetry"


def make(*, fast_path: bool) -> Decoder:
    return Decoder(
        prefix="fleet",
        default_site="hq",
        kinds=["segway", "handheld"],
        registry={"sw-03": DeviceRef("hq", "segway")},
        owntracks_map={"alice/phone": "hh-07"},
        max_payload_bytes=65536,
        max_future_s=300,
        max_age_s=30 * 86400,
        now_ms=lambda: NOW_MS,
        fast_path=fast_path,
    )


def outcome(fast_path: bool, topic: str, payload: bytes) -> str:
    """The decoder's result as text that tells 5 from 5.0 and -0.0 from 0.0."""
    try:
        return repr(make(fast_path=fast_path).decode(topic, payload))
    except Rejected as rejected:
        return repr((rejected.reason, rejected.detail, rejected.reading))


def assert_same(topic: str, payload: bytes) -> str:
    mine, reference = outcome(True, topic, payload), outcome(False, topic, payload)
    assert mine == reference, payload
    return mine


# --- generated from the contract ----------------------------------------------------------------


def _types(group: str) -> dict[str, Any]:
    info = msgspec.inspect.type_info(fast._GROUP_STRUCTS[group])
    assert isinstance(info, msgspec.inspect.StructType)
    assert info.forbid_unknown_fields
    return {f.name: f.type for f in info.fields}


def test_every_group_field_is_generated_in_contract_order():
    for group, cls in GROUPS.items():
        assert tuple(_types(group)) == field_names(cls)


def test_every_range_of_limits_is_in_the_structs_and_nothing_else():
    found = {}
    for group in GROUPS:
        for name, t in _types(group).items():
            inner: Any = t.types[0] if isinstance(t, msgspec.inspect.UnionType) else t
            if getattr(inner, "ge", None) is not None:
                found[group, name] = (inner.ge, inner.le)
                assert (inner.gt, inner.lt) == (None, None)
    assert found == LIMITS


def test_string_rules_end_at_the_very_end():
    firmware = _types("status")["firmware"].types[0]
    assert (firmware.min_length, firmware.max_length) == (1, 32)
    assert firmware.pattern.endswith(r"\Z")  # Python's "$" would take "1.3.9\n"


def test_the_contract_markers_become_msgspec_keywords():
    assert fast._constraints(Interval(ge=0, le=5)) == {"ge": 0, "le": 5}
    assert fast._constraints(StringConstraints(min_length=1, pattern="^a$")) == {
        "min_length": 1,
        "pattern": "^a$",
    }


@pytest.mark.parametrize(
    "marker",
    [StringConstraints(strip_whitespace=True), StringConstraints(to_lower=True)],
    ids=["strip", "lower"],
)
def test_a_rule_msgspec_cannot_express_stops_the_import(marker):
    with pytest.raises(TypeError, match="no msgspec form"):
        fast._constraints(marker)


def test_an_unanchored_pattern_is_refused():
    with pytest.raises(TypeError, match="anchored"):
        fast._python_pattern("[a-z]+")


# --- corners, each on both paths ----------------------------------------------------------------


def based(rest: str) -> str:
    """A telemetry document of sw-03 at NOW with `rest` (JSON members) after the envelope."""
    return '{"schema":1,"device":"sw-03","ts":"2026-11-29T21:00:00Z",' + rest + "}"


CORNERS = [
    pytest.param(TOPIC, based('"status":{"firmware":"1.3.9\\n"}'), "range", id="firmware-newline"),
    pytest.param(TOPIC, '{"schema":1,"device":"sw-03\\n","ts":1,"battery":{"pct":1}}', "range", id="device-newline"),
    pytest.param(TOPIC, based('"battery":{"pct":5,"pct":6}'), "pct=6.0", id="duplicate-last-wins"),
    pytest.param(TOPIC, based('"battery":{"pct":500,"pct":6}'), "pct=6.0", id="duplicate-first-bad"),
    pytest.param(TOPIC, based('"battery":{"pct":6,"pct":500}'), "range", id="duplicate-last-bad"),
    pytest.param(TOPIC, based('"battery":{"pct":-0}'), "pct=0.0", id="minus-zero-int"),
    pytest.param(TOPIC, based('"battery":{"pct":-0.0}'), "pct=-0.0", id="minus-zero-float"),
    pytest.param(TOPIC, based('"battery":{"pct":1E1}'), "pct=10.0", id="exponent"),
    pytest.param(TOPIC, based('"status":{"error_code":5.0}'), "schema", id="integral-float-for-int"),
    pytest.param(TOPIC, based('"status":{"state":"\\u0072iding"}'), "RIDING", id="escape"),
    pytest.param(TOPIC, based('"battery":{"pct":1e-400}'), "pct=0.0", id="underflow"),
    pytest.param(TOPIC, based('"battery":{"pct":1e400}'), "range", id="overflow"),
    pytest.param(TOPIC, based('"seq":9223372036854775807,"battery":{"pct":1}'), "seq=9223372036854775807", id="seq-max"),
    pytest.param(TOPIC, based('"seq":18446744073709551616,"battery":{"pct":1}'), "range", id="seq-beyond-uint64"),
    pytest.param(TOPIC, '{"schema":1,"device":"sw-03","ts":1795986000.0005,"battery":{"pct":1}}', "ts_ms=1795986000000", id="ts-sub-ms"),
    pytest.param(TOPIC, '{"schema":1.0,"device":"sw-03","ts":1,"battery":{"pct":1}}', "schema", id="schema-float"),
    pytest.param(TOPIC, based('"battery":{"pct":1},"battery":{}'), "schema", id="duplicate-group-empty"),
    pytest.param(TOPIC, '\ufeff' + based('"battery":{"pct":1}'), "bad_json", id="bom"),
    pytest.param(TOPIC, ' \n' + based('"battery":{"pct":1}') + '\t\r\n', "pct=1.0", id="whitespace"),
    pytest.param("owntracks/bob/hh-1", '{"_type":"location","lat":1,"lon":2,"tst":1795986000,"x":"\\ud800"}', "bad_json", id="owntracks-lone-surrogate"),
    pytest.param("owntracks/bob/hh-1", '{"_type":"location","lat":1,"lon":2,"tst":1795986000,"x":NaN}', "lat=1.0", id="owntracks-nan-ignored"),
    pytest.param("owntracks/bob/hh-1", '{"_type":"location","lat":1,"lon":2,"tst":1795986000,"x":"é"}', "lat=1.0", id="owntracks-unicode"),
    pytest.param("owntracks/bob/hh-1", '{"_type":"location","lat":1,"lon":2,"tst":1795986000,"x":%s}' % ("[" * 300 + "]" * 300), "bad_json", id="owntracks-deep-ignored"),
    pytest.param("owntracks/bob/hh-1", '{"_type":"location","lat":1,"lon":2,"tst":1795986000,"_type":"card"}', "None", id="owntracks-type-last-wins"),
    pytest.param("owntracks/bob/hh-1", '{"_type":"card","lat":"x"}', "None", id="owntracks-card-bad-lat"),
    pytest.param("owntracks/bob/hh-1", '{"_type":"location","lat":null,"lon":2,"tst":1795986000}', "schema", id="owntracks-null-lat"),
]  # fmt: skip


@pytest.mark.parametrize(("topic", "text", "expected"), CORNERS)
def test_corners_give_the_same_outcome_on_both_paths(topic, text, expected):
    assert expected in assert_same(topic, text.encode())


def test_invalid_utf8_in_an_ignored_owntracks_key_is_bad_json_on_both_paths():
    body = b'{"_type":"location","lat":1,"lon":2,"tst":1795986000,"x":"\xff"}'
    assert "bad_json" in assert_same("owntracks/bob/hh-1", body)


def test_the_fast_path_takes_valid_messages_itself():
    body = based('"seq":3,"battery":{"pct":1},"status":{"state":"idle"}').encode()
    assert fast.telemetry(body) is not None
    assert fast.owntracks(b'{"_type":"location","lat":1,"lon":2,"tst":1}') is not None
    assert fast.owntracks(b'{"_type":"lwt","tst":1}') == fast.NOT_A_LOCATION


# --- JSON written for the differential run -----------------------------------------------------------------------

# Per string field: (valid values, refused ones).
_STRINGS = {
    "firmware": (["1.3.9", "v2 (beta)", "x" * 32, "~"], ["", "x" * 33, "1.3\n", '1"3', "é", "a\\b"]),
    "pack_ids": (["C0106,C0107", "A", "x" * 64], ["A,,B", "A B", "A,", "x" * 65, "A\n"]),
    "state": (["riding", "idle", "off"], ["RIDING", "flying", "", "riding\n"]),
}  # fmt: skip
_INTS = {"error_code", "rssi_dbm"}


def _value(tape: Tape, group: str, name: str, hostile: bool) -> object:
    """A valid value of the field; in a hostile document, often an edge, a value just
    outside, or one of the wrong type."""
    how = tape.weighted([(3, "valid"), (2, "edge"), (1, "wrong")]) if hostile else "valid"
    if how == "wrong":
        return tape.pick([None, True, "1", [1], {"a": 1}, 1.5, -1, 2**64, math.nan])
    if name in _STRINGS:
        valid, refused = _STRINGS[name]
        return tape.pick(valid) if how == "valid" else tape.pick(refused)
    if name in ("charging", "locked"):
        return bool(tape.byte() % 2)
    low, high = LIMITS[group, name]
    if how == "edge":
        return tape.pick([low, high, low - 1, high + 1, high + 1e-9, low - 1e-9])
    if name in _INTS or tape.byte() % 4 == 0:
        return int(low + tape.below(int(high - low) + 1))
    return low + (high - low) * tape.below(10**6) / 10**6


def _number(tape: Tape, value: float) -> str:
    """A number in one of JSON's spellings."""
    form = tape.below(4)
    if type(value) is float and form == 1 and value.is_integer() and abs(value) < 1e15:
        return str(int(value)) if value or tape.byte() % 2 else "-0"
    if form == 2:
        return f"{value:e}" if type(value) is float and math.isfinite(value) else json.dumps(value)
    return json.dumps(value)


def _write(tape: Tape, value: object) -> str:
    if isinstance(value, dict):
        items = [f"{json.dumps(k)}:{_write(tape, v)}" for k, v in value.items()]
        if items and tape.below(8) == 7:  # a duplicate key: the earlier value is hostile
            key = tape.pick(list(value))
            items.insert(
                0, f"{json.dumps(key)}:{_write(tape, _value(tape, 'battery', 'pct', True))}"
            )
        space = tape.pick(["", " ", "\n\t"])
        return "{" + f",{space}".join(items) + "}"
    if isinstance(value, float | int) and not isinstance(value, bool):
        return _number(tape, value)
    if isinstance(value, str) and tape.below(4) == 3:
        return '"' + "".join(f"\\u{ord(c):04x}" for c in value) + '"'  # every char escaped
    return json.dumps(value, ensure_ascii=bool(tape.byte() % 2))


def telemetry_text(tape: Tape) -> bytes:
    """A telemetry document's JSON text; the zero tape's is valid, as is every non-hostile one's
    (hypothesis favours zero bytes, so rare choices are the high ones)."""
    hostile = tape.byte() % 2 == 1  # else every value is valid
    ts = tape.weighted([(6, "iso"), (3, "epoch"), (1, "odd")])
    ms = NOW_MS - tape.below(29 * 86400_000)
    doc: dict[str, Any] = {"schema": 1, "device": "sw-03"}
    doc["ts"] = {
        "iso": f"2026-11-{1 + tape.below(29):02d}T{tape.below(24):02d}:00:00.{tape.below(1000):03d}Z",
        "epoch": ms / 1000 if tape.byte() % 2 else ms // 1000,
        "odd": tape.pick(["2026-11-29T21:00:00", "yesterday", True, NOW_MS, -1, "2026-11-29T21:00:00+01:00"]),
    }[ts]  # fmt: skip
    if tape.byte() % 2:
        doc["seq"] = tape.pick([0, 7, 2**63 - 1, 2**63, -1, 1.0, None])
    for group, cls in GROUPS.items():
        if tape.below(3) == 2:
            continue
        names = [n for n in field_names(cls) if n in ("lat", "lon") or tape.below(4) != 3]
        doc[group] = {n: _value(tape, group, n, hostile) for n in names}
    if tape.below(20) == 19:
        doc[tape.pick(["schema", "batery", "battery"])] = tape.pick([2, True, {}, None])
    return _write(tape, doc).encode()


def owntracks_text(tape: Tape) -> bytes:
    hostile = tape.byte() % 2 == 1
    doc: dict[str, Any] = {"_type": tape.weighted([(8, "location"), (1, "lwt"), (1, 5)])}
    for key, (group, name) in {"batt": ("battery", "pct"), "lat": ("location", "lat"), "lon": ("location", "lon"), "acc": ("location", "accuracy_m"), "vel": ("location", "speed_kmh"), "cog": ("location", "heading_deg")}.items():  # fmt: skip
        if key in ("lat", "lon") or tape.byte() % 2:
            doc[key] = _value(tape, group, name, hostile)
    if tape.byte() % 2:
        doc["bs"] = tape.pick([0, 1, 2, 3, 4, -1, True, 2.0])
    doc["tst"] = tape.pick(
        [NOW_MS // 1000 - tape.below(86400), NOW_MS / 1000, "2026-11-29T21:00:00Z", None]
    )
    doc[tape.pick(["tid", "conn", "inregions", "alt"])] = tape.pick(["al", ["home"], 12, None, 1e300])  # fmt: skip
    return _write(tape, doc).encode()


def left_to_pydantic(payload: bytes) -> bool:
    """What msgspec refuses and pydantic may take: a NaN or Infinity token, a key sent twice
    whose first value is bad (msgspec checks each, pydantic the last), and what `_plain`
    keeps off the fast path (non-ASCII, many brackets)."""
    odd = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal odd
        odd = odd or len({k for k, _ in items}) < len(items)
        return dict(items)

    def constant(name: str) -> float:
        nonlocal odd
        odd = True
        return float(name)

    json.loads(payload, object_pairs_hook=pairs, parse_constant=constant)
    return odd or not fast._plain(payload)


def model_accepts(topic: str, payload: bytes) -> bool:
    """Whether the pydantic models alone (no topic, registry or time checks) take it."""
    try:
        if topic == TOPIC:
            Decoder._validated(payload)
        else:
            Decoder._validated_owntracks(payload)
    except Rejected:
        return False
    return True


def test_a_validator_or_timestamp_the_fast_path_does_not_know_stops_the_import():
    class Checked(BaseModel):
        pct: float

        @field_validator("pct")
        @classmethod
        def _even(cls, value: float) -> float:
            return value

    class Naive(BaseModel):
        at: datetime

    with pytest.raises(TypeError, match="_even is a rule the fast path lacks"):
        fast._model_struct(Checked)
    assert fast._model_struct(Checked, validated_after={"_even"})
    with pytest.raises(TypeError, match="not a Timestamp"):
        fast._model_struct(Naive)
