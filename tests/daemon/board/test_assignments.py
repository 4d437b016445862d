"""The sign-out sheet on a real SQLite file: every rule and its refusal, durability, history,
overdue, concurrent callers, a broken file salvaged, a full disk refused without a change."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fleet.daemon.board.assignments import AssignmentStore, SignOutRefused
from fleet.daemon.board.model import Assignment, OutOfService
from tests.daemon.test_broken_files import aside, checkpoint, readable_rows

TZ = ZoneInfo("America/New_York")
H = 3_600_000
M = 60_000


def at(text: str) -> int:
    """Epoch ms of a station-local wall time."""
    return int(datetime.fromisoformat(text).replace(tzinfo=TZ).timestamp() * 1000)


T0 = at("2026-11-30T07:58:00")  # a Monday
DUE = at("2026-11-30T16:00:00")


def store(path: Path, **extra: Any) -> AssignmentStore:
    return AssignmentStore(path, fsync=False, tz=TZ, **extra)


@pytest.fixture
def sheet(tmp_path: Path) -> Iterator[AssignmentStore]:
    s = store(tmp_path / "assignments.sqlite")
    yield s
    s.close()


def refused(call: Any, *args: Any, **kwargs: Any) -> SignOutRefused:
    with pytest.raises(SignOutRefused) as info:
        call(*args, **kwargs)
    return info.value


# --- the rules ------------------------------------------------------------------------------


def test_sign_out_and_in(sheet):
    a = sheet.sign_out("sw-03", "  Diaz ", due_ms=DUE, by="kim", now_ms=T0, note="patrol B")
    assert a == Assignment("sw-03", "Diaz", T0, DUE, "kim", "patrol B")
    assert sheet.current() == {"sw-03": a}
    closed = sheet.sign_in("sw-03", by="lee", now_ms=T0 + H)
    assert closed == a
    assert sheet.current() == {}


def test_double_sign_out_is_refused_with_who_has_it(sheet):
    sheet.sign_out("sw-03", "Diaz", due_ms=DUE, by="kim", now_ms=T0)
    e = refused(sheet.sign_out, "sw-03", "Park", due_ms=DUE, by="kim", now_ms=T0 + 5 * M)
    assert (e.status, e.message) == (
        409,
        "sw-03 is already signed out to Diaz since 07:58, due back 16:00",
    )
    assert sheet.current()["sw-03"].officer == "Diaz"


def test_times_of_another_day_carry_the_day(sheet):
    sheet.sign_out("sw-03", "Diaz", due_ms=DUE, by="kim", now_ms=T0)
    e = refused(sheet.sign_out, "sw-03", "Park", due_ms=DUE + 24 * H, by="kim", now_ms=DUE + 9 * H)
    assert e.message == (
        "sw-03 is already signed out to Diaz since Mon 30 Nov 07:58, due back Mon 30 Nov 16:00"
    )


def test_out_of_service_blocks_sign_out_until_returned(sheet):
    mark = sheet.mark_out_of_service("sw-07", reason="brake\nfault ", by="kim", now_ms=T0)
    assert mark == OutOfService("sw-07", "brake fault", "kim", T0)
    e = refused(sheet.sign_out, "sw-07", "Diaz", due_ms=DUE, by="kim", now_ms=T0 + M)
    assert (e.status, e.message) == (
        409,
        "sw-07 is out of service since 07:58 (by kim): brake fault; return it to service first",
    )
    again = refused(sheet.mark_out_of_service, "sw-07", reason="flat", by="lee", now_ms=T0 + M)
    assert again.status == 409
    assert again.message.startswith("sw-07 is already marked out of service since 07:58")
    assert sheet.return_to_service("sw-07", by="lee", now_ms=T0 + H) == mark
    assert sheet.out_of_service() == {}
    sheet.sign_out("sw-07", "Diaz", due_ms=DUE, by="kim", now_ms=T0 + H)
    no = refused(sheet.return_to_service, "sw-07", by="lee", now_ms=T0 + H)
    assert (no.status, no.message) == (409, "sw-07 is not marked out of service")


def test_a_signed_out_device_can_be_marked_out_of_service(sheet):
    sheet.sign_out("sw-03", "Diaz", due_ms=DUE, by="kim", now_ms=T0)
    sheet.mark_out_of_service("sw-03", reason="reported broken by Diaz", by="kim", now_ms=T0 + H)
    assert set(sheet.current()) == set(sheet.out_of_service()) == {"sw-03"}
    sheet.sign_in("sw-03", by="kim", now_ms=T0 + 2 * H)
    e = refused(sheet.sign_out, "sw-03", "Park", due_ms=DUE, by="kim", now_ms=T0 + 3 * H)
    assert "out of service" in e.message


def test_the_judges_blocking_reason_is_the_refusal(sheet):
    reason = "sw-03 is offline: last heard 23 min ago"
    e = refused(sheet.sign_out, "sw-03", "Diaz", due_ms=DUE, by="kim", now_ms=T0, blocked=reason)
    assert (e.status, e.message) == (409, reason)
    assert sheet.current() == {}
    assert sheet.history() == []


def test_signing_in_what_is_not_signed_out(sheet):
    e = refused(sheet.sign_in, "sw-03", by="kim", now_ms=T0)
    assert (e.status, e.message) == (409, "sw-03 is not signed out, so it cannot be signed in")


@pytest.mark.parametrize(
    ("due", "message"),
    [
        (T0, "the expected return 07:58 is not in the future (now 07:58): give a later time"),
        (T0 - H, "the expected return 06:58 is not in the future (now 07:58)"),
        (
            T0 + 30 * H,
            "the expected return Tue 01 Dec 13:58 is 30 h away; a sign-out lasts at most 24 h",
        ),
    ],
)
def test_due_time_in_the_past_or_too_far(sheet, due, message):
    e = refused(sheet.sign_out, "sw-03", "Diaz", due_ms=due, by="kim", now_ms=T0)
    assert e.status == 400
    assert e.message.startswith(message)


def test_max_hours_is_configurable(tmp_path):
    s = store(tmp_path / "a.sqlite", max_signout_hours=12.5)
    s.sign_out("sw-03", "Diaz", due_ms=T0 + int(12.5 * H), by="kim", now_ms=T0)
    e = refused(s.sign_out, "sw-04", "Diaz", due_ms=T0 + 13 * H, by="kim", now_ms=T0)
    assert "at most 12.5 h" in e.message


@pytest.mark.parametrize(
    ("officer", "message"),
    [
        ("", "the officer's name is empty: give a name"),
        ("   ", "the officer's name is empty: give a name"),
        ("x" * 65, "the officer's name is 65 characters long; at most 64"),
        ("Diaz\nINFO audit: forged", "the officer's name contains a control character"),
        ("Diaz\x1b[31m", "the officer's name contains a control character"),
        ("Diaz\u2028Park", "the officer's name contains a control character"),
    ],
)
def test_officer_names_are_checked(sheet, officer, message):
    e = refused(sheet.sign_out, "sw-03", officer, due_ms=DUE, by="kim", now_ms=T0)
    assert e.status == 400
    assert e.message.startswith(message)
    assert sheet.current() == {}


def test_a_name_of_64_characters_and_any_script_is_fine(sheet):
    name = "Ñúñez-O'Brien " + "é" * 50
    assert len(name) == 64
    assert sheet.sign_out("sw-03", name, due_ms=DUE, by="kim", now_ms=T0).officer == name


def test_the_signed_in_user_is_checked_too(sheet):
    e = refused(sheet.sign_out, "sw-03", "Diaz", due_ms=DUE, by="ki\nm", now_ms=T0)
    assert (e.status, e.message[:40]) == (400, "the signed-in user contains a control ch")


def test_reasons_and_notes(sheet):
    e = refused(sheet.mark_out_of_service, "sw-03", reason=" \n ", by="kim", now_ms=T0)
    assert (e.status, e.message) == (400, "the reason is empty: say why")
    e = refused(sheet.mark_out_of_service, "sw-03", reason="a" * 201, by="kim", now_ms=T0)
    assert (e.status, e.message) == (400, "the reason is 201 characters long; at most 200")
    e = refused(sheet.sign_out, "sw-03", "Diaz", due_ms=DUE, by="k", now_ms=T0, note="a\x00b")
    assert (e.status, e.message) == (400, "the note contains a control character; use plain text")
    a = sheet.sign_out("sw-03", "Diaz", due_ms=DUE, by="k", now_ms=T0, note="line 1\r\nline 2")
    assert a.note == "line 1 line 2"


@pytest.mark.parametrize("device", ["", "sw 03", "sw/03", "x" * 65, "sw-03\n"])
def test_device_ids_follow_the_wire_contract(sheet, device):
    e = refused(sheet.sign_out, device, "Diaz", due_ms=DUE, by="kim", now_ms=T0)
    assert e.status == 400
    assert e.message.startswith("device ")


# --- overdue, history, durability ----------------------------------------------------------


def test_overdue_lists_what_is_past_its_return_longest_first(sheet):
    sheet.sign_out("sw-01", "Diaz", due_ms=T0 + 2 * H, by="kim", now_ms=T0)
    sheet.sign_out("sw-02", "Park", due_ms=T0 + 1 * H, by="kim", now_ms=T0)
    sheet.sign_out("sw-03", "Lee", due_ms=T0 + 3 * H, by="kim", now_ms=T0)
    assert sheet.overdue(T0 + H) == []  # due at exactly now is not late yet
    assert [a.device for a in sheet.overdue(T0 + 2 * H + 1)] == ["sw-02", "sw-01"]
    sheet.sign_in("sw-02", by="kim", now_ms=T0 + 5 * H)
    assert [a.device for a in sheet.overdue(T0 + 5 * H)] == ["sw-01", "sw-03"]


def test_history_keeps_every_change_with_who_and_when(sheet):
    sheet.sign_out("sw-03", "Diaz", due_ms=DUE, by="kim", now_ms=T0, note="patrol B")
    sheet.mark_out_of_service("sw-07", reason="brake fault", by="lee", now_ms=T0 + M)
    sheet.sign_in("sw-03", by="lee", now_ms=T0 + 2 * H, note="mud on it")
    sheet.return_to_service("sw-07", by="kim", now_ms=T0 + 3 * H)
    history = sheet.history()
    assert [(e["action"], e["device"], e["by"]) for e in history] == [
        ("return_to_service", "sw-07", "kim"),
        ("sign_in", "sw-03", "lee"),
        ("out_of_service", "sw-07", "lee"),
        ("sign_out", "sw-03", "kim"),
    ]
    assert history[1] == {
        "id": 3,
        "at": "2026-11-30T14:58:00.000Z",
        "action": "sign_in",
        "device": "sw-03",
        "by": "lee",
        "officer": "Diaz",
        "since": "2026-11-30T12:58:00.000Z",
        "due_back": "2026-11-30T21:00:00.000Z",
        "reason": None,
        "note": "mud on it",
    }
    assert history[0]["reason"] == "brake fault"
    assert history[0]["since"] == "2026-11-30T12:59:00.000Z"
    assert [e["action"] for e in sheet.history(device="sw-07")] == [
        "return_to_service",
        "out_of_service",
    ]
    assert [e["id"] for e in sheet.history(since_ms=T0 + M)] == [4, 3, 2]
    assert [e["id"] for e in sheet.history(limit=1)] == [4]
    assert [e["id"] for e in sheet.history(limit=0)] == [4]  # at least one row is asked for


def test_refused_changes_leave_no_trace(sheet):
    sheet.sign_out("sw-03", "Diaz", due_ms=DUE, by="kim", now_ms=T0)
    for call in (
        lambda: sheet.sign_out("sw-03", "Park", due_ms=DUE, by="kim", now_ms=T0),
        lambda: sheet.sign_in("sw-04", by="kim", now_ms=T0),
        lambda: sheet.return_to_service("sw-04", by="kim", now_ms=T0),
    ):
        with pytest.raises(SignOutRefused):
            call()
    assert len(sheet.history()) == 1


def test_everything_survives_a_reopen(tmp_path):
    path = tmp_path / "state" / "assignments.sqlite"
    first = store(path)
    first.sign_out("sw-03", "Diaz", due_ms=DUE, by="kim", now_ms=T0, note="n")
    first.sign_out("sw-04", "Park", due_ms=DUE, by="kim", now_ms=T0)
    first.sign_in("sw-04", by="kim", now_ms=T0 + M)
    first.mark_out_of_service("sw-07", reason="flat tyre", by="kim", now_ms=T0)
    current, oos, history = first.current(), first.out_of_service(), first.history()
    first.close()
    second = store(path)
    assert second.recovery is None
    assert (second.current(), second.out_of_service(), second.history()) == (
        current,
        oos,
        history,
    )
    e = refused(second.sign_out, "sw-03", "Lee", due_ms=DUE, by="kim", now_ms=T0 + M)
    assert e.status == 409
    second.sign_in("sw-03", by="kim", now_ms=T0 + 2 * M)
    assert second.history()[0]["id"] == 5
    second.close()


def test_a_change_is_on_disk_when_it_returns(tmp_path):
    """Another connection (another process) sees it at once: committed, not pending."""
    path = tmp_path / "assignments.sqlite"
    s = AssignmentStore(path, tz=TZ)  # fsync on, the default
    s.sign_out("sw-03", "Diaz", due_ms=DUE, by="kim", now_ms=T0)
    reader = sqlite3.connect(path)
    assert reader.execute("SELECT device, officer FROM signed_out").fetchall() == [
        ("sw-03", "Diaz")
    ]
    reader.close()
    assert s._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL: survives a power cut
    s.close()
    quick = store(tmp_path / "other.sqlite")  # fsync=False, as the tests run it
    assert quick._db.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    quick.close()


def test_one_of_many_concurrent_sign_outs_of_a_device_wins(sheet):
    start = threading.Barrier(8)
    won: list[str] = []
    lost: list[int] = []

    def take(officer: str) -> None:
        start.wait()
        try:
            won.append(sheet.sign_out("sw-03", officer, due_ms=DUE, by="kim", now_ms=T0).officer)
        except SignOutRefused as exc:
            lost.append(exc.status)

    threads = [threading.Thread(target=take, args=(f"officer {i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(won) == 1
    assert lost == [409] * 7
    assert sheet.current()["sw-03"].officer == won[0]
    assert len(sheet.history()) == 1


# --- broken files, full disks ----------------------------------------------------------------


def test_a_broken_file_is_salvaged_and_the_sheet_keeps_what_reads_back(tmp_path, caplog):
    path = tmp_path / "assignments.sqlite"
    s = store(path)
    for i in range(300):  # enough history for many pages
        s.sign_out(f"sw-{i}", f"Officer {i}", due_ms=DUE, by="kim", now_ms=T0, note="x" * 150)
    s.mark_out_of_service("sw-0", reason="flat", by="kim", now_ms=T0)
    s.close()
    checkpoint(path)
    with sqlite3.connect(path) as conn:
        leaves = [
            int(r[0])
            for r in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = 'event' AND pagetype = 'leaf'"
            )
        ]
    conn.close()
    with path.open("r+b") as f:  # a torn page in the middle of the history
        f.seek((sorted(leaves)[len(leaves) // 2] - 1) * 4096)
        f.write(b"\xa5" * 4096)
    readable = readable_rows(path, "event", list(range(1, 302)))  # the oracle, before salvage
    reopened = store(path)
    assert reopened.recovery is not None
    assert "event" in reopened.recovery.summary()
    assert [p.name[-4:] for p in aside(path) if not p.name.endswith(("-wal", "-shm"))]
    assert len(reopened.current()) == 300  # the current-state table was not touched
    assert set(reopened.out_of_service()) == {"sw-0"}
    kept = reopened.history(limit=1000)
    assert 0 < len(kept) < 301
    assert sorted(int(str(e["id"])) for e in kept) == sorted(readable)
    # Numbering goes on after the salvaged rows: no id is handed out twice.
    reopened.sign_in("sw-1", by="kim", now_ms=T0 + M)
    assert reopened.history(limit=1)[0]["id"] == 302
    reopened.close()


def test_a_full_disk_refuses_the_change_and_changes_nothing(tmp_path):
    """A full disk, portably: SQLite's `max_page_count` on the store's own connection."""
    s = store(tmp_path / "a.sqlite")
    pages = s._db.execute("PRAGMA page_count").fetchone()[0]
    s._db.execute(f"PRAGMA max_page_count = {pages}")
    failed: SignOutRefused | None = None
    for i in range(1000):
        try:
            s.sign_out(f"sw-{i}", "Diaz", due_ms=DUE, by="kim", now_ms=T0, note="n" * 200)
        except SignOutRefused as exc:
            failed = exc
            break
    assert failed is not None
    assert failed.status == 503
    assert failed.message.startswith(
        "the sign-out sheet could not be written (database or disk is full); nothing was changed"
    )
    assert f"sw-{i}" not in s.current()
    assert len(s.current()) == len(s.history(limit=1000)) == i
    s._db.execute("PRAGMA max_page_count = 4294967294")  # space again
    s.sign_out(f"sw-{i}", "Diaz", due_ms=DUE, by="kim", now_ms=T0)
    assert f"sw-{i}" in s.current()
    s.close()
