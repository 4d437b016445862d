"""`ninebot_ble` through bleak's public `backend=` hook, with scooters that speak real NUS bytes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

import pytest

from fleet.drivers.ninebot.ble import PRESS_BUTTON_DETAIL, NinebotBle
from fleet.drivers.ninebot.config import NinebotBleConfig
from fleet.drivers.readings import State
from tests.drivers.emulators.ninebot import ScooterState
from tests.drivers.emulators.ninebot_ble import Air
from tests.drivers.emulators.recording import RecordingSink, until

DEVICE = "seg-ble-3"
ADDRESS = "D4:3D:7E:12:34:56"


def config(**kw) -> NinebotBleConfig:
    base = {
        "device": DEVICE,
        "address": ADDRESS.lower(),
        "poll_interval_s": 0.05,
        "response_timeout_s": 0.1,
        "offline_after_misses": 2,
        "scan_timeout_s": 0.3,
        "reconnect_backoff_initial_s": 0.1,
        "reconnect_backoff_max_s": 0.4,
        "encrypted_backoff_initial_s": 0.1,
        "encrypted_backoff_max_s": 0.4,
        "pair_interval_s": 0.05,
        "key_dir": "/nonexistent/fleet-test-keys",  # a test that pairs passes its tmp_path
    }
    base.update(kw)
    return NinebotBleConfig.model_validate(base)


@contextlib.asynccontextmanager
async def running(air: Air, sink: RecordingSink, **kw) -> AsyncIterator[NinebotBle]:
    driver = NinebotBle(
        config(**kw),
        clock=lambda: 1_700_000_000_000,
        scanner_backend=air.scanner_backend,
        client_backend=air.client_backend,
    )
    task = asyncio.create_task(driver.run(sink))
    try:
        yield driver
        assert not task.done(), "the driver must only end when cancelled"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_readings_over_chunked_notifications():
    air = Air()
    sc = air.add(ADDRESS)
    sink = RecordingSink()
    async with running(air, sink):
        await until(lambda: len(sink.readings) >= 2, message="readings")
    r = sink.readings[-1]
    assert r.device == DEVICE
    assert r.battery is not None
    assert r.status is not None
    assert r.battery.pct == 86
    assert r.battery.voltage_v == pytest.approx(38.47)
    assert r.status.odometer_km == pytest.approx(1234.567)
    assert r.status.firmware == "1.3.9"
    assert r.status.rssi_dbm == -61  # from the advert the scan matched
    assert r.status.state is State.RIDING
    assert sink.availability_log == [(DEVICE, True, "")]
    assert sink.adverts > 0  # feeds the agent's BLE liveness watchdog
    assert sc.emulator.writes() == []
    assert 0 < sc.max_write_len <= 20


async def test_xiaomi_over_ble():
    air = Air()
    sc = air.add(ADDRESS, ScooterState(model="m365", speed_kmh=-1.5), name="MIScooter5678")
    sink = RecordingSink()
    async with running(air, sink, model="m365"):
        await until(lambda: sink.readings, message="readings")
    assert sink.readings[-1].status is not None
    assert sink.readings[-1].status.state is State.RIDING
    assert {r.cmd for r in sc.emulator.requests} == {0x01}


async def test_disconnect_then_reconnect_after_backoff():
    air = Air()
    sc = air.add(ADDRESS)
    sink = RecordingSink()
    async with running(air, sink, reconnect_backoff_initial_s=0.2):
        await until(lambda: sink.online(DEVICE) is True, message="online")
        sc.drop()
        await until(lambda: sink.online(DEVICE) is False, message="offline after drop")
        assert sink.availability_log[-1][2] == "disconnected"
        count = len(sink.readings)
        await until(lambda: sink.online(DEVICE) is True, message="online again")
        await until(lambda: len(sink.readings) > count, message="readings resume")
    assert sc.connections == 2
    assert sc.attempts[1] - sc.attempts[0] >= 0.2  # waited the backoff, no instant retry


async def test_failed_connects_back_off_exponentially():
    air = Air()
    sc = air.add(ADDRESS, refuse_connect=True)
    sink = RecordingSink()
    async with running(air, sink, reconnect_backoff_initial_s=0.05, reconnect_backoff_max_s=0.2):
        await until(lambda: len(sc.attempts) >= 5, within=5, message="retries")
        assert sink.online(DEVICE) is False
        assert "BLE error" in sink.availability_log[-1][2]
        sc.refuse_connect = False
        await until(lambda: sink.online(DEVICE) is True, within=5, message="connects at last")
    gaps = [b - a for a, b in itertools.pairwise(sc.attempts[:5])]
    assert gaps[0] >= 0.05
    assert gaps[2] >= 0.19  # 0.05, 0.1, 0.2 (cap), ...: growing, never a tight loop
    # one offline report for the whole outage, not one per attempt
    assert [o for _, o, _ in sink.availability_log] == [False, True]


async def test_scooter_out_of_range_goes_offline_and_is_found_again():
    air = Air()
    sc = air.add(ADDRESS)
    sink = RecordingSink()
    async with running(air, sink):
        await until(lambda: sink.online(DEVICE) is True, message="online")
        sc.advertising = False
        sc.drop()
        await until(
            lambda: sink.online(DEVICE) is False and "not seen" in sink.availability_log[-1][2],
            message="not seen",
        )
        sc.advertising = True
        await until(lambda: sink.online(DEVICE) is True, message="found again")


async def test_silent_scooter_is_reported_and_reconnected():
    air = Air()
    sc = air.add(ADDRESS)
    sc.emulator.silent = True
    sink = RecordingSink()
    async with running(air, sink):
        await until(lambda: sink.online(DEVICE) is False, message="offline")
        assert "no reply" in sink.availability_log[-1][2]
        sc.emulator.silent = False
        await until(lambda: sink.online(DEVICE) is True, message="online")


@pytest.mark.parametrize("noisy", [False, True], ids=["silent", "answers-encrypted"])
async def test_scooter_that_turns_encrypted_after_a_firmware_update_is_paired(tmp_path, noisy):
    # Unsupported encryption (Segway Encryption2, 5A B5) and the pairing itself are in
    # test_ninebot_crypto_ble.py; here, the switch from a plaintext link to an encrypted one.
    air = Air()
    sc = air.add(ADDRESS)
    sc.crypto.press_after = 2
    sink = RecordingSink()
    async with running(air, sink, key_dir=str(tmp_path)):
        await until(lambda: sink.online(DEVICE) is True, message="online")
        sc.encrypted = True
        if noisy:  # on the same link: the next plaintext read gets an encrypted reply
            sc.plaintext_reply = True
        else:  # a firmware update restarts the BLE board
            sc.drop()
        await until(
            lambda: (DEVICE, False, PRESS_BUTTON_DETAIL) in sink.availability_log,
            message="wants the button",
        )
        count = len(sink.readings)
        await until(lambda: len(sink.readings) > count, within=10, message="readings again")
    assert sc.crypto.stats.presses == 1
    assert sink.online(DEVICE) is True
    assert sc.emulator.writes() == []
    why = "the scooter answers encrypted now: reconnecting" if noisy else "disconnected"
    assert (DEVICE, False, why) in sink.availability_log


async def test_no_bluetooth_stack_is_reported_not_raised():
    # The real platform backend on a machine without Bluetooth / D-Bus.
    sink = RecordingSink()
    driver = NinebotBle(config(reconnect_backoff_initial_s=0.05, scan_timeout_s=0.2))
    task = asyncio.create_task(driver.run(sink))
    try:
        await until(lambda: sink.online(DEVICE) is False, within=5, message="offline")
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_charging_scooter_is_polled_at_the_charging_interval(monkeypatch):
    """The state of each reading picks the next poll's interval (poll.poll_interval, whose
    arithmetic tests/drivers/ninebot/test_ninebot_poll_policy.py checks); an unanswered poll
    goes back to the fast one."""
    import fleet.drivers.ninebot.ble as ble
    from fleet.drivers.ninebot.poll import poll_interval

    chosen: list[tuple[State | None, float]] = []

    def spy(state: State | None, **intervals: float) -> float:
        chosen.append((state, poll_interval(state, **intervals)))
        return 0.05  # keep the test quick: what matters is what the driver asked for

    monkeypatch.setattr(ble, "poll_interval", spy)
    air = Air()
    sc = air.add(ADDRESS, ScooterState(charging=True, charger_plugged=True, speed_kmh=0.0))
    sink = RecordingSink()
    async with running(air, sink, idle_poll_interval_s=40.0, charging_poll_interval_s=90.0):
        await until(lambda: (State.CHARGING, 90.0) in chosen, message="charging interval")
        sc.emulator.state.charging = sc.emulator.state.charger_plugged = False
        await until(lambda: (State.IDLE, 40.0) in chosen, message="idle interval")
    assert sink.readings[-1].status is not None
    assert sink.readings[-1].status.state is State.IDLE


def test_slow_ble_intervals_below_the_fast_one_are_refused():
    with pytest.raises(
        ValueError, match=r"charging_poll_interval_s \(2.0\) is below poll_interval_s"
    ):
        config(poll_interval_s=5.0, charging_poll_interval_s=2.0)
    follows = config(poll_interval_s=60.0)  # the defaults (30 s) follow a slower fast interval
    assert ble_intervals(follows) == (60.0, 60.0)


def ble_intervals(c: NinebotBleConfig) -> tuple[float, float]:
    from fleet.drivers.ninebot.poll import poll_interval

    kw = {"riding_s": c.poll_interval_s, "idle_s": c.idle_poll_interval_s}
    return (
        poll_interval(State.IDLE, charging_s=c.charging_poll_interval_s, **kw),
        poll_interval(State.CHARGING, charging_s=c.charging_poll_interval_s, **kw),
    )


async def test_ble_scooters_poll_on_the_shared_ticks():
    """Two scooters connected half an interval apart poll at the same instants: the multiples
    of the interval on the loop's clock, as the serial scooters do (poll.until_next_tick) -
    the loop wakes once a tick for all of them. Each scooter's own phase would keep them
    half an interval apart."""
    interval = 0.4
    loop = asyncio.get_running_loop()
    air = Air()
    starts: dict[str, list[float]] = {}
    for address in (ADDRESS, "D4:3D:7E:12:34:57"):
        emulator = air.add(address).emulator
        times = starts[address] = []

        def feed(data: bytes, emulator=emulator, times=times, feed=emulator.feed) -> bytes:
            reply: bytes = feed(data)
            if emulator.requests and emulator.requests[-1].reg == 0xB0:  # a cycle's first read
                times.append(loop.time())
            return reply

        emulator.feed = feed  # type: ignore[method-assign]
    sink = RecordingSink()
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(running(air, sink, poll_interval_s=interval))
        await asyncio.sleep(interval / 2)  # a bench pause, not a wait for a condition
        await stack.enter_async_context(
            running(air, sink, poll_interval_s=interval, address="d4:3d:7e:12:34:57")
        )
        await until(
            lambda: all(len(t) >= 4 for t in starts.values()), within=10, message="4 cycles each"
        )
    # The first cycle follows the connect at once; the later ones start on the ticks.
    for times in starts.values():
        for t in times[1:]:
            phase = t % interval
            assert min(phase, interval - phase) < 0.1, (times, interval)
