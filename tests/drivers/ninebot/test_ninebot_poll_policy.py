"""Fewer exchanges per cycle and fewer cycles per docked scooter: the agent's lighter polling.

The combined reads against an emulated scooter on a real PTY (decoded exactly as the
documented smaller reads are; a unit that leaves a long read unanswered falls back to
them), and the poll interval chosen from each reading's state, seen through the
driver's tick hook (the interval it asks for), never through timing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import ValidationError

from fleet.drivers.ninebot.config import NinebotSerialConfig
from fleet.drivers.ninebot.poll import (
    HOST_SERIAL,
    SCHEDULE,
    ReadRequest,
    encode_read,
    poll_interval,
    requests_for_cycle,
    split_schedule,
)
from fleet.drivers.ninebot.registers import MODELS, Target
from fleet.drivers.ninebot.serial import NinebotSerial, PortLink, open_port, until_next_tick
from fleet.drivers.ninebot.session import SPLIT_AFTER, Exchange, PollResult
from fleet.drivers.readings import State
from tests.drivers.emulators.ninebot import NinebotEmulator, PtyScooter, ScooterState
from tests.drivers.emulators.recording import RecordingSink, until

DEVICE = "seg-12"
ESC, BMS = Target.ESC, Target.BMS


@pytest.fixture
def scooter(tmp_path, request) -> Iterator[PtyScooter]:
    model = getattr(request, "param", "es")
    sc = PtyScooter(tmp_path / "ttyNB0", NinebotEmulator(ScooterState(model=model)))
    yield sc
    with contextlib.suppress(OSError):
        sc.close()


@contextlib.asynccontextmanager
async def exchange_on(
    scooter: PtyScooter, schedule: tuple[ReadRequest, ...] = SCHEDULE, timeout_s: float = 0.5
) -> AsyncIterator[Exchange]:
    """An Exchange over the driver's own port I/O, on the scooter's real PTY."""
    link: PortLink | None = None

    async def send(data: bytes) -> None:
        assert link is not None
        link.write(data)

    model = MODELS[scooter.emulator.state.model]
    exchange = Exchange(model, HOST_SERIAL, send, timeout_s, schedule, name=DEVICE)
    link = PortLink(await open_port(str(scooter.port), 115200), exchange.feed)
    try:
        yield exchange
    finally:
        link.close()


def last_state(sink: RecordingSink) -> State | None:
    status = sink.readings[-1].status
    return None if status is None else status.state


def asked(scooter: PtyScooter) -> list[tuple[int, int, int]]:
    return [(r.target, r.reg, r.payload[0]) for r in scooter.emulator.requests]


# --- the combined reads -----------------------------------------------------------------------


def test_the_split_schedule_is_the_documented_one():
    # What the driver asked before the reads were combined, cycle by cycle: the fallback
    # must be exactly that, and no read in it longer than the public captures show.
    documented = (
        ReadRequest(ESC, 0xB0, 32),
        ReadRequest(ESC, 0x24, 4, every=10),
        ReadRequest(BMS, 0x30, 24),
        ReadRequest(BMS, 0x40, 32, every=10),
        ReadRequest(ESC, 0x1A, 2, every=60),
    )
    split = split_schedule()
    for cycle in range(120):
        assert sorted(
            (r.target, r.reg, r.nbytes) for r in requests_for_cycle(cycle, split)
        ) == sorted((r.target, r.reg, r.nbytes) for r in requests_for_cycle(cycle, documented))
    assert max(r.nbytes for r in split) <= 32
    # ...and the combined schedule reads every register the split one does.
    regs = {(r.target, reg) for r in SCHEDULE for reg in range(r.reg, r.last_reg + 1)}
    assert {(r.target, reg) for r in split for reg in range(r.reg, r.last_reg + 1)} <= regs
    assert [len(requests_for_cycle(c)) for c in range(10)] == [3] + [2] * 9


@pytest.mark.integration
@pytest.mark.parametrize("scooter", ["es", "m365"], indirect=True)
async def test_the_combined_reads_decode_as_the_documented_reads(scooter):
    results: list[PollResult] = []
    for schedule in (SCHEDULE, split_schedule()):
        async with exchange_on(scooter, schedule) as exchange:
            results.append(await exchange.poll(0))  # cycle 0 asks everything once
    combined, split = results
    assert combined.asked == combined.answered == 3
    assert split.asked == split.answered == 5
    assert combined.esc == split.esc
    assert combined.bms == split.bms
    # Not two empty decodes: every value of the emulated scooter is there.
    assert combined.bms.pct == 86
    assert combined.bms.cells_mv == tuple(3847 + i for i in range(10))
    assert combined.esc.firmware == "1.3.9"
    assert combined.esc.range_km == pytest.approx(21.0)
    assert combined.esc.odometer_km == pytest.approx(1234.567)
    assert asked(scooter) == [
        (ESC, 0xB0, 32),
        (ESC, 0x1A, 24),
        (BMS, 0x30, 64),
        (ESC, 0xB0, 32),
        (ESC, 0x24, 4),
        (ESC, 0x1A, 2),
        (BMS, 0x30, 24),
        (BMS, 0x40, 32),
    ]


@pytest.mark.integration
async def test_a_unit_silent_to_long_reads_is_asked_the_documented_ones(scooter):
    scooter.emulator.max_read_bytes = 32  # an older BMS with a smaller reply buffer
    async with exchange_on(scooter, timeout_s=0.25) as exchange:
        for cycle in range(SPLIT_AFTER):
            result = await exchange.poll(cycle)
            # The ESC still answers meanwhile: its values are published, the BMS's missing.
            assert result.esc.odometer_km == pytest.approx(1234.567)
            assert result.bms.pct is None
        assert [(r.target, r.reg, r.nbytes) for r in exchange.split] == [(BMS, 0x30, 64)]
        before = len(scooter.emulator.requests)
        result = await exchange.poll(SPLIT_AFTER * 10)  # a cycle that reads the cells too
    assert result.bms.pct == 86
    assert result.bms.cells_mv == tuple(3847 + i for i in range(10))
    assert asked(scooter)[before:] == [
        (ESC, 0xB0, 32),
        (ESC, 0x1A, 24),  # 24 bytes: answered, so never split
        (BMS, 0x30, 24),
        (BMS, 0x40, 32),
    ]


@pytest.mark.integration
async def test_a_silent_scooter_keeps_the_combined_reads(scooter):
    # Switched off (or the wire unplugged): nothing answers, which says nothing about sizes.
    async with exchange_on(scooter, timeout_s=0.2) as exchange:
        assert (await exchange.poll(1)).bms.pct == 86
        scooter.emulator.silent = True
        for cycle in range(SPLIT_AFTER + 2):
            result = await exchange.poll(cycle)
            assert result.answered == 0
            # Nothing stale is republished: what was not answered is empty.
            assert result.bms.pct is None
            assert result.esc.odometer_km is None
        assert exchange.split == []
        assert asked(scooter)[-1] == (BMS, 0x30, 64)
    scooter.emulator.silent = False
    async with exchange_on(scooter) as exchange:
        result = await exchange.poll(0)
    assert result.answered == 3
    assert result.bms.pct == 86


# --- the poll interval follows the scooter's state ----------------------------------------------


def test_the_interval_of_each_state():
    intervals = {"riding_s": 1.0, "idle_s": 30.0, "charging_s": 60.0}
    assert poll_interval(State.RIDING, **intervals) == 1.0
    assert poll_interval(State.FAULT, **intervals) == 1.0
    assert poll_interval(None, **intervals) == 1.0  # unanswered or stateless: find out soon
    assert poll_interval(State.IDLE, **intervals) == 30.0
    assert poll_interval(State.DOCKED, **intervals) == 30.0
    assert poll_interval(State.CHARGING, **intervals) == 60.0
    # never slower than the fast interval is fast
    assert poll_interval(State.IDLE, riding_s=120.0, idle_s=30.0, charging_s=60.0) == 120.0


def test_ticks_are_multiples_of_the_interval():
    # (cycle start, now, interval)
    assert until_next_tick(12.25, 12.25, 1.0) == pytest.approx(0.75)  # a first cycle: aligned
    assert until_next_tick(20.0, 20.01, 10.0) == pytest.approx(9.99)  # on a tick: the next one
    assert until_next_tick(25.0, 25.5, 10.0) == pytest.approx(4.5)
    assert until_next_tick(30.0, 40.2, 10.0) == 0.0  # overran its interval: at once
    assert 0 < until_next_tick(1_000_003.5, 1_000_003.5, 0.05) <= 0.05


def test_slow_intervals_set_below_the_fast_one_are_refused():
    with pytest.raises(ValidationError, match=r"idle_poll_interval_s .* below poll_interval_s"):
        NinebotSerialConfig(device=DEVICE, port="/dev/x", poll_interval_s=5, idle_poll_interval_s=2)
    with pytest.raises(ValidationError, match="charging_poll_interval_s"):
        NinebotSerialConfig(
            device=DEVICE, port="/dev/x", poll_interval_s=5, charging_poll_interval_s=4.9
        )
    # Left at their defaults they follow a slow fast interval instead (an older config).
    cfg = NinebotSerialConfig(device=DEVICE, port="/dev/x", poll_interval_s=30)
    assert cfg.idle_poll_interval_s == 10.0
    assert poll_interval(
        State.IDLE,
        riding_s=cfg.poll_interval_s,
        idle_s=cfg.idle_poll_interval_s,
        charging_s=cfg.charging_poll_interval_s,
    ) == pytest.approx(30.0)


@pytest.mark.integration
async def test_docked_and_charging_scooters_are_polled_at_their_slow_intervals(scooter):
    cfg = NinebotSerialConfig(
        device=DEVICE,
        port=str(scooter.port),
        poll_interval_s=0.05,
        idle_poll_interval_s=30.0,
        charging_poll_interval_s=60.0,
        response_timeout_s=0.2,
        offline_after_misses=2,
    )
    waits: list[float] = []  # the interval the driver waits for after each cycle

    def tick_delay(started: float, now: float, interval: float) -> float:
        waits.append(interval)
        return 0.0  # no real wait: each cycle follows the last at once

    state = scooter.emulator.state
    sink = RecordingSink()
    task = asyncio.create_task(NinebotSerial(cfg, tick_delay=tick_delay).run(sink))

    async def after_change(expected: float) -> list[float]:
        """The waits from the change on, once `expected` was chosen 3 cycles in a row."""
        start = len(waits)
        await until(lambda: waits[-3:] == [expected] * 3 and len(waits) >= start + 4, within=20)
        # The cycle under way when the state changed may still have read the old one:
        # the next one must have seen it. That is: within one (slow) interval.
        assert waits[start + 1 :] == [expected] * len(waits[start + 1 :])
        return waits[start:]

    try:
        await until(lambda: len(waits) >= 3, message="riding cycles")
        assert set(waits) == {0.05}
        state.charging = state.charger_plugged = True
        await after_change(60.0)
        assert last_state(sink) is State.CHARGING
        state.charging = state.charger_plugged = False
        state.speed_kmh = 0.0  # unplugged, standing in the dock
        await after_change(30.0)
        assert last_state(sink) is State.IDLE
        state.speed_kmh = 14.0  # ridden away
        await after_change(0.05)
        state.speed_kmh = 0.0
        await after_change(30.0)
        scooter.emulator.silent = True  # an unanswered poll: back to the fast interval
        await after_change(0.05)
        await until(lambda: sink.online(DEVICE) is False, message="offline")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- the port read and written through its descriptor --------------------------------------------


@pytest.mark.integration
async def test_the_port_link_reports_a_lost_port_and_a_consumer_bug(scooter):
    def buggy(data: bytes) -> None:
        raise RuntimeError("a bug in the consumer")

    request = encode_read(SCHEDULE[0], MODELS["es"], HOST_SERIAL)
    link = PortLink(await open_port(str(scooter.port), 115200), buggy)
    link.write(request)
    lost = await asyncio.wait_for(link.lost, 5)
    assert isinstance(lost, RuntimeError)  # not swallowed by the event loop
    link.close()

    received: list[bytes] = []
    link = PortLink(await open_port(str(scooter.port), 115200), received.append)
    link.write(request)
    await until(lambda: received, message="a reply")
    scooter.unplug()  # the adapter vanishes
    assert isinstance(await asyncio.wait_for(link.lost, 5), OSError)
    with pytest.raises(ConnectionError):
        link.write(b"\x00")
    link.close()
