"""Register decode on the reference's M365/ES vectors, units per model, and the read-only schedule."""

from __future__ import annotations

import ast
import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.daemon.agent.telemetry import encode
from fleet.drivers.ninebot.frames import FrameDecoder, Framing
from fleet.drivers.ninebot.poll import (
    FORBIDDEN_REGISTERS,
    HOST_BLE,
    HOST_SERIAL,
    READ,
    SCHEDULE,
    WRITE_COMMANDS,
    ReadRequest,
    encode_read,
    read_reply_source,
    requests_for_cycle,
)
from fleet.drivers.ninebot.registers import (
    MODELS,
    BmsTelemetry,
    EscTelemetry,
    RegisterBank,
    Target,
    decode_bms,
    decode_esc,
    format_firmware,
    to_reading,
)
from fleet.drivers.readings import EMPTY_GROUPS, State
from tests.drivers.emulators.ninebot import ScooterState, ninebot_frame

H = bytes.fromhex
M365 = MODELS["m365"]
ES = MODELS["es"]


def bank_from(*wires: str) -> tuple[RegisterBank, Target | None]:
    bank = RegisterBank()
    unit = None
    for wire in wires:
        (frame,) = FrameDecoder().feed(H(wire), 0.0)
        unit = read_reply_source(frame)
        bank.absorb(frame.arg, frame.payload)
    return bank, unit


# --- Xiaomi M365 request/response pairs [DOC] (§1.6.2) -----------------------------------


@pytest.mark.parametrize(
    ("req", "reg", "nbytes", "target"),
    [
        ("55 AA 03 20 01 1A 02 BF FF", 0x1A, 2, Target.ESC),
        ("55 AA 03 20 01 25 02 B4 FF", 0x25, 2, Target.ESC),
        ("55 AA 03 20 01 3E 02 9B FF", 0x3E, 2, Target.ESC),
        ("55 AA 03 20 01 B0 20 0B FF", 0xB0, 32, Target.ESC),
        ("55 AA 03 22 01 31 0A 9E FF", 0x31, 10, Target.BMS),
        ("55 AA 03 22 01 3B 02 9C FF", 0x3B, 2, Target.BMS),
        ("55 AA 03 22 01 40 1E 7B FF", 0x40, 30, Target.BMS),
    ],
)
def test_m365_requests_are_byte_exact(req, reg, nbytes, target):
    assert encode_read(ReadRequest(target, reg, nbytes), M365, HOST_SERIAL) == H(req)


def test_m365_firmware_and_range():
    bank, unit = bank_from("55 AA 04 23 01 1A 34 01 88 FF", "55 AA 04 23 01 25 26 07 85 FF")
    assert unit is Target.ESC
    esc = decode_esc(bank.words, M365)
    assert esc.firmware == "1.3.4"
    assert esc.predicted_range_km == pytest.approx(18.30)


@pytest.mark.parametrize(
    ("wire", "pct", "avg_kmh", "odo_km", "trip_km", "temp_c"),
    [
        (
            "55 AA 22 23 01 B0 00 00 00 00 00 00 00 00 3D 00 00 00 50 46 8A 08 00 00 05 00 7C 02 18 01"
            " 00 00 00 00 00 00 00 00 08 FD",
            61,
            18.0,
            2.186,
            0.05,
            28.0,
        ),
        (
            "55 AA 22 23 01 B0 00 00 00 00 00 00 00 00 2F 00 00 00 00 00 86 65 00 00 00 00 10 02 2C 01"
            " 00 00 00 00 00 00 00 00 B0 FD",
            47,
            0.0,
            25.990,
            0.0,
            30.0,
        ),
        (
            "55 AA 22 23 01 B0 00 00 00 00 00 00 00 00 63 00 00 00 00 00 86 65 00 00 00 00 52 00 22 01"
            " 00 00 00 00 00 00 00 00 46 FD",
            99,
            0.0,
            25.990,
            0.0,
            29.0,
        ),
    ],
)
def test_m365_quick_block(wire, pct, avg_kmh, odo_km, trip_km, temp_c):
    bank, _ = bank_from(wire)
    esc = decode_esc(bank.words, M365)
    assert esc.battery_pct == pct
    assert esc.speed_kmh == 0
    assert esc.avg_speed_kmh == pytest.approx(avg_kmh)  # m/h on the M365: 18000 -> 18.0 km/h
    assert esc.odometer_km == pytest.approx(odo_km)
    assert esc.trip_km == pytest.approx(trip_km)
    assert esc.frame_temp_c == pytest.approx(temp_c)
    assert esc.error_code == 0
    assert esc.locked is False


