"""The agent's outbox: readings waiting for the broker, and each device's last seq, on disk.

Readings are rows of a `daemon.spool.Spool` (one MQTT message each, in order);
the per-device seq counters live in a table of the same SQLite file, so a
restarted agent continues each device's count where it stopped.

The outbox is bounded: past `max_bytes` of payload the OLDEST rows are dropped
and counted - the agent never stops reading its devices, and the collector
sees the gap in the seq numbers.

Not thread-safe on purpose: the agent calls every method from one worker
thread, which keeps the in-flight/trim bookkeeping free of locks.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

from daemon.spool import Depth, Entry, Spool, SpoolRow

_LOG = logging.getLogger(__name__)

_SEQ_SCHEMA = """
CREATE TABLE IF NOT EXISTS agent_seq (
    device TEXT PRIMARY KEY,
    seq    INTEGER NOT NULL
)
"""
_TRIM_CHUNK = 512  # rows looked at per step while trimming


class Outbox:
    def __init__(self, path: Path, *, max_bytes: int, fsync: bool) -> None:
        self._max_bytes = max_bytes
        self._spool = Spool(path, max_bytes=max_bytes, fsync=fsync)
        self._conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        self._conn.execute(_SEQ_SCHEMA)
        # Rows up to this id were handed to the MQTT link and wait for the broker's ack.
        self._inflight_last = 0
        # Rows up to this id were removed by trimming; `done` must not count them again.
        self._trimmed_upto = 0

    def seqs(self) -> dict[str, int]:
        """The last seq number given to each device."""
        return dict(self._conn.execute("SELECT device, seq FROM agent_seq").fetchall())

    def depth(self) -> Depth:
        return self._spool.depth()

    def add(self, entries: Sequence[Entry], seqs: Mapping[str, int]) -> int:
        """Commit the devices' new seq marks, then the entries; returns the rows dropped.

        The seq marks go first: a crash between the two commits leaves a gap in
        a device's numbers (which the collector counts), never a number used twice.
        """
        if seqs:
            with self._conn:
                self._conn.execute("BEGIN")
                self._conn.executemany(
                    "INSERT INTO agent_seq (device, seq) VALUES (?, ?) "
                    "ON CONFLICT(device) DO UPDATE SET seq = excluded.seq",
                    list(seqs.items()),
                )
        self._spool.append(entries)
        return self._trim()

    def _trim(self) -> int:
        excess = self._spool.depth().bytes - self._max_bytes
        dropped = 0
        while excess > 0:
            rows = self._spool.head(_TRIM_CHUNK)
            if not rows:
                break
            taken: list[SpoolRow] = []
            for row in rows:
                taken.append(row)
                excess -= len(row.lines)
                if excess <= 0:
                    break
            self._spool.remove(taken)
            self._trimmed_upto = taken[-1].id
            # Rows already handed to the link are not lost: paho sends them when
            # the broker is back. Only the others are really dropped.
            dropped += sum(1 for row in taken if row.id > self._inflight_last)
        return dropped

    def take(self, limit: int) -> list[SpoolRow]:
        """The oldest rows (up to `limit`), to hand to the MQTT link."""
        rows = self._spool.head(limit)
        if rows:
            self._inflight_last = rows[-1].id
        return rows

    def done(self, rows: Sequence[SpoolRow]) -> None:
        """The broker acknowledged `rows` (the last `take`): they leave the outbox."""
        self._spool.remove([row for row in rows if row.id > self._trimmed_upto])
        self._inflight_last = 0

    def close(self) -> None:
        self._conn.close()
        self._spool.close()
