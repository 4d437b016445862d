"""Acknowledgement and availability control topics: wire.parse_control + AlertService.control.

Per message: `parse_control` gives a Control of valid ids or None (then the message is the
decoder's, which must refuse it cleanly); `AlertService.control` never raises, and counts a
payload the contract does not allow, or an ack on another site's topic than its alert's, as
`bad_control` (and one it allows not); availability from an agent or for a device the registry
does not back (REGISTRY) as `availability_ignored`. The alert thread, running meanwhile as in
the collector, must survive every queued piece of work: a sentinel reading handed over after
the run comes out as an alert.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.daemon import wire
from tests.fuzz.cases import FUZZ, check_scale, tally
from tests.fuzz.hostile import hostile_level, hostile_value, nested, serialise
from tests.fuzz.rig import FIRING, PREFIX, SITE, alert_service
from tests.fuzz.tape import Tape
from tests.fuzz.test_decoder import check_rejected, decoder

pytestmark = pytest.mark.fuzz

# The firing alert's device, read by the one registered agent.
REGISTRY = f"""
[[devices]]
id = "{FIRING[0]}"
kind = "segway"

[[agents]]
id = "agent-1"
devices = ["{FIRING[0]}"]
"""


# --- cases --------------------------------------------------------------------------------------


def control_topic(tape: Tape) -> str:
    device, rule = FIRING
    levels = {
        "ack": [PREFIX, "v1", SITE, "alerts", device, rule, "ack"],
        "ack-unknown": [PREFIX, "v1", SITE, "alerts", "sw-99", "no_such_rule", "ack"],
        "device": [PREFIX, "v1", SITE, "segway", device, "availability"],
        "agent": [PREFIX, "v1", SITE, "agent", "agent-1", "availability"],
    }[tape.weighted([(4, "ack"), (1, "ack-unknown"), (3, "device"), (3, "agent")])]
    how = tape.weighted([(8, "as is"), (2, "level"), (1, "extra"), (1, "short"), (1, "id")])
    if how == "level":
        levels[2 + tape.below(len(levels) - 3)] = hostile_level(tape)
    elif how == "extra":
        levels.insert(2 + tape.below(len(levels) - 2), hostile_level(tape))
    elif how == "short":
        del levels[2 + tape.below(len(levels) - 3)]
    elif how == "id":  # valid ids, but any: reserved words, 64 characters, other sites
        levels[2 + tape.below(len(levels) - 3)] = tape.pick(
            ["alerts", "agent", "telemetry", "availability", "ack", "a" * 64, "north", "0"]
        )
    return "/".join(levels)


def ack_payload(tape: Tape) -> bytes:
    form = tape.weighted(
        [(4, "name"), (4, "json"), (2, "mutated"), (1, "empty"), (1, "deep"), (1, "bytes"),
         (1, "huge")]
    )  # fmt: skip
    if form == "name":
        return tape.pick(["Sgt. Reyes", "  Ofc. Kim \n", "x" * 65]).encode()
    if form == "json":
        return json.dumps({"by": hostile_value(tape)}).encode()
    if form == "mutated":
        return serialise(tape, {"by": "Sgt. Reyes", tape.text(6): hostile_value(tape)})[0]
    if form == "empty":
        return tape.pick([b"", b" ", b"\n\t", b"{}", b"null", b'{"by": ""}', b'{"by": "  "}'])
    if form == "deep":
        depth, kind = 500 + tape.below(5000), tape.below(3)
        return serialise(tape, {"by": nested(depth, kind)})[0]
    if form == "huge":
        return b'{"by": "' + b"x" * (2 << 20) + b'"}' if tape.byte() % 2 else b"y" * (2 << 20)
    return tape.take(tape.below(40))


def availability_payload(tape: Tape) -> bytes:
    form = tape.weighted([(6, "plain"), (3, "variant"), (1, "text"), (1, "bytes")])
    if form == "plain":
        return tape.pick([b"online", b"offline"])
    if form == "variant":
        return tape.pick(
            [b" online\n", b"ONLINE", b"online\x00", b"on line", b'"online"', b"offline!",
             "online".encode("utf-16"), b"\xef\xbb\xbfonline", b"", b"onlineoffline"]
        )  # fmt: skip
    if form == "text":
        return tape.text(30).encode("utf-8", "surrogatepass")
    return tape.take(tape.below(40))


def control_case(data: bytes) -> tuple[str, bytes]:
    tape = Tape(data)
    topic = control_topic(tape)
    payload = ack_payload(tape) if topic.endswith("/ack") else availability_payload(tape)
    return topic, payload


def expected_bad(control: wire.Control, payload: bytes) -> bool | None:
    """What the contract says of a payload: bad (True), good (False), either (None)."""
    text = payload.decode("utf-8", "replace").strip()
    if control.what != "ack":
        if payload in (b"online", b"offline"):
            return False
        return None if text in ("online", "offline") else True
    if not text:
        return True
    if (control.id, control.rule) == FIRING and control.site != SITE:
        return True  # whoever it names: not on the alert's own site's topic
    if not text.startswith("{"):
        return not a_name(text)  # a plain name
    try:
        decoded = json.loads(text)
    except (ValueError, RecursionError):
        return True
    by = decoded.get("by") if isinstance(decoded, dict) else None
    return not (isinstance(by, str) and a_name(by))


def expected_ignored(control: wire.Control) -> bool:
    """Whether REGISTRY backs this availability message's sender (agent) or device."""
    if control.what == "agent":
        return (control.site, control.id) != (SITE, "agent-1")
    return (control.site, control.kind, control.id) != (SITE, "segway", FIRING[0])


def a_name(text: str) -> bool:
    """A name has something to read: a printable character that is not a space
    (control characters, NUL and line breaks are not names)."""
    return any(ch.isprintable() and not ch.isspace() for ch in text)


# --- the property -------------------------------------------------------------------------------


def test_control_messages(tmp_path):
    t = tally("control (ack, availability)")
    with alert_service(tmp_path, REGISTRY) as rig:
        service = rig.service

        @FUZZ
        @given(st.binary(max_size=64).map(control_case))
        def one(case: tuple[str, bytes]) -> None:
            t.examples += 1
            topic, payload = case
            control = wire.parse_control(PREFIX, topic)
            if control is None:
                # Not a control topic: the decoder's, like any other message.
                try:
                    decoder().decode(topic, payload)
                except wire.Rejected as rejected:
                    check_rejected(rejected)
                t.add("not control")
                return
            for value in (control.site, control.id, *([control.rule] if control.rule else [])):
                wire.check_id("control id", value)
            before = service.counters.bad_control
            ignored_before = service.counters.availability_ignored
            service.control(control, payload)
            counted = service.counters.bad_control - before
            ignored = service.counters.availability_ignored - ignored_before
            assert counted in (0, 1)
            assert counted + ignored in (0, 1), "one message, one count"
            bad = expected_bad(control, payload)
            if bad is not None:
                assert counted == int(bad), f"bad_control {counted}, the contract says {bad}"
            if control.what != "ack" and not counted:
                assert ignored == int(expected_ignored(control)), f"availability_ignored {ignored}"
            verdict = "refused" if counted else "ignored" if ignored else "taken"
            t.add(f"{control.what} {verdict}")

        one()
        rig.check_drained()
    check_scale(t)
