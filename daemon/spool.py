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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fleet.daemon.sqlite_files import Recovery, connect, open_checked

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
# State that must move in step with the rows: each device's last seq (committed
# in the transaction of the batch that moved it), and small facts such as "this
# MQTT client id has had a persistent session".
_STATE_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS device_seq (
    device   TEXT    PRIMARY KEY,
    site     TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    highest  INTEGER NOT NULL,
    seen     BLOB    NOT NULL
)
""",
    """
CREATE TABLE IF NOT EXISTS meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
)
""",
)


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
class SeqRow:
    """One device's sequence state as kept beside the rows (see collector/seqtrack.py)."""

    device: str
    site: str
    kind: str
    highest: int
    seen: bytes  # which numbers below `highest` were seen: bit i is highest - i


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
        # One write transaction at a time in this process (ingest, the alert thread, the
        # writer): SQLite makes a second writer poll for its lock, sleeping 1, 2, 5 ... ms
        # between tries; a lock of ours hands it over the moment the first one commits.
        self._writing = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        # A broken file is moved aside (what reads back is kept) rather than crash every start.
        self.recovery: Recovery | None = open_checked(path)
        conn = self._conn()
        conn.execute(_SCHEMA)
        for statement in _STATE_SCHEMA:
            conn.execute(statement)
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
            conn = connect(self._path, fsync=self._fsync)
            self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on this thread's connection, committed on leaving (rolled back
        on an exception), one at a time in this process (`_writing` says why)."""
        conn = self._conn()
        with self._writing, conn:
            conn.execute("BEGIN")
            yield conn

    @property
    def full(self) -> bool:
        with self._lock:
            return self._bytes >= self._max_bytes

    def depth(self) -> Depth:
        with self._lock:
            return Depth(self._rows, self._points, self._bytes)

    def append(self, entries: Sequence[Entry], seq: Sequence[SeqRow] = ()) -> None:
        """Commit entries durably; returns only once they are on disk.

        `seq` is the device state these entries moved: it commits in the same
        transaction (no extra fsync), so after a crash rows and state agree.
        """
        if not entries and not seq:
            return
        now_ms = int(time.time() * 1000)
        with self._transaction() as conn:  # one transaction, one fsync, however many entries
            conn.executemany(
                "INSERT INTO spool (at_ms, topic, n, lines) VALUES (?, ?, ?, ?)",
                [(now_ms, e.topic, e.n, e.lines) for e in entries],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO device_seq (device, site, kind, highest, seen)"
                " VALUES (?, ?, ?, ?, ?)",
                [(r.device, r.site, r.kind, r.highest, r.seen) for r in seq],
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
        """Remove a run of consecutive rows (they were written or dead-lettered).

        Usually the head; the agent's outbox also trims the run right behind
        the rows it has in flight.
        """
        if not rows:
            return
        with self._transaction() as conn:
            conn.execute("DELETE FROM spool WHERE id BETWEEN ? AND ?", (rows[0].id, rows[-1].id))
        with self._lock:
            self._rows -= len(rows)
            self._points -= sum(r.n for r in rows)
            self._bytes -= sum(len(r.lines) for r in rows)

    def replace_lines(self, rows: Sequence[tuple[SpoolRow, Sequence[str]]]) -> None:
        """Keep only the given lines of each row (a row left with none goes).

        For a batch InfluxDB refused in part: its refused lines have gone to the
        dead letters, the rest is written again on the next round.
        """
        if not rows:
            return
        with self._transaction() as conn:
            for row, lines in rows:
                if lines:
                    conn.execute(
                        "UPDATE spool SET n = ?, lines = ? WHERE id = ?",
                        (len(lines), "\n".join(lines), row.id),
                    )
                else:
                    conn.execute("DELETE FROM spool WHERE id = ?", (row.id,))
        with self._lock:
            for row, lines in rows:
                self._rows -= 0 if lines else 1
                self._points += len(lines) - row.n
                self._bytes += len("\n".join(lines)) - len(row.lines)

    def seq_rows(self) -> list[SeqRow]:
        """Every device's sequence state as last committed."""
        cursor = self._conn().execute("SELECT device, site, kind, highest, seen FROM device_seq")
        return [SeqRow(str(d), str(s), str(k), int(h), bytes(b)) for d, s, k, h, b in cursor]

    def get_meta(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
