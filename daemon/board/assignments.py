"""The sign-out sheet and the out-of-service marks, on disk (SQLite), with their history.

Who has which device is a record people rely on ("who had sw-03 last night?"), so every
change is committed (FULL sync by default) before it is reported, and the file is opened
through `sqlite_files` like every state file (checked; a broken one salvaged, `recovery`).
Two small tables hold what is true now (one row per signed-out / out-of-service device:
the primary key makes a double sign-out impossible even if a check were wrong) and an
append-only `event` table holds every change with who made it and when; each change
writes both in one transaction, so the history is never behind the state.

One lock serialises changes; the current state is mirrored in memory (read on every request).
Refusals are `SignOutRefused` with a sentence a person can act on: 400 for a bad value,
409 for a rule, 503 when the file cannot be written.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from fleet.daemon.board.model import Assignment, OutOfService
from fleet.daemon.sqlite_files import Recovery, connect, open_checked
from fleet.daemon.wire.envelope import iso
from fleet.drivers.contract import check_id

_LOG = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signed_out (
    device  TEXT PRIMARY KEY,
    officer TEXT NOT NULL,
    out_ms  INTEGER NOT NULL,
    due_ms  INTEGER NOT NULL,
    by      TEXT NOT NULL,
    note    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS out_of_service (
    device   TEXT PRIMARY KEY,
    reason   TEXT NOT NULL,
    by       TEXT NOT NULL,
    since_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS event (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms   INTEGER NOT NULL,
    device  TEXT NOT NULL,
    action  TEXT NOT NULL,
    by      TEXT NOT NULL,
    officer TEXT,
    since_ms INTEGER,
    due_ms  INTEGER,
    reason  TEXT,
    note    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS event_device ON event (device, id);
CREATE TABLE IF NOT EXISTS overdue_alerted (
    device TEXT PRIMARY KEY,
    out_ms INTEGER NOT NULL
);
"""

NAME_MAX = 64
TEXT_MAX = 200  # notes and reasons
HISTORY_MAX = 1000  # rows one history() call returns at most
ACTIONS = ("sign_out", "sign_in", "out_of_service", "return_to_service")
_HOUR_MS = 3_600_000


class SignOutRefused(Exception):
    """A change the sheet will not make: `status` (HTTP) and a sentence a person can act on."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_name(what: str, value: str) -> str:
    """A person's name, trimmed: printable, 1..64 characters (it goes into logs and InfluxDB)."""
    name = value.strip()
    if not name:
        raise SignOutRefused(400, f"{what} is empty: give a name")
    if not name.isprintable():
        raise SignOutRefused(
            400, f"{what} contains a control character (a line break, tab or similar): "
            "type the name on one line"
        )  # fmt: skip
    if len(name) > NAME_MAX:
        raise SignOutRefused(400, f"{what} is {len(name)} characters long; at most {NAME_MAX}")
    return name


def check_text(what: str, value: str, *, required: bool) -> str:
    """A note or reason: line breaks and tabs become spaces (a text box may hold them), other
    control characters are refused, at most 200 characters."""
    text = " ".join(value.replace("\r", " ").replace("\n", " ").replace("\t", " ").split())
    if required and not text:
        raise SignOutRefused(400, f"{what} is empty: say why")
    if not text.isprintable():
        raise SignOutRefused(400, f"{what} contains a control character; use plain text")
    if len(text) > TEXT_MAX:
        raise SignOutRefused(400, f"{what} is {len(text)} characters long; at most {TEXT_MAX}")
    return text


def _device(device: str) -> str:
    try:
        return check_id("device", device)
    except ValueError as exc:
        raise SignOutRefused(400, str(exc)) from None


