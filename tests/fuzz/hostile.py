"""Hostile JSON messages built from a tape: near-valid documents and the ways they go wrong.

A case starts from a valid document of a fixed catalogue and applies 0-3 mutations (a
value replaced by one of the wrong type, a huge number, NaN, 70,000 characters, control
characters and unicode, nesting thousands of levels deep; a key deleted or added; a value
wrapped in a list), then damage to the serialised bytes (truncated, a flipped byte, bytes
inserted, a BOM, UTF-16, trailing garbage, a duplicated key). The zero tape reads as the
first catalogue document, unchanged, on its own topic.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from tests.fuzz.tape import Tape

NOW_MS = 1795986000000  # 2026-11-29T21:00:00Z: the decoder's clock in the fuzz runs


@dataclass(frozen=True)
class Message:
    """One MQTT message of a case; `intact` when no mutation or damage was applied."""

    topic: str
    payload: bytes
    intact: bool = False
    doc: object = None

    def __repr__(self) -> str:
        shown = self.payload if len(self.payload) <= 300 else self.payload[:300] + b"..."
        return f"Message(topic={self.topic!r}, payload={shown!r} ({len(self.payload)} bytes))"


# --- hostile values -----------------------------------------------------------------------------

HUGE_NUMBERS = (2**63, 2**64, -(2**63) - 1, 10**400, -(10**400), 1e308, -1e308, 5e-324, -0.0)
ODD_TEXT = ("", " ", "sw-03", "sw-03\n", "SW-03", " sw-03", "a" * 65, "../x", "null", "NaN")


def nested(depth: int, kind: int) -> str:
    """A placeholder for `depth` levels of lists (kind 0), objects (1) or both (2).

    Python's json module recurses and stops near 1,000 levels, so `serialise` writes the
    nesting as text in place of this string.
    """
    return f"@@nest:{depth}:{kind}@@"


def _nesting(match: re.Match[str]) -> str:
    depth, kind = int(match[1]), int(match[2])
    opens = ["[" if kind == 0 or (kind == 2 and level % 2) else '{"a":' for level in range(depth)]
    closes = ["]" if o == "[" else "}" for o in reversed(opens)]
    return "".join(opens) + "1" + "".join(closes)


_NEST = re.compile(r'"@@nest:(\d+):(\d)@@"')


def hostile_value(tape: Tape) -> object:
    kind = tape.below(12)
    if kind == 0:
        return None
    if kind == 1:
        return bool(tape.byte() % 2)
    if kind == 2:
        return tape.int64()
    if kind == 3:
        return tape.pick(HUGE_NUMBERS)
    if kind == 4:
        return tape.float64()  # NaN and infinities serialise as NaN / Infinity tokens
    if kind == 5:
        return tape.text()
    if kind == 6:
        return tape.utf8()
    if kind == 7:
        return "x" * tape.below(70_001)
    if kind == 8:
        return nested(tape.below(3001), tape.below(3))
    if kind == 9:
        return [hostile_value(tape) for _ in range(tape.below(3))]
    if kind == 10:
        return {tape.text(6): tape.int64() for _ in range(tape.below(3))}
    return tape.pick(ODD_TEXT)


# --- documents ----------------------------------------------------------------------------------


def _ts(rng: random.Random, ms: int) -> object:
    form = rng.randrange(3)
    if form == 0:
        return ms / 1000
    if form == 1:
        return ms // 1000
    zone = timezone(timedelta(minutes=rng.randrange(-14 * 60, 14 * 60 + 1)))
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone).isoformat()


_GROUPS: dict[str, dict[str, Any]] = {
    "battery": {"pct": (0, 100), "voltage_v": (0, 200), "current_a": (-1000, 1000),
                "temp_c": (-60, 150), "charging": bool, "health_pct": (0, 100)},
    "location": {"lat": (-90, 90), "lon": (-180, 180), "accuracy_m": (0, 100_000),
                 "speed_kmh": (-100, 400), "heading_deg": (0, 360)},
    "status": {"state": ["idle", "riding", "charging", "docked", "fault", "off"],
               "odometer_km": (0, 10**7), "range_km": (0, 10_000), "error_code": (0, 65535, int),
               "locked": bool, "rssi_dbm": (-150, 20, int), "firmware": ["1.3.9", "v2 (beta)"]},
}  # fmt: skip


def _value(rng: random.Random, spec: Any) -> object:
    if spec is bool:
        return rng.random() < 0.5
    if isinstance(spec, list):
        return rng.choice(spec)
    low, high, *integral = spec
    if integral or rng.random() < 0.2:
        return rng.randint(low, high)
    edge = rng.random()
    return low if edge < 0.05 else high if edge < 0.1 else rng.uniform(low, high)


def _group(rng: random.Random, name: str) -> dict[str, object]:
    fields = _GROUPS[name]
    keys = [k for k in fields if k in ("lat", "lon") or rng.random() < 0.6] or [next(iter(fields))]
    return {k: _value(rng, fields[k]) for k in keys}


def telemetry_doc(rng: random.Random, device: str, ms: int) -> dict[str, Any]:
    """A valid telemetry document of `device` at `ms` (random groups and values)."""
    doc: dict[str, Any] = {"schema": 1, "device": device, "ts": _ts(rng, ms)}
    if rng.random() < 0.8:
        doc["seq"] = rng.choice([0, 1, rng.randrange(2**20), 2**62, 2**63 - 1])
    groups = [g for g in _GROUPS if rng.random() < 0.5] or [rng.choice(list(_GROUPS))]
    for name in groups:
        doc[name] = _group(rng, name)
    return doc


def telemetry_catalogue(size: int, now_ms: int = NOW_MS) -> list[dict[str, Any]]:
    """Valid documents of device sw-03 (the first the smallest), the same on every run."""
    rng = random.Random(20261129)
    docs: list[dict[str, Any]] = [
        {"schema": 1, "device": "sw-03", "ts": now_ms // 1000, "battery": {"pct": 50}}
    ]
    while len(docs) < size:
        docs.append(telemetry_doc(rng, "sw-03", now_ms - rng.randrange(0, 29 * 86400_000)))
    return docs


def owntracks_catalogue(size: int, now_ms: int = NOW_MS) -> list[dict[str, Any]]:
    """OwnTracks messages as the app sends them: locations (with keys we ignore) and others."""
    rng = random.Random(1795986)
    first = {"_type": "location", "lat": 41.27, "lon": -72.95, "tst": now_ms // 1000}
    docs: list[dict[str, Any]] = [first]
    while len(docs) < size:
        doc: dict[str, Any] = {
            "_type": "location",
            "lat": rng.uniform(-90, 90),
            "lon": rng.uniform(-180, 180),
            "tst": (now_ms - rng.randrange(0, 29 * 86400_000)) // 1000,
        }
        for key, spec in (("batt", (0, 100, int)), ("bs", (0, 3, int)), ("acc", (0, 5000)),
                          ("vel", (0, 120, int)), ("cog", (0, 360, int))):  # fmt: skip
            if rng.random() < 0.6:
                doc[key] = _value(rng, spec)
        for key, value in (("tid", "ab"), ("conn", "w"), ("t", "u"), ("alt", 12), ("BSSID", "x")):
            if rng.random() < 0.3:
                doc[key] = value
        docs.append(doc)
    docs += [{"_type": t} for t in ("transition", "waypoint", "lwt", "card", "cmd", "status")]
    return docs


TELEMETRY_DOCS = telemetry_catalogue(256)
OWNTRACKS_DOCS = owntracks_catalogue(256)

# --- mutation and damage ------------------------------------------------------------------------


def _paths(doc: object, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every place in `doc`: the root, each container and each leaf."""
    found = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += _paths(value, (*prefix, i))
    return found


