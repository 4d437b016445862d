"""The dead-letter store: every refused message kept on disk, bounded, for listing and replay.

A dead letter is announced once on `{prefix}/v1/{site}/deadletter`, which is
not retained; this store is what keeps it. The ingest thread hands over the
dead letters of a batch and they are committed in one transaction *before*
the batch is acknowledged, so a crash after the acknowledgement cannot lose
one. InfluxDB's refusals (HTTP 400/422) arrive from the writer thread, each
stored before its batch leaves the spool.

A file of its own (`collector.deadletter_path`, by default beside the spool)
rather than a table in the spool's file: the spool stays a queue whose size
decides when to stop acknowledging, a broken dead-letter file cannot take
the spool down with it (nor the other way round), and `fleet deadletters`,
which reads and marks entries while the collector runs, never takes a lock
on the file every reading goes through.

What is kept of a message: its topic, the reason and detail, the site, when
it arrived and its payload whole - up to `collector.max_payload_bytes`,
which is what makes a replay possible. A `too_large` payload is kept
truncated (and marked so) and can never be replayed. A line InfluxDB
refused is kept as line protocol (format `line`), an MQTT message as
itself (format `mqtt`). Past `collector.deadletter_max_bytes` the oldest
entries are dropped in the same transaction and counted.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fleet.daemon import sqlite_files
from fleet.daemon.sqlite_files import open_checked

_LOG = logging.getLogger(__name__)

# A payload too large to accept is evidence, not something to replay: keep its start only.
TOO_LARGE_KEPT = 4096
# Per-row cost on top of its texts (ids, times, sizes, SQLite's own record and index overhead).
_ROW_OVERHEAD = 96
# How long one commit may keep failing (a lock, a full disk) before the batch is acknowledged
# without its dead letters, counted: a broken dead-letter file must not hold good readings back.
_RETRY_FOR_S = 5.0
_WAL_LIMIT = 4 * 1024 * 1024
_DROP_LOG_EVERY_S = 60.0  # a store that stays full drops on every batch: say so now and then

FORMAT_MQTT = "mqtt"
FORMAT_LINE = "line"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deadletters (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ms   INTEGER NOT NULL,
    site          TEXT    NOT NULL,
    topic         TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    detail        TEXT    NOT NULL,
    format        TEXT    NOT NULL,
    payload       BLOB    NOT NULL,
    payload_bytes INTEGER NOT NULL,
    truncated     INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    replayed_ms   INTEGER
);
CREATE INDEX IF NOT EXISTS deadletters_received ON deadletters (received_ms);
CREATE TABLE IF NOT EXISTS deadletter_totals (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A refused message as it came in: what the ingest (or the writer) hands over."""

    topic: str
    payload: bytes
    reason: str
    detail: str
    received_ms: int
    site: str = ""
    format: str = FORMAT_MQTT


@dataclass(frozen=True, slots=True)
class Kept:
    """A dead letter as the store holds it."""

    id: int
    received_ms: int
    site: str
    topic: str
    reason: str
    detail: str
    format: str
    payload: bytes
    payload_bytes: int
    truncated: bool
    replayed_ms: int | None

    @property
    def replayable(self) -> bool:
        return not self.truncated


@dataclass
class DeadLetterCounters:
    """Since start; the stats reporter reads them through `fields()`."""

    kept: int = 0
    dropped: int = 0
    unkept: int = 0  # could not be stored at all (the file kept failing): announced only


def _row_size(letter: DeadLetter, payload: bytes) -> int:
    return len(payload) + len(letter.topic) + len(letter.detail) + _ROW_OVERHEAD


