"""The agent's outbox: readings waiting for the broker, and each device's last seq, on disk.

Readings are rows of a `daemon.spool.Spool` (one MQTT message each, in order);
the per-device seq counters live in a table of the same SQLite file, so a
restarted agent continues each device's count where it stopped.

The outbox is bounded: past `max_bytes` of payload the OLDEST rows are dropped
and counted - the agent never stops reading its devices, and the collector
sees the gap in the seq numbers.

Rows in flight (handed to the MQTT link by the last `take`, waiting for the
broker's PUBACK) are never trimmed: trimming drops the oldest rows *behind*
them. A row in flight is not lost - paho sends it when the broker is back -
and deleting it from disk would lose it for real on a crash, uncounted. So
each row leaves exactly once, either by `done` (sent) or by trimming
(dropped). The bound still holds: the rows in flight were taken from an
outbox within it, so dropping every row behind them always suffices.

Readings the broker refused (MQTT 5: a PUBACK reason code of 0x80 or more,
e.g. "not authorized" from a generated broker's ACL) leave the queue - a
refusal is permanent until the ACL changes, and retrying would block every
reading behind them - but are kept in the `refused` table of the same file,
with the broker's reason, for a person to inspect (the newest
`REFUSED_KEEP`; older ones are deleted, and counted by the forwarder when
they were refused).

Every method either does its whole job or raises `sqlite3.Error` having
changed nothing that the counts depend on (one transaction per step).

Not thread-safe on purpose: the agent calls every method from one worker
thread, which keeps the in-flight/trim bookkeeping free of locks.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fleet.daemon.spool import Depth, Entry, Spool, SpoolRow
from fleet.daemon.sqlite_files import connect

_LOG = logging.getLogger(__name__)

_SEQ_SCHEMA = """
CREATE TABLE IF NOT EXISTS agent_seq (
    device TEXT PRIMARY KEY,
    seq    INTEGER NOT NULL
)
"""
_REFUSED_SCHEMA = """
CREATE TABLE IF NOT EXISTS refused (
    id          INTEGER PRIMARY KEY,  -- the reading's outbox row id: kept once
    refused_ms  INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,     -- when it entered the outbox
    topic       TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    reason      TEXT    NOT NULL
)
"""
_TRIM_CHUNK = 512  # rows looked at per step while trimming
REFUSED_KEEP = 10_000  # refused readings kept for inspection, the newest

DrillPragma = Literal["max_page_count", "query_only"]


@dataclass(frozen=True, slots=True)
class RefusedRow:
    """A reading the broker refused, as the outbox keeps it."""

    id: int
    refused_ms: int
    at_ms: int
    topic: str
    payload: str
    reason: str


class Outbox:
    def __init__(
        self, path: Path, *, max_bytes: int, fsync: bool, refused_keep: int = REFUSED_KEEP
    ) -> None:
        self._max_bytes = max_bytes
        self._refused_keep = refused_keep
        self._spool = Spool(path, max_bytes=max_bytes, fsync=fsync)
        self.recovery = self._spool.recovery  # the file was broken and replaced at open
        self._conn = connect(path, fsync=fsync)
        self._conn.execute(_SEQ_SCHEMA)
        self._conn.execute(_REFUSED_SCHEMA)
        # Rows up to this id were handed to the MQTT link and wait for the broker's ack.
        self._inflight_last = 0

    def seqs(self) -> dict[str, int]:
        """The last seq number given to each device."""
        return dict(self._conn.execute("SELECT device, seq FROM agent_seq").fetchall())

    def depth(self) -> Depth:
        return self._spool.depth()

    def add(self, entries: Sequence[Entry], seqs: Mapping[str, int]) -> int:
        """Commit the devices' new seq marks, then the entries; returns the rows dropped.

        The seq marks go first: a crash between the two commits leaves a gap in
        a device's numbers (which the collector counts), never a number used twice.
        Raises `sqlite3.Error` when the entries could not be committed (none of
        them is in the outbox then; the caller keeps them). A failure while
        trimming afterwards does not raise: the entries are stored, and the
        outbox stays over its bound until the next `add` trims it.
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
        dropped = 0
        try:
            excess = self._spool.depth().bytes - self._max_bytes
            while excess > 0:
                rows = self._after(self._inflight_last, _TRIM_CHUNK)
                if not rows:
                    break  # only rows in flight are left: they leave once acknowledged
                taken: list[SpoolRow] = []
                for row in rows:
                    taken.append(row)
                    excess -= len(row.lines)
                    if excess <= 0:
                        break
                self._spool.remove(taken)  # one transaction: all of `taken` or none
                dropped += len(taken)
        except sqlite3.Error as exc:
            _LOG.warning("could not trim the outbox (%s); trying again on the next commit", exc)
        return dropped

    def _after(self, after_id: int, limit: int) -> list[SpoolRow]:
        """The oldest rows whose id is above `after_id`."""
        cursor = self._conn.execute(
            "SELECT id, at_ms, topic, n, lines FROM spool WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [SpoolRow(*row) for row in cursor]

    def take(self, limit: int) -> list[SpoolRow]:
        """The oldest rows (up to `limit`), to hand to the MQTT link: in flight until `done`."""
        rows = self._spool.head(limit)
        self._inflight_last = rows[-1].id if rows else 0
        return rows

    def done(self, rows: Sequence[SpoolRow], refused: Mapping[int, str] | None = None) -> set[int]:
        """The broker acknowledged `rows` (taken together): they leave the outbox.

        `refused` maps the ids of rows the broker refused to its reason: those
        are kept in the `refused` table first (a crash in between keeps them in
        both, and the row id keeps the second refusal from being a second entry).
        Returns the ids that were still here and are removed now. Rows already
        gone (`done` called twice, or for rows taken before a reopen that another
        outbox removed) are skipped, so the depth and the counts stay exact.
        """
        if not rows:
            return set()
        present = {
            row_id
            for (row_id,) in self._conn.execute(
                "SELECT id FROM spool WHERE id BETWEEN ? AND ?", (rows[0].id, rows[-1].id)
            )
        }
        # Rows of one take are consecutive, and nothing is ever inserted behind the
        # newest row: `gone` is exactly the run of rows in that id range.
        gone = [row for row in rows if row.id in present]
        if refused:
            self._keep_refused([row for row in gone if row.id in refused], refused)
        self._spool.remove(gone)
        if rows[-1].id >= self._inflight_last:
            self._inflight_last = 0
        return {row.id for row in gone}

    def _keep_refused(self, rows: Sequence[SpoolRow], reasons: Mapping[int, str]) -> None:
        now_ms = int(time.time() * 1000)
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.executemany(
                "INSERT OR IGNORE INTO refused (id, refused_ms, at_ms, topic, payload, reason) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(r.id, now_ms, r.at_ms, r.topic, r.lines, reasons[r.id]) for r in rows],
            )
            # The newest are kept: an ACL mistake refuses a device's every reading, and
            # the latest show best what is refused now.
            trimmed = self._conn.execute(
                "DELETE FROM refused WHERE id <= (SELECT id FROM refused ORDER BY id DESC "
                "LIMIT 1 OFFSET ?)",
                (self._refused_keep,),
            ).rowcount
        if trimmed:
            _LOG.debug(
                "deleted the %d oldest refused readings beyond %d", trimmed, self._refused_keep
            )

    def refused(self, limit: int = 100) -> list[RefusedRow]:
        """The newest refused readings kept, newest first."""
        cursor = self._conn.execute(
            "SELECT id, refused_ms, at_ms, topic, payload, reason FROM refused "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [RefusedRow(*row) for row in cursor]

    def drill(self, pragma: DrillPragma, value: int) -> None:
        """Set `pragma` on both connections to the file, to rehearse a broken disk.

        `max_page_count` stops the file from growing (a full disk: SQLITE_FULL),
        `query_only = 1` refuses every change (a disk remounted read-only).
        The tests' way to break the disk under a running agent.
        """
        for conn in (self._conn, self._spool_conn()):
            conn.execute(f"PRAGMA {pragma} = {int(value)}")

    def _spool_conn(self) -> sqlite3.Connection:
        # The spool's connection of this (the worker) thread: a drill must reach both.
        return self._spool._conn()

    def close(self) -> None:
        self._conn.close()
        self._spool.close()
