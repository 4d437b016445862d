"""Liveness: hearts beat per loop turn, and the notifier's rule - READY once connected, then one
datagram per tick whose WATCHDOG=1 comes only while every part turns and MQTT is connected.

The clock is a counter the test moves, and the test calls `tick()` itself: every interval
is counted, none is left to timing."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import pytest

from fleet.daemon import liveness
from fleet.daemon.liveness import Heart, ServiceNotifier, Watch
from fleet.daemon.sdnotify import SdNotify
from tests.harness.sdnotify import NotifySocket
from tests.harness.waiting import wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sock(tmp_path: Path):
    s = NotifySocket(tmp_path)
    yield s
    s.close()


@pytest.fixture
def make_rig(sock: NotifySocket):
    made: list[Rig] = []

    def make(watchdog_s: float | None = 60.0) -> Rig:
        made.append(Rig(sock, watchdog_s))
        return made[-1]

    yield make
    for rig in made:
        rig.sd.close()


class Rig:
    """A notifier on a fake clock with one watched part, `work`, allowed 10 s."""

    def __init__(self, sock: NotifySocket, watchdog_s: float | None = 60.0) -> None:
        self.clock = FakeClock()
        self.watch = Watch(self.clock)
        self.heart = self.watch.add("work", 10.0)
        self.connected = False
        self.sd = SdNotify(environ=sock.env(watchdog_s))
        self.notifier = ServiceNotifier(
            self.sd,
            self.watch,
            connected=lambda: self.connected,
            status=lambda health: "; ".join([*health.problems(), "figures"]),
            starting=lambda: "starting: connecting",
            clock=self.clock,
        )
        self.sock = sock

    def tick(self) -> dict[str, str]:
        """One tick; returns the datagram it sent, as the socket received it."""
        assert self.notifier.tick() is not None
        (datagram,) = self.sock.drain()
        return datagram


def test_beat_outside_a_watched_loop_does_nothing():
    liveness.beat()  # no heart bound in this context: no error, nothing to beat


def test_each_thread_and_each_task_beats_its_own_heart():
    clock = FakeClock()
    a, b, c = Heart("a", clock), Heart("b", clock), Heart("c", clock)
    clock.now += 5

    def work(stop: threading.Event) -> None:
        liveness.beat()

    thread = threading.Thread(target=liveness.watched_thread(a, work), args=(threading.Event(),))
    thread.start()
    thread.join()
    assert (a.last, b.last, c.last) == (1005.0, 1000.0, 1000.0)
    assert a.thread == thread.ident

    async def turn() -> None:
        clock.now += 1
        await asyncio.sleep(0)  # the other task binds its heart meanwhile
        liveness.beat()

    async def main() -> None:
        await asyncio.gather(
            asyncio.create_task(liveness.watched_task(b, turn)()),
            asyncio.create_task(liveness.watched_task(c, turn)()),
        )

    asyncio.run(main())
    assert (b.last, c.last) == (1007.0, 1007.0)  # each its own: both beat after both moved
    liveness.beat()  # this thread still has none
    assert a.last == 1005.0


def test_a_part_is_stale_only_past_its_allowance():
    clock = FakeClock()
    watch = Watch(clock)
    watch.add("fast", 1.0)
    slow = watch.add("slow", 30.0)
    clock.now += 1.0
    assert watch.stale() == []
    clock.now += 0.5
    assert watch.stale() == [("fast", 1.5)]
    clock.now += 29.0
    slow.beat()
    assert watch.stale() == [("fast", 30.5)]


def test_ready_comes_only_once_connected_and_status_before_it_only_on_change(sock, make_rig):
    rig = make_rig()
    assert rig.tick() == {"STATUS": "starting: connecting"}
    assert rig.notifier.tick() is None  # the same words again: nothing sent
    assert sock.drain() == []
    rig.connected = True
    rig.heart.beat()
    assert rig.tick() == {"READY": "1", "STATUS": "figures", "WATCHDOG": "1"}
    assert rig.tick() == {"STATUS": "figures", "WATCHDOG": "1"}  # READY once


def test_no_ping_while_a_part_is_stalled_and_the_journal_says_where(make_rig, caplog):
    rig = make_rig()
    rig.connected = True
    rig.tick()
    rig.clock.now += 10.5  # past the 10 s allowance
    with caplog.at_level(logging.INFO, logger="fleet.daemon.liveness"):
        stalled = [rig.tick() for _ in range(5)]
        for n, datagram in enumerate(stalled):
            assert datagram == {"STATUS": "work stalled for 10 s; figures"}, n
            rig.clock.now += 0.001
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1  # once per episode, not per tick
        assert "work has not turned for 10 s (allowed: 10 s)" in errors[0]
        assert "its thread is gone" in errors[0]  # never bound to a thread
        rig.heart.beat()
        assert rig.tick() == {"STATUS": "figures", "WATCHDOG": "1"}
    assert "watchdog pings resume" in caplog.text
    assert rig.notifier.pings == 2


def test_the_stack_of_a_stalled_thread_is_logged(make_rig, caplog):
    rig = make_rig()
    rig.connected = True
    release = threading.Event()

    def wedged_somewhere(stop: threading.Event) -> None:
        release.wait(30)

    thread = threading.Thread(
        target=liveness.watched_thread(rig.heart, wedged_somewhere), args=(threading.Event(),)
    )
    thread.start()
    try:
        wait_until(lambda: rig.heart.thread is not None, message="part started")
        rig.clock.now += 11
        with caplog.at_level(logging.ERROR, logger="fleet.daemon.liveness"):
            rig.tick()
        assert "in wedged_somewhere" in caplog.text
    finally:
        release.set()
        thread.join()


def test_no_ping_while_mqtt_is_down_and_the_status_says_for_how_long(make_rig):
    rig = make_rig()
    rig.connected = True
    rig.tick()
    rig.connected = False
    for n in range(5):
        rig.heart.beat()  # the parts turn; only the link is down
        assert rig.tick() == {"STATUS": f"MQTT disconnected for {n} s; figures"}
        rig.clock.now += 1
    rig.connected = True
    assert rig.tick() == {"STATUS": "figures", "WATCHDOG": "1"}


def test_without_a_watchdog_only_status_is_sent(make_rig):
    rig = make_rig(watchdog_s=None)
    rig.connected = True
    assert rig.tick() == {"READY": "1", "STATUS": "figures"}
    assert rig.tick() == {"STATUS": "figures"}
    assert rig.notifier.period_s == liveness.STATUS_EVERY_S


def test_the_tick_period_is_the_ping_interval_or_the_status_interval_if_shorter(make_rig):
    assert make_rig(watchdog_s=0.4).notifier.period_s == 0.2
    assert make_rig(watchdog_s=60).notifier.period_s == liveness.STATUS_EVERY_S


def test_a_status_that_fails_to_render_does_not_stop_the_pings(make_rig, caplog):
    rig = make_rig()
    rig.connected = True

    def broken(health: liveness.Health) -> str:
        raise KeyError("bug")

    rig.notifier._status = broken  # a bug in the words must not look like a wedge
    assert rig.tick() == {
        "READY": "1",
        "STATUS": "status unavailable (see the journal)",
        "WATCHDOG": "1",
    }
    assert "could not put the service status into words" in caplog.text


def test_the_thread_ticks_and_its_undo_ends_with_stopping(sock, make_rig):
    rig = make_rig(watchdog_s=0.2)
    rig.connected = True
    undo = rig.notifier.start()
    try:
        sock.wait_for(lambda d: "READY" in d, message="READY")
        sock.next(3)  # the thread goes on ticking
    finally:
        undo()
    rest = sock.drain()
    assert rest[-1] == {"STOPPING": "1", "STATUS": "stopping"}
    assert rig.notifier.ticks >= 4
    # Nothing follows STOPPING=1 (the thread is stopped first, a tick under way finishes).
    assert sock.drain() == []


def test_ready_goes_again_when_its_datagram_was_lost(tmp_path: Path):
    first = NotifySocket(tmp_path)
    rig = Rig(first)
    first.close()
    (tmp_path / "notify").unlink()  # systemd's socket gone for a moment
    rig.connected = True
    try:
        assert rig.notifier.tick() is None
        assert rig.sd.failures == 1
        rig.sock = NotifySocket(tmp_path)  # back at the same path
        assert rig.tick() == {"READY": "1", "STATUS": "figures", "WATCHDOG": "1"}
        assert rig.notifier.pings == 1
    finally:
        rig.sd.close()
        rig.sock.close()
