"""The telemetry JSON: its timestamps, the `Telemetry` model, and the reading a message becomes.

The groups are the contract's own classes from `drivers/readings.py` (one definition of field
names, types, units and ranges): pydantic validates a received message straight into them,
and validates the agent's outgoing ones the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from fleet.drivers.contract import ID_PATTERN
from fleet.drivers.readings import EMPTY_GROUPS, Battery, Location, Status

SCHEMA = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_TS_END = datetime(2262, 4, 11, tzinfo=UTC)  # InfluxDB's time is int64 nanoseconds


def iso(ts_ms: int, *, always_ms: bool = True) -> str:
    """Epoch ms as ISO-8601 UTC with Z (milliseconds always, or only when not zero)."""
    ms = ts_ms % 1000
    return f"{_EPOCH + ts_ms * _MS:%Y-%m-%dT%H:%M:%S}" + (f".{ms:03d}Z" if ms or always_ms else "Z")


def to_ms(dt: datetime) -> int:
    return (dt - _EPOCH) // _MS


def from_ms(ts_ms: int) -> datetime:
    """Exact: a float of epoch seconds would round some milliseconds."""
    return _EPOCH + ts_ms * _MS


def parse_ts(value: object) -> datetime:
    """ISO-8601 with a zone, or epoch seconds. A naive time is refused: whose clock is it?"""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError("ts_format", "is not an ISO-8601 date-time") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value < 10**10:  # also refuses NaN; catches epoch *milliseconds* sent as s
            raise PydanticCustomError("ts_range", "is outside 0..1e10 epoch seconds")
        value = datetime.fromtimestamp(value, UTC)
    if not isinstance(value, datetime):
        raise PydanticCustomError("ts_type", "must be an ISO-8601 string or epoch seconds")
    if value.utcoffset() is None:
        raise PydanticCustomError("ts_naive", "has no time zone; add Z or an offset like +01:00")
    if not _EPOCH <= value < _TS_END:
        raise PydanticCustomError("ts_range", "is outside 1970-01-01..2262-04-11")
    return value


def _format_ts(dt: datetime) -> str:
    return iso(to_ms(dt))


Timestamp = Annotated[datetime, PlainValidator(parse_ts), PlainSerializer(_format_ts)]


_G = TypeVar("_G", Battery | None, Status | None)


def not_empty(group: _G) -> _G:
    if group in EMPTY_GROUPS:
        raise PydanticCustomError("empty_group", "group is empty")
    return group


class Telemetry(BaseModel):
    # Strict in both directions: JSON from a device, and the objects the agent hands over
    # (revalidated, so a driver's NaN or 120 % is refused before it leaves the sub-station).
    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        allow_inf_nan=False,
        frozen=True,
        revalidate_instances="always",
    )
    schema_version: int = Field(alias="schema")
    device: str = Field(pattern=ID_PATTERN)
    seq: int | None = Field(None, ge=0, lt=2**63)
    ts: Timestamp
    battery: Annotated[Battery | None, AfterValidator(not_empty)] = None
    location: Location | None = None
    status: Annotated[Status | None, AfterValidator(not_empty)] = None

    @field_validator("schema_version")
    @classmethod
    def _v1(cls, value: int) -> int:
        if value != SCHEMA:
            raise PydanticCustomError("schema_version", "is not supported (this reads schema 1)")
        return value

    @model_validator(mode="after")
    def _some_group(self) -> Self:
        if self.battery is None and self.location is None and self.status is None:
            raise PydanticCustomError("no_group", "no battery, location or status group")
        return self


def encode_telemetry(t: Telemetry) -> bytes:
    """Compact JSON of the contract: None omitted, ts as ISO-8601 UTC with ms and Z."""
    return t.model_dump_json(by_alias=True, exclude_none=True).encode()


@dataclass(frozen=True, slots=True)
class DecodedReading:
    """A message the collector decoded and validated (telemetry or OwnTracks), placed at its
    site and kind. Not the drivers' `Reading`: that is what a driver reports to the agent."""

    site: str
    kind: str
    device: str
    seq: int | None
    ts_ms: int
    battery: Battery | None
    location: Location | None
    status: Status | None
    source: str  # "telemetry" or "owntracks"
