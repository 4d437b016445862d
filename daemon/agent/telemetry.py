"""A driver's `Reading` as v1 telemetry: the one-to-one mapping of groups onto the wire model.

Validation happens here, in the agent, with the contract's own model: a driver
bug (a NaN, a percentage of 120) is refused before it leaves the sub-station,
instead of being dead-lettered by the collector.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from fleet.daemon import wire
from fleet.drivers import readings

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _group(model: type[BaseModel], group: Any) -> Any:
    if group is None:
        return None
    values = {f.name: getattr(group, f.name) for f in dataclasses.fields(group)}
    if all(value is None for value in values.values()):
        return None  # the contract has no empty groups: leave it out
    return model(**values)


def encode(reading: readings.Reading, seq: int) -> bytes:
    """The telemetry JSON of `reading` numbered `seq`; ValueError if it breaks the contract."""
    telemetry = wire.Telemetry.model_validate(
        {
            "schema": wire.SCHEMA,
            "device": reading.device,
            "seq": seq,
            # Exact milliseconds: a float of epoch seconds would round some of them.
            "ts": _EPOCH + timedelta(milliseconds=reading.ts_ms),
            "battery": _group(wire.Battery, reading.battery),
            "location": _group(wire.Location, reading.location),
            "status": _group(wire.Status, reading.status),
        }
    )
    return wire.encode_telemetry(telemetry)
