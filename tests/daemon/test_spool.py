"""The disk spool: durable, ordered, accounted, and shared between threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from fleet.daemon.spool import Entry, SeqRow, Spool


def entry(i: int, n: int = 1) -> Entry:
    lines = "\n".join(f"battery,device=d{i} pct={j} {1000 + j}" for j in range(n))
    return Entry(f"fleet/v1/s/segway/d{i}/telemetry", lines, n)


def test_rows_survive_reopening_in_order(tmp_path):
    path = tmp_path / "spool.sqlite"
    spool = Spool(path, max_bytes=10**9, fsync=True)
    spool.append([entry(i) for i in range(5)])
    spool.close()
    again = Spool(path, max_bytes=10**9, fsync=True)
    assert [r.topic for r in again.head(100)] == [entry(i).topic for i in range(5)]
    assert again.depth().rows == 5
    assert again.depth().points == 5


def test_head_respects_the_point_budget_but_always_returns_a_row(tmp_path):
    spool = Spool(tmp_path / "s.sqlite", max_bytes=10**9, fsync=False)
    spool.append([entry(0, n=3), entry(1, n=3), entry(2, n=3)])
    assert [r.n for r in spool.head(6)] == [3, 3]
    assert [r.n for r in spool.head(2)] == [3]  # one oversized row still moves


def test_remove_takes_from_the_head_and_updates_depth(tmp_path):
    spool = Spool(tmp_path / "s.sqlite", max_bytes=10**9, fsync=False)
    spool.append([entry(i, n=2) for i in range(4)])
    first = spool.head(4)
    spool.remove(first)
    depth = spool.depth()
    assert (depth.rows, depth.points) == (2, 4)
    assert [r.topic for r in spool.head(100)] == [entry(2).topic, entry(3).topic]
    assert depth.bytes == sum(len(entry(i, n=2).lines) for i in (2, 3))


def test_full_when_the_byte_budget_is_reached(tmp_path):
    spool = Spool(tmp_path / "s.sqlite", max_bytes=100, fsync=False)
    assert not spool.full
    spool.append([entry(i, n=3) for i in range(3)])
    assert spool.full
    spool.remove(spool.head(100))
    assert not spool.full


def test_one_thread_appends_while_another_drains(tmp_path):
    spool = Spool(tmp_path / "s.sqlite", max_bytes=10**9, fsync=False)
    total = 2000
    drained: list[str] = []

    def produce() -> None:
        for start in range(0, total, 50):
            spool.append([entry(i) for i in range(start, start + 50)])
        spool.close()

    producer = threading.Thread(target=produce)
    producer.start()
    while producer.is_alive() or spool.depth().rows:
        rows = spool.head(100)
        drained.extend(r.topic for r in rows)
        spool.remove(rows)
    producer.join()
    assert drained == [entry(i).topic for i in range(total)]


class _Watched:
    """A lock that says when a thread starts waiting for it."""

    def __init__(self, lock: threading.Lock, waiting: threading.Event) -> None:
        self._lock, self._waiting = lock, waiting

    def __enter__(self) -> None:
        if threading.current_thread().name == "second":
            self._waiting.set()
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class _Held(list[SeqRow]):
    """Seq rows whose reading waits, inside the write transaction, until released."""

    def __init__(self, inside: threading.Event, release: threading.Event) -> None:
        super().__init__()
        self._inside, self._release = inside, release

    def __iter__(self) -> Iterator[SeqRow]:
        self._inside.set()
        assert self._release.wait(10)
        return super().__iter__()


def test_a_second_writer_waits_for_the_first_in_process_not_at_sqlites_lock(tmp_path):
    # SQLite makes a second writer poll (sleeping 1, 2, 5 ... ms): an alert's point and the
    # next batch's commit would wait out those sleeps. Here the second writer's connection
    # may not wait at SQLite's lock at all: it must never get that far while the first holds it.
    spool = Spool(tmp_path / "s.sqlite", max_bytes=10**9, fsync=False)
    inside, release, waiting = threading.Event(), threading.Event(), threading.Event()
    spool._writing = _Watched(spool._writing, waiting)  # type: ignore[assignment]
    failed: list[BaseException] = []

    def first() -> None:
        spool.append([entry(1)], _Held(inside, release))  # holds SQLite's write lock

    def second() -> None:
        spool._conn().execute("PRAGMA busy_timeout = 0")  # SQLITE_BUSY at once, no polling
        try:
            spool.append([entry(2)])
        except BaseException as exc:  # noqa: BLE001 - what the test looks for
            failed.append(exc)
        finally:
            waiting.set()  # (had it not waited for the first, it is done here)

    one = threading.Thread(target=first)
    one.start()
    assert inside.wait(10)
    two = threading.Thread(target=second, name="second")
    two.start()
    assert waiting.wait(10)
    release.set()
    one.join(10)
    two.join(10)
    assert failed == []
    assert [r.topic for r in spool.head(10)] == [entry(1).topic, entry(2).topic]
