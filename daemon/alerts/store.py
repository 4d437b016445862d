"""Alert state on disk (SQLite): alert records, what is known of devices, silences.

Active alerts must survive a collector restart: otherwise a restart re-fires
what already fired and never sends the resolve of what was firing (Alertmanager's
best-known complaint). Each record is one JSON row; only rows that changed since
they were last written are written again, in one transaction per engine call (a
batch of readings is one call: ``AlertEngine.observe_batch``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import operator
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from fleet.config.alerts import Rule, Severity
from fleet.daemon.alerts.model import AlertRecord, PendingDelivery, Silence
from fleet.daemon.alerts.rules import DeviceView
from fleet.daemon.sqlite_files import Recovery, connect, open_checked

_LOG = logging.getLogger(__name__)
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert (
    device TEXT NOT NULL,
    rule   TEXT NOT NULL,
    doc    TEXT NOT NULL,
    PRIMARY KEY (device, rule)
);
CREATE TABLE IF NOT EXISTS device (
    device TEXT PRIMARY KEY,
    doc    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS silence (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    device     TEXT,
    rule       TEXT,
    until_ms   INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    by         TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS notify_pending (
    seq INTEGER PRIMARY KEY,
    doc TEXT NOT NULL
);
"""


# One row to write: its SQL, its arguments, and the values it holds (see `_written`).
_Row = tuple[str, tuple[str, ...], tuple[Any, ...]]

_GETTERS: dict[type, tuple[tuple[str, ...], operator.attrgetter[Any]]] = {}


def _values(obj: Any) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """Field names and values of a flat dataclass of plain values, cheaply (no deep copy)."""
    cls = type(obj)
    if cls not in _GETTERS:
        names = tuple(f.name for f in dataclasses.fields(obj))
        _GETTERS[cls] = names, operator.attrgetter(*names)
    names, getter = _GETTERS[cls]
    return names, getter(obj)


# msgspec writes the same compact JSON as json.dumps (json.loads reads it back) ~10x faster:
# a tick at 1 Hz writes a row per device heard.
_ENCODE = msgspec.json.Encoder().encode


def _doc(names: tuple[str, ...], values: tuple[Any, ...]) -> str:
    return _ENCODE(dict(zip(names, values, strict=True))).decode()


