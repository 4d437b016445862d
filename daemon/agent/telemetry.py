"""A driver's `Reading` as v1 telemetry: its groups are the contract's own classes, sent as they are.

Validation happens here, in the agent, with the contract's own rules: a driver
bug (a NaN, a percentage of 120) is refused before it leaves the sub-station,
instead of being dead-lettered by the collector.

Two routes, one result. The reference is the contract's pydantic model
(`wire.Telemetry`): it validates and writes the JSON, and words a refusal. It
cost ~45 µs a reading - a tenth of the agent's CPU with a hundred scooters read
every second - so every reading first takes a fast route: msgspec checks each
group against the Structs the collector's fast path generates from the same
contract (`wire/fast.py`: types, ranges, string rules) while copying it, and
writes the JSON in C (~5 µs). The fast route only ever *accepts*: anything it
does not take (a refusal, a value it is not sure to write as pydantic would)
goes through the reference, which gives the payload or the ValueError exactly
as before. The bytes of an accepted reading are pydantic's, byte for byte: a
property test holds the two routes to it (tests/daemon/agent/).
"""

from __future__ import annotations

import typing
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import msgspec

from fleet.daemon import wire
from fleet.daemon.wire import fast
from fleet.daemon.wire.envelope import from_ms, iso, to_ms
from fleet.drivers import readings
from fleet.drivers.contract import id_problem

_G = TypeVar("_G", readings.Battery, readings.Location, readings.Status)

# What the reference takes on the envelope: ts within InfluxDB's range (envelope.parse_ts),
# seq a non-negative int64, the device an id.
_TS_END_MS = to_ms(datetime(2262, 4, 11, tzinfo=UTC))  # envelope.parse_ts's end (InfluxDB's)
_SEQ_END = 2**63
# msgspec writes a float of 1e16 or more as 1e16 where pydantic writes 1e+16; no contract
# range reaches that far (checked below, at import), so every accepted float is written alike.
_FLOAT_SAME_BELOW = 1e16


def _present(group: _G | None) -> _G | None:
    """The contract has no empty groups: a group with nothing in it is left out."""
    return None if group in readings.EMPTY_GROUPS else group


def reference(reading: readings.Reading, seq: int) -> bytes:
    """The telemetry JSON by the contract's pydantic model; ValueError if it breaks the contract."""
    try:
        ts = from_ms(reading.ts_ms)
    except OverflowError:  # past datetime's own range: no date at all, so not the model's words
        raise ValueError(f"ts_ms {reading.ts_ms} is outside 1970-01-01..2262-04-11") from None
    telemetry = wire.Telemetry.model_validate(
        {
            "schema": wire.SCHEMA,
            "device": reading.device,
            "seq": seq,
            "ts": ts,
            "battery": _present(reading.battery),
            "location": reading.location,
            "status": _present(reading.status),
        }
    )
    return wire.encode_telemetry(telemetry)


def _encoding_struct(name: str, checked: type[msgspec.Struct]) -> type[msgspec.Struct]:
    """The collector's Struct of a group (same fields, order, types, rules), writing no None.

    A float field without a finite range could take a NaN or a huge value, which msgspec
    would write differently from pydantic (null, 1e16): stops the import instead."""
    fields: list[tuple[str, Any, Any]] = []
    for f in msgspec.structs.fields(checked):
        base, metas = f.type, []
        if typing.get_origin(base) is not Annotated and typing.get_args(base):
            base = next(a for a in typing.get_args(base) if a is not type(None))
        if typing.get_origin(base) is Annotated:
            base, *metas = typing.get_args(base)
        if base is float:
            lo = next((m.ge for m in metas if getattr(m, "ge", None) is not None), None)
            hi = next((m.le for m in metas if getattr(m, "le", None) is not None), None)
            if lo is None or hi is None or max(abs(lo), abs(hi)) >= _FLOAT_SAME_BELOW:
                raise TypeError(f"{name}.{f.name}: a float without a range the fast route keeps")
        fields.append((f.name, f.type, f.default))
    return msgspec.defstruct(f"{name}_out", fields, omit_defaults=True, frozen=True)


_GROUPS: dict[type, type[msgspec.Struct]] = {
    group: _encoding_struct(name, fast._GROUP_STRUCTS[name])
    for name, group in readings.GROUPS.items()
}
_EMPTY: dict[type, msgspec.Struct] = {type(g): _GROUPS[type(g)]() for g in readings.EMPTY_GROUPS}


class _Telemetry(msgspec.Struct, omit_defaults=True):
    # Field order and names as wire.Telemetry writes them (`schema` is its alias).
    schema: int
    device: str
    seq: int
    ts: str
    battery: Any = None
    location: Any = None
    status: Any = None


_ENCODE = msgspec.json.Encoder().encode
_devices: set[str] = set()  # device ids seen valid: a few hundred at most, checked once


def _group(group: object, kind: type) -> Any:
    if group is None:
        return None
    if type(group) is not kind:
        raise msgspec.ValidationError("not the contract's class")
    out = msgspec.convert(group, _GROUPS[kind], from_attributes=True)
    return None if out == _EMPTY.get(kind) else out


_last_ts: list[tuple[int, str]] = [(-1, "")]  # the last second's ISO text: a tick shares it


def _iso(ts_ms: int) -> str:
    second, ms = divmod(ts_ms, 1000)
    last, text = _last_ts[0]
    if second != last:
        text = iso(second * 1000)[:-4]  # "YYYY-MM-DDTHH:MM:SS." (the ms cut off)
        _last_ts[0] = (second, text)
    return f"{text}{ms:03d}Z"


def _fast(reading: readings.Reading, seq: int) -> bytes | None:
    device, ts_ms = reading.device, reading.ts_ms
    if type(seq) is not int or not 0 <= seq < _SEQ_END:
        return None
    if type(ts_ms) is not int or not 0 <= ts_ms < _TS_END_MS:
        return None
    if device not in _devices:
        if type(device) is not str or id_problem(device) is not None:
            return None
        _devices.add(device)
    try:
        battery = _group(reading.battery, readings.Battery)
        location = _group(reading.location, readings.Location)
        status = _group(reading.status, readings.Status)
    except msgspec.ValidationError:
        return None
    if battery is None and location is None and status is None:
        return None
    return _ENCODE(_Telemetry(wire.SCHEMA, device, seq, _iso(ts_ms), battery, location, status))


def encode(reading: readings.Reading, seq: int) -> bytes:
    """The telemetry JSON of `reading` numbered `seq`; ValueError if it breaks the contract."""
    payload = _fast(reading, seq)
    return payload if payload is not None else reference(reading, seq)
