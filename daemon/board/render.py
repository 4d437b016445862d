"""A verdict as the JSON API's device item (`GET /api/v1/devices`)."""

from __future__ import annotations

from fleet.daemon.board.model import COLOUR, LABEL, Verdict
from fleet.daemon.wire.envelope import iso


def _iso(ts_ms: int | None) -> str | None:
    return None if ts_ms is None else iso(ts_ms)


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def verdict_json(v: Verdict, *, now_ms: int, site_names: dict[str, str]) -> dict[str, object]:
    a, oos = v.assignment, v.out_of_service
    return {
        "device": v.device,
        "name": v.name or v.device,
        "site": v.site,
        "site_name": site_names.get(v.site, v.site),
        "kind": v.kind,
        "state": str(v.state),
        "label": LABEL[v.state],
        "colour": COLOUR[v.state],
        "reason": v.reason,
        "charge_pct": _round(v.charge_pct, 0),
        "charging": v.charging,
        "needed_pct": _round(v.needed_pct, 0),
        "range_km": _round(v.range_km),
        "runtime_h": _round(v.runtime_h),
        "estimate": v.estimate,
        "full_at": _iso(v.full_at_ms),
        "ready_at": _iso(v.ready_at_ms),
        "last_seen": _iso(v.last_seen_ms),
        "last_seen_age_s": None
        if v.last_seen_ms is None
        else max(0, (now_ms - v.last_seen_ms) // 1000),
        "stale": v.stale,
        "signed_out_to": a.officer if a else None,
        "signed_out_at": _iso(a.out_ms) if a else None,
        "due_back": _iso(a.due_ms) if a else None,
        "overdue": v.overdue,
        "out_of_service": None
        if oos is None
        else {"reason": oos.reason, "by": oos.by, "since": iso(oos.since_ms)},
        "alerts": [
            {
                "rule": al.rule,
                "severity": al.severity,
                "message": al.message,
                "since": iso(al.since_ms),
                "acknowledged_by": al.acknowledged_by,
            }
            for al in v.alerts
        ],
    }
