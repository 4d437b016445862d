"""What the agent publishes for a scooter, byte for byte, against what it published before
the agent's CPU work (the fused decode, the fast encoder, the shared tick).

Each case is an emulated scooter state on a real PTY, read by the `ninebot_serial` driver for
12 cycles (the firmware and range block comes on cycles 0 and 10; the split case needs 3
cycles to give up the 64-byte BMS read); each reading is encoded as the agent does
(`telemetry.encode`, seq = its number). GOLDEN holds, per case, the SHA-256 of those payloads
joined by newlines, recorded from the code before that work (commit 8398ff0) with
`.venv/bin/python -m tests.drivers.ninebot.test_ninebot_published_bytes` and PYTHONPATH at a
`git archive` of it. A change in any published byte - a value, a rounding, a None left in,
the key order, a state - fails here with the payloads printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sys
import tempfile
from pathlib import Path

import pytest

from fleet.daemon.agent.telemetry import encode
from fleet.drivers.ninebot.config import NinebotSerialConfig
from fleet.drivers.ninebot.serial import NinebotSerial
from tests.drivers.emulators.ninebot import NinebotEmulator, PtyScooter, ScooterState
from tests.drivers.emulators.recording import RecordingSink, until

pytestmark = pytest.mark.integration  # real pseudo-terminals

CYCLES = 12
TS_MS = 1_795_986_000_123


def _cases() -> dict[str, tuple[ScooterState, int | None]]:
    """name -> (the scooter's state, the longest read it answers; None: any)."""
    return {
        "es riding": (ScooterState(), None),
        "es standing, locked": (ScooterState(speed_kmh=0.3, locked=True), None),
        "es charging": (
            ScooterState(speed_kmh=0.0, charging=True, charger_plugged=True, current_a=2.1),
            None,
        ),
        "es plugged, not charging": (ScooterState(speed_kmh=0.0, charger_plugged=True), None),
        "es faulted": (ScooterState(error_code=12, alarm_code=3), None),
        "m365 reversing, charging": (
            ScooterState(model="m365", speed_kmh=-2.5, charging=True, current_a=1.8),
            None,
        ),
        "m365_pro 16 cells": (
            ScooterState(model="m365_pro", cells_mv=[3900 + 7 * i for i in range(16)]),
            None,
        ),
        "max firmware 1.2.3.4": (ScooterState(model="max", firmware=0x1234), None),
        "es glitches": (
            # voltage past the contract, a temperature past its sensor range, range not
            # available (the predicted range stands in), a dead cell slot, a speed past it
            ScooterState(
                voltage_v=700.0,
                temp1_c=140,
                range_km=655.35,
                speed_kmh=3000.0,
                cells_mv=[3847, 0, 3850, 4100, 0xFFFF],
            ),
            None,
        ),
        "es older BMS (split reads)": (ScooterState(speed_kmh=7.0), 32),
    }


async def _payloads(directory: Path, state: ScooterState, max_read: int | None) -> list[bytes]:
    emulator = NinebotEmulator(state)
    emulator.max_read_bytes = max_read
    scooter = PtyScooter(directory / "ttyNB0", emulator)
    cfg = NinebotSerialConfig.model_validate(
        {
            "device": "sw-0042",
            "port": str(scooter.port),
            "model": state.model,
            "response_timeout_s": 0.1,
            "offline_after_misses": 50,
        }
    )

    def next_cycle(started: float, now: float, interval: float) -> float:
        return 0.0  # at once: the readings, not the pace, are under test

    sink = RecordingSink()
    driver = NinebotSerial(cfg, clock=lambda: TS_MS, tick_delay=next_cycle)
    task = asyncio.create_task(driver.run(sink))
    try:
        await until(lambda: driver.cycles >= CYCLES, within=30, message="12 poll cycles")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        scooter.close()
    return [encode(r, seq) for seq, r in enumerate(sink.readings[:CYCLES], 1)]


def _digest(payloads: list[bytes]) -> str:
    return hashlib.sha256(b"\n".join(payloads)).hexdigest()


GOLDEN: dict[str, str] = {
    "es riding": "9cd8f4515ca04692cc0ecc86e4966c6dd4f12ab902df8eb8f784fbffbee790ba",
    "es standing, locked": "79d9ad68f444fb34947f85ca196623e982e703a0828b913c453d1cba53dc2e85",
    "es charging": "bbbaa5664817020c69c118f08b8f220cfa36326dd025394762727e8f08a53252",
    "es plugged, not charging": "f9480c313f4b11ac99193df8d6b14b7532f20204149a7da98f8432fd4f07be81",
    "es faulted": "e290031776902791cc413379615c0c04cd85a2bba5393bd43ba68b912f838533",
    "m365 reversing, charging": "9e6883dbf7ffa89c1a9ee45266601a0b1a56a5b8a4f86bd3d73dea39dad9230b",
    "m365_pro 16 cells": "c128e18ddfefce9dc50a598253483abe249472d39c22e8e5a7d4a8f496e1319a",
    "max firmware 1.2.3.4": "db3eaaf71e1d28f0e134eea4b50d80104bddee15564fe6a152dd6c5bc13db3bd",
    "es glitches": "21c83caf51dbb705b0c2aaca6aa9685b0a9494758f9f804ba619a6745488f710",
    "es older BMS (split reads)": "b2f402598c3c28b114adda5365bd60d8f4312eddfccf900a43267375058304d6",
}


@pytest.mark.parametrize("case", list(_cases()))
async def test_published_bytes_are_what_they_were(case, tmp_path):
    state, max_read = _cases()[case]
    payloads = await _payloads(tmp_path, state, max_read)
    assert len(payloads) == CYCLES
    digest = _digest(payloads)
    shown = "\n".join(p.decode() for p in payloads[:1] + payloads[9:11])
    assert digest == GOLDEN[case], f"{case}: published now (readings 1, 10, 11):\n{shown}"


async def _record() -> None:
    for case, (state, max_read) in _cases().items():
        with tempfile.TemporaryDirectory() as directory:
            payloads = await _payloads(Path(directory), state, max_read)
        print(f"    {case!r}: {_digest(payloads)!r},")
        print(f"    # {payloads[0].decode()}", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(_record())