def connect(path: Path, *, fsync: bool = True) -> sqlite3.Connection:
    """A read-write connection with the store's schema (WAL: readers never block it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite_files.connect(path, fsync=fsync, timeout=10.0, check_same_thread=False)
    # The WAL shrinks back to this after a checkpoint, so a burst does not leave it large.
    conn.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")
    conn.executescript(_SCHEMA)
    return conn


class DeadLetterStore:
    """The collector's side: keeps dead letters, bounded. Thread-safe (ingest and writer)."""

    def __init__(
        self, path: Path, *, max_bytes: int, max_payload_bytes: int, fsync: bool = True
    ) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._max_payload = max_payload_bytes
        self._lock = threading.Lock()
        self.counters = DeadLetterCounters()
        self._dropped_unlogged = 0
        self._drop_logged_at: float | None = None
        # A broken file is salvaged and moved aside for a person, like the spool.
        self.recovery = open_checked(path)
        self._conn = connect(path, fsync=fsync)
        rows, size = self._conn.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM deadletters"
        ).fetchone()
        self._bytes: int = size
        if rows:
            _LOG.info("dead-letter store %s keeps %d dead letters (%d bytes)", path, rows, size)

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def fields(self) -> dict[str, int]:
        """Counters for the `pipeline` measurement."""
        c = self.counters
        return {
            "deadletters_kept": c.kept,
            "deadletters_dropped": c.dropped,
            "deadletters_unkept": c.unkept,
            "deadletters_bytes": self.size_bytes,
        }

    def keep(self, letters: Sequence[DeadLetter]) -> bool:
        """Commit `letters` in one transaction; True once on disk.

        Retries a failing commit for a few seconds (a lock held by `fleet
        deadletters replay`, a disk that is momentarily full); then gives up,
        logs and counts them as unkept, and returns False - the caller goes on,
        as good readings must not wait on a broken dead-letter file.
        """
        if not letters:
            return True
        deadline = time.monotonic() + _RETRY_FOR_S
        while True:
            try:
                self._commit(letters)
            except sqlite3.Error as exc:
                if time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                self.counters.unkept += len(letters)
                _LOG.error(
                    "could not keep %d dead letters in %s (%s); they were announced only",
                    len(letters),
                    self.path,
                    exc,
                )
                return False
            return True

    def _payload(self, letter: DeadLetter) -> tuple[bytes, bool]:
        limit = TOO_LARGE_KEPT if letter.reason == "too_large" else self._max_payload
        limit = min(limit, self._max_payload)
        return letter.payload[:limit], len(letter.payload) > limit

    def _commit(self, letters: Sequence[DeadLetter]) -> None:
        rows = []
        added = 0
        for letter in letters:
            payload, truncated = self._payload(letter)
            size = _row_size(letter, payload)
            added += size
            rows.append(
                (
                    letter.received_ms,
                    letter.site,
                    letter.topic,
                    str(letter.reason),
                    letter.detail,
                    letter.format,
                    payload,
                    len(letter.payload),
                    int(truncated),
                    size,
                )
            )
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                cursor = conn.executemany(
                    "INSERT INTO deadletters (received_ms, site, topic, reason, detail, format,"
                    " payload, payload_bytes, truncated, size) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    rows,
                )
                del cursor
                newest: int = conn.execute("SELECT max(id) FROM deadletters").fetchone()[0]
                dropped, freed = self._drop_oldest(conn, self._bytes + added, newest)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._bytes += added - freed
        self.counters.kept += len(rows)
        if dropped:
            self.counters.dropped += dropped
            self._log_dropped(dropped)

    def _log_dropped(self, dropped: int) -> None:
        self._dropped_unlogged += dropped
        now = time.monotonic()
        if self._drop_logged_at is not None and now - self._drop_logged_at < _DROP_LOG_EVERY_S:
            return
        _LOG.warning(
            "dead-letter store %s is at its bound of %d bytes: dropped the %d oldest "
            "(%d since start)",
            self.path,
            self._max_bytes,
            self._dropped_unlogged,
            self.counters.dropped,
        )
        self._dropped_unlogged = 0
        self._drop_logged_at = now

    def _drop_oldest(self, conn: sqlite3.Connection, total: int, newest: int) -> tuple[int, int]:
        """Delete the oldest rows until `total` fits (a batch's own first ones too, if it is
        larger than the bound); never the newest, so one entry over the bound is still kept."""
        if total <= self._max_bytes:
            return 0, 0
        excess = total - self._max_bytes
        freed = 0
        last_id = None
        dropped = 0
        for row_id, size in conn.execute(
            "SELECT id, size FROM deadletters WHERE id < ? ORDER BY id", (newest,)
        ):
            freed += size
            last_id = row_id
            dropped += 1
            if freed >= excess:
                break
        if last_id is None:
            return 0, 0
        conn.execute("DELETE FROM deadletters WHERE id <= ?", (last_id,))
        conn.execute(
            "INSERT INTO deadletter_totals (name, value) VALUES ('dropped', ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (dropped,),
        )
        return dropped, freed

    def close(self) -> None:
        with self._lock:
            self._conn.close()


# --- the reading side: `fleet deadletters` ------------------------------------------------------

_COLUMNS = (
    "id, received_ms, site, topic, reason, detail, format, payload, payload_bytes, truncated,"
    " replayed_ms"
)


@dataclass(frozen=True, slots=True)
class Query:
    """Which entries: all filters optional; `pending` leaves out those already replayed."""

    reasons: Sequence[str] = ()
    since_ms: int | None = None
    ids: Sequence[int] = ()
    pending: bool = False

    def where(self) -> tuple[str, list[object]]:
        clauses: list[str] = []
        params: list[object] = []
        if self.reasons:
            clauses.append(f"reason IN ({','.join('?' * len(self.reasons))})")
            params += self.reasons
        if self.since_ms is not None:
            clauses.append("received_ms >= ?")
            params.append(self.since_ms)
        if self.ids:
            clauses.append(f"id IN ({','.join('?' * len(self.ids))})")
            params += self.ids
        if self.pending:
            clauses.append("replayed_ms IS NULL")
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def open_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot change the file (listing while the collector writes)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
    conn.execute("SELECT count(*) FROM deadletters").fetchone()  # fails now if not a store
    return conn


def select(conn: sqlite3.Connection, query: Query, limit: int | None = None) -> list[Kept]:
    """Matching entries, oldest first; with `limit`, the newest `limit` of them."""
    where, params = query.where()
    # `where` holds only fixed clauses and ? placeholders; the values go as parameters.
    sql = f"SELECT {_COLUMNS} FROM deadletters{where} ORDER BY id DESC"  # noqa: S608
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    rows = conn.execute(sql, params).fetchall()
    return [
        Kept(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bytes(r[7]), r[8], bool(r[9]), r[10])
        for r in reversed(rows)
    ]


def count(conn: sqlite3.Connection, query: Query) -> int:
    where, params = query.where()
    sql = f"SELECT count(*) FROM deadletters{where}"  # noqa: S608 - placeholders only
    found: int = conn.execute(sql, params).fetchone()[0]
    return found


def dropped_total(conn: sqlite3.Connection) -> int:
    """Entries dropped to keep the bound, over the file's whole life."""
    row = conn.execute("SELECT value FROM deadletter_totals WHERE name = 'dropped'").fetchone()
    return 0 if row is None else int(row[0])


def mark_replayed(conn: sqlite3.Connection, ids: Sequence[int], at_ms: int) -> None:
    """Mark entries replayed (the broker acknowledged their publish) in one transaction."""
    if not ids:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "UPDATE deadletters SET replayed_ms = ? WHERE id = ?", [(at_ms, i) for i in ids]
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
