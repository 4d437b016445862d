"""A driver's `Reading` as v1 telemetry: its groups are the contract's own classes, sent as they are.

Validation happens here, in the agent, with the contract's own model: a driver
bug (a NaN, a percentage of 120) is refused before it leaves the sub-station,
instead of being dead-lettered by the collector.
"""

from __future__ import annotations

from typing import TypeVar

from fleet.daemon import wire
from fleet.daemon.wire.envelope import from_ms
from fleet.drivers import readings

_G = TypeVar("_G", readings.Battery, readings.Location, readings.Status)


def _present(group: _G | None) -> _G | None:
    """The contract has no empty groups: a group with nothing in it is left out."""
    return None if group in readings.EMPTY_GROUPS else group


def encode(reading: readings.Reading, seq: int) -> bytes:
    """The telemetry JSON of `reading` numbered `seq`; ValueError if it breaks the contract."""
    telemetry = wire.Telemetry.model_validate(
        {
            "schema": wire.SCHEMA,
            "device": reading.device,
            "seq": seq,
            "ts": from_ms(reading.ts_ms),
            "battery": _present(reading.battery),
            "location": reading.location,
            "status": _present(reading.status),
        }
    )
    return wire.encode_telemetry(telemetry)
