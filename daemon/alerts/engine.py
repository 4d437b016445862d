"""The alert engine: readings, availability and ticks in, alert events out.

Decisions worth knowing (see also ``lifecycle`` for flapping and silences, and
``clock`` for how order and age are judged when clocks are wrong):
- A reading not newer than the newest one seen for its device (a replay, a
  duplicate) changes nothing. Newer means a higher ``seq`` when the device sends
  one (a seq far below the last, or a lower one with a later ts, is an agent that
  started counting again), else a later ``ts``.
- One older than ``max_reading_age_s`` (buffered: an agent outbox flushed after an
  outage, the broker's backlog) updates what is known of the device but fires and
  resolves nothing, except that it counts as "heard" for offline if it is within
  the offline window. Age is measured on the device's own clock: each device
  learns the offset between its timestamps and their arrival from a run of live
  readings, so a collector or a sub-station box whose clock is minutes off sees
  live readings as live, and a flushed backlog still as old.
- A reading stamped in the future (past what the device's offset allows) is
  suspicious, not the new "now": it counts as live, but its ts is capped at the
  present, so later, correctly stamped readings are still newer and the device
  can still go offline.
- Charging suppresses the battery alerts (Alertmanager-like: a suppressed alert is
  not firing); a firing one resolves when charging starts.
- ``offline`` is judged on telemetry silence alone (availability messages are kept
  but never fire anything: a flapping link stays quiet unless data stops for the
  whole window), and only on silence the collector could have seen: a down agent or
  a cut bridge link holds its site's offline alerts (``links``), and the collector's
  own lost MQTT connection holds everyone's (``offline``).
- Every public call is serialised by one lock; the collector may call from its
  MQTT thread and its tick thread.
- Cost: a batch of readings is one store transaction, committed before its events are
  returned; a tick looks only at what can have changed (the firing and pending alerts, the
  devices whose offline deadline is due: ``deadlines``), not at every device.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

from fleet.config.alerts import AlertSettings, Limits, Rule
from fleet.daemon.alerts import lifecycle, links, model, text
from fleet.daemon.alerts.clock import Clocks
from fleet.daemon.alerts.deadlines import OfflineDeadlines
from fleet.daemon.alerts.model import AlertEvent, AlertRecord, AlertSnapshot, EngineCounters
from fleet.daemon.alerts.offline import OfflineJudge
from fleet.daemon.alerts.rules import DeviceView, hold_ms, reading_verdicts, silent_too_long
from fleet.daemon.alerts.silences import Silences
from fleet.daemon.alerts.store import AlertStore
from fleet.daemon.wire import DecodedReading

_LOG = logging.getLogger(__name__)


class AlertEngine:
    def __init__(
        self,
        settings: AlertSettings,
        *,
        store: AlertStore | None = None,
        site_names: Mapping[str, str] | None = None,
        device_names: Mapping[str, str] | None = None,
    ) -> None:
        self._s = settings
        self._zone = ZoneInfo(settings.timezone)
        self._t = lifecycle.Timing(
            repeat_ms=round(settings.repeat_interval_s * 1000),
            flap_ms=round(settings.flap_window * 1000),
            shifts=settings.shift_times,
            zone=self._zone,
            lead_ms=settings.escalate_before_shift_min * 60_000,
        )
        self._store = store
        self._clocks = Clocks(
            max_age_ms=round(settings.max_reading_age_s * 1000),
            settle_ms=round(settings.clock_settle_s * 1000),
        )
        self.counters = EngineCounters()
        self._site_names = dict(site_names or {})
        self._device_names = dict(device_names or {})
        self._lock = threading.Lock()
        self._limits: dict[tuple[str, str], Limits] = {}
        self._records: dict[tuple[str, str], AlertRecord] = {}
        # The firing and pending records (all a tick can change); records' and views' creation
        # order (the order a tick goes through them).
        self._active: dict[tuple[str, str], AlertRecord] = {}
        self._rank: dict[tuple[str, str] | str, int] = {}
        self._views: dict[str, DeviceView] = {}
        self._judge = OfflineJudge(self.counters)  # agents, links, blind spells
        self._deadlines = OfflineDeadlines(self._judge)
        self._availability: dict[str, tuple[bool, int]] = {}
        self._silences = Silences(store)
        self._dirty_views: set[str] = set()
        self._store_failing = False
        if store is not None:
            self._load(store)

    def _load(self, store: AlertStore) -> None:
        for rec in store.load_records():
            self._add(rec)
            if rec.rule in links.HOLDING and rec.phase == "firing":
                self._judge.restore_down(rec.site, rec.device, rec.rule)
        self._track(self._records.values())
        for device, view in store.load_views().items():
            self._add_view(device, view)
            self._deadlines.schedule(device, view, self._offline_after_s(device, view))
        self._clocks.refresh_fleet(self._views.values())
        firing = sum(rec.phase == "firing" for rec in self._active.values())
        _LOG.info("alert state loaded: %d firing, %d devices known", firing, len(self._views))

    # --- inputs ---------------------------------------------------------------------------------

    def observe(self, reading: DecodedReading, now_ms: int) -> list[AlertEvent]:
        return self.observe_batch([reading], now_ms)

    def observe_batch(
        self,
        readings: Sequence[DecodedReading],
        now_ms: int,
        on_error: Callable[[DecodedReading, Exception], None] | None = None,
    ) -> list[AlertEvent]:
        """Readings in arrival order, stored in one transaction before their events are
        returned (an alert's state is on disk before anyone is told). A reading that fails goes
        to `on_error` and costs only itself (its events are dropped, as a failed `observe`'s)."""
        with self._lock:
            events: list[AlertEvent] = []
            touched: dict[tuple[str, str], AlertRecord] = {}
            changed: set[str] = set()
            try:
                for reading in readings:
                    mine: list[AlertEvent] = []
                    recs: list[AlertRecord] = []
                    try:
                        if self._observe(reading, now_ms, mine, recs):
                            changed.add(reading.device)
                        events.extend(mine)
                    except Exception as exc:
                        if on_error is None:
                            raise
                        on_error(reading, exc)
                    finally:
                        touched.update((rec.key, rec) for rec in recs)
            finally:  # a record a failed reading changed is still the tick's to look at
                self._track(touched.values())
            self._save(touched.values(), changed)
            return events

    def _observe(
        self,
        reading: DecodedReading,
        now_ms: int,
        events: list[AlertEvent],
        touched: list[AlertRecord],
    ) -> bool:
        """One reading; True when its device's view is to be written with the batch."""
        view = self._views.get(reading.device)
        if view is not None and not self._clocks.is_newer(view, reading):
            self.counters.late += 1
            return False  # replayed or duplicate: never fires or resolves anything
        if view is None:
            view = self._add_view(reading.device, DeviceView.of(reading))
        else:
            view.update(reading)
        arrival = self._clocks.arrive(view, reading, now_ms)
        self.counters.future += arrival.future
        self.counters.buffered += not arrival.live
        self._dirty_views.add(reading.device)
        limits = self._limits_for(view.kind, reading.device)
        after_s = None if Rule.OFFLINE in limits.disabled else limits.offline_after_s
        self._deadlines.schedule(reading.device, view, after_s)
        offline = self._records.get((reading.device, Rule.OFFLINE))
        if (
            offline is not None
            and offline.phase == "firing"
            and not silent_too_long(view.last_heard_ms, now_ms, limits.offline_after_s)
        ):
            events.append(self._resolve(offline, None, now_ms))
            touched.append(offline)
        if arrival.live:
            verdicts = reading_verdicts(view, limits, self._s.geofences)
            for rule, (verdict, value) in verdicts.items():
                rec = self._records.get((reading.device, rule))
                if rec is None:
                    if not verdict:
                        continue
                    rec = self._record(reading.device, rule, view.site, view.kind)
                todo = lifecycle.condition(rec, verdict, now_ms, hold_ms(rule, limits))
                if rec.phase == "firing" or rec.pending_since_ms is not None:
                    rec.value = value
                touched.append(rec)
                if todo == "fire":
                    events.append(self._fire(rec, value, now_ms))
                elif todo == "resolve":
                    events.append(self._resolve(rec, value, now_ms))
        # The device's view is written with any alert change, so that a restarted engine
        # can word the messages of what it restored; otherwise it waits for the tick.
        return bool(events) or any(r.pending_since_ms == now_ms for r in touched)

    def device_availability(
        self, site: str, kind: str, device: str, online: bool, now_ms: int
    ) -> list[AlertEvent]:
        """Noted only: offline is judged on telemetry silence (see the module docstring)."""
        with self._lock:
            self._availability[device] = (online, now_ms)
            return []

    def agent_availability(
        self, site: str, agent: str, online: bool, now_ms: int, rule: Rule = Rule.AGENT_DOWN
    ) -> list[AlertEvent]:
        """With `rule` SITE_LINK_DOWN: the site's bridge link, `agent` = the site (links)."""
        with self._lock:
            down_from = self._judge.holder_state(site, agent, rule, online, now_ms)
            rec = self._records.get((agent, rule))
            if rec is None:
                if online:
                    return []
                rec = self._record(agent, rule, site, links.kind_of(rule))
            if not online and rec.phase != "firing" and rec.pending_since_ms is None:
                rec.pending_since_ms = down_from  # a link's "0" read after a blind spell: T0
            hold = round(self._s.agent_down_for_s * 1000)
            events = []
            todo = lifecycle.condition(rec, not online, now_ms, hold)
            if todo == "fire":
                events.append(self._fire(rec, None, now_ms))
            elif todo == "resolve":
                events.append(self._resolve(rec, None, now_ms))
            self._track([rec])
            self._save([rec])
            return events

    def connection(self, connected: bool, now_ms: int) -> None:
        """The collector's own MQTT connection lost (T0) or regained (T1): see ``offline``."""
        with self._lock:
            self._judge.connection(connected, now_ms)

    def tick(self, now_ms: int) -> list[AlertEvent]:
        """Offline detection, `for` hold-downs, repeats, escalation; call about every second."""
        with self._lock:
            self._judge.start(now_ms)
            if self._clocks.stale:
                self._clocks.refresh_fleet(self._views.values())
            self._silences.expire(now_ms)
            events = self._offline(now_ms)
            # Only firing and pending alerts change on a tick (an offline fire is firing now).
            live = sorted(self._active.values(), key=lambda r: self._rank[r.key])
            for rec in live:
                if rec.phase != "firing" and lifecycle.pending_due(rec, now_ms, self._hold(rec)):
                    events.append(self._fire(rec, rec.value, now_ms))
                events.extend(lifecycle.tick(rec, now_ms, self._t, self._silenced(rec, now_ms)))
            self._save(live, self._dirty_views)
            return events

    def acknowledge(
        self, device: str, rule: str, by: str, now_ms: int, *, site: str | None = None
    ) -> list[AlertEvent]:
        """Acknowledge a firing alert: one `acknowledged` event, or none if nothing to ack
        (or when `site`, the acknowledgement topic's, is not the alert's own)."""
        with self._lock:
            rec = self._records.get((device, rule))
            if rec is None or (site is not None and rec.site != site):
                return []  # the caller refuses (and counts) another site's ack: alert_site()
            event = lifecycle.acknowledge(rec, by)
            if event is None:
                return []
            _LOG.info("alert %s/%s acknowledged by %s", device, rule, by)
            self._save([rec])
            return [event]

    def alert_site(self, device: str, rule: str) -> str | None:
        """The site of the alert (device, rule), None when there is none. Without the lock
        (one dict read; a record's site never changes), so the ingest thread never waits on
        the engine."""
        rec = self._records.get((device, rule))
        return None if rec is None else rec.site

    def silence(
        self,
        device: str | None,
        rule: str | None,
        until_ms: int,
        reason: str,
        by: str,
        *,
        now_ms: int,
    ) -> model.Silence:
        """Mute notifications of matching alerts until ``until_ms`` ("in repair")."""
        with self._lock:
            return self._silences.add(device, rule, until_ms, reason, by, now_ms)

    def unsilence(self, silence_id: int) -> bool:
        with self._lock:
            return self._silences.remove(silence_id)

    def silences(self, now_ms: int) -> list[model.Silence]:
        with self._lock:
            return self._silences.active(now_ms)

    def alerts(self, *, firing_only: bool = False) -> list[AlertSnapshot]:
        """Published alerts (firing, and resolved unless ``firing_only``)."""
        with self._lock:
            return [
                rec.snapshot()
                for rec in self._records.values()
                if rec.phase == "firing" or (rec.phase == "resolved" and not firing_only)
            ]

    # --- internals ------------------------------------------------------------------------------

    def _offline(self, now_ms: int) -> list[AlertEvent]:
        events = []
        silent = self._deadlines.silent(self._views, self._offline_after_s, now_ms)
        for device in sorted(silent, key=self._rank.__getitem__):
            view = self._views[device]
            rec = self._records.get((device, Rule.OFFLINE))
            if rec is None:
                rec = self._record(device, Rule.OFFLINE, view.site, view.kind)
            if rec.phase != "firing":
                events.append(self._fire(rec, None, now_ms))
                self._active[rec.key] = rec
        return events

    def _offline_after_s(self, device: str, view: DeviceView) -> float | None:
        limits = self._limits_for(view.kind, device)
        return None if Rule.OFFLINE in limits.disabled else limits.offline_after_s

    def _record(self, device: str, rule: Rule, site: str, kind: str) -> AlertRecord:
        return self._add(AlertRecord(device, rule, site, kind, self._s.severity(rule)))

    def _add(self, rec: AlertRecord) -> AlertRecord:
        self._rank.setdefault(rec.key, len(self._rank))
        self._records[rec.key] = rec
        return rec

    def _add_view(self, device: str, view: DeviceView) -> DeviceView:
        self._rank.setdefault(device, len(self._rank))
        self._views[device] = view
        return view

    def _track(self, records: Iterable[AlertRecord]) -> None:
        """Keep `_active` to the firing and pending records after a change to `records`."""
        for rec in records:
            if rec.phase == "firing" or rec.pending_since_ms is not None:
                self._active[rec.key] = rec
            else:
                self._active.pop(rec.key, None)

    def _limits_for(self, kind: str, device: str) -> Limits:
        limits = self._limits.get((kind, device))
        if limits is None:
            limits = self._limits[(kind, device)] = self._s.limits_for(kind, device)
        return limits

    def _hold(self, rec: AlertRecord) -> int:
        if rec.rule in links.HOLDING:
            return round(self._s.agent_down_for_s * 1000)
        return hold_ms(rec.rule, self._limits_for(rec.kind, rec.device))

    def _silenced(self, rec: AlertRecord, now_ms: int) -> bool:
        return self._silences.mute(rec, now_ms)

    def _facts(self, rec: AlertRecord, now_ms: int) -> text.Facts:
        view = self._views.get(rec.device) if rec.kind not in links.HOLDER_KINDS else None
        site, name = self._site_names.get(rec.site, rec.site), self._device_names.get(rec.device)
        return text.facts(rec, view, site, name, self._zone, self._s.geofences, now_ms)

    def _fire(self, rec: AlertRecord, value: float | None, now_ms: int) -> AlertEvent:
        message = text.fire_text(rec.rule, self._facts(rec, now_ms))
        silenced = self._silenced(rec, now_ms)
        event = lifecycle.fire(rec, now_ms, value, message, self._t, silenced)
        _LOG.info("alert fires: %s (notify=%s)", message, event.notify)
        return event

    def _resolve(self, rec: AlertRecord, value: float | None, now_ms: int) -> AlertEvent:
        message = text.resolve_text(rec.rule, self._facts(rec, now_ms))
        event = lifecycle.resolve(rec, now_ms, value, message, self._silenced(rec, now_ms))
        _LOG.info("alert resolves: %s (notify=%s)", message, event.notify)
        return event

    def _save(self, records: Iterable[AlertRecord], devices: Iterable[str] = ()) -> None:
        if self._store is None:
            self._dirty_views.clear()
            return
        views = {d: self._views[d] for d in devices if d in self._views}
        try:
            self._store.save(records, views)
        except sqlite3.Error as exc:
            # The events are decided and go out all the same; the views stay dirty, so the
            # next tick writes them again (with the alerts still firing or pending).
            self.counters.store_errors += 1
            if self.counters.store_errors == 1 or not self._store_failing:
                # Once per episode: on a full disk this happens on every tick.
                _LOG.error("alert state not saved to %s: %s", self._s.state_path, exc)
            self._store_failing = True
            return
        if self._store_failing:
            _LOG.warning("alert state saved to %s again", self._s.state_path)
            self._store_failing = False
        self._dirty_views.difference_update(views)
