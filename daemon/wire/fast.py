"""The collector's fast path: msgspec decodes and validates a message in one pass.

The msgspec types below are generated at import from the contract's own declarations - the
groups' type hints in ``drivers/readings.py`` (the `between` ranges that `LIMITS` reads, the
string rules) and the pydantic models of the envelope and of OwnTracks - so the contract keeps
one home. A rule msgspec cannot express stops the import instead of being dropped.

The fast path only ever *accepts*: it gives the same reading pydantic would, or ``None`` when
it is not sure, and the caller then runs the pydantic models, which give the reading or the
refusal with its reason and sentence exactly as before. That is by design: msgspec stops at
the first problem, in document order, without the value that was sent, while the contract's
sentence names pydantic's first problem in field order and counts the others.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from types import NoneType, UnionType
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel
from pydantic_core import PydanticCustomError

from fleet.daemon.wire.envelope import SCHEMA, Telemetry, not_empty, parse_ts, to_ms
from fleet.daemon.wire.owntracks import OwnTracksLocation, owntracks_groups
from fleet.drivers.readings import EMPTY_GROUPS, GROUPS, Battery, Location, Status

# Constraint markers (annotated_types, pydantic's StringConstraints and Field metadata) as
# msgspec.Meta keywords. Anything else active on a field is a rule this module cannot enforce.
_KEYWORDS = ("gt", "ge", "lt", "le", "min_length", "max_length", "pattern")
_INERT = {"strict": (None, False)}  # Strict(False) on Status.state: values as well as members
_INT64_MAX = 2**63 - 1
# pydantic-core refuses JSON nested deeper than this as bad_json; msgspec goes deeper. A
# payload with fewer brackets than that cannot nest that deep, so it may take the fast path.
_MAX_BRACKETS = 64

_Group = Battery | Location | Status
_T = typing.TypeVar("_T")


def _constraints(marker: object) -> dict[str, Any]:
    if dataclasses.is_dataclass(marker):
        found = {f.name: getattr(marker, f.name) for f in dataclasses.fields(marker)}
    else:
        found = dict(vars(marker))
    kept = {}
    for key, value in found.items():
        if value is None or value in _INERT.get(key, ()):
            continue
        if key not in _KEYWORDS:
            raise TypeError(f"contract rule {key}={value!r} has no msgspec form")
        kept[key] = value
    return kept


def _python_pattern(pattern: str) -> str:
    # pydantic matches with Rust's regex, where "$" is the very end; Python's re lets "$"
    # match before a trailing newline ("1.3.9\n" would pass). \Z is Rust's "$".
    if not (pattern.startswith("^") and pattern.endswith("$")):
        raise TypeError(f"pattern {pattern!r} is not anchored at both ends")
    return pattern[:-1] + r"\Z"


def _meta(markers: typing.Iterable[object], base: type) -> msgspec.Meta | None:
    kw: dict[str, Any] = {}
    for marker in markers:
        kw |= _constraints(marker)
    if "pattern" in kw:
        kw["pattern"] = _python_pattern(kw["pattern"])
    if base is int and kw.get("lt", 0) > _INT64_MAX:  # msgspec bounds are int64: lt 2**63
        kw["le"] = kw.pop("lt") - 1
    return msgspec.Meta(**kw) if kw else None


def _split(hint: Any) -> tuple[Any, list[object], bool]:
    """(the type without None, its markers, whether None is allowed)."""
    markers: list[object] = []
    if typing.get_origin(hint) is Annotated:
        hint, *markers = typing.get_args(hint)
    optional = False
    if typing.get_origin(hint) in (UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not NoneType]
        optional = len(args) < len(typing.get_args(hint))
        if len(args) != 1:
            raise TypeError(f"{hint!r}: only X or X | None is generated")
        hint = args[0]
    return hint, markers, optional


def _wire_type(base: Any, markers: list[object], optional: bool) -> Any:
    meta = _meta(markers, base)
    wire = Annotated[base, meta] if meta is not None else base
    return wire | None if optional else wire


def _group_struct(name: str, group: type[_Group]) -> type[msgspec.Struct]:
    """A group dataclass as a Struct: same fields, order, defaults, types and ranges."""
    hints = typing.get_type_hints(group, include_extras=True)
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for f in dataclasses.fields(group):
        wire = _wire_type(*_split(hints[f.name]))
        fields.append(
            (f.name, wire) if f.default is dataclasses.MISSING else (f.name, wire, f.default)
        )
    return msgspec.defstruct(f"{name}_wire", fields, forbid_unknown_fields=True, frozen=True)


_GROUP_STRUCTS = {name: _group_struct(name, group) for name, group in GROUPS.items()}


def builder(cls: type[_T], *, from_attributes: bool = False) -> Callable[..., _T]:
    """A constructor for a frozen, slotted dataclass that sets its slots directly: its own
    __init__ goes through object.__setattr__ for every field (a battery: ~3.7 µs against
    ~1.5). ``build(v1, v2, ...)`` takes every field positionally, in field order; with
    `from_attributes`, ``build(s)`` reads them from s (a group's Struct, validated already).
    The instance is the same as __init__'s - every slot set - for the classes accepted:
    no __post_init__, no field outside __init__, nothing but slots."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in vars(cls):
        raise TypeError(f"{cls.__name__}: only a frozen, slotted dataclass")
    fields = dataclasses.fields(typing.cast("Any", cls))
    if hasattr(cls, "__post_init__") or not all(f.init for f in fields):
        raise TypeError(f"{cls.__name__}: its __init__ does more than set its fields")
    names = [f.name for f in fields]
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls}
    scope |= {f"set_{n}": getattr(cls, n).__set__ for n in names}
    args = "s" if from_attributes else ", ".join(names)
    body = "".join(f"    set_{n}(o, {'s.' if from_attributes else ''}{n})\n" for n in names)
    exec(f"def build({args}):\n    o = new(cls)\n{body}    return o\n", scope)  # noqa: S102
    return typing.cast("Callable[..., _T]", scope["build"])


