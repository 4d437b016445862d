"""What the PT pack BMS's registers mean, and the pure decoders of their 16-bit words.

Facts from protocols.md §2.1 (the public lab notes of martinbogo/pt-battery-diagnostics,
restated there). Where the notes are unsure the table says so and the decoders keep the raw
word beside the value (`pack.PackValues`), so a later, better scale can be applied to old logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final


class Certainty(Enum):
    SURE = "confirmed by the notes' real values"
    DOUBTFUL = "the notes' author doubts it"
    UNSETTLED = "two notes disagree"
    UNKNOWN = "meaning unknown"


@dataclass(frozen=True, slots=True)
class Register:
    number: int
    name: str
    entries: int  # 1: a single value; more: a list, the next entry on each repeated read
    meaning: str
    certainty: Certainty
    read: bool  # read by the driver


SOC: Final = 0x1D
CHARGE_CURRENT: Final = 0xD4
AVG_TEMP: Final = 0x95
SENSORS: Final = 0x17
CELLS: Final = 0x96
IDENTITY: Final = 0xC6

SENSOR_COUNT: Final = 4
CELL_GROUPS: Final = 23  # a lithium pack; NiMH packs have 6 and answer at another address
IDENTITY_ENTRIES: Final = 38  # indexes 0x00-0x25 in the real dump (the notes say "37 reads")
SERIAL_INDEXES: Final = range(0x15, 0x21)  # 12 characters
REVISION_INDEXES: Final = range(0x0C, 0x0E)  # 2 characters

# fmt: off
REGISTERS: Final[Mapping[int, Register]] = {r.number: r for r in (
    Register(SOC, "state of charge", 1, "percent in the LSB (MSB 0xFF in the real read)",
             Certainty.DOUBTFUL, read=True),
    Register(CHARGE_CURRENT, "charge current", 1,
             "signed word / 0.128 = amperes (the author's words; scale unverified)",
             Certainty.UNSETTLED, read=True),
    Register(AVG_TEMP, "average pack temperature", 1, "12-bit reading, sensors' scale",
             Certainty.SURE, read=True),
    Register(SENSORS, "temperature sensors", SENSOR_COUNT,
             "top nibble the sensor index, low 12 bits the reading", Certainty.SURE, read=True),
    Register(0xD7, "temperature sensors (mirror of 0x17)", SENSOR_COUNT, "as 0x17",
             Certainty.SURE, read=False),
    Register(CELLS, "cell-group voltages", CELL_GROUPS,
             "top 5 bits the group, low bits an ADC value; scale 8 V/1023 (10 bit) or "
             "4.2 V/4096 (12 bit)", Certainty.UNSETTLED, read=True),
    Register(0x56, "cell-group voltages (mirror of 0x96)", CELL_GROUPS, "as 0x96",
             Certainty.UNSETTLED, read=False),
    Register(IDENTITY, "identity", IDENTITY_ENTRIES,
             "[checksum][index][ASCII]: revision at 0x0C-0x0D, serial at 0x15-0x20",
             Certainty.SURE, read=True),
    Register(0x0C, "unknown list", 31, "31 entries, meaning unknown", Certainty.UNKNOWN,
             read=False),
    Register(0xCC, "unknown list (mirror of 0x0C)", 31, "as 0x0C", Certainty.UNKNOWN,
             read=False),
)}
# fmt: on

_TEMP_STEP_C: Final = 0.0625  # 1/16 °C: the notes' tool; the real reads then say 21-24 °C
_CELL_ADC_MASK: Final = 0x3FF  # the later note and the tool: a 10-bit ADC
_CELL_RAW_MASK: Final = 0x7FF  # every bit below the 5-bit group index: kept raw
_CELL_VOLTS_PER_STEP: Final = 8.0 / 1023
_CELL_INVALID: Final = 0x3FF  # the tool shows a full-scale ADC as "ERROR/INVALID"
_CURRENT_DIVISOR: Final = 0.128


def signed16(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


def soc_pct(word: int) -> float | None:
    """State of charge from register 0x1D's word: the LSB, None when it is no percentage."""
    pct = word & 0xFF
    return float(pct) if pct <= 100 else None


def charge_current_a(word: int) -> float:
    """Register 0xD4 as amperes, by the notes' rule (signed word / 0.128; unverified)."""
    return signed16(word) / _CURRENT_DIVISOR


def temperature_c(reading: int) -> float:
    """A 12-bit temperature reading (two's complement, 1/16 °C) in °C."""
    value = reading & 0xFFF
    if value & 0x800:
        value -= 0x1000
    return value * _TEMP_STEP_C


def sensor_entry(word: int) -> tuple[int, int]:
    """(sensor index, 12-bit reading) of one entry of register 0x17."""
    return word >> 12, word & 0xFFF


def cell_entry(word: int) -> tuple[int, int]:
    """(group index, raw ADC bits) of one entry of register 0x96."""
    return word >> 11, word & _CELL_RAW_MASK


def cell_volts(raw: int) -> float | None:
    """A cell group's voltage from its raw bits by the 10-bit rule; None for a full-scale ADC."""
    adc = raw & _CELL_ADC_MASK
    if adc == _CELL_INVALID:
        return None
    return adc * _CELL_VOLTS_PER_STEP


def identity_entry(word: int) -> tuple[int, int]:
    """(index, character code) of one entry of register 0xC6."""
    return word >> 8, word & 0xFF


def _text(chars: Mapping[int, int], indexes: range) -> str | None:
    codes = [chars.get(i) for i in indexes]
    if any(c is None or not 0x21 <= c <= 0x7E for c in codes):
        return None  # a gap or a non-printable byte: no serial rather than a wrong one
    return "".join(chr(c) for c in codes if c is not None)


def serial_number(chars: Mapping[int, int]) -> str | None:
    """The pack's serial number from the identity entries (index -> character code)."""
    return _text(chars, SERIAL_INDEXES)


def revision(chars: Mapping[int, int]) -> str | None:
    """The pack's revision ("AH") from the identity entries."""
    return _text(chars, REVISION_INDEXES)


IDENTITY_WANTED: Final = frozenset((*SERIAL_INDEXES, *REVISION_INDEXES))
SENSORS_WANTED: Final = frozenset(range(SENSOR_COUNT))
CELLS_WANTED: Final = frozenset(range(CELL_GROUPS))
