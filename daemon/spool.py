"""A durable, ordered disk queue: the collector's spool and the agent's outbox.

In the collector a reading is acknowledged to the broker only once it is
committed here, and it leaves only once InfluxDB has accepted it; in the agent
a reading waits here until the broker has acknowledged it. Either way neither
an outage nor a crash loses it. SQLite in WAL mode: one thread appends while
another reads and deletes, each on its own connection.

One row per message (its topic, and its text: line protocol lines joined by
newlines in the collector, a JSON payload in the agent, `n` counting its
points), kept in arrival order by an AUTOINCREMENT id; rows only ever leave
from the head, which keeps depth accounting to three numbers.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_LOG = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms  INTEGER NOT NULL,
    topic  TEXT    NOT NULL,
    n      INTEGER NOT NULL,
    lines  TEXT    NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class SpoolRow:
    id: int
    at_ms: int
    topic: str
    n: int
    lines: str


@dataclass(frozen=True, slots=True)
class Entry:
    """What the ingest side appends: the source topic and its lines."""

    topic: str
    lines: str
    n: int


@dataclass(frozen=True, slots=True)
class Depth:
    rows: int
    points: int
    bytes: int


class Spool:
    def __init__(self, path: Path, *, max_bytes: int, fsync: bool) -> None:
        self._path = path
        self._max_bytes = max_bytes
        self._fsync = fsync
        self._local = threading.local()
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        conn.execute(_SCHEMA)
        rows, points, payload = conn.execute(
            "SELECT count(*), coalesce(sum(n), 0), coalesce(sum(length(lines)), 0) FROM spool"
        ).fetchone()
        self._rows: int = rows
        self._points: int = points
        self._bytes: int = payload
        if rows:
            _LOG.info("spool %s holds %d readings (%d points) from before", path, rows, points)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL fsyncs the WAL on every commit: an acknowledged reading
            # survives a power cut, not only a crash of this process.
            conn.execute(f"PRAGMA synchronous={'FULL' if self._fsync else 'NORMAL'}")
            # 1 MiB: rows are written and read in order once; the backlog lives on disk, not in RAM.
            conn.execute("PRAGMA cache_size=-1024")
            self._local.conn = conn
        return conn

    @property
    def full(self) -> bool:
        with self._lock:
            return self._bytes >= self._max_bytes

    def depth(self) -> Depth:
        with self._lock:
            return Depth(self._rows, self._points, self._bytes)

    def append(self, entries: Sequence[Entry]) -> None:
        """Commit entries durably; returns only once they are on disk."""
        if not entries:
            return
        now_ms = int(time.time() * 1000)
        conn = self._conn()
        with conn:  # one transaction, one fsync, however many entries
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO spool (at_ms, topic, n, lines) VALUES (?, ?, ?, ?)",
                [(now_ms, e.topic, e.n, e.lines) for e in entries],
            )
        with self._lock:
            self._rows += len(entries)
            self._points += sum(e.n for e in entries)
            self._bytes += sum(len(e.lines) for e in entries)

    def head(self, max_points: int) -> list[SpoolRow]:
        """The oldest rows, up to max_points lines (always at least one row if any)."""
        cursor = self._conn().execute(
            "SELECT id, at_ms, topic, n, lines FROM spool ORDER BY id LIMIT ?", (max_points,)
        )
        rows: list[SpoolRow] = []
        points = 0
        for row in cursor:
            if rows and points + row[3] > max_points:
                break
            rows.append(SpoolRow(*row))
            points += row[3]
        cursor.close()
        return rows

    def oldest_ms(self) -> int | None:
        """When the oldest row still here was appended (epoch ms), None if empty."""
        row = self._conn().execute("SELECT at_ms FROM spool ORDER BY id LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    def remove(self, rows: Sequence[SpoolRow]) -> None:
        """Remove rows taken from the head (they were written or dead-lettered)."""
        if not rows:
            return
        conn = self._conn()
        with conn:
            conn.execute("BEGIN")
            conn.execute("DELETE FROM spool WHERE id <= ?", (rows[-1].id,))
        with self._lock:
            self._rows -= len(rows)
            self._points -= sum(r.n for r in rows)
            self._bytes -= sum(len(r.lines) for r in rows)

    def close(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
