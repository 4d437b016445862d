"""The alert thread judges hand-overs queued behind each other as one batch (issue 14,
squeeze): one store transaction, the readings in arrival order, a control message queued
among them judged after the readings before it and before those after it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fleet.daemon import wire
from fleet.daemon.alerts.model import AlertEvent
from fleet.daemon.collector import alerting
from fleet.daemon.collector.alerting import AlertService
from fleet.daemon.spool import Spool
from tests.daemon.collector.test_control_identity import REGISTRY, SITE, settings
from tests.harness.alerting import FakeClock
from tests.harness.waiting import wait_until


def reading(device: str, seq: int, ts_ms: int) -> wire.DecodedReading:
    battery = wire.Battery(pct=50.0 + seq, charging=False)
    return wire.DecodedReading(SITE, "segway", device, seq, ts_ms, battery, None, None, "t")


def _service(tmp_path: Path, clock: FakeClock) -> AlertService:
    return AlertService(
        settings(tmp_path, REGISTRY),
        spool=Spool(tmp_path / "spool.sqlite", max_bytes=1 << 30, fsync=False),
        publish=lambda topic, payload, retain: None,
        on_spooled=lambda: None,
        clock_ms=clock,
    )


@contextmanager
def _running(service: AlertService) -> Iterator[None]:
    """The alert thread, started after the test queued its work (as in a drain)."""
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), name="alerts", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        service._inbox.put(lambda at: [])  # wakes the thread to see the stop
        thread.join(10)


def test_queued_hand_overs_are_one_batch_in_order_and_a_control_message_keeps_its_place(
    tmp_path: Path,
) -> None:
    clock = FakeClock(int(time.time() * 1000))
    service = _service(tmp_path, clock)
    seen: list[tuple[str, Any]] = []
    judge = service.engine.observe_batch

    def spy(readings: Sequence[wire.DecodedReading], *args: Any) -> list[AlertEvent]:
        seen.append(("batch", [(r.device, r.seq) for r in readings]))
        return judge(readings, *args)

    service.engine.observe_batch = spy  # type: ignore[method-assign,assignment]
    now = clock()
    handed = [[reading("sw-01", 1, now), reading("sw-02", 1, now)], [reading("sw-01", 2, now)]]
    # Queued before the thread runs: the thread finds them all waiting, as in a drain.
    for batch in handed:
        service.observe(batch)

    def control(at: int) -> list[AlertEvent]:
        seen.append(("control", at))
        return []

    service._inbox.put(control)
    later = [reading("sw-02", 2, now)]
    service.observe(later)
    with _running(service):
        wait_until(lambda: len(seen) >= 3, timeout=30, message="the queued work to be judged")
    assert seen[0] == ("batch", [("sw-01", 1), ("sw-02", 1), ("sw-01", 2)])
    assert seen[1][0] == "control"
    assert seen[2] == ("batch", [("sw-02", 2)])
    assert len(seen) == 3
    # The ingest thread's lists are its own: merging extends a copy.
    assert [len(b) for b in handed] == [2, 1]
    # Every reading reached the engine's views: none lost in the merge.
    assert service.engine.counters.late == 0
    assert service.counters.errors == 0


def test_a_merge_stops_at_merge_max(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(alerting, "MERGE_MAX", 2)
    clock = FakeClock(int(time.time() * 1000))
    service = _service(tmp_path, clock)
    sizes: list[int] = []
    judge = service.engine.observe_batch

    def spy(readings: Sequence[wire.DecodedReading], *args: Any) -> list[AlertEvent]:
        sizes.append(len(readings))
        return judge(readings, *args)

    service.engine.observe_batch = spy  # type: ignore[method-assign,assignment]
    now = clock()
    for seq in range(1, 6):
        service.observe([reading("sw-01", seq, now + seq)])
    with _running(service):
        wait_until(lambda: sum(sizes) >= 5, timeout=30, message="the five readings to be judged")
    assert sizes == [2, 2, 1]
