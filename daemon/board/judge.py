"""One device's facts -> its verdict: one state and a reason a person reads in two seconds.

Pure: "now" and the site's time zone are passed in, nothing is read from the clock or the
disk. The precedence (first match wins):

1. never heard                                   -> unknown
2. signed out                                    -> in_use (overdue past its expected return)
3. out-of-service mark, device-wide silence
   ("in repair"), a fault reported or an open
   `fault` alert                                 -> out_of_service
4. silent longer than its kind's expected
   silence (the reading's own time) or an open
   `offline` alert                               -> offline (last known values kept)
5. no charge reading yet                         -> unknown
6. charging below what the shift needs           -> charging (ready_at, full_at)
7. below what the shift needs                    -> low
8. otherwise                                     -> ready (a charging one still shows full_at)

What the shift needs: max(min_ready_pct, drain * shift_hours + reserve_pct), at most 100 %,
with the device's own learned drain when there is enough history, else its kind's default.
Runtime (handhelds) is charge / drain; range (vehicles) is the kind's full range scaled by
the same drain against the default, capped by the range the vehicle reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from fleet.config.board import BoardSettings, KindReadiness
from fleet.daemon.board.drain import learn
from fleet.daemon.board.model import DeviceFacts, Latest, Readiness, Verdict

_H_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class _Estimate:
    drain: float  # %/h in service
    charge: float  # %/h on a charger
    learned: bool  # the drain is the device's own


def judge(facts: DeviceFacts, settings: BoardSettings, now_ms: int, *, tz: tzinfo) -> Verdict:
    """The verdict on one device for the coming shift of `settings.shift_hours`."""
    latest = facts.latest
    if latest is None:
        return _verdict(facts, Readiness.UNKNOWN, "never heard from", {})

    kind = settings.kind(facts.kind)
    est = _estimate(facts, kind)
    need = min(100.0, max(kind.min_ready_pct, est.drain * settings.shift_hours + kind.reserve_pct))
    pct = latest.pct
    charging = latest.charging is True or (latest.charging is None and latest.state == "charging")
    age_ms = now_ms - latest.ts_ms
    stale = age_ms > kind.expected_silence_s * 1000
    range_km = _range(latest, kind, pct, est.drain)
    runtime_h = None if pct is None or kind.measure != "runtime" else pct / est.drain
    # Built once at the end: a 1,000-device board judges every device on every request.
    known: dict[str, Any] = {
        "charge_pct": pct,
        "charging": latest.charging if latest.charging is not None else (charging or None),
        "range_km": range_km,
        "runtime_h": runtime_h,
        "estimate": "learned" if est.learned else "default",
        "needed_pct": need,
        "last_seen_ms": latest.ts_ms,
        "stale": stale,
    }

    if facts.assignment is not None:
        a = facts.assignment
        overdue = now_ms > a.due_ms
        due = _clock(a.due_ms, now_ms, tz)
        reason = (
            f"overdue: signed out to {a.officer}, was due back at {due}"
            if overdue
            else f"signed out to {a.officer}, due back at {due}"
        )
        known["overdue"] = overdue
        return _verdict(facts, Readiness.IN_USE, reason, known)

    broken = _out_of_service_reason(facts, latest)
    if broken is not None:
        return _verdict(facts, Readiness.OUT_OF_SERVICE, broken, known)

    if stale:
        return _verdict(facts, Readiness.OFFLINE, f"last heard {_ago(age_ms)}", known)
    for alert in facts.alerts:
        if alert.rule == "offline":
            return _verdict(facts, Readiness.OFFLINE, f"offline: {alert.message}", known)

    if pct is None:
        return _verdict(facts, Readiness.UNKNOWN, "no charge reading yet", known)

    hours = _hours(settings.shift_hours)
    shift = f"{_an(hours)} {hours}-hour shift"
    full_at = None
    if charging and pct < 100:
        full_at = _eta(latest.ts_ms, pct, 100.0, est.charge, now_ms)
    known["full_at_ms"] = full_at
    if pct < need:
        if charging:
            ready_at = _eta(latest.ts_ms, pct, need, est.charge, now_ms)
            reason = (
                f"charging, enough for the shift at {_clock(ready_at, now_ms, tz)}, "
                f"full at {_clock(full_at, now_ms, tz)}"
                if full_at is not None
                else "charging"
            )
            known["ready_at_ms"] = ready_at
            return _verdict(facts, Readiness.CHARGING, reason, known)
        kind_word = _kind_word(facts.kind)
        reason = (
            f"{pct:.0f} % - below the {need:.0f} % {_an(kind_word)} {kind_word} needs for {shift}"
        )
        return _verdict(facts, Readiness.LOW, reason, known)
    left = _left(range_km, runtime_h)
    if charging:
        reason = f"{pct:.0f} %{left}, charging, enough for the shift" + (
            f", full at {_clock(full_at, now_ms, tz)}" if full_at is not None else ""
        )
    else:
        reason = f"{pct:.0f} %{left}, enough for {shift}"
    return _verdict(facts, Readiness.READY, reason, known)


def _verdict(facts: DeviceFacts, state: Readiness, reason: str, known: dict[str, Any]) -> Verdict:
    return Verdict(
        device=facts.device,
        site=facts.site,
        kind=facts.kind,
        name=facts.name,
        state=state,
        reason=reason,
        alerts=facts.alerts,
        assignment=facts.assignment,
        out_of_service=facts.out_of_service,
        **known,
    )


def _estimate(facts: DeviceFacts, kind: KindReadiness) -> _Estimate:
    rates = facts.learned or learn(
        facts.history,
        min_history_h=kind.min_history_h,
        min_charge_history_h=kind.min_charge_history_h,
    )
    drain, charge = rates.drain_pct_per_h, rates.charge_pct_per_h
    return _Estimate(
        drain=drain if drain is not None else kind.default_drain_pct_per_h,
        charge=charge if charge is not None else kind.default_charge_pct_per_h,
        learned=drain is not None,
    )


def _out_of_service_reason(facts: DeviceFacts, latest: Latest) -> str | None:
    if facts.out_of_service is not None:
        return (
            f"out of service: {facts.out_of_service.reason} (marked by {facts.out_of_service.by})"
        )
    if facts.silenced is not None:
        return f"in repair: {facts.silenced}"
    if latest.state == "fault" or latest.error_code not in (None, 0):
        return f"fault: error code {latest.error_code}" if latest.error_code else "fault reported"
    for a in facts.alerts:
        if a.rule == "fault":
            return f"fault: {a.message}"
    return None


def _range(latest: Latest, kind: KindReadiness, pct: float | None, drain: float) -> float | None:
    """The kind's full range scaled by how fast this device drains against the kind's default
    (one that drains 1.5 times as fast goes 2/3 as far); never more than the vehicle itself
    reports, so the board is never the optimistic one."""
    if kind.measure != "range":
        return None
    own = None
    if pct is not None and kind.full_range_km is not None:
        own = pct / 100.0 * kind.full_range_km * kind.default_drain_pct_per_h / drain
    if latest.range_km is None:
        return own
    return latest.range_km if own is None else min(own, latest.range_km)


def _left(range_km: float | None, runtime_h: float | None) -> str:
    if range_km is not None:
        return f", about {range_km:.0f} km"
    if runtime_h is not None:
        return f", about {runtime_h:.0f} h" if runtime_h >= 10 else f", about {_hours(runtime_h)} h"
    return ""


def _eta(from_ms: int, pct: float, target: float, rate: float, now_ms: int) -> int:
    """When a charge of `pct` at `from_ms` reaches `target` at `rate` %/h (never before now)."""
    hours = max(0.0, target - pct) / rate
    return max(now_ms, from_ms + round(hours * _H_MS))


def _hours(h: float) -> str:
    return f"{h:.0f}" if abs(h - round(h)) < 0.05 else f"{h:.1f}"


def _an(word: str) -> str:
    """The article as spoken: an 8-hour shift, an 11-hour shift, a handheld, an iPad."""
    spoken_vowel = word[:1].lower() in "aeio" or word.startswith("8") or word in ("11", "18")
    return "an" if spoken_vowel else "a"


def _kind_word(kind: str) -> str:
    return "Segway" if kind == "segway" else kind


def _clock(ts_ms: int | None, now_ms: int, tz: tzinfo) -> str:
    """A clock time in the site's zone; the weekday too when it is not today."""
    if ts_ms is None:
        return "?"
    when = datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(tz)
    today = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(tz).date()
    return when.strftime("%H:%M") if when.date() == today else when.strftime("%a %H:%M")


def _ago(age_ms: int) -> str:
    s = max(0, age_ms) // 1000
    if s < 90:
        return f"{s} s ago"
    m = s // 60
    if m < 90:
        return f"{m} min ago"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m} min ago" if m else f"{h} h ago"
    return f"{h // 24} days ago"