class AlertStore:
    def __init__(self, path: Path, *, sites: Collection[str] = ()) -> None:
        self._path = path
        # The sites the collector owns (empty: every site). State of another site's devices,
        # kept from when this collector owned it, stays in the file but is not loaded: the
        # engine would call them offline (it never hears them now) and repeat their alerts.
        self._sites = frozenset(sites)
        # A broken file is moved aside (what reads back is kept) rather than crash every start.
        self.recovery: Recovery | None = open_checked(path)
        self.error: str | None = None  # why the last write failed, until one succeeds
        # Changes a failed write left behind, by key: written with the next save.
        self._unsaved: dict[tuple[str, str], _Row] = {}
        # The engine serialises its calls; the lock only guards against a second user.
        self._lock = threading.Lock()
        self._db = connect(path, fsync=True, timeout=5.0, check_same_thread=False)
        self._db.executescript(_SCHEMA)
        # What each row last held, to write only what changed (compared as value tuples).
        self._written: dict[tuple[str, str], tuple[Any, ...]] = {}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def load_records(self) -> list[AlertRecord]:
        records = []
        with self._lock:
            rows = self._db.execute("SELECT device, rule, doc FROM alert").fetchall()
        for device, rule, doc in rows:
            try:
                data = json.loads(doc)
                data["rule"], data["severity"] = Rule(data["rule"]), Severity(data["severity"])
                records.append(AlertRecord(**data))
            except (ValueError, TypeError, KeyError):
                _LOG.warning(
                    "alert state of %s/%s in %s is unreadable; dropped", device, rule, self._path
                )
                continue
            self._written[("a", f"{device}/{rule}")] = _values(records[-1])[1]
        return self._owned(records, "alerts", lambda r: r.site)

    def load_views(self) -> dict[str, DeviceView]:
        views = {}
        with self._lock:
            rows = self._db.execute("SELECT device, doc FROM device").fetchall()
        for device, doc in rows:
            try:
                views[device] = DeviceView(**json.loads(doc))
            except (ValueError, TypeError):
                _LOG.warning("device state of %s in %s is unreadable; dropped", device, self._path)
                continue
            self._written[("d", device)] = _values(views[device])[1]
        kept = self._owned(list(views.items()), "device states", lambda item: item[1].site)
        return dict(kept)

    def _owned(self, items: list[_T], what: str, site: Callable[[_T], str]) -> list[_T]:
        """The items of the sites this collector owns; how many others were left is logged."""
        if not self._sites:
            return items
        kept = [item for item in items if site(item) in self._sites]
        if len(kept) < len(items):
            _LOG.warning(
                "alert state %s: %s of sites this collector does not own (collector.sites) "
                "not loaded: %d",
                self._path,
                what,
                len(items) - len(kept),
            )
        return kept

    def load_silences(self) -> list[Silence]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, device, rule, until_ms, reason, by, created_ms FROM silence"
            ).fetchall()
        return [Silence(*row) for row in rows]

    def save(self, records: Iterable[AlertRecord], views: Mapping[str, DeviceView]) -> None:
        """Write the records and views that changed since they were last written.

        A failed write (a full disk) raises sqlite3.Error, and what it did not write
        is kept and written with the next save (the engine goes on from memory).
        """
        rows: dict[tuple[str, str], _Row] = dict(self._unsaved)
        for rec in records:
            if rec.phase == "inactive" and rec.pending_since_ms is None:
                continue  # nothing worth keeping yet
            names, values = _values(rec)
            key = ("a", f"{rec.device}/{rec.rule}")
            if self._written.get(key) != values:
                sql = "INSERT OR REPLACE INTO alert VALUES (?, ?, ?)"
                rows[key] = (sql, (rec.device, str(rec.rule), _doc(names, values)), values)
        for device, view in views.items():
            names, values = _values(view)
            if self._written.get(("d", device)) != values:
                sql = "INSERT OR REPLACE INTO device VALUES (?, ?)"
                rows[("d", device)] = (sql, (device, _doc(names, values)), values)
        if not rows:
            return
        try:
            with self._lock:
                self._db.execute("BEGIN")
                try:
                    by_sql: dict[str, list[tuple[str, ...]]] = {}
                    for sql, args, _ in rows.values():
                        by_sql.setdefault(sql, []).append(args)
                    for sql, many in by_sql.items():  # a tick writes a row per device heard
                        self._db.executemany(sql, many)
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            self._unsaved = rows
            self._failed(exc, len(rows))
            raise
        self._unsaved = {}
        self._written.update((key, row[2]) for key, row in rows.items())
        if self.error is not None:
            _LOG.warning(
                "alert state %s is written again (%d changes caught up)", self._path, len(rows)
            )
            self.error = None

    def _failed(self, exc: sqlite3.Error, pending: int) -> None:
        if self.error is None:
            _LOG.error(
                "could not write the alert state to %s (%s); the engine goes on from memory "
                "and writes the %d pending changes once it can (lost if it stops meanwhile)",
                self._path,
                exc,
                pending,
            )
        self.error = str(exc)

    def add_silence(
        self, device: str | None, rule: str | None, until_ms: int, reason: str, by: str, now_ms: int
    ) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO silence (device, rule, until_ms, reason, by, created_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (device, rule, until_ms, reason, by, now_ms),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def delete_silence(self, silence_id: int) -> None:
        try:
            with self._lock:
                self._db.execute("DELETE FROM silence WHERE id = ?", (silence_id,))
        except sqlite3.Error as exc:
            # Harmless if it stays: an expired silence is dropped again at the next load.
            self._failed(exc, 1)

    # Notifications not yet delivered (daemon.alerts.notify), one row per delivery to one URL.

    def load_deliveries(self) -> list[PendingDelivery]:
        with self._lock:
            rows = self._db.execute("SELECT seq, doc FROM notify_pending ORDER BY seq").fetchall()
        found = []
        for seq, doc in rows:
            try:
                found.append(PendingDelivery(**json.loads(doc)))
            except (ValueError, TypeError):
                _LOG.warning(
                    "pending notification %d in %s is unreadable; dropped", seq, self._path
                )
        return found

    def save_deliveries(self, deliveries: Iterable[PendingDelivery]) -> None:
        rows = [(d.seq, _doc(*_values(d))) for d in deliveries]
        self._many("INSERT OR REPLACE INTO notify_pending VALUES (?, ?)", rows)

    def delete_deliveries(self, seqs: Iterable[int]) -> None:
        self._many("DELETE FROM notify_pending WHERE seq = ?", [(seq,) for seq in seqs])

    def _many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """One transaction (one fsync) for all rows."""
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(sql, rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
