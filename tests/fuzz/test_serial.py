"""Hostile Ninebot / Xiaomi replies through real PTYs into the real driver and the whole agent.

Two scooters (Ninebot `5A A5` framing and Xiaomi `55 AA`) answer the driver's register
reads; each example queues hostile replies that take the place of the next genuine ones:
valid frames full of random register words, payloads of the wrong length, flipped bytes,
garbage, frames of other units, registers and framings, floods, a header that swallows the
next frame, silence. Nothing may crash a driver, every reading a driver reports must be
inside the v1 contract (the agent would drop it otherwise), and every one must arrive at the
broker as telemetry the collector accepts.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections import deque
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.drivers.ninebot.config import NinebotSerialConfig
from fleet.drivers.ninebot.serial import NinebotSerial
from tests.drivers.emulators.ninebot import (
    NinebotEmulator,
    PtyScooter,
    Request,
    ScooterState,
    ninebot_frame,
    xiaomi_frame,
)
from tests.fuzz.agent_rig import Counted, Refusals, running, spec
from tests.fuzz.cases import FUZZ, check_scale, examples_for, tally
from tests.fuzz.tape import Tape

pytestmark = pytest.mark.fuzz

Plan = Callable[[Request, bytes], bytes]  # (the request, the genuine reply) -> what is sent
REPLIES_PER_SCOOTER = 3  # per example


class HostileEmulator(NinebotEmulator):
    """Answers with queued plans instead of the genuine replies while there are any."""

    def __init__(self, state: ScooterState) -> None:
        super().__init__(state)
        self.plans: deque[Plan] = deque()
        self.answered = 0
        self.changed = threading.Condition()

    def _answer(self, req: Request) -> bytes:
        genuine = super()._answer(req)
        with self.changed:
            plan = self.plans.popleft() if self.plans else None
            self.answered += 1
            self.changed.notify_all()
        return genuine if plan is None else plan(req, genuine)

    def queue(self, plans: list[Plan]) -> int:
        """Queue `plans`; the answered count at which the driver has moved past all of them."""
        with self.changed:
            self.plans.extend(plans)
            return self.answered + len(self.plans) + 1

    def wait_answered(self, count: int, driver: NinebotSerial) -> bool:
        """Until the driver asked `count` times and then finished the poll cycle it was in."""
        with self.changed:
            if not self.changed.wait_for(lambda: self.answered >= count, timeout=20):
                return False
            cycles = driver.cycles
            # The cycle ends with its reading; the next one starts with a request (a notify).
            return self.changed.wait_for(lambda: driver.cycles > cycles, timeout=20)


def _frame(xiaomi: bool, unit: int, reg: int, payload: bytes) -> bytes:
    if xiaomi:
        return xiaomi_frame(unit + 3, 0x01, reg, payload[:253])
    return ninebot_frame(unit, 0x3D, 0x04, reg, payload[:255])


def plan(tape: Tape, xiaomi: bool) -> Plan:
    """One hostile reply, drawn now, shaped to the request when it comes."""
    kind = tape.weighted(
        [(3, "genuine"), (8, "values"), (1, "length"), (2, "corrupt"), (2, "garbage"),
         (2, "wrong"), (1, "flood"), (1, "framing"), (1, "echo"), (1, "trap"), (1, "silence")]
    )  # fmt: skip
    words = tape.take(64)
    garbage = tape.take(tape.below(33))
    unit, reg, cmd = tape.pick([0x20, 0x22, 0x21, 0x3D, 0x00]), tape.byte(), tape.byte()
    at, flip = tape.byte(), tape.byte() or 0x01
    count = 1 + tape.below(6)

    def send(req: Request, genuine: bytes) -> bytes:
        wanted = req.payload[0] if req.payload else 2
        if kind == "values":
            return _frame(xiaomi, req.target, req.reg, words.ljust(wanted, b"\xff")[:wanted])
        if kind == "length":
            return _frame(xiaomi, req.target, req.reg, words[: len(garbage)])
        if kind == "corrupt" and genuine:
            i = at % len(genuine)
            return genuine[:i] + bytes([genuine[i] ^ flip]) + genuine[i + 1 :] + genuine
        if kind == "garbage":
            return garbage + genuine
        if kind == "wrong":
            other = (
                ninebot_frame(unit, 0x3D, cmd, reg, words[:wanted])
                if not xiaomi
                else xiaomi_frame(unit, cmd, reg, words[:wanted])
            )
            return other + genuine
        if kind == "flood":
            return (
                b"".join(
                    _frame(
                        xiaomi, (0x20, 0x22)[i % 2], (reg + 7 * i) % 256, words[i : i + 2 + 2 * i]
                    )
                    for i in range(count)
                )
                + genuine
            )
        if kind == "framing":
            return _frame(not xiaomi, req.target, req.reg, words[:wanted]) + genuine
        if kind == "echo":  # a half-duplex bus hears its own request first
            header = b"\x55\xaa" if xiaomi else b"\x5a\xa5"
            return header + garbage + genuine
        if kind == "trap":  # a header whose length swallows the genuine reply: a timeout
            return (b"\x55\xaa\xff" if xiaomi else b"\x5a\xa5\xff") + genuine
        if kind == "silence":
            return b""
        return genuine

    return send


def config(scooter: PtyScooter, device: str) -> NinebotSerialConfig:
    return NinebotSerialConfig(
        device=device,
        port=str(scooter.port),
        model=scooter.emulator.state.model,
        poll_interval_s=0.001,
        idle_poll_interval_s=0.001,  # random words say idle or charging: no slower there
        charging_poll_interval_s=0.001,
        response_timeout_s=0.02,  # silence and swallowed replies cost this each
        offline_after_misses=3,
        reopen_backoff_initial_s=0.01,
        reopen_backoff_max_s=0.05,
    )


def test_serial_frames_through_the_agent(tmp_path, mqtt_broker):
    t = tally("serial frames (agent)")
    scooters = {
        "seg-es": PtyScooter(tmp_path / "ttyES", HostileEmulator(ScooterState(model="es"))),
        "seg-m365": PtyScooter(tmp_path / "ttyM365", HostileEmulator(ScooterState(model="m365"))),
    }
    counters: dict[str, Counted] = {}
    specs = []
    for device, scooter in scooters.items():
        cfg = config(scooter, device)
        counters[device] = Counted(functools.partial(NinebotSerial, cfg))
        specs.append(
            spec(f"ninebot_serial:{device}", device, "segway", counters[device], ble=False)
        )
    try:
        with running(tmp_path, mqtt_broker, specs, list(counters.values())) as agent:
            per_example = REPLIES_PER_SCOOTER * len(scooters)

            @settings(FUZZ, max_examples=examples_for(per_example))
            @given(st.binary(max_size=64 * per_example))
            def one(data: bytes) -> None:
                t.examples += 1
                tape = Tape(data)
                refused = agent.invalid_readings
                targets = []
                for device, scooter in scooters.items():
                    emulator = scooter.emulator
                    assert isinstance(emulator, HostileEmulator)
                    xiaomi = emulator.xiaomi
                    plans = [plan(tape, xiaomi) for _ in range(REPLIES_PER_SCOOTER)]
                    targets.append((emulator, emulator.queue(plans), counters[device]))
                for emulator, target, counted in targets:
                    driver = counted.current
                    assert isinstance(driver, NinebotSerial)
                    assert emulator.wait_answered(target, driver), "the driver stopped asking"
                assert agent.invalid_readings == refused, refusals.lines[-1]
                t.add("reply", per_example)

            with Refusals().attached() as refusals:
                one()
        t.outcomes["readings (all published)"] = sum(c.readings for c in counters.values())
    finally:
        for scooter in scooters.values():
            with contextlib.suppress(OSError):
                scooter.close()
    check_scale(t)
