"""The engine's value types: what it returns (events, snapshots) and what it keeps (records)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from fleet.config.alerts import Rule, Severity

AlertState = Literal["firing", "resolved"]
Phase = Literal["inactive", "firing", "resolved"]
ESCALATION_ROUTE = "escalation"


class Action(StrEnum):
    FIRE = "fire"
    RESOLVE = "resolve"
    REPEAT = "repeat"
    ESCALATE = "escalate"
    ACKNOWLEDGED = "acknowledged"


@dataclass(frozen=True, slots=True)
class AlertSnapshot:
    """One alert as published: the retained MQTT alert JSON and the `alert` measurement."""

    site: str
    kind: str
    device: str
    rule: str
    severity: Severity
    state: AlertState
    value: float | None
    since_ms: int
    acknowledged_by: str | None
    message: str


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A change to publish; ``notify`` says whether it also goes to people.

    Every event is published (retained topic, measurement); a silenced or flapping
    alert's events have ``notify`` False. ``route`` is the severity route
    ("warning" / "critical") or "escalation".
    """

    action: Action
    alert: AlertSnapshot
    route: str
    notify: bool


@dataclass(slots=True)
class EngineCounters:
    """What the engine set aside, for the `pipeline` measurement (written under its lock)."""

    late: int = 0  # not newer than what was known (duplicate, replay, late redelivery)
    buffered: int = 0  # older than max_reading_age_s: known, but fired nothing
    future: int = 0  # stamped ahead of the device's clock: live, but not taken as "now"
    store_errors: int = 0  # state not written (disk full, I/O error): kept in memory, retried
    blind_spells: int = 0  # the collector's MQTT connection lost: offline not judged (offline.py)
    blind_ms: int = 0  # how long those spells lasted, once each ended


@dataclass(frozen=True, slots=True)
class Silence:
    """Mutes notifications of matching alerts until ``until_ms`` (None matches any)."""

    id: int
    device: str | None
    rule: str | None
    until_ms: int
    reason: str
    by: str
    created_ms: int

    def matches(self, device: str, rule: str) -> bool:
        return self.device in (None, device) and self.rule in (None, rule)


@dataclass(slots=True)
class AlertRecord:
    """The lifecycle state of one (device, rule); persisted as one row of the store."""

    device: str
    rule: Rule
    site: str
    kind: str
    severity: Severity
    phase: Phase = "inactive"
    # Set while the condition holds but its `for` has not yet run out (not published).
    pending_since_ms: int | None = None
    since_ms: int = 0
    value: float | None = None
    message: str = ""
    acknowledged_by: str | None = None
    # Was a person told of this firing episode (its fire, or a later repeat)?
    notified: bool = False
    # Across episodes: when a person was last told it fired (flap damping).
    last_fire_notice_ms: int | None = None
    next_repeat_ms: int | None = None
    escalate_at_ms: int | None = None
    escalate_shift_ms: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.device, str(self.rule)

    def snapshot(self) -> AlertSnapshot:
        state: AlertState = "firing" if self.phase == "firing" else "resolved"
        return AlertSnapshot(
            site=self.site,
            kind=self.kind,
            device=self.device,
            rule=str(self.rule),
            severity=self.severity,
            state=state,
            value=self.value,
            since_ms=self.since_ms,
            acknowledged_by=self.acknowledged_by,
            message=self.message,
        )


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """A notification not yet delivered to one URL, kept with the alert state so that it
    survives a restart. The URL itself (it holds secrets) is never stored: its route, its
    tag (position in the route) and its privacy form name it."""

    seq: int
    route: str
    tag: str
    label: str
    title: str
    body: str
    key: str
    notify_type: str
    tries: int
