"""Telemetry and OwnTracks messages through the collector's decoder and line building.

Per message exactly one of: a DecodedReading whose InfluxDB lines are well formed and which
survives a round trip through the contract's JSON; None (an OwnTracks message that is not
a location); or Rejected with a reason and a short, printable detail. Anything else
escaping `decode` or `reading_lines` is a bug: in the collector it is an internal error.

Every message also goes through the pydantic-only decoder (`fast_path=False`, the reference):
the msgspec fast path must give the very same outcome - the same reading, value for value and
type for type, or the same reason and sentence. tests/daemon/wire/test_fast.py adds valid and
near-valid documents written with JSON's corners (duplicate keys, number spellings, escapes).
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.daemon import wire
from fleet.daemon.collector.schema import reading_lines
from fleet.daemon.wire import DecodedReading, Decoder, DeviceRef, Rejected, fast
from tests.daemon.wire.test_fast import (
    TOPIC,
    assert_same,
    left_to_pydantic,
    model_accepts,
    owntracks_text,
    telemetry_text,
)
from tests.fuzz.cases import FUZZ, Tally, check_scale, examples_for, tally
from tests.fuzz.hostile import (
    IMPOSTORS,
    NOW_MS,
    Message,
    owntracks_messages,
    telemetry_messages,
)
from tests.fuzz.tape import Tape

pytestmark = pytest.mark.fuzz

MAX_PAYLOAD = 65536  # the collector's default max_payload_bytes


def decoder(*, fast_path: bool = True) -> Decoder:
    return Decoder(
        fast_path=fast_path,
        prefix="fleet",
        default_site="hq",
        kinds=["segway", "handheld"],
        registry={"sw-03": DeviceRef("hq", "segway"), "hh-07": DeviceRef("hq", "handheld")},
        owntracks_map={"alice/phone": "hh-07"},
        max_payload_bytes=MAX_PAYLOAD,
        max_future_s=300,
        max_age_s=30 * 86400,
        now_ms=lambda: NOW_MS,
    )


_ID = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_VALUE = r'(-?\d+(\.\d+)?(e[+-]?\d+)?|-?\d+i|true|false|"[^"\\\n]*")'
_LINE = re.compile(
    rf"(battery|location|status),device={_ID},kind={_ID},site={_ID} "
    rf"[a-z_]+={_VALUE}(,[a-z_]+={_VALUE})* (\d+)"
)


def check_reading(reading: DecodedReading) -> None:
    """Its lines are the schema's, and the contract's own JSON of it decodes to the same."""
    lines = reading_lines(reading)
    assert lines, "a reading without a point"
    for line in lines:
        match = _LINE.fullmatch(line)
        assert match, f"malformed line {line!r}"
        assert int(match[match.lastindex or 0]) == reading.ts_ms
    again = decoder().decode(
        wire.telemetry_topic("fleet", reading.site, reading.kind, reading.device),
        wire.encode_telemetry(
            wire.Telemetry.model_validate(
                {
                    "schema": 1,
                    "device": reading.device,
                    "seq": reading.seq,
                    "ts": datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=reading.ts_ms),
                    "battery": reading.battery,
                    "location": reading.location,
                    "status": reading.status,
                }
            )
        ),
    )
    assert again is not None
    assert reading_lines(again) == lines


def check_rejected(rejected: Rejected) -> None:
    assert isinstance(rejected.reason, wire.Reason)
    assert rejected.reason is not wire.Reason.INTERNAL_ERROR
    detail = rejected.detail
    # A detail goes to logs and dead letters: short, and no raw control character in it.
    assert 0 < len(detail) < 400, detail
    assert detail.isprintable(), f"unprintable detail {detail!r}"


def outcome(d: Decoder, topic: str, payload: bytes) -> DecodedReading | Rejected | None:
    try:
        return d.decode(topic, payload)
    except Rejected as rejected:
        return rejected


def same(result: DecodedReading | Rejected | None) -> str:
    """What must not differ between the two paths: repr tells 5 from 5.0, -0.0 from 0.0."""
    if isinstance(result, Rejected):
        return repr((result.reason, result.detail, result.reading))
    return repr(result)


def run_one(t: Tally, topic: str, payload: bytes) -> DecodedReading | Rejected | None:
    reference = outcome(decoder(fast_path=False), topic, payload)
    reading = outcome(decoder(), topic, payload)
    assert same(reading) == same(reference), "msgspec and pydantic paths differ"
    if isinstance(reading, Rejected):
        rejected = reading
        check_rejected(rejected)
        t.add(str(rejected.reason))
        return rejected
    if reading is None:
        t.add("ignored")
        return None
    check_reading(reading)
    t.add("reading")
    return reading


def test_telemetry_messages():
    t = tally("telemetry")

    @FUZZ
    @given(telemetry_messages())
    def one(m: Message) -> None:
        t.examples += 1
        result = run_one(t, m.topic, m.payload)
        if m.intact and m.topic == "fleet/v1/hq/segway/sw-03/telemetry":
            assert isinstance(result, DecodedReading), f"a valid document was refused: {result}"

    one()
    check_scale(t)


def test_owntracks_messages():
    t = tally("owntracks")

    @FUZZ
    @given(owntracks_messages())
    def one(m: Message) -> None:
        t.examples += 1
        result = run_one(t, m.topic, m.payload)
        if m.intact and m.topic in ("owntracks/alice/phone", "owntracks/bob/hh-1"):
            location = isinstance(m.doc, dict) and m.doc.get("_type") == "location"
            assert isinstance(result, DecodedReading) if location else result is None, result
        if m.topic in IMPOSTORS and len(m.payload) <= MAX_PAYLOAD:
            # Whatever the payload: the topic alone refuses it.
            assert isinstance(result, Rejected), result
            assert result.reason is wire.Reason.REGISTRY_MISMATCH, result

    one()
    check_scale(t)


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("fleet/v1/hq/segway/sw-03/telemetry", b"[" * 2000 + b"]" * 2000),
        ("fleet/v1/hq/segway/sw-03/telemetry", b'{"a":' * 2000 + b"1" + b"}" * 2000),
        ("owntracks/alice/phone", b'{"_type":' * 5000),
    ],
)
def test_deep_nesting_is_bad_json_saying_how_deep(topic, payload):
    with pytest.raises(Rejected) as caught:
        decoder().decode(topic, payload)
    assert caught.value.reason is wire.Reason.BAD_JSON
    assert "nested deeper than" in caught.value.detail


_PER_EXAMPLE = 10


def test_msgspec_and_pydantic_agree_on_written_json():
    """The fast path against the pydantic path on valid and near-valid JSON text."""
    t = tally("decoder: msgspec vs pydantic, written JSON")
    topics = {"telemetry": (TOPIC, telemetry_text), "owntracks": ("owntracks/bob/hh-1", owntracks_text)}  # fmt: skip

    # Several documents per example: hypothesis's own cost per example (~2 ms here) would
    # otherwise be most of the run. Each document's tape is uniform bytes from a seed that
    # hypothesis draws: its own bytes favour zero so much that the rare choices (an edge, a
    # trailing newline) would hardly ever be read.
    @settings(FUZZ, max_examples=examples_for(_PER_EXAMPLE))
    @given(st.integers(min_value=0, max_value=2**64))
    def one(seed: int) -> None:
        t.examples += 1
        rng = random.Random(seed)
        for tape in (Tape(rng.randbytes(200)) for _ in range(_PER_EXAMPLE)):
            topic, write = topics["owntracks" if tape.below(4) == 3 else "telemetry"]
            payload = write(tape)
            result = assert_same(topic, payload)
            # Every document pydantic's model accepts the fast path accepts too: it is the
            # hot path's validator, not a pre-filter sending the valid ones to pydantic anyway.
            accepted = model_accepts(topic, payload)
            taken = (fast.telemetry if topic == TOPIC else fast.owntracks)(payload) is not None
            assert taken == accepted or (accepted and left_to_pydantic(payload)), payload
            t.add(result.split("(", 1)[0] if "Reason" not in result else result.split("'")[1])

    one()
    check_scale(t)
    assert t.outcomes["DecodedReading"] > 2000, t.outcomes  # valid ones, not only refusals
