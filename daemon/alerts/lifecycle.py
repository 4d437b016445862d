"""The lifecycle of one (device, rule) alert: pending, firing, resolved; repeats, escalation.

Flapping rule (the answer to "offline/online notification spam"): after a person
was told that an alert fires, another fire of the same device and rule within the
flap window (default: repeat_interval) is still published, but not notified, and
neither is its resolve. If such an unnotified alert is still firing when the
window has run out, it is notified then (as a repeat). So a link that flaps every
minute yields at most one notified fire and one notified resolve per window, and
a device that ends up really down is still reported within one window.

Silences mute notifications the same way (state changes are still published); an
alert that fired unnotified during a silence is notified when the silence ends, if
it still fires. Acknowledging stops repeats and escalation for the episode.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from zoneinfo import ZoneInfo

from fleet.config.alerts import Severity
from fleet.daemon.alerts.model import ESCALATION_ROUTE, Action, AlertEvent, AlertRecord
from fleet.daemon.alerts.rules import Verdict
from fleet.daemon.alerts.schedule import next_shift_start_ms


@dataclass(frozen=True, slots=True)
class Timing:
    repeat_ms: int
    flap_ms: int
    shifts: list[time]
    zone: ZoneInfo
    lead_ms: int


def _event(rec: AlertRecord, action: Action, notify: bool) -> AlertEvent:
    route = ESCALATION_ROUTE if action is Action.ESCALATE else str(rec.severity)
    return AlertEvent(action, rec.snapshot(), route, notify)


def _told(rec: AlertRecord, now: int, t: Timing) -> None:
    rec.notified = True
    rec.last_fire_notice_ms = now
    rec.next_repeat_ms = now + t.repeat_ms


def _flapping(rec: AlertRecord, now: int, t: Timing) -> bool:
    return rec.last_fire_notice_ms is not None and now - rec.last_fire_notice_ms < t.flap_ms


def _schedule_escalation(rec: AlertRecord, after_ms: int, t: Timing) -> None:
    shift = next_shift_start_ms(after_ms, t.shifts, t.zone)
    rec.escalate_shift_ms = shift
    rec.escalate_at_ms = None if shift is None else shift - t.lead_ms


def fire(
    rec: AlertRecord, now: int, value: float | None, message: str, t: Timing, silenced: bool
) -> AlertEvent:
    rec.phase, rec.pending_since_ms, rec.since_ms = "firing", None, now
    rec.value, rec.message, rec.acknowledged_by = value, message, None
    notify = not silenced and not _flapping(rec, now, t)
    if notify:
        _told(rec, now, t)
    else:
        rec.notified, rec.next_repeat_ms = False, None
    rec.escalate_at_ms = rec.escalate_shift_ms = None
    if rec.severity is Severity.CRITICAL:
        _schedule_escalation(rec, now, t)
    return _event(rec, Action.FIRE, notify)


def resolve(
    rec: AlertRecord, now: int, value: float | None, message: str, silenced: bool
) -> AlertEvent:
    notify = rec.notified and not silenced
    rec.phase, rec.pending_since_ms, rec.since_ms = "resolved", None, now
    rec.value, rec.message = value, message
    rec.notified, rec.next_repeat_ms = False, None
    rec.escalate_at_ms = rec.escalate_shift_ms = None
    return _event(rec, Action.RESOLVE, notify)


def pending_due(rec: AlertRecord, now: int, hold_ms: int) -> bool:
    return rec.pending_since_ms is not None and now - rec.pending_since_ms >= hold_ms


def condition(rec: AlertRecord, verdict: Verdict, now: int, hold_ms: int) -> str | None:
    """Apply a verdict: returns "fire" or "resolve" when the caller must do that now."""
    if verdict is None:
        return None
    if verdict:
        if rec.phase == "firing":
            return None
        if rec.pending_since_ms is None:
            rec.pending_since_ms = now
        return "fire" if pending_due(rec, now, hold_ms) else None
    rec.pending_since_ms = None
    return "resolve" if rec.phase == "firing" else None


def tick(rec: AlertRecord, now: int, t: Timing, silenced: bool) -> list[AlertEvent]:
    """Repeats, late notices and escalation of a firing, unacknowledged alert."""
    if rec.phase != "firing" or rec.acknowledged_by is not None:
        return []
    events = []
    if not rec.notified:
        if not silenced and not _flapping(rec, now, t):
            _told(rec, now, t)
            events.append(_event(rec, Action.REPEAT, True))
    elif rec.next_repeat_ms is not None and now >= rec.next_repeat_ms:
        if silenced:
            rec.next_repeat_ms = now + t.repeat_ms
        else:
            _told(rec, now, t)
            events.append(_event(rec, Action.REPEAT, True))
    if rec.escalate_at_ms is not None and now >= rec.escalate_at_ms:
        if not silenced:
            events.append(_event(rec, Action.ESCALATE, True))
        # After a long outage several escalation points lie in the past: escalate once.
        _schedule_escalation(rec, max(rec.escalate_shift_ms or now, now), t)
    return events


def acknowledge(rec: AlertRecord, by: str) -> AlertEvent | None:
    if rec.phase != "firing" or rec.acknowledged_by is not None:
        return None
    rec.acknowledged_by = by
    rec.next_repeat_ms = rec.escalate_at_ms = rec.escalate_shift_ms = None
    return _event(rec, Action.ACKNOWLEDGED, False)
