"""The collector's own counters, written to the `pipeline` measurement.

Every `stats_interval_s` one point with tags `site`, `instance` carries the
cumulative counters since start (received, rejected by reason, spooled,
written, retries...) and the gauges of the moment (spool depth, write latency
of the interval). Devices whose readings arrived in the interval get a point
of their own with the extra tags `kind` and `device` (seq gaps, duplicates).
The points travel through the spool like readings, so an InfluxDB outage
does not leave a hole in the pipeline's own history.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from fleet.daemon import wire
from fleet.daemon.collector import lineproto
from fleet.daemon.collector.ingest import Ingest
from fleet.daemon.collector.writer import Writer
from fleet.daemon.spool import Entry, Spool

_LOG = logging.getLogger(__name__)

MEASUREMENT = "pipeline"
SPOOL_TOPIC = "$pipeline"  # the "source topic" of these points in the spool


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class StatsReporter:
    def __init__(
        self,
        *,
        site: str,
        instance: str,
        ingest: Ingest,
        writer: Writer,
        spool: Spool,
        interval_s: float,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        extra_fields: Callable[[], Mapping[str, lineproto.FieldValue]] = dict,
    ) -> None:
        self._tags = {"site": site, "instance": instance}
        self._ingest = ingest
        self._writer = writer
        self._spool = spool
        self._interval_s = interval_s
        self._clock_ms = clock_ms
        self._extra_fields = extra_fields  # counters of other parts (alerts, notifications)
        self._started = time.monotonic()
        self.failures = 0  # reports that failed (logged); the next interval tries again
        self._failing = False
        self._extra_failing = False

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.wait(self._interval_s):
                self.try_report()
        finally:
            self._spool.close()

    def try_report(self) -> bool:
        """One report; its failure (a spool that would not commit, a bug) is logged and
        counted, and the next interval reports again: the counters are cumulative, so a
        skipped point loses no count. True if the point was spooled."""
        try:
            self.report()
        except Exception:  # noqa: BLE001 - the stats thread must outlive one bad report
            self.failures += 1
            # With its traceback once per streak, then quietly: a lasting cause would
            # otherwise fill the journal every interval.
            if self._failing:
                _LOG.debug("pipeline report failed again", exc_info=True)
            else:
                _LOG.exception("pipeline report failed; trying again next interval")
            self._failing = True
            return False
        self._failing = False
        return True

    def _extra(self) -> Mapping[str, lineproto.FieldValue]:
        """Other parts' counters; a part whose counters fail costs only its own fields."""
        try:
            fields = self._extra_fields()
        except Exception:  # noqa: BLE001 - the collector's own counters still go out
            self.failures += 1
            if not self._extra_failing:
                _LOG.exception("counters of another part failed; reporting without them")
            self._extra_failing = True
            return {}
        self._extra_failing = False
        return fields

    def lines(self) -> list[str]:
        now_ms = self._clock_ms()
        i = self._ingest.counters
        w = self._writer.counters
        depth = self._spool.depth()
        write_ms, lag_ms = w.take_timings()
        fields: dict[str, lineproto.FieldValue] = {
            "received": i.received,
            "accepted": i.accepted,
            "ignored": i.ignored,
            "rejected": sum(list(i.rejected.values())),
            "spooled": i.spooled,
            "dead_lettered": i.dead_lettered + w.rejected_points,
            "written": w.written_points,
            "write_batches": w.written_batches,
            "write_retries": w.retries,
            "write_rejected": w.rejected_points,
            "write_resent": w.resent_points,
            "spool_rows": depth.rows,
            "spool_points": depth.points,
            "spool_bytes": depth.bytes,
            "seq_missing": self._ingest.seq.missing,
            "seq_duplicates": self._ingest.seq.duplicates,
            "seq_restarts": self._ingest.seq.restarts,
            "internal_errors": i.internal_errors + w.dead_letter_failures,
            "stats_failures": self.failures,
            "uptime_s": round(time.monotonic() - self._started, 3),
        }
        fields.update(self._extra())
        for reason in wire.Reason:
            fields[f"rejected_{reason.value}"] = i.rejected.get(reason, 0)
        if write_ms:
            fields["write_ms_p50"] = round(_percentile(write_ms, 0.5), 3)
            fields["write_ms_max"] = round(max(write_ms), 3)
        if lag_ms:
            fields["lag_ms_max"] = round(max(lag_ms), 3)
        lines = [lineproto.line(MEASUREMENT, self._tags, fields, now_ms)]
        for device, s in self._ingest.seq.take_changed():
            # The device's own site, not the collector's: the per-site panels read these.
            tags = {**self._tags, "site": s.site, "kind": s.kind, "device": device}
            per_device: dict[str, lineproto.FieldValue] = {
                "received": s.received,
                "seq_missing": s.missing,
                "seq_duplicates": s.duplicates,
                "seq_restarts": s.restarts,
            }
            if s.highest >= 0:
                per_device["seq_last"] = s.highest
            lines.append(lineproto.line(MEASUREMENT, tags, per_device, now_ms))
        return lines

    def report(self) -> None:
        lines = self.lines()
        self._spool.append([Entry(SPOOL_TOPIC, line, 1) for line in lines])
        self._writer.notify()
        _LOG.debug("pipeline: %s", lines[0])
