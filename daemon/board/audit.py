"""The audit trail: who changed what, when - one log line and one InfluxDB point per change.

Every change made through the board or the API (sign-out, sign-in, out of service,
acknowledge, silence) is recorded twice: an INFO line `audit: user="..." action="..."
target="..." detail="..."` for the journal, and an `audit` point (schema.audit_line) for
Grafana. Sign-outs and sign-ins also become `assignment` points, so Grafana can show
usage (who had which device, for how long, back late or not).

Values in the log line are quoted and escaped (quotes, backslashes, line breaks and every
other non-printable character), so a hostile name cannot end the line and forge another.
Callers never pass secrets here (a password is never a target or a detail).

The line protocol is the collector's (`collector/schema.py`, passed in as `schema`: the
collector imports the board, so the board may not import the collector back - no cycles).
The points travel like alert points: a spool entry with a `$...` topic, then `on_spooled()`
wakes the writer. If the spool cannot take them (a full disk), the change itself is already
durable in the sign-out sheet (or the alert state), which is the record: the point is
logged as lost and counted (`counters.spool_failures`), and the change is not refused.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from fleet.daemon.board.model import Assignment
from fleet.daemon.spool import Entry, Spool

_LOG = logging.getLogger(__name__)

AUDIT_TOPIC = "$audit"  # the "source topic" of these points in the spool (and a dead letter)
ASSIGNMENT_TOPIC = "$assignment"
CHANGES = ("out", "in")
_LINE_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPES = {'"': '\\"', "\\": "\\\\", **_LINE_ESCAPES}


def _escaped(value: str, escapes: dict[str, str]) -> str:
    out = []
    for ch in value:
        if ch in escapes:
            out.append(escapes[ch])
        elif ch.isprintable():
            out.append(ch)
        else:  # other controls, and U+2028 / U+0085 that some readers treat as line breaks
            code = ord(ch)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return "".join(out)


def quoted(value: str) -> str:
    """`value` in double quotes, on one line whatever it holds (log-safe, reversible)."""
    return '"' + _escaped(value, _ESCAPES) + '"'


def one_line(value: str) -> str:
    """`value` with every non-printable character written as an escape: a string field of
    one line (the writer tells a refused line from the others by splitting on newlines)."""
    return value if value.isprintable() else _escaped(value, _LINE_ESCAPES)


class PointSchema(Protocol):
    """What the audit needs of `fleet.daemon.collector.schema` (pass the module itself)."""

    def audit_line(
        self, *, site: str, action: str, user: str, target: str, detail: str, ts_ms: int
    ) -> str: ...

    def assignment_line(
        self,
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
    ) -> str: ...


@dataclass
class AuditCounters:
    records: int = 0  # audit records made (logged; points spooled unless counted below)
    assignments: int = 0  # assignment points made
    spool_failures: int = 0  # points the spool could not take (logged; the store keeps the record)


class Audit:
    def __init__(
        self, spool: Spool, on_spooled: Callable[[], None], *, site: str, schema: PointSchema
    ) -> None:
        self._schema = schema
        self._spool = spool
        self._on_spooled = on_spooled
        self._site = site
        self.counters = AuditCounters()
        self._lock = threading.Lock()
        self._last_ms = 0

    def record(self, user: str, action: str, target: str, detail: str, now_ms: int) -> None:
        """One change by `user` (the signed-in user): `action` on `target`, `detail` in words."""
        _LOG.info(
            "audit: user=%s action=%s target=%s detail=%s",
            quoted(user),
            quoted(action),
            quoted(target),
            quoted(detail),
        )
        with self._lock:
            self.counters.records += 1
            ts = self._unique(now_ms)
        try:
            line = self._schema.audit_line(
                site=self._site,
                action=action,
                user=one_line(user),
                target=one_line(target),
                detail=one_line(detail),
                ts_ms=ts,
            )
        except ValueError as exc:  # an action name lineproto refuses: a bug of the caller
            self._lost(AUDIT_TOPIC, str(exc))
            return
        self._append(AUDIT_TOPIC, line)

    def assignment(
        self,
        change: str,
        a: Assignment,
        site: str,
        now_ms: int,
        *,
        kind: str | None = None,
        by: str | None = None,
    ) -> None:
        """An `assignment` point: `change` "out" (at the sign-out) or "in" (at the sign-in).
        `by`: who recorded this change (default `a.by`, who signed it out)."""
        if change not in CHANGES:
            raise ValueError(f"assignment change {change!r} is not one of {CHANGES}")
        with self._lock:
            self.counters.assignments += 1
            ts = self._unique(now_ms)
        try:
            line = self._schema.assignment_line(
                site=site,
                kind=kind,
                device=a.device,
                change=change,
                officer=one_line(a.officer),
                by=one_line(a.by if by is None else by),
                note=one_line(a.note),
                out_ms=a.out_ms,
                due_ms=a.due_ms,
                in_ms=now_ms if change == "in" else None,
                ts_ms=ts,
            )
        except ValueError as exc:  # a site or kind lineproto refuses: a bug of the caller
            self._lost(ASSIGNMENT_TOPIC, str(exc))
            return
        self._append(ASSIGNMENT_TOPIC, line)

    def _unique(self, now_ms: int) -> int:
        # Same series and timestamp is one point in InfluxDB: a second change in the same
        # millisecond would overwrite the first, so it is stored a millisecond later.
        self._last_ms = max(now_ms, self._last_ms + 1)
        return self._last_ms

    def _append(self, topic: str, line: str) -> None:
        try:
            self._spool.append([Entry(topic, line, 1)])
        except Exception as exc:  # noqa: BLE001 - the change is durable already; only the point misses
            self._lost(topic, str(exc))
            return
        self._on_spooled()

    def _lost(self, topic: str, why: str) -> None:
        with self._lock:
            self.counters.spool_failures += 1
        _LOG.error("%s point not spooled (%s); the change itself is recorded", topic[1:], why)