_BATTERY = builder(Battery, from_attributes=True)
_LOCATION = builder(Location, from_attributes=True)
_STATUS = builder(Status, from_attributes=True)
_TIMESTAMP = str | int | float  # what parse_ts takes; the conversion is parse_ts itself
_GROUP_OF = {group: name for name, group in GROUPS.items()}
_DEFAULT = None  # every field is optional in the Struct: a missing required one is checked


def _model_struct(
    model: type[BaseModel],
    *,
    validated_after: Collection[Callable[..., Any] | str] = (),
    more: Sequence[tuple[str, Any, Any]] = (),
    rename: Mapping[str, str] | None = None,
) -> type[msgspec.Struct]:
    """A pydantic model's fields as a Struct. Fields are all optional: a missing required
    field (None) sends the message to the pydantic path, which words the refusal.

    `validated_after`: the model's validators (functions, or method names) that the fast
    path checks itself after decoding; any other validator stops the import."""
    decorators = model.__pydantic_decorators__
    for kind in ("validators", "field_validators", "root_validators", "model_validators"):
        for method in getattr(decorators, kind):
            if method not in validated_after:
                raise TypeError(f"{model.__name__}.{method} is a rule the fast path lacks")
    fields: list[tuple[str, Any, Any]] = []
    for name, info in model.model_fields.items():
        base, markers, _ = _split(info.annotation)
        markers = [*markers, *info.metadata]
        if base is datetime:
            if not any(getattr(m, "func", None) is parse_ts for m in markers):
                raise TypeError(f"{model.__name__}.{name}: a datetime that is not a Timestamp")
            wire: Any = _TIMESTAMP
        elif base in _GROUP_OF:
            # The group's own rules are in its Struct; the validators named here (empty
            # groups, ...) are checked by the fast path after decoding.
            for marker in markers:
                func = getattr(marker, "func", None)
                if func is None or func not in validated_after:
                    raise TypeError(f"{model.__name__}.{name}: {marker!r} is not generated")
            wire = _GROUP_STRUCTS[_GROUP_OF[base]]
        else:
            wire = _wire_type(base, markers, False)
        fields.append((info.alias or name, wire | None, _DEFAULT))
    forbid = model.model_config.get("extra") == "forbid"
    return msgspec.defstruct(
        f"{model.__name__}_wire",
        [*fields, *more],
        forbid_unknown_fields=forbid,
        frozen=True,
        rename=rename,
    )


# Checked here after decoding, beside what msgspec checks: schema == 1 (a field validator),
# no empty group and at least one group (the model's validators). Adding a field or a
# validator to Telemetry fails here until the fast path knows it.
_TELEMETRY_FIELDS = ("schema_version", "device", "seq", "ts", "battery", "location", "status")
if tuple(Telemetry.model_fields) != _TELEMETRY_FIELDS:
    raise TypeError(f"Telemetry's fields changed: the fast path knows {_TELEMETRY_FIELDS}")