_KEYS = ("schema", "device", "seq", "ts", "battery", "location", "status", "pct", "lat", "lon",
         "tst", "_type", "batt", "bs", "firmware", "state")  # fmt: skip


def mutate(tape: Tape, doc: object) -> object:
    """`doc` with one mutation at one of its places."""
    paths = _paths(doc)
    path = paths[1 + tape.below(len(paths) - 1)] if len(paths) > 1 else ()
    op = tape.weighted([(4, "set"), (2, "delete"), (2, "add"), (1, "wrap"), (1, "root")])
    if op == "root" or not path:
        return hostile_value(tape)
    parent: Any = doc
    for step in path[:-1]:
        parent = parent[step]
    leaf = path[-1]
    if op == "set":
        parent[leaf] = hostile_value(tape)
    elif op == "delete":
        del parent[leaf]
    elif op == "add" and isinstance(parent, dict):
        parent[tape.pick(_KEYS) if tape.byte() % 2 else tape.text(8)] = hostile_value(tape)
    elif op == "wrap":
        parent[leaf] = [parent[leaf]] if tape.byte() % 2 else {"value": parent[leaf]}
    return doc


def serialise(tape: Tape, doc: object) -> tuple[bytes, bool]:
    """The document's JSON, maybe damaged; True when it was not."""
    style = tape.byte()
    text = json.dumps(
        doc, ensure_ascii=bool(style & 1), separators=(",", ":") if style & 2 else None
    )
    text = _NEST.sub(_nesting, text)
    data = text.encode("utf-8", "surrogatepass")
    damage = tape.weighted(
        [(12, "none"), (1, "truncate"), (1, "flip"), (1, "insert"), (1, "bom"), (1, "utf16"),
         (1, "trailing"), (1, "duplicate"), (1, "latin1")]
    )  # fmt: skip
    at = tape.below(len(data) + 1)
    if damage == "truncate":
        return data[:at], False
    if damage == "flip" and data:
        i = at % len(data)
        return data[:i] + bytes([data[i] ^ (tape.byte() or 0x80)]) + data[i + 1 :], False
    if damage == "insert":
        return data[:at] + tape.take(tape.below(9)) + data[at:], False
    if damage == "bom":
        return b"\xef\xbb\xbf" + data, False
    if damage == "utf16":
        return text.encode("utf-16", "surrogatepass"), False
    if damage == "trailing":
        return data + tape.take(1 + tape.below(8)), False
    if damage == "duplicate" and data.startswith(b"{") and len(data) > 2:
        return b'{"device":"sw-04","schema":2,"_type":"card",' + data[1:], False
    if damage == "latin1":
        return text.encode("latin-1", "replace"), False
    return data, True


