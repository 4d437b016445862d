"""Hostile BLE input through bleak's backend= hook into the real drivers and the whole agent.

Three drivers on one emulated radio: a plain BTHome device, an encrypted one (bind key) and
a handheld with the GATT Battery Service. Each example delivers, on the agent's own loop
as a real stack would, BTHome service data built from objects with random ids and values
(encrypted with the right key, a wrong one, or not at all; truncated, flipped, extended),
raw advertisement bytes, odd RSSI values, and Battery Level notifications of any length.
The handheld's firmware string is hostile too (quotes, unicode, 40 characters). Nothing may
crash a driver, every reading must be inside the v1 contract, and all must reach the broker.
"""

from __future__ import annotations

import threading

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from fleet.daemon.agent.app import Agent
from fleet.drivers.ble.battery import BleBattery
from fleet.drivers.ble.bthome import BTHome
from fleet.drivers.ble.config import BleBatteryConfig, BTHomeConfig
from fleet.drivers.ble.decode import BATTERY_LEVEL, BTHOME_SERVICE_DATA
from fleet.drivers.readings import LIMITS, firmware_label, within
from tests.drivers.emulators.ble import BleAir, handheld
from tests.fuzz.agent_rig import Counted, Refusals, running, spec
from tests.fuzz.cases import FUZZ, check_scale, examples_for, tally
from tests.fuzz.tape import Tape
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.fuzz

PLAIN, KEYED, CRADLED = "A4:C1:38:00:00:01", "A4:C1:38:00:00:02", "A4:C1:38:00:00:03"
KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
HOSTILE_FIRMWARE = '2.4.1 "béta"\\\n' + "x" * 40
CASES_PER_EXAMPLE = 4
Advert = tuple[str, dict[str, bytes], int]  # address, service data, RSSI
Case = tuple[str, bytes | Advert]  # ("level", notified bytes) or ("advert", Advert)

# BTHome v2 object ids and their value lengths (bthome.io/format), the battery ones first.
OBJECTS = {0x01: 1, 0x0C: 2, 0x4A: 2, 0x43: 2, 0x5D: 2, 0x02: 2, 0x45: 2, 0x57: 1, 0x58: 1,
           0x16: 1, 0x00: 1, 0x03: 2, 0x2E: 1, 0x3A: 1, 0x3F: 2, 0x51: 2, 0x5C: 4, 0x4B: 3}  # fmt: skip


def _encrypt(payload: bytes, address: str, key: bytes, counter: int) -> bytes:
    info = b"\x41"
    count = counter.to_bytes(4, "little")
    nonce = bytes.fromhex(address.replace(":", "")) + b"\xd2\xfc" + info + count
    sealed = AESCCM(key, tag_length=4).encrypt(nonce, payload, None)
    return info + sealed[:-4] + count + sealed[-4:]


def bthome_payload(tape: Tape, address: str) -> bytes:
    objects = b""
    for _ in range(1 + tape.below(4)):
        # Mostly known objects of their own size; now and then any id, any size.
        ident = tape.pick(list(OBJECTS)) if tape.byte() % 8 != 7 else tape.byte()
        size = OBJECTS.get(ident, 1) if tape.byte() % 8 != 7 else tape.below(5)
        objects += bytes([ident]) + tape.take(size).ljust(size, b"\0")
    how = tape.weighted([(6, "plain"), (3, "sealed"), (1, "wrong key"), (1, "info"), (1, "raw")])
    if how == "sealed" or how == "wrong key":
        key = KEY if how == "sealed" else bytes(16)
        payload = _encrypt(objects, address, key, tape.below(2**32))
    elif how == "info":
        payload = bytes([tape.byte()]) + objects
    elif how == "raw":
        payload = tape.take(tape.below(32))
    else:
        payload = b"\x40" + objects
    damage = tape.weighted([(8, "none"), (1, "truncate"), (1, "flip"), (1, "extend")])
    at = tape.below(len(payload) + 1)
    if damage == "truncate":
        return payload[:at]
    if damage == "flip" and payload:
        i = at % len(payload)
        return payload[:i] + bytes([payload[i] ^ (tape.byte() or 1)]) + payload[i + 1 :]
    if damage == "extend":
        return payload + tape.take(1 + tape.below(8))
    return payload


