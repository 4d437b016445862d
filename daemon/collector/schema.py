"""The InfluxDB schema: how a decoded reading and an alert event are stored, as line protocol.

Measurements `battery`, `location`, `status` (one point per present group), tags `site`,
`kind`, `device`; fields as in the telemetry JSON (the contract's groups, `drivers/readings.py`)
plus `seq`; timestamps in ms. Measurement `alert`: one point per alert event; `audit`: one
point per change made through the board or the API; `assignment`: one point per sign-out and
sign-in (daemon/board/audit.py). The roll-up
(`rollup.py`) aggregates these fields; `stats.py` writes the `pipeline` measurement.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable
from typing import Any

from fleet.daemon.collector.lineproto import (
    ESCAPE_STRING,
    TS_MS_LIMIT,
    FieldValue,
    build_series_key,
    format_field,
    format_line,
    series_key,
    timestamp,
)
from fleet.daemon.wire import DecodedReading
from fleet.drivers.readings import GROUPS, field_names

MEASUREMENTS = tuple(GROUPS)  # battery, location, status: the groups' names
# Point sorts fields by key; keeping these sorted (seq included) keeps our lines identical to it.
GROUP_FIELDS: dict[str, tuple[str, ...]] = {
    name: tuple(sorted([*field_names(group), "seq"])) for name, group in GROUPS.items()
}
# The hot path: one function per measurement, generated from the group's field types, that
# writes the line straight from the group's attributes - no (name, value) list, no type
# dispatch for the types the contract guarantees. Anything else (a float field holding an
# int in a hand-made reading, NaN) takes lineproto's general `format_field`, which keeps
# Point's formatting and refuses what it refuses.
_I64 = 2**63  # an int written inline (`_INT`, seq) is within int64; others go to format_field
_FLOAT = """    v = g.{name}
    if v is not None:
        if type(v) is float and (t := repr(v))[-1] not in "nf":
            p.append("{name}=" + (t[:-2] if t.endswith(".0") else t))
        else:
            p.append(format_field("{name}", v))"""
_INT = """    v = g.{name}
    if v is not None:
        p.append(f"{name}={{v}}i" if type(v) is int and -_I64 <= v < _I64 else format_field("{name}", v))"""
_BOOL = """    v = g.{name}
    if v is not None:
        p.append(("{name}=true" if v else "{name}=false") if type(v) is bool else format_field("{name}", v))"""
_STR = """    v = g.{name}
    if v is not None:
        p.append('{name}="' + str(v).translate(_ESC) + '"' if isinstance(v, str) else format_field("{name}", v))"""
_SEQ = """    if seq is not None:
        p.append(seq)"""
_TEMPLATES: dict[object, str] = {float: _FLOAT, int: _INT, bool: _BOOL, str: _STR}


def _template(hint: object) -> str:
    base = next(a for a in (*typing.get_args(hint), hint) if a is not type(None))
    if isinstance(base, type) and issubclass(base, str):  # State, a StrEnum: written as text
        base = str
    return _TEMPLATES[base]


def _writer(measurement: str, group: type) -> Callable[[Any, str | None, str, str], str]:
    hints = typing.get_type_hints(group)
    body = [f"def write_{measurement}(g, seq, head, ts):", "    p = []"]
    for name in GROUP_FIELDS[measurement]:
        if format_field(name, 0) != f"{name}=0i":
            raise ValueError(f"field {name!r} needs escaping: not generated")
        body.append(_SEQ if name == "seq" else _template(hints[name]).format(name=name))
    body += ["    if not p:", "        raise ValueError(f'point {head[:40]!r} has no field')"]
    body.append("    return f\"{head} {','.join(p)} {ts}\"")
    scope = {"format_field": format_field, "_ESC": ESCAPE_STRING, "_I64": _I64}
    exec("\n".join(body), scope)  # noqa: S102 - our own field names, checked above
    return typing.cast("Callable[[Any, str | None, str, str], str]", scope[f"write_{measurement}"])


_WRITERS = {m: _writer(m, group) for m, group in GROUPS.items()}
_BATTERY, _LOCATION, _STATUS = (_WRITERS[m] for m in MEASUREMENTS)


# One entry per device (its three prefixes together), bounded: an entry is ~0.45 kB, where a
# cache per measurement, over lineproto's own, held the same strings four times (~2 MB at
# 1,000 devices; issue 14, memory). A device past the bound is rebuilt (~6 µs), never lost.
@functools.lru_cache(maxsize=4096)
def _prefixes(site: str, kind: str, device: str) -> tuple[str, str, str]:
    tags = {"site": site, "kind": kind, "device": device}
    battery, location, status = (build_series_key(m, tags) for m in MEASUREMENTS)
    return battery, location, status


def reading_lines(r: DecodedReading) -> list[str]:
    """One line per present group: tags site, kind, device; fields as in the JSON; seq; ms."""
    if r.battery is None and r.location is None and r.status is None:
        return []  # no point, so no timestamp to check (as format_line never saw one)
    # seq and ts inline for the plain int they always are from the decoder (~3 µs a message
    # in calls); anything else takes lineproto's own checks and words.
    n = r.seq
    if n is None:
        seq = None
    elif type(n) is int and -_I64 <= n < _I64:
        seq = f"seq={n}i"
    else:
        seq = format_field("seq", n)
    ts_ms = r.ts_ms
    ts = (
        str(ts_ms)
        if type(ts_ms) is int and -TS_MS_LIMIT <= ts_ms <= TS_MS_LIMIT
        else timestamp(ts_ms)
    )
    battery, location, status = _prefixes(r.site, r.kind, r.device)
    lines = []
    if r.battery is not None:
        lines.append(_BATTERY(r.battery, seq, battery, ts))
    if r.location is not None:
        lines.append(_LOCATION(r.location, seq, location, ts))
    if r.status is not None:
        lines.append(_STATUS(r.status, seq, status, ts))
    return lines


def alert_line(
    *,
    site: str,
    kind: str,
    device: str,
    rule: str,
    severity: str,
    state: str,
    value: float | None,
    message: str,
    ts_ms: int,
) -> str:
    """The `alert` measurement: one point per alert event (fire, resolve, repeat, ...)."""
    tags = {"site": site, "kind": kind, "device": device, "rule": rule, "severity": severity}
    fields: list[tuple[str, FieldValue | None]] = [
        ("message", message),
        ("state", state),
        ("value", None if value is None else float(value)),
    ]
    return format_line(series_key("alert", tags), fields, ts_ms)


def audit_line(*, site: str, action: str, user: str, target: str, detail: str, ts_ms: int) -> str:
    """The `audit` measurement: who changed what. Tags only what Grafana groups by and stays
    small (site, action); the user, target and detail are free text, so fields."""
    fields: list[tuple[str, FieldValue | None]] = [
        ("detail", detail),
        ("target", target),
        ("user", user),
    ]
    return format_line(series_key("audit", {"site": site, "action": action}), fields, ts_ms)


def assignment_line(
    *,
    site: str,
    kind: str | None,
    device: str,
    change: str,
    officer: str,
    by: str,
    note: str,
    out_ms: int,
    due_ms: int,
    in_ms: int | None,
    ts_ms: int,
) -> str:
    """The `assignment` measurement: a sign-out (`change` "out") or sign-in ("in") of a device.

    Tags as the readings' (site, kind, device) plus `change`; the officer is a field (typed
    names would grow the series without bound). On "in", how long it was out and how late.
    """
    tags = {"site": site, "kind": kind, "device": device, "change": change}
    hours_out = late_min = None
    if in_ms is not None:
        hours_out = (in_ms - out_ms) / 3_600_000
        late_min = max(0, in_ms - due_ms) / 60_000
    fields: list[tuple[str, FieldValue | None]] = [
        ("by", by),
        ("due_ms", due_ms),
        ("hours_out", hours_out),
        ("late_min", late_min),
        ("note", note or None),
        ("officer", officer),
        ("out_ms", out_ms),
    ]
    return format_line(series_key("assignment", tags), fields, ts_ms)
