"""Alert text an officer reads in two seconds, and the alert JSON.

Shape: "<device> (<site>): <what> – <why>, last seen 21:04". The dash is an en
dash with spaces (typographically right, and plain ASCII hyphens already occur in
device ids such as sw-03). Times are local to the configured zone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from fleet.config.alerts import Geofence, Rule
from fleet.daemon.alerts.links import HOLDER_KINDS
from fleet.daemon.alerts.model import AlertRecord, AlertSnapshot
from fleet.daemon.alerts.rules import DeviceView, docked, geofence_at
from fleet.daemon.alerts.schedule import iso_utc, local_hhmm

DASH = " \u2013 "


@dataclass(frozen=True, slots=True)
class Facts:
    """What a message may mention; the engine fills in what it knows."""

    device_label: str
    site_label: str
    last_seen: str | None = None
    pct: float | None = None
    charging: bool | None = None
    temp_c: float | None = None
    state: str | None = None
    error_code: int | None = None
    docked: bool | None = None
    place: str | None = None
    silent_s: float | None = None


def facts(
    rec: AlertRecord,
    view: DeviceView | None,
    site: str,
    name: str | None,
    zone: ZoneInfo,
    geofences: Sequence[Geofence],
    now_ms: int,
) -> Facts:
    """What the message of `rec` may say: from `view`, what is known of its device (None for
    an agent or a site, or a device never heard), `site` and `name` as people know them."""
    label = device_label(rec.kind, rec.device, name)
    if view is None:
        since = local_hhmm(rec.since_ms or now_ms, zone, now_ms)
        return Facts(label, site, last_seen=since if rec.kind in HOLDER_KINDS else None)
    fence = geofence_at(view, geofences)
    return Facts(
        device_label=label,
        site_label=site,
        last_seen=local_hhmm(view.last_heard_ms, zone, now_ms),
        pct=view.pct,
        charging=view.is_charging,
        temp_c=view.temp_c,
        state=view.state,
        error_code=view.error_code,
        docked=docked(view, geofences),
        place=None if fence is None else fence.name,
        silent_s=(now_ms - view.last_heard_ms) / 1000,
    )


def device_label(kind: str, device: str, name: str | None) -> str:
    """The registry name if set, else "Segway sw-03"."""
    return name if name else f"{kind.capitalize()} {device}"


def duration(seconds: float) -> str:
    minutes = max(0, round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _pct(f: Facts) -> str:
    return f"battery {f.pct:.0f} %" if f.pct is not None else "battery level unknown"


def _tail(f: Facts, *parts: str) -> str:
    seen = [f"last seen {f.last_seen}"] if f.last_seen else []
    return ", ".join([*(p for p in parts if p), *seen])


def fire_text(rule: Rule, f: Facts) -> str:
    not_charging = "not charging" if f.charging is False else ""
    match rule:
        case Rule.BATTERY_CRITICAL:
            what = _pct(f) + DASH + _tail(f, "critical", not_charging)
        case Rule.BATTERY_LOW:
            what = _pct(f) + DASH + _tail(f, "low", not_charging)
        case Rule.OFFLINE:
            silent = f"no data for {duration(f.silent_s)}" if f.silent_s is not None else ""
            what = "offline" + DASH + _tail(f, silent)
        case Rule.NOT_CHARGING:
            where = f"docked at {f.place}" if f.place else "docked"
            what = f"{where} but not charging" + DASH + _tail(f, _pct(f))
        case Rule.OVERTEMP:
            temp = f"battery {f.temp_c:.0f} °C" if f.temp_c is not None else "battery"
            what = temp + DASH + _tail(f, "too hot")
        case Rule.FAULT:
            code = f"error code {f.error_code}" if f.error_code else "fault reported"
            what = "fault" + DASH + _tail(f, code)
        case Rule.AGENT_DOWN:
            what = "agent offline" + DASH + _tail(f, "its devices' offline alerts are held")
        case Rule.SITE_LINK_DOWN:
            what = (
                "link to the central broker down"
                + DASH
                + _tail(
                    f, "the site's readings wait at the sub-station, its offline alerts are held"
                )
            )
    return f"{f.device_label} ({f.site_label}): {what}"


def resolve_text(rule: Rule, f: Facts) -> str:
    match rule:
        case Rule.BATTERY_CRITICAL | Rule.BATTERY_LOW:
            why = "charging" if f.charging is True or f.state == "charging" else "OK again"
            what = _pct(f) + DASH + why
        case Rule.OFFLINE:
            what = "back online" + (DASH + _tail(f) if f.last_seen else "")
        case Rule.NOT_CHARGING:
            if f.charging is True or f.state == "charging":
                why = "charging now"
            elif f.docked is False:
                why = "no longer docked"
            else:
                why = "charged enough"
            what = why + DASH + _pct(f)
        case Rule.OVERTEMP:
            temp = f"battery {f.temp_c:.0f} °C" if f.temp_c is not None else "battery"
            what = temp + DASH + "temperature normal"
        case Rule.FAULT:
            what = "fault cleared"
        case Rule.AGENT_DOWN:
            what = "agent back online"
        case Rule.SITE_LINK_DOWN:
            what = "link to the central broker back" + DASH + "held readings arriving"
    return f"{f.device_label} ({f.site_label}): {what}"


def alert_dict(a: AlertSnapshot) -> dict[str, object]:
    return {
        "state": a.state,
        "severity": str(a.severity),
        "value": a.value,
        "since": iso_utc(a.since_ms),
        "message": a.message,
        "device": a.device,
        "rule": a.rule,
        "site": a.site,
        "kind": a.kind,
        "acknowledged_by": a.acknowledged_by,
    }


def alert_json(a: AlertSnapshot) -> bytes:
    """The retained alert JSON (compact UTF-8; the message keeps its en dash and °C)."""
    return json.dumps(alert_dict(a), ensure_ascii=False, separators=(",", ":")).encode()
