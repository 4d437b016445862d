"""The board as the collector runs it: what was heard + alerts + the sign-out sheet -> verdicts.

Every call judges afresh from the current facts (1,000 devices cost a few ms), so the board
never shows a verdict older than its inputs. Changes (sign-out, sign-in, out of service)
are refused with a reason a person can act on, recorded durably, and audited.

A signed-out device past its expected return raises a `signout_overdue` warning through
the alert service's path (retained topic, `alert` measurement, notification), once per
sign-out even across restarts, and resolves it when the device is signed back in.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from fleet.config import FleetSettings
from fleet.config.alerts import Severity
from fleet.daemon.alerts.model import Action, AlertEvent, AlertSnapshot
from fleet.daemon.board.assignments import AssignmentStore, SignOutRefused
from fleet.daemon.board.audit import Audit
from fleet.daemon.board.fleetview import FleetView
from fleet.daemon.board.judge import judge
from fleet.daemon.board.model import (
    Assignment,
    Context,
    DeviceFacts,
    OpenAlert,
    OutOfService,
    Readiness,
    Verdict,
    sort_key,
)
from fleet.daemon.board.render import verdict_json
from fleet.daemon.board.snapshots import Snapshots

_LOG = logging.getLogger(__name__)

OVERDUE_RULE = "signout_overdue"
# A device the officer cannot take: signing it out is refused with the verdict's reason.
_BLOCKING = (Readiness.OUT_OF_SERVICE, Readiness.OFFLINE, Readiness.UNKNOWN)

Inject = Callable[[list[AlertEvent]], None]  # hands alert events to the alert thread


class BoardService:
    def __init__(
        self,
        settings: FleetSettings,
        *,
        view: FleetView,
        store: AssignmentStore,
        audit: Audit,
        clock_ms: Callable[[], int],
        alerts: object | None = None,  # AlertService (typed loosely: the board runs without it)
        inject: Inject | None = None,
    ) -> None:
        self.settings = settings
        self.view = view
        self.store = store
        self.audit = audit
        self._clock_ms = clock_ms
        self._alerts = alerts
        self._inject = inject
        self.tz = ZoneInfo(settings.alerts.timezone)
        owned = settings.collector.sites  # empty: every site
        names = settings.site.names()
        # The sites' names as the pages' chooser lists them: only the owned ones, if listed.
        self.site_names = {s: names.get(s, s) for s in owned} if owned else names
        self._lock = threading.Lock()  # changes are judged and recorded one at a time
        self.snapshots = Snapshots(self._devices_json)  # the list as served, shared

    # --- reading ---------------------------------------------------------------------------

    def now_ms(self) -> int:
        return self._clock_ms()

    def verdicts(self, site: str | None = None) -> list[Verdict]:
        now = self._clock_ms()
        facts = self.view.devices(self._context(now))
        board, tz = self.settings.board, self.tz
        chosen = [judge(f, board, now, tz=tz) for f in facts if site is None or f.site == site]
        return sorted(chosen, key=sort_key)

    def verdict(self, device: str) -> tuple[Verdict, DeviceFacts] | None:
        now = self._clock_ms()
        facts = self.view.device(device, self._context(now))
        if facts is None:
            return None
        return judge(facts, self.settings.board, now, tz=self.tz), facts

    def _devices_json(self, site: str | None) -> bytes:
        now = self._clock_ms()
        items = [
            verdict_json(v, now_ms=now, site_names=self.site_names) for v in self.verdicts(site)
        ]
        return json.dumps(items, ensure_ascii=False).encode("utf-8", "replace")

    def site_ids(self) -> list[str]:
        """The sites this board shows: those the collector owns (`collector.sites`), even
        before any device is heard; owning every site, this one and every site registered
        or heard from."""
        owned = self.settings.collector.sites
        return sorted(owned) if owned else sorted({self.settings.site.id} | self.view.sites())

    def sites(self) -> list[dict[str, object]]:
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for v in self.verdicts():
            counts[v.site][str(v.state)] += 1
        known = sorted(set(counts) | set(self.site_ids()))
        return [
            {
                "site": s,
                "name": self.site_names.get(s, s),
                "devices": sum(counts[s].values()),
                "by_state": dict(counts[s]),
            }
            for s in known
        ]

    def _context(self, now: int) -> Context:
        """What the alert engine and the sign-out sheet know, joined to what was heard."""
        alerts: dict[str, list[OpenAlert]] = defaultdict(list)
        silenced: dict[str, str] = {}
        engine = getattr(self._alerts, "engine", None)
        if engine is not None:
            for a in engine.alerts(firing_only=True):
                alerts[a.device].append(
                    OpenAlert(
                        str(a.rule), str(a.severity), a.message, a.since_ms, a.acknowledged_by
                    )
                )
            for s in engine.silences(now):
                if s.device is not None and s.rule is None:  # the whole device: "in repair"
                    silenced.setdefault(s.device, f"{s.reason} (silenced by {s.by})")
        return Context(
            alerts={device: tuple(found) for device, found in alerts.items()},
            silenced=silenced,
            assignments=self.store.current(),
            out_of_service=self.store.out_of_service(),
        )

    # --- changes (the HTTP threads; `by` is the signed-in user) -----------------------------

    def sign_out(
        self, device: str, officer: str, *, due_ms: int, by: str, note: str = ""
    ) -> Assignment:
        with self._lock:
            found = self.verdict(device)
            if found is None:
                raise SignOutRefused(404, f"no device {device!r} on this board")
            verdict, _ = found
            blocked = (
                f"{device} is {verdict.state.value.replace('_', ' ')}: {verdict.reason}"
                if verdict.state in _BLOCKING
                else None
            )
            now = self._clock_ms()
            a = self.store.sign_out(
                device, officer, due_ms=due_ms, by=by, now_ms=now, note=note, blocked=blocked
            )
            self.audit.assignment("out", a, verdict.site, now, kind=verdict.kind)
            self.audit.record(by, "sign_out", device, f"to {officer}", now)
            self.snapshots.changed()
            return a

    def sign_in(self, device: str, *, by: str, note: str = "") -> Assignment:
        with self._lock:
            now = self._clock_ms()
            alerted = device in self.store.alerted()
            a = self.store.sign_in(device, by=by, now_ms=now, note=note)
            found = self.view.device(device)
            site = found.site if found is not None else self.settings.site.id
            kind = found.kind if found is not None else None
            self.audit.assignment("in", a, site, now, kind=kind, by=by)
            self.audit.record(by, "sign_in", device, f"from {a.officer}", now)
            self.snapshots.changed()
            if alerted and self._inject is not None:
                self._inject([self._overdue_event(a, Action.RESOLVE, now)])
        return a

    def mark_out_of_service(self, device: str, *, reason: str, by: str) -> OutOfService:
        with self._lock:
            if self.view.device(device) is None:
                raise SignOutRefused(404, f"no device {device!r} on this board")
            now = self._clock_ms()
            mark = self.store.mark_out_of_service(device, reason=reason, by=by, now_ms=now)
            self.audit.record(by, "out_of_service", device, reason, now)
            self.snapshots.changed()
            return mark

    def return_to_service(self, device: str, *, by: str) -> None:
        with self._lock:
            now = self._clock_ms()
            self.store.return_to_service(device, by=by, now_ms=now)
            self.audit.record(by, "return_to_service", device, "", now)
            self.snapshots.changed()

    # --- overdue sign-outs -------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """Raise `signout_overdue` once for each sign-out past its expected return; which
        were raised is kept in the sign-out sheet, so a restart does not raise them again."""
        if not self.settings.board.overdue_alert or self._inject is None:
            return
        with self._lock:
            for a in self.store.overdue_to_alert(now_ms):
                try:
                    self.store.note_alerted(a)
                except SignOutRefused as exc:  # the sheet cannot be written: try next tick
                    _LOG.error("overdue sign-out of %s not alerted yet: %s", a.device, exc.message)
                    continue
                self._inject([self._overdue_event(a, Action.FIRE, now_ms)])

    def open_alerts(self) -> list[AlertSnapshot]:
        """The overdue warnings raised and not resolved yet (the alert engine does not hold
        them): listed with its own alerts by the API."""
        current, now = self.store.current(), self._clock_ms()
        return [
            self._overdue_event(current[d], Action.FIRE, now).alert
            for d in sorted(self.store.alerted())
            if d in current
        ]

    def _overdue_event(self, a: Assignment, action: Action, now_ms: int) -> AlertEvent:
        found = self.view.device(a.device)  # once: it copies the device's history
        site = found.site if found is not None else self.settings.site.id
        kind = found.kind if found is not None else "device"
        name = (found.name if found is not None else None) or a.device
        due = _local_hhmm(a.due_ms, self.tz)
        message = (
            f"{kind.capitalize()} {name} signed out to {a.officer} was due back at {due}"
            if action is Action.FIRE
            else f"{kind.capitalize()} {name} is signed back in (was due at {due})"
        )
        snapshot = AlertSnapshot(
            site=site,
            kind=kind,
            device=a.device,
            rule=OVERDUE_RULE,
            severity=Severity.WARNING,
            state="firing" if action is Action.FIRE else "resolved",
            value=None,
            since_ms=a.due_ms if action is Action.FIRE else now_ms,
            acknowledged_by=None,
            message=message,
        )
        return AlertEvent(action, snapshot, "warning", notify=True)


def _local_hhmm(ts_ms: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(tz).strftime("%H:%M")