def test_m365_bms_status_block():
    bank, unit = bank_from("55 AA 0C 25 01 31 36 1E 63 00 01 00 09 10 31 31 69 FE")
    assert unit is Target.BMS
    bms = decode_bms(bank.words, M365)
    assert bms.remaining_mah == 7734
    assert bms.pct == 99
    assert bms.current_a == pytest.approx(-0.01)  # +1 raw (10 mA discharging) -> negative
    assert bms.voltage_v == pytest.approx(41.05)
    assert (bms.temp1_c, bms.temp2_c) == (29, 29)


def test_m365_bms_health_and_cells():
    bank, _ = bank_from(
        "55 AA 04 25 01 3B 62 00 38 FF",
        "55 AA 20 25 01 40 02 10 0A 10 0B 10 09 10 06 10 0D 10 0E 10 0D 10 0F 10 07 10"
        " 00 00 00 00 00 00 00 00 00 00 75 FE",
    )
    bms = decode_bms(bank.words, M365)
    assert bms.health_pct == 98
    assert bms.cells_mv == (4098, 4106, 4107, 4105, 4102, 4109, 4110, 4109, 4111, 4103)


# --- Ninebot ES [CONSTRUCTED from the real capture] (§1.6.4) -----------------------------


def test_es_quick_block_from_ble_chunks():
    dec = FrameDecoder()
    chunks = (
        "5A A5 20 20 3E 04 B0 00 00 00 00 00 0A 25 1D 21 00 00 00 00",
        "00 41 02 00 00 00 00 06 00 FA 00 00 00 FF FF 00 00 FF FF 21",
        "F9",
    )
    frames = [f for c in chunks for f in dec.feed(H(c), 0.0)]
    bank = RegisterBank()
    bank.absorb(frames[0].arg, frames[0].payload)
    esc = decode_esc(bank.words, ES)
    assert esc.locked is False
    assert esc.battery_pct == 33
    assert esc.odometer_km == pytest.approx(0.577)
    assert esc.frame_temp_c == pytest.approx(25.0)
    assert esc.predicted_range_km is None  # 0xFFFF = not available


def test_es_battery_and_lock_and_firmware():
    bank, unit = bank_from(
        "5A A5 02 20 3E 04 22 21 00 58 FF",
        "5A A5 02 20 3E 04 1A 39 01 47 FF",
        "5A A5 02 20 3E 04 B2 00 0A DF FE",
    )
    assert unit is Target.ESC
    assert bank.words[0x22] == 33
    esc = decode_esc(bank.words, ES)
    assert esc.firmware == "1.3.9"
    assert esc.locked is False  # 0x0A00: bits 9 and 11, not bit 1


def test_locked_bit():
    bank = RegisterBank()
    bank.absorb(0xB2, H("02 0A"))  # capture: lock write sets 0x0A00 -> 0x0A02
    assert decode_esc(bank.words, ES).locked is True


# --- units per model, signed speed ------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "raw", "kmh"),
    [
        ("es", 123, 12.3),
        ("es", -45, -4.5),  # rolling backwards: signed 0.1 km/h
        ("max", 250, 25.0),
        ("m365", 18_000, 18.0),  # m/h
        ("m365", -1_500, -1.5),
        ("m365_pro", 25_000, 25.0),
    ],
)
def test_speed_units_per_model(model, raw, kmh):
    bank = RegisterBank()
    bank.absorb(0xB5, (raw & 0xFFFF).to_bytes(2, "little"))
    assert decode_esc(bank.words, MODELS[model]).speed_kmh == pytest.approx(kmh)


def test_negative_speed_from_a_real_frame():
    wire = ninebot_frame(0x20, 0x3E, 0x04, 0xB5, (-73 & 0xFFFF).to_bytes(2, "little"))
    (frame,) = FrameDecoder().feed(wire, 0.0)
    bank = RegisterBank()
    bank.absorb(frame.arg, frame.payload)
    esc = decode_esc(bank.words, ES)
    assert esc.speed_kmh == pytest.approx(-7.3)
    reading = to_reading("seg-1", 1, esc, BmsTelemetry())
    assert reading is not None
    assert reading.status is not None
    assert reading.status.state is State.RIDING


