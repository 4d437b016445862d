"""The collector's web side assembled: the readiness board and everything the HTTP server serves.

    FleetView       fed by the ingest thread with every spooled batch (`observe`)
    AssignmentStore the sign-out sheet, beside the alert state (`board.assignments_path`)
    Audit           every change and login as an `audit` point, through the spool
    BoardService    verdicts and changes; its `tick` raises overdue sign-outs
    routes          health, alerts, silences (api/v1 and the old paths), the board's API,
                    the pages, /metrics, behind the gate (logins, Host, CSRF)

`Web.start()` returns its undo, like every part of the collector. The view is refilled
from InfluxDB in the background at start (best effort: devices appear as they report).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

from fleet.daemon import wire
from fleet.daemon.board.assignments import AssignmentStore
from fleet.daemon.board.audit import Audit
from fleet.daemon.board.fleetview import FleetView
from fleet.daemon.board.seed import seed_from_influx
from fleet.daemon.board.service import OVERDUE_RULE, BoardService
from fleet.daemon.collector import schema
from fleet.daemon.collector.http import HttpApi, Refused, alerts_json, collector_routes
from fleet.daemon.collector.http.api_v1 import add_board_routes
from fleet.daemon.collector.http.counters import event_counts
from fleet.daemon.collector.http.pages import add_page_routes
from fleet.daemon.collector.metrics import metrics_route
from fleet.daemon.collector.parts import CollectorParts
from fleet.daemon.supervisor import supervise

_LOG = logging.getLogger(__name__)

TICK_S = 1.0  # the watched device lists are refreshed this often
OVERDUE_EVERY = 15  # ticks between looks for overdue sign-outs: a minute's resolution is plenty


class Web:
    def __init__(self, collector: CollectorParts, clock_ms: Callable[[], int]) -> None:
        settings = collector.settings
        self._settings = settings
        self._clock_ms = clock_ms
        self.view = FleetView(settings)
        board = settings.board
        self.store = AssignmentStore(
            board.assignments_file(settings.alerts.state_path),
            fsync=settings.spool.fsync,
            max_signout_hours=board.max_signout_hours,
            tz=ZoneInfo(settings.alerts.timezone),
        )
        self.audit = Audit(
            collector.spool, collector.writer.notify, site=settings.site.id, schema=schema
        )
        alerts = self._alerts = collector.alerts
        self.board = BoardService(
            settings,
            view=self.view,
            store=self.store,
            audit=self.audit,
            clock_ms=clock_ms,
            alerts=alerts,
            inject=alerts.inject if alerts is not None else None,
        )
        router = collector_routes(
            health=collector.health,
            alerts=(
                lambda: alerts_json(
                    [*alerts.engine.alerts(firing_only=True), *self.board.open_alerts()]
                )
            )
            if alerts is not None
            else None,
            acknowledge=self._acknowledge if alerts is not None else None,
            silences=alerts,
            audit=self._audit,
        )
        add_board_routes(router, self.board)
        add_page_routes(router, site_names=self.board.site_names, timezone=settings.alerts.timezone)
        router.get(
            "/metrics",
            metrics_route(
                collector,
                verdicts=self.board.verdicts,
                http_counts=lambda: event_counts(self.http.counters()),
            ),
        )
        self.http = HttpApi.from_settings(
            settings.http,
            router,
            session_key_file=settings.http.session_key_file(settings.spool.path),
            on_audit=self._audit_session,
        )

    def observe(self, readings: list[wire.DecodedReading]) -> None:
        """On the ingest thread, with the batch's commit: heard now, on our own clock."""
        self.view.observe(readings, self._clock_ms())

    def _audit_session(self, user: str, action: str, detail: str) -> None:
        self.audit.record(user, action, "session", detail, self._clock_ms())

    def _audit(self, user: str, action: str, target: str, detail: str) -> None:
        self.audit.record(user, action, target, detail, self._clock_ms())

    def _acknowledge(self, device: str, rule: str, by: str) -> None:
        """Only an open alert can be acknowledged; a wrong one is refused with what is open."""
        alerts = self._alerts
        assert alerts is not None
        if rule == OVERDUE_RULE and device in self.store.alerted():
            raise Refused(
                409,
                f"the overdue sign-out of {device} ends when it is signed in "
                f"(POST /api/v1/assignments/{device}/return); it has no acknowledgement",
            )
        firing = {(a.device, str(a.rule)) for a in alerts.engine.alerts(firing_only=True)}
        if (device, rule) not in firing:
            open_here = sorted(r for d, r in firing if d == device)
            raise Refused(
                404,
                f"no open alert {rule} for {device}"
                + (f"; open: {', '.join(open_here)}" if open_here else "; it has none open"),
            )
        alerts.acknowledge(device, rule, by)

    def _tick(self, stop: threading.Event) -> None:
        turns = 0
        while not stop.wait(TICK_S):
            self.board.snapshots.refresh()
            if turns % OVERDUE_EVERY == 0:
                self.board.tick(self._clock_ms())
            turns += 1

    def _seed(self) -> None:
        started = time.monotonic()
        fed = seed_from_influx(self.view, self._settings)
        _LOG.info(
            "board: %d readings of the last %g h from InfluxDB in %.1f s",
            fed,
            self._settings.board.history_hours,
            time.monotonic() - started,
        )

    def start(self, on_give_up: Callable[[str], None]) -> Callable[[], None]:
        threading.Thread(target=self._seed, name="board-seed", daemon=True).start()
        stop_tick = supervise("board", self._tick, on_give_up=on_give_up)
        stop_http = self.http.start()

        def undo() -> None:
            stop_http()
            stop_tick(5.0)
            self.store.close()

        return undo
