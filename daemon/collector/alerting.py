"""The alert engine inside the collector, on a thread of its own.

Ingest hands over every reading of a batch as it commits it, and every availability or
acknowledgement message; the MQTT link, when the collector loses and regains its
broker (the engine judges no silence it could not see); nothing here can slow
ingestion down (the engine may fsync its state, a notification may wait on a mail
server). Each event the engine decides goes out through ``alert_outlet``: the
retained alert topic, the `alert` measurement and, for people, a notification.

One reading or control message that makes the engine fail costs that item
only: the failure is logged with its traceback and counted (`alert_errors`),
the rest of the batch is evaluated, and the thread carries on - a supervisor
restart would only meet the same input again.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable

from fleet.config import FleetSettings
from fleet.daemon import liveness, wire
from fleet.daemon.alerts import links
from fleet.daemon.alerts.engine import AlertEngine
from fleet.daemon.alerts.model import AlertEvent, Silence
from fleet.daemon.alerts.notify import Notifier, RetryPolicy
from fleet.daemon.alerts.schedule import iso_utc
from fleet.daemon.alerts.store import AlertStore
from fleet.daemon.collector.alert_outlet import AlertCounters, AlertOutlet, Publish
from fleet.daemon.collector.http.models import MAX_SILENCE_HOURS, one_line
from fleet.daemon.spool import Spool

_LOG = logging.getLogger(__name__)

TICK_S = 1.0
# Hand-overs queued behind each other are judged as one batch up to this many readings: one
# store transaction instead of one each (a drain: the engine's CPU a reading falls by a
# quarter from 20-reading to 100-reading batches, by half at 500).
MERGE_MAX = 5000
MAX_SILENCE_MS = MAX_SILENCE_HOURS * 3_600_000

__all__ = ["AlertCounters", "AlertService", "Publish"]


class _Readings(list[wire.DecodedReading]):
    """A hand-over of an ingest batch's readings, told apart in the inbox so that several queued
    behind each other are judged as one batch."""


_Work = Callable[[int], list[AlertEvent]] | _Readings


class _Throttled:
    """Warnings any broker client can provoke: 10 a minute, then how many more (all counted)."""

    def __init__(self, per_minute: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit, self._clock = per_minute, clock
        self._since, self._logged, self._quiet = -60.0, 0, 0

    def warning(self, message: str, *args: object) -> None:
        now = self._clock()
        if now - self._since >= 60:
            if self._quiet:
                _LOG.warning("%d more refused control messages in that minute", self._quiet)
            self._since, self._logged, self._quiet = now, 0, 0
        if self._logged < self._limit:
            self._logged += 1
            _LOG.warning(message, *args)
        else:
            self._quiet += 1


class AlertService:
    def __init__(
        self,
        settings: FleetSettings,
        *,
        spool: Spool,
        publish: Publish,
        on_spooled: Callable[[], None],
        clock_ms: Callable[[], int],
        notifier: Notifier | None = None,
    ) -> None:
        alerts = settings.alerts
        self._prefix = settings.mqtt.topic_prefix
        self._spool = spool
        self._clock_ms = clock_ms
        # One file for alert state and pending notifications: both must survive a restart.
        store = self.store = AlertStore(alerts.state_path, sites=settings.collector.sites)
        self.engine = AlertEngine(
            alerts,
            store=store,
            site_names=settings.site.names(),
            device_names={d.id: d.name for d in settings.devices if d.name},
        )
        n = alerts.notify
        self.notifier = notifier or Notifier(
            n.routes(),
            retry=RetryPolicy(
                attempts=n.attempts,
                initial_s=n.delivery_backoff_initial_s,
                max_s=n.delivery_backoff_max_s,
            ),
            max_pending=n.max_pending,
            min_interval_s=n.min_interval_s,
            store=store,
        )
        self._inbox: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self.counters = AlertCounters()
        self._outlet = AlertOutlet(
            prefix=self._prefix,
            spool=spool,
            publish=publish,
            on_spooled=on_spooled,
            clock_ms=clock_ms,
            notifier=lambda: self.notifier,
            counters=self.counters,
        )
        self._tick_failed_at: float | None = None
        self._registry = wire.ControlRegistry.of(settings)  # whose availability counts
        self._refused = _Throttled()  # on the ingest thread, like control()

    # --- called from other threads -----------------------------------------------------------

    def observe(self, readings: list[wire.DecodedReading]) -> None:
        """An ingest batch's readings in arrival order, handed over as its spool commit
        begins: judged as one batch (one store transaction, committed before any of its
        events goes out)."""
        self._inbox.put(_Readings(readings))  # a copy: merging must not touch ingest's list

    def _failed(self, reading: wire.DecodedReading, exc: Exception) -> None:
        """One reading must not cost the batch: logged with its traceback, counted, skipped."""
        self.counters.errors += 1
        _LOG.error(
            "alert engine failed on a reading of %s/%s (seq %s); skipped",
            reading.site,
            reading.device,
            reading.seq,
            exc_info=exc,
        )

    def connection(self, connected: bool) -> None:
        """The collector's MQTT connection lost or regained (paho's thread: must not block).

        Timed now, applied in order on the alert thread: every message of the new connection
        passes ingest first, so the engine learns of T1 before it reads any of them."""
        at = self._clock_ms()
        self._inbox.put(lambda now: self._connection(connected, at))

    def _connection(self, connected: bool, at: int) -> list[AlertEvent]:
        self.engine.connection(connected, at)
        return []

    def control(self, control: wire.Control, payload: bytes) -> None:
        """An availability or acknowledgement message (already acknowledged to the broker)."""
        self.counters.control += 1
        text = payload.decode("utf-8", "replace").strip()
        if control.what == "link":  # a sub-station's bridge, "1"/"0" (alerts/links.py)
            text = links.as_availability(text)
        if control.what == "ack":
            self._ack(control, text)
            return
        if text not in ("online", "offline"):
            self.counters.bad_control += 1
            self._refused.warning(
                "availability of %s is %.40r, not online/offline", control.id, text
            )
            return
        refusal = self._registry.availability_refusal(control)
        if refusal is not None:
            self.counters.availability_ignored += 1
            self._refused.warning(
                "ignored %s on %s: %s", text, control.topic(self._prefix), refusal
            )
            return
        online = text == "online"
        if control.what != "availability":  # an agent, or a sub-station's bridge link
            who, rule = links.holder_of(control)
            self._inbox.put(
                lambda now: self.engine.agent_availability(control.site, who, online, now, rule)
            )
        else:
            self._inbox.put(
                lambda now: self.engine.device_availability(
                    control.site, control.kind, control.id, online, now
                )
            )

    def _ack(self, control: wire.Control, text: str) -> None:
        device, rule, site = control.id, control.rule, control.site
        by = _ack_author(text)
        if by is None:
            self.counters.bad_control += 1
            self._refused.warning("ignored an empty acknowledgement on %s/%s", device, rule)
            return
        # Only on the alert's own site's topic: a broker that lets a client acknowledge one
        # site's alerts lets it mute no other site's.
        alert_site = self.engine.alert_site(device, rule)
        if alert_site is not None and alert_site != site:
            self.counters.bad_control += 1
            self._refused.warning(
                "ignored %s: ack for %s/%s on site %s, but the alert is at %s",
                control.topic(self._prefix),
                device,
                rule,
                site,
                alert_site,
            )
            return
        self._inbox.put(lambda now: self.engine.acknowledge(device, rule, by, now, site=site))

    def inject(self, events: list[AlertEvent]) -> None:
        """Events decided elsewhere (the board's overdue sign-outs): published, measured and
        notified on the alert thread like the engine's own."""
        self._inbox.put(lambda now: events)

    def acknowledge(self, device: str, rule: str, by: str) -> None:
        self._inbox.put(lambda now: self.engine.acknowledge(device, rule, by[:64], now))

    # Silences ("in repair"): the engine is thread-safe, so these answer at once.

    def list_silences(self) -> list[dict[str, object]]:
        return [_silence_dict(s) for s in self.engine.silences(self._clock_ms())]

    def add_silence(
        self,
        *,
        device: str | None,
        rule: str | None,
        reason: str,
        by: str,
        until_ms: int | None = None,
        hours: float | None = None,
    ) -> dict[str, object]:
        """A silence until `until_ms` or for `hours` from now, its fields already checked and
        cleaned (SilenceRequest); ValueError when it would not end in the coming year, which
        only the engine's clock can tell."""
        now = self._clock_ms()
        if device is None and rule is None:
            raise ValueError('name a "device", a "rule" or both (silencing everything is refused)')
        if hours is not None:
            until_ms = now + int(hours * 3_600_000)
        if until_ms is None:
            raise ValueError('say until when: "until" (ISO-8601 with zone) or "hours"')
        if until_ms <= now:
            raise ValueError("the silence must end in the future")
        if until_ms > now + MAX_SILENCE_MS:
            raise ValueError("a silence lasts at most a year; renew it when it ends")
        silence = self.engine.silence(device, rule, until_ms, reason, by, now_ms=now)
        _LOG.info("silence %d by %s: %s/%s until %s", silence.id, by, device, rule, until_ms)
        return _silence_dict(silence)

    def remove_silence(self, silence_id: int) -> bool:
        return self.engine.unsilence(silence_id)

    # --- the alert thread --------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        undo_notifier = self.notifier.start()
        try:
            next_tick = 0.0
            while not stop.is_set():
                liveness.beat()  # the watchdog's proof of life (daemon/liveness.py)
                now = self._clock_ms()
                if now >= next_tick:
                    self._tick(now)
                    next_tick = now + TICK_S * 1000
                try:
                    work = self._inbox.get(timeout=max(0.0, (next_tick - now) / 1000))
                except queue.Empty:
                    continue
                after = None
                if isinstance(work, _Readings):
                    work, after = self._merged(work)
                self._do(work)
                if after is not None:
                    self._do(after)
        finally:
            undo_notifier(5.0)
            self._spool.close()

    def _merged(self, first: _Readings) -> tuple[_Readings, _Work | None]:
        """`first` with the hand-overs queued right behind it, in arrival order; and the
        queued item after them that is not one (a control message: judged after them)."""
        while len(first) < MERGE_MAX:
            try:
                work = self._inbox.get_nowait()
            except queue.Empty:
                return first, None
            if not isinstance(work, _Readings):
                return first, work
            first.extend(work)  # our own copy (observe): the ingest thread's list is untouched
        return first, None

    def _do(self, work: _Work) -> None:
        try:
            if isinstance(work, _Readings):
                events = self.engine.observe_batch(work, self._clock_ms(), self._failed)
            else:
                events = work(self._clock_ms())
        except Exception:  # noqa: BLE001 - one failure must not stop the thread
            self.counters.errors += 1
            what = f"{len(work)} readings" if isinstance(work, _Readings) else "a control message"
            _LOG.exception("alert engine failed on %s; skipped", what)
            return
        self._emit(events)

    def _tick(self, now: int) -> None:
        try:
            events = self.engine.tick(now)
        except Exception:  # noqa: BLE001 - the next tick may succeed; a restart would not help
            self.counters.errors += 1
            # A failing tick fails every second: the traceback once a minute is enough.
            last = self._tick_failed_at
            if last is None or time.monotonic() - last >= 60:
                self._tick_failed_at = time.monotonic()
                _LOG.exception("alert engine tick failed (logged once a minute while it lasts)")
            return
        self._emit(events)

    def engine_fields(self) -> dict[str, int]:
        """The engine's own counters for `pipeline` (readings set aside: daemon/alerts/clock.py),
        and the availability messages ignored for who sent them."""
        c = self.engine.counters
        return {
            "alert_availability_ignored": self.counters.availability_ignored,
            "alert_late": c.late,
            "alert_buffered": c.buffered,
            "alert_future": c.future,
            "alert_store_errors": c.store_errors,
            "mqtt_blind_spells": c.blind_spells,  # alert judging held (alerts/offline.py)
            "mqtt_blind_s": c.blind_ms // 1000,
        }

    def _emit(self, events: list[AlertEvent]) -> None:
        self._outlet.emit(events)


def _silence_dict(s: Silence) -> dict[str, object]:
    return {
        "id": s.id,
        "device": s.device,
        "rule": s.rule,
        "until": iso_utc(s.until_ms),
        "reason": s.reason,
        "by": s.by,
        "created": iso_utc(s.created_ms),
    }


def _ack_author(text: str) -> str | None:
    """Who acknowledged: a plain name, or JSON {"by": name}."""
    if text.startswith("{"):
        try:
            decoded = json.loads(text)
        except (ValueError, RecursionError):  # any client may publish here
            return None
        by = decoded.get("by") if isinstance(decoded, dict) else None
        if not isinstance(by, str):
            return None
        text = by
    return one_line(text, 64) or None