def test_models_pick_framing():
    assert {m.framing for n, m in MODELS.items() if n.startswith("m365")} == {Framing.XIAOMI}
    assert {MODELS["es"].framing, MODELS["max"].framing} == {Framing.NINEBOT}


def test_firmware_format():
    assert format_firmware(0x0134) == "1.3.4"
    assert format_firmware(0x1234) == "1.2.3.4"


# --- emulator state -> words -> reading (the contract's units) --------------------------


@pytest.mark.parametrize("model", sorted(MODELS))
def test_full_state_round_trip(model):
    st_ = ScooterState(model=model, speed_kmh=-3.4, locked=True, charging=False, error_code=0)
    esc = decode_esc(st_.esc_words(), MODELS[model])
    bms = decode_bms(st_.bms_words(), MODELS[model])
    r = to_reading("seg-7", 1_700_000_000_000, esc, bms)
    assert r is not None
    assert r.battery is not None
    assert r.status is not None
    assert r.battery.pct == 86  # the BMS wins over the ESC's 87
    assert r.battery.voltage_v == pytest.approx(38.47)
    assert r.battery.current_a == pytest.approx(-3.2)
    assert r.battery.temp_c == 27  # hotter of the two sensors
    assert r.battery.health_pct == 96
    assert r.battery.charging is False
    assert r.status.odometer_km == pytest.approx(1234.567)
    assert r.status.range_km == pytest.approx(21.0)
    assert r.status.locked is True
    assert r.status.firmware == "1.3.9"
    assert r.status.state is State.RIDING
    assert esc.speed_kmh == pytest.approx(-3.4)
    assert r.status.speed_kmh == pytest.approx(-3.4)  # the speedometer, sign kept
    assert r.battery.cell_spread_v == pytest.approx(0.009)  # cells 3847..3856 mV
    assert r.location is None  # no position: the speed is not in location
    assert esc.trip_km == pytest.approx(4.56)
    assert len(bms.cells_mv) == 10


@pytest.mark.parametrize(
    ("changes", "state"),
    [
        ({"speed_kmh": 0.0}, State.IDLE),
        ({"speed_kmh": 0.2}, State.IDLE),
        ({"speed_kmh": 0.0, "charging": True, "charger_plugged": True}, State.CHARGING),
        ({"speed_kmh": 0.0, "charger_plugged": True}, State.CHARGING),
        ({"error_code": 14, "charging": True}, State.FAULT),
    ],
)
def test_state_derivation(changes, state):
    s = ScooterState(**changes)
    esc, bms = decode_esc(s.esc_words(), ES), decode_bms(s.bms_words(), ES)
    r = to_reading("d", 1, esc, bms)
    assert r is not None
    assert r.status is not None
    assert r.status.state is state


@pytest.mark.parametrize(
    ("model", "raw", "kmh"),
    [
        ("es", 4000, 400.0),  # the contract's edge is kept
        ("es", 4001, None),  # a glitched word is left out, the reading is not lost
        ("es", -1001, None),
        ("es", -1000, -100.0),
        ("m365", 32767, 32.767),  # m/h can never leave the range
    ],
)
def test_status_speed_within_the_contract(model, raw, kmh):
    bank = RegisterBank()
    bank.absorb(0xB5, (raw & 0xFFFF).to_bytes(2, "little"))
    bank.absorb(0xB7, (1234567).to_bytes(4, "little"))
    r = to_reading("d", 1, decode_esc(bank.words, MODELS[model]), BmsTelemetry())
    assert r is not None
    assert r.status is not None
    assert r.status.odometer_km == pytest.approx(1234.567)
    assert r.status.speed_kmh == (None if kmh is None else pytest.approx(kmh))


@pytest.mark.parametrize(
    ("cells", "spread"),
    [((), None), ((3900,), None), ((3900, 3850, 3912), 0.062), ((4100, 2500), 1.6)],
)
def test_cell_spread_from_the_bms_cells(cells, spread):
    r = to_reading("d", 1, EscTelemetry(), BmsTelemetry(pct=50.0, cells_mv=cells))
    assert r is not None
    assert r.battery is not None
    assert r.battery.cell_spread_v == (None if spread is None else pytest.approx(spread))


