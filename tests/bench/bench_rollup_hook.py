"""The roll-up's late-point hook on the writer's hot path, per 5,000-line batch.

`RollupBackfill.note_written` runs on the writer's thread for every batch InfluxDB
confirmed. Timed here on realistic rows (1,000 devices, every message with its three groups:
1,667 rows of 3 lines), against what the writer does with the same batch anyway without
the network: joining and encoding the body. Cases:

- live: nothing late (the steady state);
- backlog: every point late, its hours already pending (a drain after an outage);
- first: every point late, hours new (one meta write, fsync'd, per batch that adds hours).

    .venv/bin/python tests/bench/bench_rollup_hook.py
"""

from __future__ import annotations

import tempfile
import time
import timeit
from pathlib import Path

from fleet.config.influx import InfluxSettings
from fleet.daemon.collector.backfill import RollupBackfill
from fleet.daemon.collector.schema import reading_lines
from fleet.daemon.collector.sinks import WriteResult
from fleet.daemon.spool import Spool, SpoolRow
from fleet.daemon.wire import DecodedReading
from fleet.drivers.readings import Battery, Location, State, Status

LINES = 5000
HOUR_MS = 3_600_000


def _rows(ts_ms: int) -> list[SpoolRow]:
    rows: list[SpoolRow] = []
    points = 0
    i = 0
    while points < LINES:
        device = f"sw-{i % 1000:04d}"
        reading = DecodedReading(
            site="allingtown",
            kind="segway",
            device=device,
            seq=i,
            ts_ms=ts_ms + i,
            battery=Battery(pct=80.5, voltage_v=54.1, current_a=-3.2, temp_c=21.5, charging=False),
            location=Location(lat=41.27, lon=-72.95, speed_kmh=12.0),
            status=Status(state=State.RIDING, odometer_km=1000.5, rssi_dbm=-60),
            source="telemetry",
        )
        lines = reading_lines(reading)
        rows.append(
            SpoolRow(
                i, ts_ms, f"fleet/v1/allingtown/segway/{device}/telemetry", 3, "\n".join(lines)
            )
        )
        points += len(lines)
        i += 1
    return rows


def _best_ms(func: object, number: int) -> float:
    return min(timeit.repeat(func, number=number, repeat=7)) / number * 1000  # type: ignore[arg-type]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp) / "spool.sqlite", max_bytes=1 << 30, fsync=True)
        now_ms = int(time.time() * 1000)
        hook = RollupBackfill(
            InfluxSettings(),
            spool,
            lambda _: WriteResult(204, ""),  # never asked: the bench times the hook only
            backlog_drained=lambda: True,
        )
        live = _rows(now_ms)
        late = _rows(now_ms - 30 * HOUR_MS)
        n = sum(r.n for r in live)
        body = _best_ms(lambda: "\n".join(r.lines for r in live).encode(), 50)
        t_live = _best_ms(lambda: hook.note_written(live), 50)
        hook.note_written(late)
        t_backlog = _best_ms(lambda: hook.note_written(late), 20)

        def first() -> None:
            hook.pending._hours.clear()  # the bench wants the hours new again
            hook.note_written(late)

        t_first = _best_ms(first, 20)
        spool.close()
    print(f"batch: {len(live)} rows, {n} lines")
    print(f"writer's own join + encode of the body:  {body:7.3f} ms")
    print(f"hook, nothing late (live):               {t_live:7.3f} ms")
    print(f"hook, all late, hours pending (backlog): {t_backlog:7.3f} ms")
    print(f"hook, all late, new hour (meta + fsync): {t_first:7.3f} ms")


if __name__ == "__main__":
    main()
