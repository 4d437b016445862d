"""`GET /metrics`: the collector's counters and gauges in the Prometheus text format 0.0.4.

The same numbers the stats reporter writes to the `pipeline` measurement (daemon/collector/
stats.py), read at scrape time, plus what only makes sense as a gauge of the moment (MQTT
connected, alerts firing, devices per readiness state). Hand-written rather than
prometheus_client: the format is a page of rules, and the collector's memory target has no
room for a library's registry, its metric objects and their locks for numbers that already
exist as plain counters (tests/daemon/collector/test_metrics.py checks the output with
prometheus_client's own parser).

Counters are named `fleet_..._total` and are cumulative since the collector started; a
restart resets them, which Prometheus' `rate()` handles.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from fleet.daemon import wire
from fleet.daemon.board.model import Readiness, Verdict
from fleet.daemon.collector.http.router import Request, Response
from fleet.daemon.collector.parts import CollectorParts

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

MetricKind = Literal["counter", "gauge"]
Labels = Mapping[str, str]
Sample = tuple[Labels, float]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric family: its samples differ only by their labels."""

    name: str
    kind: MetricKind
    help: str
    samples: Sequence[Sample]

    def __post_init__(self) -> None:
        # A bad name is a bug here, not input: fail where the metric is defined.
        if not _NAME.match(self.name):
            raise ValueError(f"metric name {self.name!r} is not [a-zA-Z_:][a-zA-Z0-9_:]*")
        if self.kind == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name!r} must end in _total")
        for labels, _ in self.samples:
            for label in labels:
                if not _LABEL.match(label) or label.startswith("__"):
                    raise ValueError(f"{self.name}: label name {label!r} is not allowed")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))  # counters read as integers, not 1.2e+06
    return repr(float(value))


def render(metrics: Iterable[Metric]) -> bytes:
    """The exposition: HELP, TYPE, then one line per sample, each family once."""
    out: list[str] = []
    seen: set[str] = set()
    for metric in metrics:
        if metric.name in seen:
            raise ValueError(f"metric {metric.name} is rendered twice")
        seen.add(metric.name)
        out.append(f"# HELP {metric.name} {_escape_help(metric.help)}")
        out.append(f"# TYPE {metric.name} {metric.kind}")
        for labels, value in metric.samples:
            if labels:
                inner = ",".join(f'{k}="{_escape_value(v)}"' for k, v in labels.items())
                out.append(f"{metric.name}{{{inner}}} {_number(value)}")
            else:
                out.append(f"{metric.name} {_number(value)}")
    out.append("")
    return "\n".join(out).encode("utf-8")


def counter(name: str, help: str, value: float, labels: Labels | None = None) -> Metric:
    return Metric(name, "counter", help, [(labels or {}, value)])


def gauge(name: str, help: str, value: float, labels: Labels | None = None) -> Metric:
    return Metric(name, "gauge", help, [(labels or {}, value)])


def board_metric(verdicts: Iterable[Verdict]) -> Metric:
    """Devices per site and readiness state; every state of a site is present (0 included),
    so a dashboard's sum never misses a series that has not happened yet."""
    counts = Counter((v.site, v.state) for v in verdicts)
    sites = sorted({site for site, _ in counts})
    samples: list[Sample] = [
        ({"site": site, "state": str(state)}, counts.get((site, state), 0))
        for site in sites
        for state in Readiness
    ]
    return Metric("fleet_devices", "gauge", "Devices per site and readiness state.", samples)


