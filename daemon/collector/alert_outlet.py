"""Where the alert engine's events go: the retained alert topic, the `alert` measurement, people.

Every event is published (retained, so a board that connects later sees the state) and
measured (through the spool, like readings); one meant for people is also handed to the
notifier on the route of its severity. One event that fails costs that event only: it is
logged and counted, the others still go out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from fleet.daemon import wire
from fleet.daemon.alerts.model import Action, AlertEvent
from fleet.daemon.alerts.notify import Notifier
from fleet.daemon.alerts.text import alert_json
from fleet.daemon.collector import schema
from fleet.daemon.spool import Entry, Spool

_LOG = logging.getLogger(__name__)

SPOOL_TOPIC = "$alert"  # the "source topic" of alert points in the spool

Publish = Callable[[str, bytes, bool], None]  # topic, payload, retain

_NOTIFY_TYPE = {
    (Action.FIRE, "critical"): "failure",
    (Action.REPEAT, "critical"): "failure",
    (Action.ESCALATE, "critical"): "failure",
    (Action.FIRE, "warning"): "warning",
    (Action.REPEAT, "warning"): "warning",
    (Action.RESOLVE, "critical"): "success",
    (Action.RESOLVE, "warning"): "success",
}
_TITLE = {
    Action.FIRE: "{severity}",
    Action.REPEAT: "still {severity}",
    Action.ESCALATE: "ESCALATED, unacknowledged {severity}",
    Action.RESOLVE: "resolved",
    Action.ACKNOWLEDGED: "acknowledged",
}


@dataclass
class AlertCounters:
    """Owned by the alert thread; the stats reporter only reads them."""

    events: int = 0
    notified: int = 0
    acks: int = 0
    control: int = 0  # availability and acknowledgement messages taken
    bad_control: int = 0  # malformed, or an ack on another site's topic than its alert's
    availability_ignored: int = 0  # from an agent or for a device the registry does not back
    errors: int = 0  # readings, messages or ticks the engine failed on (logged)


class AlertOutlet:
    """Publishes, measures and notifies the events of the alert thread (on that thread)."""

    def __init__(
        self,
        *,
        prefix: str,
        spool: Spool,
        publish: Publish,
        on_spooled: Callable[[], None],
        clock_ms: Callable[[], int],
        notifier: Callable[[], Notifier],
        counters: AlertCounters,
    ) -> None:
        self._prefix = prefix
        self._spool = spool
        self._publish = publish
        self._on_spooled = on_spooled
        self._clock_ms = clock_ms
        # Asked each time: the owner's notifier may be replaced after construction (tests).
        self._notifier = notifier
        self._counters = counters

    def emit(self, events: list[AlertEvent]) -> None:
        if not events:
            return
        now = self._clock_ms()
        lines = []
        for event in events:
            a = event.alert
            self._counters.events += 1
            if event.action is Action.ACKNOWLEDGED:
                self._counters.acks += 1
            try:
                topic = wire.alert_topic(self._prefix, a.site, a.device, a.rule)
                self._publish(topic, alert_json(a), True)
                lines.append(
                    schema.alert_line(
                        site=a.site,
                        kind=a.kind,
                        device=a.device,
                        rule=a.rule,
                        severity=str(a.severity),
                        state=str(a.state),
                        value=a.value,
                        message=a.message,
                        ts_ms=now,
                    )
                )
                _LOG.info("alert %s: %s", event.action, a.message)
                if event.notify:
                    self._notify(event, topic)
            except Exception:  # noqa: BLE001 - one event must not cost the others
                self._counters.errors += 1
                _LOG.exception(
                    "publishing alert %s of %s/%s failed", event.action, a.device, a.rule
                )
        try:
            self._spool.append([Entry(SPOOL_TOPIC, line, 1) for line in lines])
        except Exception:  # noqa: BLE001 - published and notified already; only the points miss
            self._counters.errors += 1
            _LOG.exception("%d alert points not spooled", len(lines))
            return
        self._on_spooled()

    def _notify(self, event: AlertEvent, topic: str) -> None:
        a = event.alert
        severity = str(a.severity)
        title = f"[{_TITLE[event.action].format(severity=severity)}] {a.message}"
        body = a.message
        if event.action is not Action.RESOLVE:
            body += f"\n\nAcknowledge: publish your name to {topic}/ack"
        self._notifier().submit(
            event.route,
            title,
            body,
            key=f"{a.device}/{a.rule}",
            notify_type=_NOTIFY_TYPE.get((event.action, severity), "info"),
        )
        self._counters.notified += 1
