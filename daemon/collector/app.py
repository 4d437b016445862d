"""The collector assembled: MQTT link -> ingest -> spool -> writer -> InfluxDB.

`Collector.start()` starts every part in dependency order and returns the undo
that stops them in reverse: first stop taking messages, then let the writer
flush what it can within its grace period, leaving the rest in the spool.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from fleet.config import FleetSettings
from fleet.daemon import wire
from fleet.daemon.alerts import system
from fleet.daemon.collector.alerting import AlertService
from fleet.daemon.collector.backfill import make_backfill
from fleet.daemon.collector.deadletters import FORMAT_LINE, DeadLetter, DeadLetterStore
from fleet.daemon.collector.ingest import Ingest, ingest_inbox
from fleet.daemon.collector.sinks import Sink, make_sink
from fleet.daemon.collector.stats import StatsReporter
from fleet.daemon.collector.systemd import CollectorSystemd
from fleet.daemon.collector.web import Web
from fleet.daemon.collector.writer import Writer, write_backoff
from fleet.daemon.mqtt import Inbound, MqttLink
from fleet.daemon.spool import Spool
from fleet.daemon.supervisor import supervise

_LOG = logging.getLogger(__name__)

# Availability is "online"/"offline" and an acknowledgement a name or {"by": name} (64
# characters kept): a control payload past 1 KiB is not one, and a body that small cannot
# nest deeper (~512 levels) than the JSON parser's recursion limit (1000).
CONTROL_MAX_BYTES = 1024


def _now_ms() -> int:
    return int(time.time() * 1000)


def make_decoder(settings: FleetSettings, now_ms: Callable[[], int] = _now_ms) -> wire.Decoder:
    return wire.Decoder(
        prefix=settings.mqtt.topic_prefix,
        default_site=settings.site.id,
        kinds=settings.kinds,
        registry={
            d.id: wire.DeviceRef(site=settings.device_site(d.id), kind=d.kind)
            for d in settings.devices
        },
        owntracks_map={d.owntracks: d.id for d in settings.devices if d.owntracks},
        max_payload_bytes=settings.collector.max_payload_bytes,
        max_future_s=settings.collector.max_future_s,
        max_age_s=settings.influx.retention_seconds,
        now_ms=now_ms,
        sites=settings.collector.sites,
    )


class Collector:
    def __init__(
        self,
        settings: FleetSettings,
        *,
        sink: Sink | None = None,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.settings = settings
        self._prefix = settings.mqtt.topic_prefix
        self._clock_ms = clock_ms
        self.stopped = threading.Event()  # set when a part gave up: the process should exit
        self.spool = Spool(
            settings.spool.path, max_bytes=settings.spool.max_bytes, fsync=settings.spool.fsync
        )
        self.sink = sink if sink is not None else make_sink(settings.influx)
        self.deadletters = DeadLetterStore(
            settings.collector.deadletter_file(settings.spool.path),
            max_bytes=settings.collector.deadletter_max_bytes,
            max_payload_bytes=settings.collector.max_payload_bytes,
            fsync=settings.spool.fsync,
        )
        alerting = settings.alerts.enabled
        sites = settings.collector.sites  # empty: every site
        subscriptions = wire.subscriptions(self._prefix, sites)
        if alerting:
            subscriptions += wire.control_subscriptions(self._prefix, sites)
        self._subscriptions = subscriptions
        self.session_lost = 0  # persistent sessions the broker no longer had
        batch_max = settings.collector.ingest_batch_max
        self._inbox = ingest_inbox(
            batch_max,
            window=settings.mqtt.receive_maximum,
            keepalive_s=settings.mqtt.keepalive_s,
        )
        self.link = MqttLink(
            settings.mqtt,
            read_gate=self._inbox.room,
            persistent=True,
            subscriptions=subscriptions,
            manual_ack=True,
            on_session=self._session,
            # The alert engine judges no silence it could not see (alerts/offline.py).
            on_connect=lambda: self._connection(True),
            on_disconnect=lambda: self._connection(False),
        )
        influx = settings.influx
        # Late readings into the hourly roll-up (1.x): noted by the writer, recomputed here.
        self.backfill = make_backfill(
            influx,
            self.spool,
            self.sink,
            backlog_drained=lambda: (
                self.spool.depth().points < influx.batch_size and self.writer.failing_for_s is None
            ),
        )
        self.writer = Writer(
            self.spool,
            self.sink,
            batch_size=influx.batch_size,
            flush_interval_s=influx.flush_interval_s,
            backoff=write_backoff(influx.write_backoff_initial_s, influx.write_backoff_max_s),
            on_rejected=self._dead_letter_lines,
            oldest_allowed_ms=self._oldest_allowed_ms,
            on_written=self.backfill.note_written if self.backfill is not None else None,
        )
        self.alerts: AlertService | None = None
        if alerting:
            self.alerts = AlertService(
                settings,
                spool=self.spool,
                publish=lambda topic, payload, retain: self.link.publish(
                    topic, payload, qos=1, retain=retain
                ),
                on_spooled=self.writer.notify,
                clock_ms=clock_ms,
            )
        self._decoder = make_decoder(settings, clock_ms)
        self.ingest = Ingest(
            decoder=self._decoder,
            spool=self.spool,
            publish=self.link.publish,
            ack=self.link.ack_all,
            deadletter_topic=self._deadletter_topic,
            on_spooled=self.writer.notify,
            batch_max=batch_max,
            inbox=self._inbox,
            on_control=self._control if self.alerts is not None else None,
            on_readings=self._observe,
            keep_dead_letters=self._keep_dead_letters,
        )
        self.link.set_message_sink(self._inbox.put)
        # READY, STATUS and the watchdog rule (daemon/collector/systemd.py).
        self.systemd = CollectorSystemd(
            settings, link=self.link, ingest=self.ingest, writer=self.writer, spool=self.spool
        )
        self.web = Web(self, clock_ms)  # the board, the sign-out sheet, the HTTP server
        # State files found broken at start and replaced (daemon/sqlite_files.py).
        self.recoveries = [
            r
            for r in (
                self.spool.recovery,
                self.deadletters.recovery,
                self.alerts.store.recovery if self.alerts else None,
                self.web.store.recovery,
            )
            if r is not None
        ]
        self.stats = StatsReporter(
            site=settings.site.id,
            instance=self.link.client_id,
            ingest=self.ingest,
            writer=self.writer,
            spool=self.spool,
            interval_s=settings.collector.stats_interval_s,
            extra_fields=lambda: {
                **self._alert_fields(),
                "state_files_recovered": len(self.recoveries),
                **self.deadletters.fields(),
                "session_lost": self.session_lost,
                "not_ours": self.ingest.counters.not_ours,
                **(self.backfill.fields() if self.backfill is not None else {}),
            },
        )

    def _control(self, message: Inbound) -> bool:
        control = wire.parse_control(self._prefix, message.topic)
        if control is None or self.alerts is None:
            return False
        if not self.settings.collector.owns(control.site):
            self.ingest.counters.not_ours += 1  # another collector's site (ingest thread)
            return True
        if len(message.payload) > CONTROL_MAX_BYTES:
            self.alerts.counters.bad_control += 1  # on the ingest thread, like control()
            detail = (
                f"{control.what} payload is {len(message.payload)} bytes; "
                f"the limit for control messages is {CONTROL_MAX_BYTES} bytes"
            )
            raise wire.Rejected(wire.Reason.TOO_LARGE, detail)
        self.alerts.control(control, message.payload)
        return True

    def _connection(self, connected: bool) -> None:
        if self.alerts is not None:  # None until constructed: nothing judged before then
            self.alerts.connection(connected)

    def _session(self, present: bool) -> None:
        """On every MQTT connect (paho's thread): did the broker keep our session?

        Whether this client id had a session before is kept in the spool's file, so
        a broker that lost it while the collector was down is noticed too.
        """
        try:
            self._check_session(present)
        except sqlite3.Error as exc:
            # Only bookkeeping: a full disk must not take paho's network thread down.
            _LOG.error("could not record the MQTT session in the spool: %s", exc)
        finally:
            self.spool.close()  # this thread's connection: paho's thread holds none between calls

    def _check_session(self, present: bool) -> None:
        key = f"mqtt_session:{self.link.client_id}"
        if not present and self.spool.get_meta(key) is not None:
            self.session_lost += 1
            _LOG.warning(
                "MQTT broker %s:%s no longer had the persistent session of %s (expired, or "
                "the broker lost its state): readings published while it was gone may be "
                "lost; seq gaps will show which",
                self.settings.mqtt.host,
                self.settings.mqtt.port,
                self.link.client_id,
            )
        if not present:
            self.spool.set_meta(key, str(_now_ms()))  # when this session began

    def _observe(self, readings: list[wire.DecodedReading]) -> None:
        """A batch's readings, just before its commit, to the alert engine and the board's
        view (the ingest thread). The engine first: a hand-over to its thread, which judges
        them while this one builds the view and syncs the spool."""
        if self.alerts is not None:
            self.alerts.observe(readings)
        self.web.observe(readings)

    def health(self) -> tuple[bool, dict[str, Any]]:
        depth = self.spool.depth()
        failing = self.writer.failing_for_s
        details: dict[str, Any] = {
            "mqtt_connected": self.link.connected,
            "influx_failing_for_s": None if failing is None else round(failing, 1),
            "spool_points": depth.points,
            "received": self.ingest.counters.received,
            "written": self.writer.counters.written_points,
            "sites": self.web.board.site_ids(),  # the sites this collector owns
        }
        # InfluxDB being away is not ill health: the spool is there for it. Not being
        # able to commit to the spool is: nothing is acknowledged, the broker's queue
        # grows, and no restart cures a full disk - a person must.
        spool_failing = self.ingest.commit_failing_for_s
        details["spool_error"] = self.ingest.commit_error
        details["spool_failing_for_s"] = None if spool_failing is None else round(spool_failing, 1)
        if self.alerts is not None:
            details["alert_state_error"] = self.alerts.store.error
        details["state_files_recovered"] = [
            {"file": str(r.path), "moved_to": str(r.moved_to), "rows_kept": r.rows}
            for r in self.recoveries
        ]
        return self.link.connected and self.ingest.commit_error is None, details

    def _announce_recoveries(self) -> None:
        """A state file was broken at start: a retained critical alert, notified like any."""
        for recovery in self.recoveries:
            topic, payload, alert = system.recovery_alert(
                recovery,
                prefix=self._prefix,
                site=self.settings.site.id,
                source=self.link.client_id,
                kind="collector",
                now_ms=self._clock_ms(),
            )
            self.link.publish(topic, payload, qos=1, retain=True)  # queued until connected
            if self.alerts is not None:
                key = f"{alert.device}/{alert.rule}"
                self.alerts.notifier.submit(
                    "critical",
                    f"[critical] {alert.message}",
                    alert.message,
                    key=key,
                    notify_type="failure",
                )

    def _alert_fields(self) -> dict[str, int]:
        if self.alerts is None:
            return {}
        c = self.alerts.counters
        return {
            "alert_events": c.events,
            "alert_notified": c.notified,
            "alert_acks": c.acks,
            "alert_control": c.control,
            "alert_bad_control": c.bad_control,
            "alert_errors": c.errors,
            **self.alerts.engine_fields(),
            **self.alerts.notifier.counters.fields(),
        }

    def _oldest_allowed_ms(self) -> int | None:
        retention = self.settings.influx.retention_seconds
        return None if retention is None else self._clock_ms() - int(retention * 1000)

    def _site_of(self, source_topic: str) -> str:
        """The message's own site: its topic's, an OwnTracks phone's registry site (a
        collector that owns only some sites may write only their dead letters), else
        this site."""
        return self._decoder.site_of(source_topic)

    def _deadletter_topic(self, source_topic: str) -> str:
        return wire.deadletter_topic(self._prefix, self._site_of(source_topic))

    def _keep_dead_letters(self, letters: list[DeadLetter]) -> None:
        """On the ingest thread, before the batch is acknowledged: one transaction."""
        self.deadletters.keep(
            [dataclasses.replace(d, site=self._site_of(d.topic)) for d in letters]
        )

    def _dead_letter_lines(self, refused: list[tuple[str, str]], reason: str) -> None:
        now_ms = _now_ms()
        detail = reason[:500]
        letters = [
            DeadLetter(
                topic,
                line.encode(),
                wire.Reason.INFLUX_REJECTED,
                detail,
                now_ms,
                site=self._site_of(topic),
                format=FORMAT_LINE,
            )
            for topic, line in refused
        ]
        # On the writer thread, before the batch leaves the spool: one transaction.
        self.deadletters.keep(letters)
        for letter in letters:
            payload = wire.deadletter_payload(
                letter.topic, letter.payload, wire.Reason.INFLUX_REJECTED, detail, now_ms
            )
            self.link.publish(self._deadletter_topic(letter.topic), payload)

    def _give_up(self, name: str) -> None:
        _LOG.critical("collector part %s is down for good; stopping", name)
        self.stopped.set()

    def start(self) -> Callable[[], None]:
        def part(name: str, work: Callable[[threading.Event], None]) -> Callable[[float], bool]:
            return supervise(name, self.systemd.part(name, work), on_give_up=self._give_up)

        stop_writer = part("writer", self.writer.run)
        stop_ingest = part("ingest", self.ingest.run)
        stop_stats = part("stats", self.stats.run)
        stop_alerts = part("alerts", self.alerts.run) if self.alerts is not None else None
        backfill = self.backfill
        stop_backfill = part("backfill", backfill.run) if backfill and backfill.enabled else None
        stop_link = self.link.start()
        self._announce_recoveries()
        stop_web = self.web.start(self._give_up)
        stop_notify = self.systemd.start()  # READY=1 once MQTT is connected: HTTP serves now
        _LOG.info(
            "collector started: %s -> spool %s -> %s %s",
            " + ".join(self._subscriptions),
            self.settings.spool.path,
            self.settings.influx.url,
            self.settings.influx.database,
        )

        def undo() -> None:
            _LOG.info("collector stopping")
            stop_notify()  # STOPPING=1: no watchdog ping while the parts wind down
            stop_web()
            stop_ingest(30.0)  # no more acks: what is not spooled is redelivered later
            if stop_alerts is not None:
                stop_alerts(10.0)  # its last events still go out on the link
            stop_link()
            if stop_backfill is not None:
                stop_backfill(10.0)  # between statements; a pending hour stays pending
            stop_stats(5.0)
            self.stats.try_report()  # the last counters, so the history ends where we stopped
            stop_writer(30.0)
            self.sink.close()
            self.spool.close()
            self.deadletters.close()
            _LOG.info("collector stopped; %d points left in the spool", self.spool.depth().points)

        return undo