_TelemetryWire = _model_struct(Telemetry, validated_after={not_empty, "_v1", "_some_group"})
# OwnTracks' message type is read in the same pass (msgspec names no field "_type").
_OwnTracksWire = _model_struct(
    OwnTracksLocation, more=[("type", str | None, None)], rename={"type": "_type"}
)
# The contract's empty groups as Structs: compared in C, before any dataclass is built.
_EMPTY = tuple(_GROUP_STRUCTS[_GROUP_OF[type(g)]]() for g in EMPTY_GROUPS)
_TELEMETRY = msgspec.json.Decoder(_TelemetryWire)
_OWNTRACKS = msgspec.json.Decoder(_OwnTracksWire)
# Another _type is no reading whatever its other keys hold ("lwt", "transition" with fields
# of its own): read alone when the location's Struct refused them.
_OWNTRACKS_TYPE = msgspec.json.Decoder(
    msgspec.defstruct("OwnTracksType_wire", [("type", str | None, None)], rename={"type": "_type"})
)


# device, seq, ts in ms, battery, location, status: a plain tuple, unpacked at once by the
# decoder (a NamedTuple's Python-level __new__ cost ~1 µs a message).
Fast = tuple[str, int | None, int, Battery | None, Location | None, Status | None]


def _plain(payload: bytes, *, skips: bool = True) -> bool:
    """Whether msgspec reads the payload as pydantic-core would. pydantic refuses invalid
    UTF-8 anywhere and nesting deeper than 200 anywhere; msgspec checks neither in the values
    it skips (OwnTracks' keys we ignore; telemetry, refusing unknown keys, skips nothing).
    ASCII is valid UTF-8 by construction, and every value the contract accepts is ASCII."""
    if not skips:
        return payload.isascii()
    return payload.isascii() and payload.count(b"[") + payload.count(b"{") < _MAX_BRACKETS


# Epoch seconds below this are inside parse_ts's range (before 2262-04-11, a whole second).
_SECONDS_END = to_ms(parse_ts("2262-04-10T23:59:59Z")) // 1000 + 1


def _ts_ms(value: object) -> int | None:
    """parse_ts then to_ms, or None where parse_ts refuses. Epoch seconds (a float or an int)
    are done here in integers, as datetime.fromtimestamp rounds them - the fraction to whole
    microseconds, half to even (CPython's _PyTime_DoubleToDenominator: modf, then x 1e6,
    then round) - then to_ms's floor to the millisecond: ~0.5 µs against ~3 for the
    datetime and its timedelta arithmetic. A differential test holds it to parse_ts."""
    kind = type(value)
    if (kind is float or kind is int) and 0 <= value < _SECONDS_END:  # type: ignore[operator]
        fraction, whole = math.modf(value)  # type: ignore[arg-type]
        return int(whole) * 1000 + round(fraction * 1e6) // 1000
    try:
        return to_ms(parse_ts(value))
    except PydanticCustomError:
        return None


def telemetry(payload: bytes) -> Fast | None:
    """The telemetry document's values when it is valid, else None (not a refusal)."""
    if not _plain(payload, skips=False):
        return None
    try:
        t: Any = _TELEMETRY.decode(payload)
    except msgspec.DecodeError:
        return None
    if t.schema != SCHEMA or t.device is None or t.ts is None:
        return None
    ts_ms = _ts_ms(t.ts)
    if ts_ms is None:
        return None
    b, loc, s = t.battery, t.location, t.status
    if b is loc is s is None or b in _EMPTY or s in _EMPTY:
        return None
    return (
        t.device,
        t.seq,
        ts_ms,
        None if b is None else _BATTERY(b),
        None if loc is None else _LOCATION(loc),
        None if s is None else _STATUS(s),
    )


NOT_A_LOCATION: Literal["not a location"] = "not a location"
# An OwnTracks location's battery, location and ts in ms; or another `_type`.
OwnTracksFix = tuple[Battery | None, Location, int] | Literal["not a location"]


def owntracks(payload: bytes) -> OwnTracksFix | None:
    """An OwnTracks location's groups and ts, `NOT_A_LOCATION` for another valid `_type`,
    or None when the pydantic path must decide."""
    if not _plain(payload):
        return None
    try:
        o: Any = _OWNTRACKS.decode(payload)
    except msgspec.DecodeError:
        try:
            o = _OWNTRACKS_TYPE.decode(payload)
        except msgspec.DecodeError:
            return None
        return None if o.type in (None, "location") else NOT_A_LOCATION
    if o.type is None:
        return None
    if o.type != "location":
        return NOT_A_LOCATION
    if o.lat is None or o.lon is None or o.tst is None:
        return None
    ts_ms = _ts_ms(o.tst)
    if ts_ms is None:
        return None
    return (*owntracks_groups(o.batt, o.bs, o.lat, o.lon, o.acc, o.vel, o.cog), ts_ms)