class AssignmentStore:
    def __init__(
        self,
        path: Path,
        *,
        fsync: bool = True,
        max_signout_hours: float = 24.0,
        tz: tzinfo = UTC,
    ) -> None:
        self._path = path
        self._max_ms = int(max_signout_hours * _HOUR_MS)
        self._max_hours = max_signout_hours
        self._tz = tz  # the station's clock, for the times in refusals
        # A broken file is moved aside (what reads back is kept) rather than crash every start.
        self.recovery: Recovery | None = open_checked(path)
        self._lock = threading.Lock()
        self._db = connect(path, fsync=fsync, timeout=5.0, check_same_thread=False)
        self._db.executescript(_SCHEMA)
        self._current = {
            row[0]: Assignment(*row)
            for row in self._db.execute(
                "SELECT device, officer, out_ms, due_ms, by, note FROM signed_out"
            )
        }
        self._oos = {
            row[0]: OutOfService(*row)
            for row in self._db.execute("SELECT device, reason, by, since_ms FROM out_of_service")
        }
        # Which sign-out's overdue alert was raised (device -> out_ms): on disk, so a restart
        # neither raises it again nor forgets to resolve it at the sign-in.
        self._alerted: dict[str, int] = dict(
            self._db.execute("SELECT device, out_ms FROM overdue_alerted").fetchall()
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- reading -----------------------------------------------------------------------------

    def current(self) -> dict[str, Assignment]:
        with self._lock:
            return dict(self._current)

    def out_of_service(self) -> dict[str, OutOfService]:
        with self._lock:
            return dict(self._oos)

    def overdue(self, now_ms: int) -> list[Assignment]:
        """Signed out and past the expected return, the longest overdue first."""
        with self._lock:
            late = [a for a in self._current.values() if a.due_ms < now_ms]
        return sorted(late, key=lambda a: (a.due_ms, a.device))

    def overdue_to_alert(self, now_ms: int) -> list[Assignment]:
        """Overdue sign-outs whose alert has not been raised yet."""
        return [a for a in self.overdue(now_ms) if self._alerted.get(a.device) != a.out_ms]

    def note_alerted(self, a: Assignment) -> None:
        with self._lock:
            self._commit(
                [("INSERT OR REPLACE INTO overdue_alerted VALUES (?, ?)", (a.device, a.out_ms))]
            )
            self._alerted[a.device] = a.out_ms

    def alerted(self) -> set[str]:
        """Devices whose overdue alert is raised and not yet resolved by a sign-in."""
        with self._lock:
            return set(self._alerted)

    def history(
        self, *, device: str | None = None, since_ms: int | None = None, limit: int = 200
    ) -> list[dict[str, object]]:
        """Every change, newest first, JSON-ready (ISO-8601 UTC times)."""
        where: list[str] = []
        args: list[object] = []
        if device is not None:
            where.append("device = ?")
            args.append(device)
        if since_ms is not None:
            where.append("at_ms >= ?")
            args.append(since_ms)
        sql = "SELECT id, at_ms, device, action, by, officer, since_ms, due_ms, reason, note"
        sql += " FROM event" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, max(1, min(limit, HISTORY_MAX)))).fetchall()
        return [_event_json(row) for row in rows]

    # --- changes -----------------------------------------------------------------------------

    def sign_out(
        self,
        device: str,
        officer: str,
        *,
        due_ms: int,
        by: str,
        now_ms: int,
        note: str = "",
        blocked: str | None = None,
    ) -> Assignment:
        """Sign `device` out to `officer` until `due_ms`. `blocked`: why the board says it
        cannot be taken (the judge's reason: offline, unknown), refused with that sentence."""
        device = _device(device)
        officer = check_name("the officer's name", officer)
        by = check_name("the signed-in user", by)
        note = check_text("the note", note, required=False)
        if due_ms <= now_ms:
            raise SignOutRefused(
                400,
                f"the expected return {self._when(due_ms, now_ms)} is not in the future "
                f"(now {self._when(now_ms, now_ms)}): give a later time or a number of hours",
            )
        if due_ms - now_ms > self._max_ms:
            raise SignOutRefused(
                400,
                f"the expected return {self._when(due_ms, now_ms)} is "
                f"{(due_ms - now_ms) / _HOUR_MS:.0f} h away; a sign-out lasts at most "
                f"{self._max_hours:g} h (sign it in and out again for a longer loan)",
            )
        a = Assignment(device, officer, now_ms, due_ms, by, note)
        with self._lock:
            held = self._current.get(device)
            if held is not None:
                raise SignOutRefused(
                    409,
                    f"{device} is already signed out to {held.officer} since "
                    f"{self._when(held.out_ms, now_ms)}, due back {self._when(held.due_ms, now_ms)}",
                )
            mark = self._oos.get(device)
            if mark is not None:
                raise SignOutRefused(409, self._oos_sentence(mark, now_ms))
            if blocked:
                raise SignOutRefused(409, blocked)
            self._commit(
                [
                    (
                        "INSERT INTO signed_out VALUES (?, ?, ?, ?, ?, ?)",
                        (a.device, a.officer, a.out_ms, a.due_ms, a.by, a.note),
                    ),
                    _event(now_ms, device, "sign_out", by, officer, now_ms, due_ms, None, note),
                ]
            )
            self._current[device] = a
        return a

    def sign_in(self, device: str, *, by: str, now_ms: int, note: str = "") -> Assignment:
        """Sign `device` back in; returns the sign-out it closes."""
        device = _device(device)
        by = check_name("the signed-in user", by)
        note = check_text("the note", note, required=False)
        with self._lock:
            a = self._current.get(device)
            if a is None:
                raise SignOutRefused(409, f"{device} is not signed out, so it cannot be signed in")
            self._commit(
                [
                    ("DELETE FROM signed_out WHERE device = ?", (device,)),
                    ("DELETE FROM overdue_alerted WHERE device = ?", (device,)),
                    _event(
                        now_ms, device, "sign_in", by, a.officer, a.out_ms, a.due_ms, None, note
                    ),
                ]
            )
            del self._current[device]
            self._alerted.pop(device, None)
        return a

    def mark_out_of_service(
        self, device: str, *, reason: str, by: str, now_ms: int
    ) -> OutOfService:
        """Take `device` off the board's "can be taken" list (a signed-out device may be marked
        too: it was reported broken while out, and cannot be signed out again once back)."""
        device = _device(device)
        reason = check_text("the reason", reason, required=True)
        by = check_name("the signed-in user", by)
        mark = OutOfService(device, reason, by, now_ms)
        with self._lock:
            old = self._oos.get(device)
            if old is not None:
                raise SignOutRefused(409, self._oos_sentence(old, now_ms, already=True))
            self._commit(
                [
                    (
                        "INSERT INTO out_of_service VALUES (?, ?, ?, ?)",
                        (device, reason, by, now_ms),
                    ),
                    _event(now_ms, device, "out_of_service", by, None, now_ms, None, reason, ""),
                ]
            )
            self._oos[device] = mark
        return mark

    def return_to_service(self, device: str, *, by: str, now_ms: int) -> OutOfService:
        """Clear the out-of-service mark; returns the mark it cleared."""
        device = _device(device)
        by = check_name("the signed-in user", by)
        with self._lock:
            mark = self._oos.get(device)
            if mark is None:
                raise SignOutRefused(409, f"{device} is not marked out of service")
            self._commit(
                [
                    ("DELETE FROM out_of_service WHERE device = ?", (device,)),
                    _event(
                        now_ms, device, "return_to_service", by, None, mark.since_ms, None,
                        mark.reason, "",
                    ),
                ]
            )  # fmt: skip
            del self._oos[device]
        return mark

    # --- helpers -----------------------------------------------------------------------------

    def _commit(self, statements: Iterable[tuple[str, tuple[Any, ...]]]) -> None:
        """One transaction; the caller changes its memory only after this returns."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    self._db.execute(sql, args)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            _LOG.error("could not write the sign-out sheet %s: %s", self._path, exc)
            raise SignOutRefused(
                503,
                f"the sign-out sheet could not be written ({exc}); nothing was changed: "
                "try again, and tell the maintainer if it keeps failing",
            ) from exc

    def _when(self, ts_ms: int, now_ms: int) -> str:
        """A clock time on the station's clock; with the day when it is not today."""
        at = datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(self._tz)
        today = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(self._tz).date()
        return f"{at:%H:%M}" if at.date() == today else f"{at:%a %d %b %H:%M}"

    def _oos_sentence(self, mark: OutOfService, now_ms: int, *, already: bool = False) -> str:
        head = "is already marked" if already else "is"
        return (
            f"{mark.device} {head} out of service since {self._when(mark.since_ms, now_ms)} "
            f"(by {mark.by}): {mark.reason}; return it to service first"
        )


def _event(
    at_ms: int,
    device: str,
    action: str,
    by: str,
    officer: str | None,
    since_ms: int | None,
    due_ms: int | None,
    reason: str | None,
    note: str,
) -> tuple[str, tuple[Any, ...]]:
    return (
        "INSERT INTO event (at_ms, device, action, by, officer, since_ms, due_ms, reason, note)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (at_ms, device, action, by, officer, since_ms, due_ms, reason, note),
    )


def _event_json(row: tuple[Any, ...]) -> dict[str, object]:
    """since: when the device went out (sign-in) or was marked (return to service)."""
    id_, at_ms, device, action, by, officer, since_ms, due_ms, reason, note = row
    return {
        "id": id_,
        "at": iso(at_ms),
        "action": action,
        "device": device,
        "by": by,
        "officer": officer,
        "since": None if since_ms is None else iso(since_ms),
        "due_back": None if due_ms is None else iso(due_ms),
        "reason": reason,
        "note": note,
    }
