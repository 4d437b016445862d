"""The agent's outbox on a real SQLite file: order, seq persistence, the byte bound."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from daemon.agent.outbox import Outbox
from daemon.spool import Entry

MIN_BYTES = 64 * 1024


def entries(start: int, count: int, size: int = 1000) -> list[Entry]:
    return [Entry("t/x", f"{i:08d}".ljust(size, "."), 1) for i in range(start, start + count)]


def numbers(rows: list[str]) -> list[int]:
    return [int(text[:8]) for text in rows]


def stored(path: Path) -> tuple[int, int]:
    with sqlite3.connect(path) as conn:
        rows, size = conn.execute(
            "SELECT count(*), coalesce(sum(length(lines)), 0) FROM spool"
        ).fetchone()
    return rows, size


def test_rows_leave_in_order_and_seqs_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path, max_bytes=MIN_BYTES, fsync=False)
    assert box.add(entries(1, 5, 10), {"sw-01": 5, "hh-01": 2}) == 0
    rows = box.take(3)
    assert numbers([r.lines for r in rows]) == [1, 2, 3]
    box.done(rows)
    box.add(entries(6, 1, 10), {"sw-01": 6})
    box.close()
    box = Outbox(path, max_bytes=MIN_BYTES, fsync=False)
    assert box.seqs() == {"sw-01": 6, "hh-01": 2}
    assert numbers([r.lines for r in box.take(100)]) == [4, 5, 6]
    box.close()


def test_past_the_bound_the_oldest_rows_are_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path, max_bytes=MIN_BYTES, fsync=False)
    dropped = sum(box.add(entries(i * 10, 10), {}) for i in range(20))  # 200 kB into 64 KiB
    depth = box.depth()
    assert depth.bytes <= MIN_BYTES
    assert dropped == 200 - depth.rows
    kept = numbers([r.lines for r in box.take(1000)])
    assert kept == list(range(200 - depth.rows, 200))  # the newest, in order
    assert stored(path) == (depth.rows, depth.bytes)
    box.close()


def test_trimming_rows_in_flight_neither_counts_them_nor_breaks_the_depth(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path, max_bytes=MIN_BYTES, fsync=False)
    box.add(entries(0, 60), {})
    inflight = box.take(10)  # handed to the link; the broker is away
    dropped = box.add(entries(60, 20), {})  # 80 kB: 15 rows must go, 10 of them in flight
    assert dropped == 5  # the 10 in flight are not lost: paho holds them
    box.done(inflight)  # the broker acknowledged them after all
    depth = box.depth()
    assert stored(path) == (depth.rows, depth.bytes)
    assert numbers([r.lines for r in box.take(1000)]) == list(range(15, 80))
    box.close()
