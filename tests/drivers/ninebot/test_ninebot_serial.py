"""`ninebot_serial` end to end through a real PTY pair with a scooter emulator on the far side."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest

from fleet.drivers.ninebot.config import NinebotSerialConfig
from fleet.drivers.ninebot.serial import NinebotSerial
from fleet.drivers.readings import Reading, State
from tests.drivers.emulators.ninebot import NinebotEmulator, PtyScooter, ScooterState
from tests.drivers.emulators.recording import RecordingSink, until

pytestmark = pytest.mark.integration  # real pseudo-terminals

DEVICE = "seg-12"


@pytest.fixture
def scooter(tmp_path, request) -> Iterator[PtyScooter]:
    model = getattr(request, "param", "es")
    sc = PtyScooter(tmp_path / "ttyNB0", NinebotEmulator(ScooterState(model=model)))
    yield sc
    with contextlib.suppress(OSError):
        sc.close()


def config(scooter: PtyScooter, **kw) -> NinebotSerialConfig:
    base = {
        "device": DEVICE,
        "port": str(scooter.port),
        "model": scooter.emulator.state.model,
        "poll_interval_s": 0.05,
        "idle_poll_interval_s": 0.05,
        "charging_poll_interval_s": 0.05,
        "response_timeout_s": 0.1,
        "offline_after_misses": 2,
        "reopen_backoff_initial_s": 0.05,
        "reopen_backoff_max_s": 0.2,
    }
    base.update(kw)
    return NinebotSerialConfig.model_validate(base)


@contextlib.asynccontextmanager
async def running(driver: NinebotSerial, sink: RecordingSink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(driver.run(sink))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert not task.done() or task.cancelled(), "the driver must only end when cancelled"


async def test_readings_carry_the_scooters_values(scooter):
    sink = RecordingSink()
    async with running(NinebotSerial(config(scooter), clock=lambda: 1_700_000_000_123), sink):
        await until(lambda: len(sink.readings) >= 3, message="readings")
    r = sink.readings[-1]
    assert r.device == DEVICE
    assert r.ts_ms == 1_700_000_000_123
    assert r.battery is not None
    assert r.status is not None
    assert r.battery.pct == 86
    assert r.battery.voltage_v == pytest.approx(38.47)
    assert r.battery.current_a == pytest.approx(-3.2)
    assert r.battery.temp_c == 27
    assert r.battery.health_pct == 96
    assert r.battery.charging is False
    assert r.status.odometer_km == pytest.approx(1234.567)
    assert r.status.range_km == pytest.approx(21.0)
    assert r.status.error_code == 0
    assert r.status.locked is False
    assert r.status.firmware == "1.3.9"
    assert r.status.state is State.RIDING
    assert sink.availability_log == [(DEVICE, True, "")]
    # read-only: every request was a register read
    assert scooter.emulator.requests
    assert scooter.emulator.writes() == []


@pytest.mark.parametrize("scooter", ["m365"], indirect=True)
async def test_xiaomi_framing_and_units(scooter):
    scooter.emulator.state.speed_kmh = -2.5  # m/h on the wire
    scooter.emulator.state.charging = True
    scooter.emulator.state.charger_plugged = True
    scooter.emulator.state.current_a = 1.8
    sink = RecordingSink()
    async with running(NinebotSerial(config(scooter)), sink):
        await until(lambda: sink.readings, message="readings")
    r = sink.readings[-1]
    assert r.battery is not None
    assert r.status is not None
    assert r.battery.charging is True
    assert r.battery.current_a == pytest.approx(1.8)
    assert r.status.state is State.CHARGING
    assert all(req.cmd == 0x01 for req in scooter.emulator.requests)


async def test_state_changes_show_up_in_later_readings(scooter):
    sink = RecordingSink()
    async with running(NinebotSerial(config(scooter)), sink):
        await until(lambda: sink.readings, message="first reading")
        scooter.emulator.state.speed_kmh = 0.0
        scooter.emulator.state.locked = True
        scooter.emulator.state.error_code = 0
        await until(
            lambda: sink.readings[-1].status and sink.readings[-1].status.locked,
            message="locked reading",
        )
        idle = sink.readings[-1].status
        assert idle is not None
        assert idle.state is State.IDLE
        scooter.emulator.state.error_code = 14
        await until(
            lambda: sink.readings[-1].status and sink.readings[-1].status.error_code == 14,
            message="fault reading",
        )
        fault = sink.readings[-1].status
        assert fault is not None
        assert fault.state is State.FAULT


async def test_silent_scooter_goes_offline_and_comes_back(scooter):
    sink = RecordingSink()
    async with running(NinebotSerial(config(scooter)), sink):
        await until(lambda: sink.online(DEVICE) is True, message="online")
        scooter.emulator.silent = True  # data wire off / scooter powered down
        await until(lambda: sink.online(DEVICE) is False, message="offline")
        detail = sink.availability_log[-1][2]
        assert "no reply" in detail
        assert str(scooter.port) in detail
        count = len(sink.readings)
        scooter.emulator.silent = False
        await until(lambda: sink.online(DEVICE) is True, message="back online")
        await until(lambda: len(sink.readings) > count, message="readings resume")
    assert [online for _, online, _ in sink.availability_log] == [True, False, True]


async def test_vanished_adapter_is_reopened_with_backoff(scooter):
    sink = RecordingSink()
    driver = NinebotSerial(config(scooter))
    async with running(driver, sink):
        await until(lambda: sink.online(DEVICE) is True, message="online")
        scooter.unplug()
        await until(lambda: sink.online(DEVICE) is False, message="offline on unplug")
        assert (
            "lost" in sink.availability_log[-1][2] or "cannot open" in sink.availability_log[-1][2]
        )
        scooter.plug()
        count = len(sink.readings)
        await until(lambda: sink.online(DEVICE) is True, message="online after replug")
        await until(lambda: len(sink.readings) > count, message="readings after replug")


async def test_missing_port_reports_offline_and_keeps_trying(tmp_path):
    cfg = NinebotSerialConfig(
        device=DEVICE,
        port=str(tmp_path / "nope"),
        reopen_backoff_initial_s=0.01,
        reopen_backoff_max_s=0.04,
    )
    sink = RecordingSink()
    attempts: list[str] = []

    async def open_serial(port: str, baud: int):
        attempts.append(port)
        raise OSError(2, "No such file or directory")

    async with running(NinebotSerial(cfg, open_serial=open_serial), sink):
        await until(lambda: len(attempts) >= 5, message="retries")
    assert sink.availability_log[0][:2] == (DEVICE, False)
    assert "cannot open" in sink.availability_log[0][2]
    assert len(sink.availability_log) == 1  # reported once, not on every retry


def test_readme_snippets_are_valid_configs():
    import pathlib
    import re
    import tomllib

    from fleet.drivers.ninebot.config import NinebotBleConfig

    readme = pathlib.Path(__file__).resolve().parents[3] / "drivers" / "ninebot" / "README.md"
    (block,) = re.findall(r"```toml\n(.*?)```", readme.read_text(), re.S)
    drivers = tomllib.loads(block)["agent"]["drivers"]
    models: dict[str, type[NinebotSerialConfig] | type[NinebotBleConfig]] = {
        "ninebot_serial": NinebotSerialConfig,
        "ninebot_ble": NinebotBleConfig,
    }
    assert sorted(d["kind"] for d in drivers) == sorted(models)
    for d in drivers:
        cfg = models[d["kind"]].model_validate(d)
        # the snippet shows the defaults: they must be the model's real defaults
        defaults = type(cfg)(**{k: d[k] for k in ("device", "port", "address") if k in d})
        assert cfg == defaults


@pytest.mark.parametrize("where", ["reply", "timeout"])
async def test_a_bug_in_a_cycles_callback_reaches_the_supervisor(scooter, where):
    """The cycles run in the loop's callbacks (the port's reader for a reply, a timer for a
    timeout), not in the driver's task: a bug raised there must still end `run` with it, for
    the agent's supervisor to log and restart, not vanish into the loop's exception handler."""

    class Broken(RecordingSink):
        def reading(self, reading: Reading) -> None:
            raise RuntimeError("a bug handing over a reading")

        def availability(self, device: str, online: bool, detail: str = "") -> None:
            if not online:
                raise RuntimeError("a bug handing over an offline")
            super().availability(device, online, detail)

    scooter.emulator.silent = where == "timeout"
    task = asyncio.create_task(NinebotSerial(config(scooter)).run(Broken()))
    with pytest.raises(RuntimeError, match="a bug handing over"):
        await asyncio.wait_for(task, 20)
