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
from operator import attrgetter

from fleet.daemon.collector.lineproto import FieldValue, format_line, series_key
from fleet.daemon.wire import DecodedReading
from fleet.drivers.readings import GROUPS, field_names

MEASUREMENTS = tuple(GROUPS)  # battery, location, status: the groups' names
# Point sorts fields by key; keeping these sorted (seq included) keeps our lines identical to it.
GROUP_FIELDS: dict[str, tuple[str, ...]] = {
    name: tuple(sorted([*field_names(group), "seq"])) for name, group in GROUPS.items()
}
# Hot path: per measurement, the group's values in GROUP_FIELDS order (seq left out) in one call,
# and where seq goes among them.
_NAMES = {m: tuple(n for n in names if n != "seq") for m, names in GROUP_FIELDS.items()}
_VALUES = {m: attrgetter(*names) for m, names in _NAMES.items()}
_SEQ_AT = {m: names.index("seq") for m, names in GROUP_FIELDS.items()}


@functools.lru_cache(maxsize=8192)
def _prefix(measurement: str, site: str, kind: str, device: str) -> str:
    return series_key(measurement, {"site": site, "kind": kind, "device": device})


def reading_lines(r: DecodedReading) -> list[str]:
    """One line per present group: tags site, kind, device; fields as in the JSON; seq; ms."""
    lines = []
    for measurement, group in zip(MEASUREMENTS, (r.battery, r.location, r.status), strict=True):
        if group is not None:
            fields: list[tuple[str, FieldValue | None]]
            fields = list(zip(_NAMES[measurement], _VALUES[measurement](group), strict=True))
            fields.insert(_SEQ_AT[measurement], ("seq", r.seq))
            prefix = _prefix(measurement, r.site, r.kind, r.device)
            lines.append(format_line(prefix, fields, r.ts_ms))
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