def document(tape: Tape, catalogue: list[dict[str, Any]]) -> tuple[bytes, object, bool]:
    doc: object = copy.deepcopy(tape.pick(catalogue))
    mutations = tape.weighted([(3, 0), (3, 1), (2, 2), (1, 3)])
    for _ in range(mutations):
        doc = mutate(tape, doc)
    payload, undamaged = serialise(tape, doc)
    return payload, doc, undamaged and mutations == 0


# --- topics -------------------------------------------------------------------------------------


def hostile_level(tape: Tape) -> str:
    return tape.text(70) if tape.byte() % 2 else tape.utf8(70)


def telemetry_topic(tape: Tape) -> str:
    """Mostly the device's own topic; else one with a level replaced, added or removed."""
    levels = ["fleet", "v1", "hq", "segway", "sw-03", "telemetry"]
    how = tape.weighted([(12, "own"), (2, "other"), (1, "level"), (1, "extra"), (1, "short"),
                         (1, "wild")])  # fmt: skip
    if how == "other":
        return tape.pick(
            [
                "fleet/v1/hq/segway/sw-04/telemetry",  # the document says sw-03
                "fleet/v1/north/segway/sw-03/telemetry",  # the registry says hq
                "fleet/v1/hq/handheld/sw-03/telemetry",
                "fleet/v1/hq/tank/sw-03/telemetry",  # unknown kind
                "fleet/v1/hq/agent/sw-03/telemetry",
                "fleet/v2/hq/segway/sw-03/telemetry",
                "fleet/v1/hq/segway/sw-03/availability",
                "Fleet/v1/hq/segway/sw-03/telemetry",
            ]
        )
    if how == "level":
        levels[2 + tape.below(4)] = hostile_level(tape)
    elif how == "extra":
        levels.insert(2 + tape.below(5), hostile_level(tape))
    elif how == "short":
        del levels[2 + tape.below(4)]
    elif how == "wild":
        return hostile_level(tape)
    return "/".join(levels)


# sw-03 is registered without an OwnTracks identity, hh-07 as alice/phone (test_decoder).
IMPOSTORS = ["owntracks/mallory/sw-03", "owntracks/mallory/hh-07", "owntracks/alice/hh-07"]


def owntracks_topic(tape: Tape) -> str:
    how = tape.weighted([(6, "mapped"), (6, "plain"), (1, "user"), (1, "device"), (1, "extra"),
                         (1, "wild"), (1, "impostor")])  # fmt: skip
    if how == "mapped":
        return "owntracks/alice/phone"  # mapped to hh-07 in the registry
    if how == "impostor":  # an unregistered pair naming a registered device
        return tape.pick(IMPOSTORS)
    user, device = "bob", "hh-1"
    if how == "user":
        user = hostile_level(tape)
    elif how == "device":
        device = hostile_level(tape)
    elif how == "extra":
        return f"owntracks/{user}/{device}/{hostile_level(tape)}"
    elif how == "wild":
        return "owntracks/" + hostile_level(tape)
    return f"owntracks/{user}/{device}"


def _message(
    topic: Callable[[Tape], str], catalogue: list[dict[str, Any]]
) -> Callable[[bytes], Message]:
    def build(data: bytes) -> Message:
        tape = Tape(data)
        payload, doc, intact = document(tape, catalogue)
        return Message(topic(tape), payload, intact, doc)

    return build


def telemetry_messages(
    catalogue: list[dict[str, Any]] = TELEMETRY_DOCS,
) -> st.SearchStrategy[Message]:
    return st.binary(max_size=96).map(_message(telemetry_topic, catalogue))


def owntracks_messages(
    catalogue: list[dict[str, Any]] = OWNTRACKS_DOCS,
) -> st.SearchStrategy[Message]:
    return st.binary(max_size=96).map(_message(owntracks_topic, catalogue))
