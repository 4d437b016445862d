"""The InfluxDB schema: how a decoded reading and an alert event are stored, as line protocol.

Measurements `battery`, `location`, `status` (one point per present group), tags `site`,
`kind`, `device`; fields as in the telemetry JSON (the contract's groups, `drivers/readings.py`)
plus `seq`; timestamps in ms. Measurement `alert`: one point per alert event. The roll-up
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