def test_nothing_answered_is_no_reading():
    assert to_reading("d", 1, EscTelemetry(), BmsTelemetry()) is None


def test_implausible_and_unavailable_values_are_dropped():
    bank = RegisterBank()
    bank.absorb(0xB4, H("C8 00"))  # 200 %
    bank.absorb(0x24, H("FF FF"))
    esc = decode_esc(bank.words, ES)
    assert esc.battery_pct is None
    assert esc.range_km is None


# --- read-only: no write command, no lock/power register can be emitted -----------------


def test_schedule_only_reads_and_never_touches_forbidden_registers():
    for cycle in range(600):
        for req in requests_for_cycle(cycle):
            for model in MODELS.values():
                for host in (HOST_SERIAL, HOST_BLE):
                    (f,) = FrameDecoder().feed(encode_read(req, model, host), 0.0)
                    assert f.cmd == READ
                    assert f.cmd not in WRITE_COMMANDS
                    touched = range(f.arg, f.arg + f.payload[0] // 2)
                    assert not set(touched) & FORBIDDEN_REGISTERS


def test_schedule_covers_what_the_issue_asks_for():
    regs = {(r.target, r.reg + i) for r in SCHEDULE for i in range(r.nbytes // 2)}
    for reg in (0xB0, 0xB2, 0xB4, 0xB5, 0xB7, 0xB8, 0xB9, 0xBB, 0x24, 0x1A):
        assert (Target.ESC, reg) in regs
    for reg in (0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x40):
        assert (Target.BMS, reg) in regs


@pytest.mark.parametrize("reg", [0x70, 0x71, 0x79, 0x7C, 0x6F])
def test_reads_overlapping_lock_or_power_registers_are_refused(reg):
    with pytest.raises(ValueError, match="lock/power/config"):
        ReadRequest(Target.ESC, reg, 4)


@settings(max_examples=300, deadline=None)
@given(target=st.sampled_from(list(Target)), reg=st.integers(-5, 300), nbytes=st.integers(-2, 80))
def test_fuzz_any_request_is_a_safe_read_or_refused(target, reg, nbytes):
    try:
        req = ReadRequest(target, reg, nbytes)
    except ValueError:
        return
    (f,) = FrameDecoder().feed(encode_read(req, ES, HOST_SERIAL), 0.0)
    assert f.cmd == READ
    assert not set(range(reg, reg + nbytes // 2)) & FORBIDDEN_REGISTERS


def _calls_frames_encode(call: ast.Call) -> bool:
    """`encode(...)` or `frames.encode(...)`: the frame serializer, not `str.encode`."""
    func = call.func
    if isinstance(func, ast.Name):
        return func.id == "encode"
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "encode"
        and isinstance(func.value, ast.Name)
        and func.value.id == "frames"
    )


def test_only_the_poll_module_encodes_and_only_reads():
    # `frames.encode` is the one serializer; only poll.py may call it, and every
    # Frame(...) built there passes cmd=READ, so no 0x02/0x03 can slip in.
    pkg = pathlib.Path(__file__).resolve().parents[3] / "drivers" / "ninebot"
    built = 0
    for path in pkg.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if _calls_frames_encode(node):
                assert path.name == "poll.py", path
            if name == "Frame" and path.name != "frames.py":  # frames.py only decodes into Frame
                built += 1
                assert path.name == "poll.py", path
                cmd = next(k.value for k in node.keywords if k.arg == "cmd")
                assert isinstance(cmd, ast.Name)
                assert cmd.id == "READ"
    assert built == 2


# --- decoders never raise ---------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(0, 255),
    payload=st.binary(max_size=80),
    model=st.sampled_from(sorted(MODELS)),
)
def test_fuzz_register_decode_never_raises(start, payload, model):
    bank = RegisterBank()
    bank.absorb(start, payload)
    esc = decode_esc(bank.words, MODELS[model])
    bms = decode_bms(bank.words, MODELS[model])
    r = to_reading("d", 0, esc, bms)
    if r is not None and r.battery is not None and r.battery.pct is not None:
        assert 0 <= r.battery.pct <= 100
    if r is not None and (r.battery not in EMPTY_GROUPS or r.status not in EMPTY_GROUPS):
        # Whatever the words say, the agent can send the reading: one field outside the
        # contract (a glitched speed word) would cost the whole reading.
        encode(r, 1)
