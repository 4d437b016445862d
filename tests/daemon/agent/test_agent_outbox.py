"""The agent's outbox on a real SQLite file: order, seq persistence, the byte bound, exact counts."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fleet.daemon.agent.outbox import Outbox
from fleet.daemon.spool import Entry, SpoolRow

MIN_BYTES = 64 * 1024
NO_PAGE_LIMIT = 1_073_741_823  # SQLite's default max_page_count


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


def stored_numbers(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return numbers([text for (text,) in conn.execute("SELECT lines FROM spool ORDER BY id")])


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


def test_rows_in_flight_are_not_trimmed_the_oldest_behind_them_are(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path, max_bytes=MIN_BYTES, fsync=False)
    box.add(entries(0, 60), {})
    inflight = box.take(10)  # handed to the link; the broker is away
    dropped = box.add(entries(60, 20), {})  # 80 kB: 15 rows must go
    assert dropped == 15
    # The 10 in flight stay (paho holds them, and a crash must not lose them); the 15 behind go.
    assert stored_numbers(path) == list(range(10)) + list(range(25, 80))
    assert box.depth().bytes <= MIN_BYTES
    assert box.done(inflight) == {row.id for row in inflight}  # the broker acknowledged them
    depth = box.depth()
    assert stored(path) == (depth.rows, depth.bytes)
    assert numbers([r.lines for r in box.take(1000)]) == list(range(25, 80))
    box.close()


def test_with_every_older_row_in_flight_the_newest_rows_go(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path, max_bytes=MIN_BYTES, fsync=False)
    box.add(entries(0, 64), {})  # 64,000 bytes: under the bound
    inflight = box.take(64)
    dropped = box.add(entries(64, 3), {})  # 67,000: over it; only the new rows are not in flight
    assert dropped == 2  # the oldest two of them bring it back under the bound
    assert stored_numbers(path) == [*range(64), 66]
    assert box.depth().bytes <= MIN_BYTES
    assert len(box.done(inflight)) == 64
    assert stored_numbers(path) == [66]
    box.close()


def test_done_for_rows_that_are_gone_is_harmless(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path, max_bytes=MIN_BYTES, fsync=False)
    box.add(entries(0, 10, 10), {})
    rows = box.take(4)
    assert len(box.done(rows)) == 4
    assert box.done(rows) == set()  # a second ack of the same rows
    box.close()
    # A fresh outbox (the agent restarted): an ack for rows that another take removed.
    box = Outbox(path, max_bytes=MIN_BYTES, fsync=False)
    again = box.take(3)
    assert len(box.done(again)) == 3
    assert box.done(rows + again) == set()
    depth = box.depth()
    assert (depth.rows, depth.bytes) == stored(path) == (3, 30)
    box.close()


def test_a_full_disk_stores_nothing_of_a_batch_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path, max_bytes=10 * MIN_BYTES, fsync=False)
    box.add(entries(0, 5), {"sw-01": 5})
    box.drill("max_page_count", 1)  # no page more than the file has now
    with pytest.raises(sqlite3.OperationalError, match="full"):  # noqa: PT012 - until full
        for i in range(100):
            box.add(entries(5 + i * 10, 10), {"sw-01": 15 + i * 10})
    depth = box.depth()
    assert stored(path) == (depth.rows, depth.bytes)  # the refused batch is not half there
    assert depth.rows % 10 == 5
    box.drill("max_page_count", NO_PAGE_LIMIT)
    box.add(entries(5000, 10), {"sw-01": 5010})
    assert box.seqs() == {"sw-01": 5010}
    box.drill("query_only", 1)  # a disk remounted read-only: removing fails as well
    rows = box.take(3)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        box.done(rows)
    box.drill("query_only", 0)
    assert len(box.done(rows)) == 3
    depth = box.depth()
    assert stored(path) == (depth.rows, depth.bytes)
    box.close()


class OutboxCounts(RuleBasedStateMachine):
    """Any sequence of add/take/done/reopen/full disk: every reading leaves exactly once.

    The model is a list of (number, size) in outbox order; trimming must drop the
    oldest rows that are not in flight, exactly as many as `add` reports, and the
    counts must conserve: added = sent + dropped + still in the outbox.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="outbox-prop-"))
        self.path = self.dir / "outbox.sqlite"
        self.max_bytes = 3000
        self.box = Outbox(self.path, max_bytes=self.max_bytes, fsync=False)
        self.model: list[tuple[int, int]] = []
        self.inflight: set[int] = set()  # numbers of the last take, until done
        self.takes: list[list[SpoolRow]] = []
        self.next_number = 0
        self.added = self.sent = self.dropped = 0
        self.full = False

    def teardown(self) -> None:
        self.box.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(sizes=st.lists(st.integers(8, 700), max_size=12))
    def add(self, sizes: list[int]) -> None:
        batch = [
            Entry("t/x", f"{self.next_number + i:08d}".ljust(size, "."), 1)
            for i, size in enumerate(sizes)
        ]
        try:
            dropped = self.box.add(batch, {"d": self.next_number + len(sizes)})
        except sqlite3.Error:
            assert self.full, "only the drilled full disk refuses a batch"
            return  # nothing of it is in: the caller keeps it
        self.model += [(self.next_number + i, size) for i, size in enumerate(sizes)]
        self.next_number += len(sizes)
        self.added += len(sizes)
        # Exactly the `dropped` oldest rows that are not in flight left.
        behind = [n for n, _ in self.model if n not in self.inflight][:dropped]
        assert len(behind) == dropped
        self.model = [(n, s) for n, s in self.model if n not in set(behind)]
        self.dropped += dropped
        if not self.full:  # a complete trim: under the bound, or only rows in flight left
            total = sum(s for _, s in self.model)
            assert total <= self.max_bytes or all(n in self.inflight for n, _ in self.model)

    @rule(limit=st.integers(1, 20))
    def take(self, limit: int) -> None:
        rows = self.box.take(limit)
        assert numbers([r.lines for r in rows]) == [n for n, _ in self.model[:limit]]
        self.inflight = {int(r.lines[:8]) for r in rows}
        self.takes.append(rows)

    @precondition(lambda self: bool(self.takes))
    @rule(which=st.integers(0, 3))
    def done(self, which: int) -> None:
        """The broker acks the last take (which=0), or an older one again (a stale ack)."""
        rows = self.takes[max(0, len(self.takes) - 1 - which)]
        try:
            removed = self.box.done(rows)
        except sqlite3.Error:
            assert self.full
            return
        acked = {int(r.lines[:8]) for r in rows if r.id in removed}
        assert acked == {n for n, _ in self.model} & {int(r.lines[:8]) for r in rows}
        self.model = [(n, s) for n, s in self.model if n not in acked]
        self.sent += len(removed)
        if which == 0:
            self.inflight = set()

    @rule()
    def reopen(self) -> None:
        """The agent restarts: paho's queue is gone, the rows are not."""
        self.box.close()
        self.box = Outbox(self.path, max_bytes=self.max_bytes, fsync=False)
        self.inflight = set()
        self.full = False

    @rule(full=st.booleans())
    def disk(self, full: bool) -> None:
        self.box.drill("max_page_count", 1 if full else NO_PAGE_LIMIT)
        self.full = full

    @invariant()
    def counts_conserve(self) -> None:
        depth = self.box.depth()
        assert self.added == self.sent + self.dropped + depth.rows
        assert (depth.rows, depth.bytes) == stored(self.path)
        assert stored_numbers(self.path) == [n for n, _ in self.model]


TestOutboxCounts = OutboxCounts.TestCase
TestOutboxCounts.settings = settings(max_examples=50, stateful_step_count=30, deadline=None)
