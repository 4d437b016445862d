"""Readings the broker refused leave the outbox queue into its `refused` table, kept once,
bounded to the newest; the queue's depth and order are as if they had been sent."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fleet.daemon.agent.outbox import Outbox
from fleet.daemon.spool import Entry

MIN_BYTES = 64 * 1024
REASON = "Not authorized (0x87)"


def readings(start: int, count: int) -> list[Entry]:
    return [Entry(f"t/{i}", f'{{"seq": {i}}}', 1) for i in range(start, start + count)]


def test_refused_rows_are_kept_aside_with_the_reason(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite", max_bytes=MIN_BYTES, fsync=False)
    box.add(readings(1, 5), {})
    rows = box.take(5)
    refused = {rows[1].id: REASON, rows[3].id: "Quota exceeded (0x97)"}
    assert box.done(rows, refused) == {row.id for row in rows}
    assert box.depth().rows == 0
    kept = box.refused()
    assert [(r.id, r.topic, r.payload, r.reason) for r in kept] == [
        (rows[3].id, "t/4", '{"seq": 4}', "Quota exceeded (0x97)"),  # newest first
        (rows[1].id, "t/2", '{"seq": 2}', REASON),
    ]
    assert all(r.at_ms == rows[0].at_ms and r.refused_ms >= r.at_ms for r in kept)
    box.close()


def test_a_row_refused_again_after_a_crash_is_kept_once(tmp_path: Path) -> None:
    """A crash after the refused row was kept but before it left the queue: on the next
    start it is sent and refused again; the table holds it once."""
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path, max_bytes=MIN_BYTES, fsync=False)
    box.add(readings(1, 2), {})
    rows = box.take(2)
    box._keep_refused(rows[:1], {rows[0].id: REASON})  # the crash comes right after
    box.close()
    box = Outbox(path, max_bytes=MIN_BYTES, fsync=False)
    again = box.take(2)
    assert [r.id for r in again] == [r.id for r in rows]  # still queued
    box.done(again, {again[0].id: REASON})
    assert [r.id for r in box.refused()] == [rows[0].id]
    box.close()


def test_only_the_newest_refused_rows_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path, max_bytes=MIN_BYTES, fsync=False, refused_keep=3)
    for start in (1, 3, 5):
        box.add(readings(start, 2), {})
        rows = box.take(10)
        box.done(rows, {row.id: REASON for row in rows})
    assert [r.topic for r in box.refused()] == ["t/6", "t/5", "t/4"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM refused").fetchone() == (3,)
    box.close()


def test_done_without_refusals_keeps_nothing_aside(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite", max_bytes=MIN_BYTES, fsync=False)
    box.add(readings(1, 3), {})
    rows = box.take(3)
    assert box.done(rows) == {row.id for row in rows}
    assert box.refused() == []
    box.close()
