"""ESC and BMS register tables, per-model scale factors, and decode into `drivers.readings`.

Registers are 16-bit little-endian words addressed by word index; a read reply
for `ARG = k` carries words k, k+1, ... (protocols.md §1.5). Replies are absorbed
into a `RegisterBank` as raw words, and every meaning (which word, signed or
not, scale, offset, "not available" marker, plausible range) lives in the
tables below, not in branches. Scales that differ between scooter families are
named (`"speed"`, `"bms_current"`) and resolved through `MODELS`. How a `Field` is
decoded (a plan worked out once per table and model) is `fields.py`.

Decoding never raises: a missing word, a sentinel or an implausible value just
leaves that field None.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

from fleet.drivers.ninebot.fields import Field, Kind, decode_fields, decode_plan
from fleet.drivers.ninebot.frames import Framing
from fleet.drivers.readings import Battery, Reading, State, Status, within


class Target(IntEnum):
    """Bus addresses of the units we read (Ninebot SRC/DST; Xiaomi ADDR is these + 3 in replies)."""

    ESC = 0x20
    BMS = 0x22


@dataclass(frozen=True, slots=True)
class ModelProfile:
    name: str
    framing: Framing
    scales: Mapping[str, float]
    note: str


# Speed: ES quick-block speed is signed 0.1 km/h (verified on a real capture);
# M365 documents m/h. BMS current: positive raw = discharging (CamiAlfa), and the
# v1 contract wants negative while discharging, hence the negative factor.
MODELS: Mapping[str, ModelProfile] = {
    "es": ModelProfile(
        "es",
        Framing.NINEBOT,
        {"speed": 0.1, "bms_current": -0.01},
        "Ninebot ES1-ES4: units verified on a real UART capture",
    ),
    "max": ModelProfile(
        "max",
        Framing.NINEBOT,
        {"speed": 0.1, "bms_current": -0.01},
        "Ninebot Max G30: assumed ES units (5A A5 family); not verified on hardware",
    ),
    "m365": ModelProfile(
        "m365",
        Framing.XIAOMI,
        {"speed": 0.001, "bms_current": -0.01},
        "Xiaomi M365: m/h speed per CamiAlfa's BLE capture (firmware 1.3.4)",
    ),
    "m365_pro": ModelProfile(
        "m365_pro",
        Framing.XIAOMI,
        {"speed": 0.001, "bms_current": -0.01},
        "Xiaomi M365 Pro / Pro 2 / 1S / Lite: assumed M365 units; not verified on hardware",
    ),
}

_NA16 = 0xFFFF

ESC_FIELDS: tuple[Field, ...] = (
    Field("firmware_raw", 0x1A, Kind.U16),
    Field("range_km", 0x24, Kind.U16, scale=0.01, unavailable=_NA16),
    Field("predicted_range_km", 0x25, Kind.U16, scale=0.01, unavailable=_NA16),
    Field("error_code", 0xB0, Kind.U16),
    Field("alarm_code", 0xB1, Kind.U16),
    Field("state_bits", 0xB2, Kind.U16),
    Field("battery_pct", 0xB4, Kind.U16, valid=(0, 100)),
    Field("speed_kmh", 0xB5, Kind.I16, scale="speed"),
    Field("avg_speed_kmh", 0xB6, Kind.I16, scale="speed"),
    Field("odometer_km", 0xB7, Kind.U32, scale=0.001),
    Field("trip_km", 0xB9, Kind.U16, scale=0.01),
    Field("power_on_time_s", 0xBA, Kind.U16),
    Field("frame_temp_c", 0xBB, Kind.I16, scale=0.1, valid=(-50, 150)),
)

_CELL_FIRST = 0x40
_CELL_COUNT = 16

BMS_FIELDS: tuple[Field, ...] = (
    Field("status_bits", 0x30, Kind.U16),
    Field("remaining_mah", 0x31, Kind.U16),
    Field("pct", 0x32, Kind.U16, valid=(0, 100)),
    Field("current_a", 0x33, Kind.I16, scale="bms_current"),
    # 0..200 V is the v1 contract's range: 0xFFFF (655.35 V) from a glitching BMS must not
    # cost the whole reading.
    Field("voltage_v", 0x34, Kind.U16, scale=0.01, valid=(0, 200)),
    # each byte is degrees C + 20 ("0~119 -> -20~99 C")
    Field("temp1_c", 0x35, Kind.LO_BYTE, offset=-20, valid=(-20, 99)),
    Field("temp2_c", 0x35, Kind.HI_BYTE, offset=-20, valid=(-20, 99)),
    Field("health_pct", 0x3B, Kind.U16, valid=(0, 100)),
    *(
        # unused cell slots read 0 or 0xFFFF
        Field(f"cell{i + 1}_mv", _CELL_FIRST + i, Kind.U16, valid=(1, 6000))
        for i in range(_CELL_COUNT)
    ),
)

_CELL_NAMES = tuple(f"cell{i + 1}_mv" for i in range(_CELL_COUNT))

# Bit positions of the ESC boolean word (0x1D / 0xB2) and the BMS status word (0x30).
ESC_STATE_BITS: Mapping[str, int] = {
    "speed_limited": 0,
    "locked": 1,
    "alarm_active": 2,
    "ext_battery": 9,
    "activated": 11,
}
BMS_STATUS_BITS: Mapping[str, int] = {
    "discharging": 5,
    "charging": 6,
    "charger_plugged": 7,
    "over_discharged": 8,
    "over_charged": 9,
    "over_temperature": 10,
}

# Below this |speed| the scooter counts as standing (noise on a parked hall sensor).
_RIDING_MIN_KMH = 0.5


class RegisterBank:
    """Raw register words of one unit, filled from read replies."""

    def __init__(self) -> None:
        self.words: dict[int, int] = {}

    def absorb(self, start_reg: int, payload: bytes | bytearray) -> None:
        """Store the words of a read reply that starts at `start_reg` (a trailing odd byte is ignored)."""
        n = len(payload) // 2
        # One C call per reply, not a loop per word: two replies a second for each scooter.
        words = struct.unpack_from(f"<{n}H", payload)  # little-endian on any host
        self.words.update(zip(range(start_reg, start_reg + n), words, strict=True))

    def clear(self) -> None:
        self.words.clear()


def decode_bits(word: int | float | None, bits: Mapping[str, int]) -> dict[str, bool | None]:
    if not isinstance(word, int):
        return dict.fromkeys(bits)
    return {name: bool(word >> bit & 1) for name, bit in bits.items()}


@functools.lru_cache(maxsize=256)  # a fleet runs a handful of versions; asked every cycle
def format_firmware(raw: int) -> str:
    """Nibbles as dotted digits: 0x0134 -> "1.3.4", 0x1234 -> "1.2.3.4"."""
    nibbles = [raw >> 12 & 0xF, raw >> 8 & 0xF, raw >> 4 & 0xF, raw & 0xF]
    if nibbles[0] == 0:
        nibbles = nibbles[1:]
    return ".".join(str(n) for n in nibbles)


@dataclass(frozen=True, slots=True)
class EscTelemetry:
    error_code: int | None = None
    alarm_code: int | None = None
    locked: bool | None = None
    speed_limited: bool | None = None
    battery_pct: float | None = None
    speed_kmh: float | None = None  # negative while rolling backwards
    avg_speed_kmh: float | None = None
    odometer_km: float | None = None
    trip_km: float | None = None
    range_km: float | None = None
    predicted_range_km: float | None = None
    frame_temp_c: float | None = None
    firmware: str | None = None

    @property
    def empty(self) -> bool:
        return all(getattr(self, n) is None for n in self.__slots__)


@dataclass(frozen=True, slots=True)
class BmsTelemetry:
    remaining_mah: int | None = None
    pct: float | None = None
    current_a: float | None = None  # negative while discharging
    voltage_v: float | None = None
    temp1_c: float | None = None
    temp2_c: float | None = None
    health_pct: float | None = None
    charging: bool | None = None
    charger_plugged: bool | None = None
    cells_mv: tuple[int, ...] = ()

    @property
    def empty(self) -> bool:
        return all(getattr(self, n) in (None, ()) for n in self.__slots__)


def _num(v: float | int | None) -> float | None:
    return None if v is None else float(v)


def _int(v: float | int | None) -> int | None:
    return v if isinstance(v, int) else None


def decode_esc(words: Mapping[int, int], model: ModelProfile) -> EscTelemetry:
    v = decode_fields(ESC_FIELDS, words, model.scales)
    bits = decode_bits(v["state_bits"], ESC_STATE_BITS)
    fw = _int(v["firmware_raw"])
    return EscTelemetry(
        error_code=_int(v["error_code"]),
        alarm_code=_int(v["alarm_code"]),
        locked=bits["locked"],
        speed_limited=bits["speed_limited"],
        battery_pct=_num(v["battery_pct"]),
        speed_kmh=_num(v["speed_kmh"]),
        avg_speed_kmh=_num(v["avg_speed_kmh"]),
        odometer_km=_num(v["odometer_km"]),
        trip_km=_num(v["trip_km"]),
        range_km=_num(v["range_km"]),
        predicted_range_km=_num(v["predicted_range_km"]),
        frame_temp_c=_num(v["frame_temp_c"]),
        firmware=None if fw is None else format_firmware(fw),
    )


def decode_bms(words: Mapping[int, int], model: ModelProfile) -> BmsTelemetry:
    v = decode_fields(BMS_FIELDS, words, model.scales)
    bits = decode_bits(v["status_bits"], BMS_STATUS_BITS)
    cells = tuple(c for name in _CELL_NAMES if isinstance(c := v[name], int))
    return BmsTelemetry(
        remaining_mah=_int(v["remaining_mah"]),
        pct=_num(v["pct"]),
        current_a=_num(v["current_a"]),
        voltage_v=_num(v["voltage_v"]),
        temp1_c=_num(v["temp1_c"]),
        temp2_c=_num(v["temp2_c"]),
        health_pct=_num(v["health_pct"]),
        charging=bits["charging"],
        charger_plugged=bits["charger_plugged"],
        cells_mv=cells,
    )


def derive_state(esc: EscTelemetry, bms: BmsTelemetry) -> State | None:
    """Fault beats charging beats riding; a scooter that says nothing has no state."""
    if esc.error_code:
        return State.FAULT
    if bms.charging or bms.charger_plugged:
        return State.CHARGING
    if esc.speed_kmh is not None:
        return State.RIDING if abs(esc.speed_kmh) >= _RIDING_MIN_KMH else State.IDLE
    return None


def _cell_spread_v(cells_mv: tuple[int, ...]) -> float | None:
    """Max - min cell voltage: a pack drifting out of balance shows here before its capacity."""
    if len(cells_mv) < 2:
        return None
    return within(
        "cell_spread_v", round((max(cells_mv) - min(cells_mv)) / 1000, 3), group="battery"
    )


def to_reading(device: str, ts_ms: int, esc: EscTelemetry, bms: BmsTelemetry) -> Reading | None:
    """The v1-contract view of one poll; None when neither unit answered anything."""
    if esc.empty and bms.empty:
        return None
    temps = [t for t in (bms.temp1_c, bms.temp2_c) if t is not None]
    battery = Battery(
        pct=bms.pct if bms.pct is not None else esc.battery_pct,
        voltage_v=bms.voltage_v,
        current_a=bms.current_a,
        temp_c=max(temps) if temps else None,  # the hotter sensor is the one that matters
        charging=bms.charging,
        health_pct=bms.health_pct,
        cell_spread_v=_cell_spread_v(bms.cells_mv),
    )
    status = Status(
        state=derive_state(esc, bms),
        odometer_km=esc.odometer_km,
        range_km=esc.range_km if esc.range_km is not None else esc.predicted_range_km,
        error_code=esc.error_code,
        locked=esc.locked,
        firmware=esc.firmware,
        # The ESC's own speedometer: no GPS fix needed. A glitched word (the raw i16 spans
        # +-3276 km/h at 0.1 km/h) is left out rather than cost the whole reading.
        speed_kmh=within("speed_kmh", esc.speed_kmh, group="status"),
    )
    return Reading(device=device, ts_ms=ts_ms, battery=battery, status=status)


# Fields whose value makes EscTelemetry / BmsTelemetry non-empty (the ESC's power-on time is
# decoded but not kept there).
_ESC_KEPT = tuple(f.name for f in ESC_FIELDS if f.name != "power_on_time_s")
_BMS_KEPT = tuple(f.name for f in BMS_FIELDS)
_LOCKED = 1 << ESC_STATE_BITS["locked"]
_CHARGING = 1 << BMS_STATUS_BITS["charging"]
_PLUGGED = 1 << BMS_STATUS_BITS["charger_plugged"]


def reading_from_words(
    device: str,
    ts_ms: int,
    esc_words: Mapping[int, int],
    bms_words: Mapping[int, int],
    model: ModelProfile,
) -> Reading | None:
    """`to_reading(device, ts_ms, decode_esc(esc_words), decode_bms(bms_words))` in one pass.

    The same tables and plans, without the two intermediate views (building them and
    reading them back cost more than the decode itself, for every scooter every second).
    A property test holds it to the composition above for any register banks.
    """
    e = decode_plan(ESC_FIELDS, model.scales).decode(esc_words)
    b = decode_plan(BMS_FIELDS, model.scales).decode(bms_words)
    if all(e[n] is None for n in _ESC_KEPT) and all(b[n] is None for n in _BMS_KEPT):
        return None
    status_bits = b["status_bits"]
    charging = plugged = None
    if isinstance(status_bits, int):
        charging, plugged = bool(status_bits & _CHARGING), bool(status_bits & _PLUGGED)
    t1, t2 = _num(b["temp1_c"]), _num(b["temp2_c"])
    temp = t1 if t2 is None else t2 if t1 is None else max(t1, t2)
    pct = b["pct"]
    if pct is None:
        pct = e["battery_pct"]
    cells = tuple(c for name in _CELL_NAMES if isinstance(c := b[name], int))
    battery = Battery(
        pct=_num(pct),
        voltage_v=_num(b["voltage_v"]),
        current_a=_num(b["current_a"]),
        temp_c=temp,
        charging=charging,
        health_pct=_num(b["health_pct"]),
        cell_spread_v=_cell_spread_v(cells),
    )
    error_code = _int(e["error_code"])
    speed = _num(e["speed_kmh"])
    if error_code:
        state: State | None = State.FAULT
    elif charging or plugged:
        state = State.CHARGING
    elif speed is not None:
        state = State.RIDING if abs(speed) >= _RIDING_MIN_KMH else State.IDLE
    else:
        state = None
    state_bits, fw = e["state_bits"], _int(e["firmware_raw"])
    range_km = e["range_km"]
    if range_km is None:
        range_km = e["predicted_range_km"]
    status = Status(
        state=state,
        odometer_km=_num(e["odometer_km"]),
        range_km=_num(range_km),
        error_code=error_code,
        locked=bool(state_bits & _LOCKED) if isinstance(state_bits, int) else None,
        firmware=None if fw is None else format_firmware(fw),
        speed_kmh=within("speed_kmh", speed, group="status"),
    )
    return Reading(device=device, ts_ms=ts_ms, battery=battery, status=status)