def deliveries(data: bytes) -> list[Case]:
    """The example's cases: ("advert", (address, service data, rssi)) or ("level", bytes)."""
    tape = Tape(data)
    out: list[Case] = []
    for _ in range(CASES_PER_EXAMPLE):
        kind = tape.weighted([(4, "plain"), (3, "keyed"), (2, "level"), (1, "other"), (1, "ad")])
        rssi = tape.pick([-60, -61, -127, 127, 0, 20, 21, -150, -151, -32768])
        if kind == "level":
            out.append(("level", tape.take(tape.weighted([(6, 1), (1, 0), (1, 2), (1, 3)]))))
        elif kind == "ad":  # service data under some other UUID, or none at all
            uuid = tape.pick(
                [
                    "0000fcd2-0000-1000-8000-00805f9b34fb",
                    "0000180f-0000-1000-8000-00805f9b34fb",
                    "not-a-uuid",
                ]
            )
            out.append(
                (
                    "advert",
                    (PLAIN, {uuid: tape.take(tape.below(24))} if tape.byte() % 2 else {}, rssi),
                )
            )
        else:
            address = {"plain": PLAIN, "keyed": KEYED, "other": "A4:C1:38:FF:FF:FF"}[kind]
            out.append(
                ("advert", (address, {BTHOME_SERVICE_DATA: bthome_payload(tape, address)}, rssi))
            )
    return out  # fmt: skip


def test_ble_advertisements_through_the_agent(tmp_path, mqtt_broker):
    t = tally("ble adverts (agent)")
    air = BleAir()
    phone = air.add(handheld(CRADLED, level=87, firmware=HOSTILE_FIRMWARE))
    plain = BTHomeConfig(device="hh-bt1", address=PLAIN, min_interval_s=0, offline_after_s=3600)
    keyed = BTHomeConfig(
        device="hh-bt2",
        address=KEYED,
        min_interval_s=0,
        offline_after_s=3600,
        bind_key=SecretStr(KEY.hex()),
    )
    cradled = BleBatteryConfig(
        device="hh-bat", address=CRADLED, poll_interval_s=3600, scan_timeout_s=5, reconnect_backoff_initial_s=0.05
    )  # fmt: skip
    counters = {
        "hh-bt1": Counted(lambda: BTHome(plain, scanner_backend=air.scanner_backend)),
        "hh-bt2": Counted(lambda: BTHome(keyed, scanner_backend=air.scanner_backend)),
        "hh-bat": Counted(
            lambda: BleBattery(
                cradled, scanner_backend=air.scanner_backend, client_backend=air.client_backend
            )
        ),
    }
    specs = [spec(f"ble:{d}", d, "handheld", c, ble=True) for d, c in counters.items()]
    with running(tmp_path, mqtt_broker, specs, list(counters.values())) as agent:
        connect(agent, air, phone)

        def deliver(cases: list[Case], done: threading.Event) -> None:
            try:
                for _, what in cases:
                    if isinstance(what, bytes):
                        phone.notify(BATTERY_LEVEL, what)
                    else:
                        address, service_data, rssi = what
                        air.advertise(address, service_data=service_data, rssi=rssi)
            finally:
                done.set()

        @settings(FUZZ, max_examples=examples_for(CASES_PER_EXAMPLE))
        @given(st.binary(max_size=48 * CASES_PER_EXAMPLE).map(deliveries))
        def one(cases: list[Case]) -> None:
            t.examples += 1
            refused = agent.invalid_readings
            done = threading.Event()
            # On the agent's loop, as bleak's callbacks run; the readings they make are
            # handed over before `done` (the sink runs synchronously on that loop).
            agent.on_loop(deliver, cases, done)
            assert done.wait(20), "the agent's loop did not run the deliveries"
            assert agent.invalid_readings == refused, refusals.lines[-1]
            for kind, _ in cases:
                t.add(kind)

        with Refusals().attached() as refusals:
            one()
        assert all(d.failures == 0 for d in agent.drivers)
    t.outcomes["readings (all published)"] = sum(c.readings for c in counters.values())
    check_scale(t)


def connect(agent: Agent, air: BleAir, phone: object) -> None:
    """Until the cradled handheld is connected and subscribed (it advertises meanwhile)."""

    def subscribed() -> bool:
        clients = getattr(phone, "clients", [])
        if not clients:
            agent.on_loop(air.advertise_peripherals)
        return bool(clients and clients[0]._subscriptions)

    wait_until(subscribed, timeout=20, message="the handheld connected and subscribed")


@given(st.text(max_size=80))
def test_firmware_labels_are_what_the_contract_takes(text):
    label = firmware_label(text)
    if label is not None:
        assert 1 <= len(label) <= 32
        assert all(0x20 <= ord(c) < 0x7F and c not in "\"'\\" for c in label)


def test_driver_limits_are_the_contracts():
    """What `within` lets through the collector takes, and what it drops the collector refuses."""
    import json

    from pydantic import ValidationError

    from fleet.daemon import wire

    for (group, name), (low, high) in LIMITS.items():
        for value, inside in ((low, True), (high, True), (low - 1, False), (high + 1, False)):
            assert (within(name, value, group=group) is not None) is inside, (name, value)
            fields = {"lat": 0, "lon": 0} if group == "location" else {}
            doc = {"schema": 1, "device": "d", "ts": 0, group: fields | {name: value}}
            try:
                wire.Telemetry.model_validate_json(json.dumps(doc))
            except ValidationError:
                assert not inside, (name, value)
            else:
                assert inside, (name, value)