def _ingest_metrics(collector: CollectorParts) -> list[Metric]:
    i = collector.ingest.counters
    w = collector.writer.counters
    seq = collector.ingest.seq
    rejected = dict(i.rejected)  # a copy: the ingest thread adds reasons while we read
    return [
        counter("fleet_messages_received_total", "MQTT messages received.", i.received),
        counter("fleet_messages_accepted_total", "Messages that were valid readings.", i.accepted),
        counter(
            "fleet_messages_ignored_total",
            "Messages that are not readings (OwnTracks lwt, transition...).",
            i.ignored,
        ),
        Metric(
            "fleet_messages_rejected_total",
            "counter",
            "Messages refused, by reason (published to the dead-letter topic).",
            [({"reason": r.value}, rejected.get(r, 0)) for r in wire.Reason],
        ),
        counter("fleet_spooled_total", "Entries committed to the spool.", i.spooled),
        counter(
            "fleet_dead_lettered_total",
            "Messages and lines dead-lettered (refused at ingest or by InfluxDB).",
            i.dead_lettered + w.rejected_points,
        ),
        counter("fleet_points_written_total", "Points written to InfluxDB.", w.written_points),
        counter("fleet_write_batches_total", "Batches written to InfluxDB.", w.written_batches),
        counter("fleet_write_retries_total", "InfluxDB writes retried.", w.retries),
        counter(
            "fleet_write_rejected_points_total",
            "Points InfluxDB refused (partial writes; dead-lettered).",
            w.rejected_points,
        ),
        counter(
            "fleet_write_resent_points_total",
            "Points of a refused batch written again.",
            w.resent_points,
        ),
        counter("fleet_seq_missing_total", "Readings missing by device seq.", seq.missing),
        counter("fleet_seq_duplicates_total", "Readings received twice by seq.", seq.duplicates),
        counter("fleet_seq_restarts_total", "Devices whose seq started over.", seq.restarts),
        counter(
            "fleet_internal_errors_total",
            "Steps the collector failed on (logged with a traceback).",
            i.internal_errors + w.dead_letter_failures,
        ),
        counter(
            "fleet_stats_failures_total", "Pipeline reports that failed.", collector.stats.failures
        ),
    ]


def _state_metrics(collector: CollectorParts) -> list[Metric]:
    depth = collector.spool.depth()
    failing = collector.writer.failing_for_s
    spool_failing = collector.ingest.commit_failing_for_s
    dl = collector.deadletters.fields()
    return [
        gauge("fleet_spool_rows", "Rows waiting in the spool.", depth.rows),
        gauge("fleet_spool_points", "Points waiting in the spool.", depth.points),
        gauge("fleet_spool_bytes", "Bytes of the spool's waiting rows.", depth.bytes),
        gauge(
            "fleet_influx_failing_seconds",
            "Seconds InfluxDB writes have been failing (0 when they succeed).",
            failing or 0.0,
        ),
        gauge(
            "fleet_spool_failing_seconds",
            "Seconds the spool has refused commits (0 when it commits; nothing is acknowledged).",
            spool_failing or 0.0,
        ),
        gauge(
            "fleet_mqtt_connected", "1 when connected to the broker.", int(collector.link.connected)
        ),
        counter(
            "fleet_mqtt_sessions_lost_total",
            "Persistent MQTT sessions the broker no longer had.",
            collector.session_lost,
        ),
        gauge(
            "fleet_state_files_recovered",
            "State files found broken at start and replaced.",
            len(collector.recoveries),
        ),
        counter(
            "fleet_deadletters_kept_total", "Dead letters kept on disk.", dl["deadletters_kept"]
        ),
        counter(
            "fleet_deadletters_dropped_total",
            "Dead letters dropped to stay within the store's size.",
            dl["deadletters_dropped"],
        ),
        counter(
            "fleet_deadletters_unkept_total",
            "Dead letters that could not be stored (announced only).",
            dl["deadletters_unkept"],
        ),
        gauge("fleet_deadletters_bytes", "Size of the dead-letter store.", dl["deadletters_bytes"]),
    ]


