"""The alert engine judges a batch while the spool commits it; only a commit is acknowledged."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from fleet.daemon import wire
from fleet.daemon.spool import Entry, SeqRow
from tests.daemon.collector.test_ingest_isolation import Harness, reading
from tests.harness.waiting import wait_until


def test_the_engine_has_a_batch_before_its_commit_begins(tmp_path):
    order: list[tuple[str, object]] = []

    def judged(readings: list[wire.DecodedReading]) -> None:
        order.append(("judged", [r.seq for r in readings]))

    h = Harness(tmp_path, on_readings=judged)
    append = h.spool.append

    def commit(entries: Sequence[Entry], seq: Sequence[SeqRow] = ()) -> None:
        order.append(("commit", len(entries)))
        append(entries, seq)

    h.spool.append = commit  # type: ignore[method-assign]
    h.run([reading(1), reading(2), reading(3)])
    # One fsync in an alert's way, not two in a row: the engine's thread judges the batch
    # while this one syncs the spool.
    assert order == [("judged", [1, 2, 3]), ("commit", 3)]
    assert h.acks == [1, 2, 3]


def test_a_batch_the_spool_never_takes_is_judged_but_not_acknowledged(tmp_path):
    handed: list[int] = []
    h = Harness(tmp_path, on_readings=lambda readings: handed.extend(r.seq for r in readings))
    h.spool._max_bytes = 0  # full: ingest waits for room, acknowledging nothing
    for m in (reading(1), reading(2)):
        h.ingest.put(m)
    stop = threading.Event()
    thread = threading.Thread(target=h.ingest.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: h.ingest.commit_error == "spool full", message="waiting for room")
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert handed == [1, 2]  # the engine saw them; the broker still holds them ...
    assert h.acks == []  # ... and redelivers them after a restart (seen as duplicates there)
    assert h.spool.depth().rows == 0