def _alert_metrics(collector: CollectorParts) -> list[Metric]:
    alerts = collector.alerts
    if alerts is None:
        return []
    c = alerts.counters
    e = alerts.engine.counters
    firing = Counter(str(a.severity) for a in alerts.engine.alerts(firing_only=True))
    by_route = alerts.notifier.counters.snapshot()
    notifications: list[Sample] = []
    deliveries: list[Sample] = []
    for route, rc in sorted(by_route.items()):
        notifications += [
            ({"route": route, "result": "submitted"}, rc.submitted),
            ({"route": route, "result": "skipped"}, rc.skipped),
        ]
        deliveries += [
            ({"route": route, "result": name}, getattr(rc, name))
            for name in ("delivered", "retried", "failed", "dropped")
        ]
    return [
        Metric(
            "fleet_alerts_firing",
            "gauge",
            "Alerts firing, by severity.",
            [({"severity": s}, firing.get(s, 0)) for s in ("warning", "critical")],
        ),
        counter("fleet_alert_events_total", "Alert state changes published.", c.events),
        counter("fleet_alert_notified_total", "Alert notifications submitted.", c.notified),
        counter("fleet_alert_acks_total", "Alerts acknowledged.", c.acks),
        counter("fleet_alert_control_total", "Availability and ack messages taken.", c.control),
        counter("fleet_alert_bad_control_total", "Control messages refused.", c.bad_control),
        counter(
            "fleet_alert_availability_ignored_total",
            "Availability messages ignored: an agent or device the registry does not back.",
            c.availability_ignored,
        ),
        counter("fleet_alert_errors_total", "Readings or ticks the engine failed on.", c.errors),
        counter("fleet_alert_late_total", "Readings too late for the engine.", e.late),
        counter(
            "fleet_alert_buffered_total", "Readings buffered to be judged in order.", e.buffered
        ),
        counter("fleet_alert_future_total", "Readings from the future set aside.", e.future),
        counter(
            "fleet_alert_store_errors_total", "Alert state writes that failed.", e.store_errors
        ),
        counter(
            "fleet_mqtt_blind_spells_total",
            "Times the collector lost its broker (nothing judged offline meanwhile).",
            e.blind_spells,
        ),
        counter(
            "fleet_mqtt_blind_seconds_total",
            "Seconds without the broker, counted when each spell ends.",
            e.blind_ms / 1000,
        ),
        Metric(
            "fleet_notifications_total",
            "counter",
            "Notifications per route: submitted or skipped (policy).",
            notifications,
        ),
        Metric(
            "fleet_notify_deliveries_total",
            "counter",
            "Deliveries of notifications to one URL, by result.",
            deliveries,
        ),
    ]


def _rollup_metrics(collector: CollectorParts) -> list[Metric]:
    """Late readings and the roll-up's backfill (absent without a 1.x roll-up)."""
    backfill = collector.backfill
    if backfill is None:
        return []
    f = backfill.fields()
    return [
        counter(
            "fleet_rollup_late_points_total",
            "Points written after their hour's last continuous query run.",
            f["rollup_late_points"],
        ),
        gauge(
            "fleet_rollup_late_hours",
            "Hours of the roll-up waiting to be recomputed.",
            f["rollup_late_hours"],
        ),
        counter(
            "fleet_rollup_backfilled_hours_total",
            "Hours of the roll-up recomputed.",
            f["rollup_backfilled_hours"],
        ),
        counter(
            "fleet_rollup_backfill_failures_total",
            "Roll-up recomputations InfluxDB refused or did not answer (retried).",
            f["rollup_backfill_failures"],
        ),
        counter(
            "fleet_rollup_errors_total",
            "Roll-up bookkeeping that failed: a batch not looked at, a recompute not recorded (logged).",
            f["rollup_errors"],
        ),
    ]


def http_metric(counts: Mapping[str, int]) -> Metric:
    """The HTTP server's counters (requests by status class, refusals...), one label each."""
    return Metric(
        "fleet_http_events_total",
        "counter",
        "HTTP server events since start, by what happened.",
        [({"event": name}, value) for name, value in sorted(counts.items())],
    )


def collector_metrics(
    collector: CollectorParts,
    *,
    verdicts: Callable[[], Iterable[Verdict]] | None = None,
    http_counts: Callable[[], Mapping[str, int]] | None = None,
) -> list[Metric]:
    """Every metric of a running collector; the board and HTTP parts when they are given."""
    metrics = [*_ingest_metrics(collector), *_state_metrics(collector), *_alert_metrics(collector)]
    metrics += _rollup_metrics(collector)
    if http_counts is not None:
        metrics.append(http_metric(http_counts()))
    if verdicts is not None:
        metrics.append(board_metric(verdicts()))
    return metrics


def metrics_route(
    collector: CollectorParts,
    *,
    verdicts: Callable[[], Iterable[Verdict]] | None = None,
    http_counts: Callable[[], Mapping[str, int]] | None = None,
) -> Callable[[Request], Response]:
    """The `GET /metrics` handler."""

    def handle(request: Request) -> Response:
        body = render(collector_metrics(collector, verdicts=verdicts, http_counts=http_counts))
        return Response(200, body, CONTENT_TYPE)

    return handle
