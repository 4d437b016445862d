"""The v1 wire contract: MQTT topics, the telemetry JSON model, OwnTracks mapping, InfluxDB schema.

This is the only module that knows the contract of DESIGN.md. The collector calls
``Decoder.decode`` (bytes in; a validated ``Reading`` out, ``None`` for a message that is not a
reading, or ``Rejected`` with a reason and a sentence a person can act on) and ``reading_lines``
(the InfluxDB points of a reading); the agent builds ``Telemetry`` and sends ``encode_telemetry``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

import pydantic_core
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from fleet.daemon.lineproto import FieldValue, format_line, series_key

VERSION = "v1"
SCHEMA = 1
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN[1:-1])  # for fullmatch: Python's "$" accepts a trailing "\n"
_ID_RULE = 'ids are letters, digits, "_", "." and "-", at most 64, starting with a letter or digit'
# A device kind or alert rule with these names would make topics of different kinds collide.
RESERVED_KINDS = frozenset({"agent", "alerts"})
RESERVED_RULES = frozenset({"telemetry", "availability"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_TS_END = datetime(2262, 4, 11, tzinfo=UTC)  # InfluxDB's time is int64 nanoseconds
_TOPIC_CACHE_SIZE = 4096


class Reason(StrEnum):
    TOO_LARGE = "too_large"
    BAD_TOPIC = "bad_topic"
    BAD_JSON = "bad_json"
    SCHEMA = "schema"
    RANGE = "range"
    DEVICE_MISMATCH = "device_mismatch"
    UNKNOWN_KIND = "unknown_kind"
    REGISTRY_MISMATCH = "registry_mismatch"
    FUTURE_TS = "future_ts"
    STALE_TS = "stale_ts"
    INFLUX_REJECTED = "influx_rejected"
    # The collector itself failed on the message: a bug, logged with its traceback.
    INTERNAL_ERROR = "internal_error"


class Rejected(Exception):
    """A message that is not a valid reading: ``reason`` to count, ``detail`` to act on."""

    def __init__(self, reason: Reason, detail: str, reading: Reading | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        # A valid reading refused only for its time (future_ts): not stored, but the alert
        # engine still judges it, so a wrong clock on either side does not blind the alerts.
        self.reading = reading


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show(value: object) -> str:
    """A value as JSON (quoted, control characters escaped), clipped for a detail sentence."""
    return _clip(json.dumps(value, default=str))


# --- topics -------------------------------------------------------------------------------------

# fmt: off
_CHAR_NAMES = {" ": "a space", ",": "a comma", '"': "a double quote", "'": "a quote",
               "=": "an equals sign", "\n": "a newline", "\t": "a tab", "\r": "a carriage return",
               "/": "a slash", "+": "a '+' wildcard", "#": "a '#' wildcard", "\\": "a backslash"}
# fmt: on


def _id_problem(value: str) -> str | None:
    if _ID_RE.fullmatch(value):
        return None
    if not value:
        return "is empty"
    if len(value) > 64:
        return f"is {len(value)} characters long (max 64)"
    bad = next((c for c in value if not (c.isascii() and (c.isalnum() or c in "_.-"))), None)
    if bad is not None:
        return f"contains {_CHAR_NAMES.get(bad, repr(bad))}"
    return f"starts with {value[0]!r}"


def check_id(what: str, value: str) -> str:
    """``value`` if it is a valid id, else ValueError saying which rule it breaks."""
    problem = _id_problem(value)
    if problem is not None:
        raise ValueError(f"{what} {_show(value)} {problem}; {_ID_RULE}")
    return value


def _check_prefix(prefix: str) -> str:
    for level in prefix.split("/"):
        check_id("topic prefix level", level)
    return prefix


def _check_kind(kind: str) -> str:
    if check_id("kind", kind) in RESERVED_KINDS:
        raise ValueError(f"kind {kind!r} is reserved for {kind} topics")
    return kind


def _site(prefix: str, site: str) -> str:
    return f"{_check_prefix(prefix)}/{VERSION}/{check_id('site', site)}"


def telemetry_topic(prefix: str, site: str, kind: str, device: str) -> str:
    return f"{_site(prefix, site)}/{_check_kind(kind)}/{check_id('device', device)}/telemetry"


def availability_topic(prefix: str, site: str, kind: str, device: str) -> str:
    return f"{_site(prefix, site)}/{_check_kind(kind)}/{check_id('device', device)}/availability"


def agent_availability_topic(prefix: str, site: str, agent: str) -> str:
    return f"{_site(prefix, site)}/agent/{check_id('agent', agent)}/availability"


def alert_topic(prefix: str, site: str, device: str, rule: str) -> str:
    if check_id("rule", rule) in RESERVED_RULES:
        raise ValueError(f"rule {rule!r} is reserved: its topic would look like a device's")
    return f"{_site(prefix, site)}/alerts/{check_id('device', device)}/{rule}"


def deadletter_topic(prefix: str, site: str) -> str:
    return f"{_site(prefix, site)}/deadletter"


def alert_ack_topic(prefix: str, site: str, device: str, rule: str) -> str:
    """Publish a name here (or JSON {"by": name}) to acknowledge a firing alert."""
    return alert_topic(prefix, site, device, rule) + "/ack"


def owntracks_topic(user: str, device: str) -> str:
    return f"owntracks/{user}/{device}"


def control_subscriptions(prefix: str) -> list[str]:
    """What the collector hears besides readings: availability (devices and agents), acks."""
    head = f"{_check_prefix(prefix)}/{VERSION}"
    return [f"{head}/+/+/+/availability", f"{head}/+/alerts/+/+/ack"]


@dataclass(frozen=True, slots=True)
class Control:
    """A control message's topic: a device's or agent's availability, or an alert ack."""

    what: Literal["availability", "agent", "ack"]
    site: str
    kind: str  # the device kind, "agent", or "alerts"
    id: str  # device or agent id
    rule: str = ""


def parse_control(prefix: str, topic: str) -> Control | None:
    """The control topic's parts, or None when `topic` is not a valid control topic."""
    head = f"{prefix}/{VERSION}/"
    # Cheapest test first: this runs for every message the collector receives.
    if not topic.endswith(("/availability", "/ack")) or not topic.startswith(head):
        return None
    parts = topic[len(head) :].split("/")
    if any(_id_problem(p) is not None for p in parts):
        return None
    if len(parts) == 4 and parts[3] == "availability":
        site, kind, ident = parts[:3]
        return Control("agent" if kind == "agent" else "availability", site, kind, ident)
    if len(parts) == 5 and parts[1] == "alerts" and parts[4] == "ack":
        return Control("ack", parts[0], "alerts", parts[2], parts[3])
    return None


def subscriptions(prefix: str) -> list[str]:
    """What the collector subscribes to: device telemetry and OwnTracks phones."""
    return [f"{_check_prefix(prefix)}/{VERSION}/+/+/+/telemetry", "owntracks/+/+"]


# --- the telemetry JSON -------------------------------------------------------------------------


def _iso(ts_ms: int, *, always_ms: bool = True) -> str:
    ms = ts_ms % 1000
    return f"{_EPOCH + ts_ms * _MS:%Y-%m-%dT%H:%M:%S}" + (f".{ms:03d}Z" if ms or always_ms else "Z")


def _to_ms(dt: datetime) -> int:
    return (dt - _EPOCH) // _MS


def _parse_ts(value: object) -> datetime:
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
    return _iso(_to_ms(dt))


Timestamp = Annotated[datetime, PlainValidator(_parse_ts), PlainSerializer(_format_ts)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


class _Group(_Strict):
    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if all(value is None for value in self.__dict__.values()):
            raise PydanticCustomError("empty_group", "group is empty")
        return self


class Battery(_Group):
    pct: float | None = Field(None, ge=0, le=100)
    voltage_v: float | None = Field(None, ge=0, le=200)
    current_a: float | None = Field(None, ge=-1000, le=1000)
    temp_c: float | None = Field(None, ge=-60, le=150)
    charging: bool | None = None
    health_pct: float | None = Field(None, ge=0, le=100)


class Location(_Group):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    accuracy_m: float | None = Field(None, ge=0, le=100_000)
    speed_kmh: float | None = Field(None, ge=-100, le=400)  # negative = reversing
    heading_deg: float | None = Field(None, ge=0, le=360)


State = Literal["idle", "riding", "charging", "docked", "fault", "off"]
_FIRMWARE_RE = r"^[ !#-&(-\[\]-~]*$"  # printable ASCII without " ' \ (safe in any query)


class Status(_Group):
    state: State | None = None
    odometer_km: float | None = Field(None, ge=0, le=10**7)
    range_km: float | None = Field(None, ge=0, le=10_000)
    error_code: int | None = Field(None, ge=0, le=65535)
    locked: bool | None = None
    rssi_dbm: int | None = Field(None, ge=-150, le=20)
    firmware: str | None = Field(None, min_length=1, max_length=32, pattern=_FIRMWARE_RE)


class Telemetry(_Strict):
    schema_version: int = Field(alias="schema")
    device: str = Field(pattern=ID_PATTERN)
    seq: int | None = Field(None, ge=0, lt=2**63)
    ts: Timestamp
    battery: Battery | None = None
    location: Location | None = None
    status: Status | None = None

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


class _OwnTracks(BaseModel):
    """The keys of an OwnTracks ``_type: location`` message we use; the app sends many more."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)
    batt: float | None = Field(None, ge=0, le=100)
    bs: int | None = Field(None, ge=0, le=3)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    acc: float | None = Field(None, ge=0, le=100_000)
    vel: float | None = Field(None, ge=-100, le=400)
    cog: float | None = Field(None, ge=0, le=360)
    tst: Timestamp


# bs: 0 unknown, 1 unplugged, 2 charging, 3 full (still on the charger).
_OWNTRACKS_CHARGING: dict[int, bool | None] = {0: None, 1: False, 2: True, 3: True}

# --- pydantic errors as reasons and sentences ---------------------------------------------------


def _bounds(*models: tuple[type[BaseModel], str]) -> dict[str, tuple[Any, Any]]:
    """Field path -> (low, high), read back from the models for "x is outside low..high"."""
    found = {}
    for model, path in models:
        for name, info in model.model_fields.items():
            got = {k: getattr(m, k) for m in info.metadata for k in ("ge", "le") if hasattr(m, k)}
            if len(got) == 2:
                found[path + (info.alias or name)] = (got["ge"], got["le"])
    return found


# fmt: off
_BOUNDS = _bounds((Telemetry, ""), (_OwnTracks, ""), (Battery, "battery."),
                  (Location, "location."), (Status, "status."))
_COMPARISONS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
_OPERATORS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_RANGE_TYPES = {*_COMPARISONS, "string_too_short", "string_too_long", "string_pattern_mismatch",
                "literal_error", "finite_number", "ts_range"}
_REASONS = dict.fromkeys(_RANGE_TYPES, Reason.RANGE) | {"json_invalid": Reason.BAD_JSON}
_EXPECTED = {"float_type": "a number", "int_type": "an integer", "int_from_float": "an integer",
             "bool_type": "true or false", "string_type": "a string", "model_type": "an object",
             "dict_type": "an object", "model_attributes_type": "an object"}
_JSON_TYPES = {str: "string", bool: "boolean", int: "number", float: "number",
               type(None): "null", list: "array", dict: "object"}
_FIRMWARE_RULE = "printable ASCII without quotes or backslashes"
_PATTERN_RULES = {"device": _ID_RULE, "status.firmware": _FIRMWARE_RULE}
# fmt: on


# pydantic-core's JSON parser refuses deeper nesting (it guards its stack); say so in words.
_JSON_DEPTH = 200
_TOO_DEEP = "recursion limit exceeded"


def _json_problem(error: object) -> str:
    text = str(error)
    if text.startswith(_TOO_DEEP):
        text = f"nested deeper than {_JSON_DEPTH} levels{text.removeprefix(_TOO_DEEP)}"
    return _clip(f"payload is not valid JSON: {text}", 120)


def _sentence(err: Any) -> str:
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx", {})
    path = _clip(".".join(str(p) for p in err["loc"]), 80)
    where = f"{path}: " if path else "payload: "
    if kind == "json_invalid":
        return _json_problem(ctx.get("error"))
    if kind == "extra_forbidden":
        return f"unknown field {_show(path)}"
    if kind == "missing":
        return f"{where}required field is missing"
    if kind in _EXPECTED:
        got = _JSON_TYPES.get(type(value), type(value).__name__)
        return f"{where}expected {_EXPECTED[kind]}, got {got} {_show(value)}"
    if kind in _COMPARISONS:
        if path in _BOUNDS:
            return f"{where}{_show(value)} is outside {_BOUNDS[path][0]}..{_BOUNDS[path][1]}"
        op, limit = next(iter(ctx.items()))
        return f"{where}{_show(value)} must be {_OPERATORS[op]} {limit}"
    if kind in {"string_too_short", "string_too_long"}:
        return f"{where}{_show(value)} has {len(value)} characters; {err['msg'].lower()}"
    if kind == "string_pattern_mismatch":
        return f"{where}{_show(value)} is not allowed: {_PATTERN_RULES.get(path, err['msg'])}"
    if kind == "finite_number":
        return f"{where}{_show(value)} is not a finite number"
    if kind == "literal_error":
        return f"{where}{_show(value)} is not one of {ctx['expected']}"
    if kind == "empty_group":
        return f"{where}group is empty; send at least one of its fields or leave it out"
    if kind == "no_group":
        return "no battery, location or status group; at least one is required"
    return f"{where}{_show(value)} {err['msg']}"


def _rejected(exc: ValidationError) -> Rejected:
    errors = exc.errors(include_url=False)
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return Rejected(_REASONS.get(errors[0]["type"], Reason.SCHEMA), _sentence(errors[0]) + more)


# --- decoding -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """A device registry entry as the contract sees it: where the device belongs."""

    site: str
    kind: str


@dataclass(frozen=True, slots=True)
class Reading:
    site: str
    kind: str
    device: str
    seq: int | None
    ts_ms: int
    battery: Battery | None
    location: Location | None
    status: Status | None
    source: str  # "telemetry" or "owntracks"


class Decoder:
    """Turns one MQTT message into a ``Reading``, ``None`` (not a reading) or ``Rejected``."""

    def __init__(
        self,
        *,
        prefix: str,
        default_site: str,
        kinds: Collection[str],
        registry: Mapping[str, DeviceRef],
        owntracks_map: Mapping[str, str],
        max_payload_bytes: int,
        max_future_s: float,
        max_age_s: float | None,
        now_ms: Callable[[], int],
    ) -> None:
        self._head = f"{_check_prefix(prefix)}/{VERSION}/"
        self._shape = f"{prefix}/{VERSION}/{{site}}/{{kind}}/{{device}}/telemetry"
        self._default_site = check_id("default_site", default_site)
        self._kinds = frozenset(_check_kind(k) for k in kinds)
        self._registry = registry
        self._owntracks_map = owntracks_map
        self._max_bytes = max_payload_bytes
        self._max_future_s = max_future_s
        self._max_age_s = max_age_s
        self._now_ms = now_ms
        self._topics: dict[str, tuple[str, str, str]] = {}

    def decode(self, topic: str, payload: bytes) -> Reading | None:
        if len(payload) > self._max_bytes:
            detail = f"payload is {len(payload)} bytes; the limit is {self._max_bytes} bytes"
            raise Rejected(Reason.TOO_LARGE, detail)
        reading: Reading | None
        if topic.startswith(self._head):
            reading = self._telemetry(topic, payload)
        elif topic.startswith("owntracks/"):
            reading = self._owntracks(topic, payload)
        else:
            shapes = f"{self._shape} nor owntracks/{{user}}/{{device}}"
            raise Rejected(Reason.BAD_TOPIC, f"topic {_show(topic)} is neither {shapes}")
        if reading is not None:
            try:
                self._check_ts(reading.ts_ms)
            except Rejected as rejected:
                if rejected.reason is Reason.FUTURE_TS:
                    rejected.reading = reading
                raise
        return reading

    def _topic(self, topic: str) -> tuple[str, str, str]:
        cached = self._topics.get(topic)
        if cached is not None:
            return cached
        parts = topic[len(self._head) :].split("/")
        if len(parts) != 4 or parts[3] != "telemetry":
            raise Rejected(Reason.BAD_TOPIC, f"topic {_show(topic)} is not {self._shape}")
        for name, value in zip(("site", "kind", "device"), parts, strict=False):
            problem = _id_problem(value)
            if problem is not None:
                detail = f"topic's {name} {_show(value)} {problem}; {_ID_RULE}"
                raise Rejected(Reason.BAD_TOPIC, detail)
        site, kind, device = parts[:3]
        if kind not in self._kinds:
            known = ", ".join(sorted(self._kinds))
            raise Rejected(Reason.UNKNOWN_KIND, f"kind {_show(kind)} is not one of {known}")
        if len(self._topics) >= _TOPIC_CACHE_SIZE:
            self._topics.clear()  # so that a publisher inventing topics cannot grow it forever
        self._topics[topic] = (site, kind, device)
        return site, kind, device

    def _telemetry(self, topic: str, payload: bytes) -> Reading:
        site, kind, device = self._topic(topic)
        try:
            t = Telemetry.model_validate_json(payload)
        except ValidationError as exc:
            raise _rejected(exc) from None
        if t.device != device:
            detail = f'device "{t.device}" does not match the topic\'s device "{device}"'
            raise Rejected(Reason.DEVICE_MISMATCH, detail)
        ref = self._registry.get(device)
        if ref is not None and (ref.site, ref.kind) != (site, kind):
            detail = (
                f'device "{device}" is registered as {ref.kind} at site "{ref.site}", '
                f'not {kind} at site "{site}"'
            )
            raise Rejected(Reason.REGISTRY_MISMATCH, detail)
        groups = (t.battery, t.location, t.status)
        return Reading(site, kind, device, t.seq, _to_ms(t.ts), *groups, source="telemetry")

    def _owntracks(self, topic: str, payload: bytes) -> Reading | None:
        parts = topic.split("/")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            detail = f"topic {_show(topic)} is not owntracks/{{user}}/{{device}}"
            raise Rejected(Reason.BAD_TOPIC, detail)
        device = self._owntracks_map.get(f"{parts[1]}/{parts[2]}", parts[2])
        problem = _id_problem(device)
        if problem is not None:
            detail = f"OwnTracks device {_show(device)} {problem}; {_ID_RULE} (or map it)"
            raise Rejected(Reason.BAD_TOPIC, detail)
        try:
            data = pydantic_core.from_json(payload)
        except ValueError as exc:
            raise Rejected(Reason.BAD_JSON, _json_problem(exc)) from None
        message_type = data.get("_type") if isinstance(data, dict) else None
        if not isinstance(message_type, str):
            raise Rejected(Reason.SCHEMA, 'payload: expected an object with a string "_type"')
        if message_type != "location":
            return None
        try:
            o = _OwnTracks.model_validate(data)
        except ValidationError as exc:
            raise _rejected(exc) from None
        charging = None if o.bs is None else _OWNTRACKS_CHARGING[o.bs]
        battery = None
        if o.batt is not None or charging is not None:
            battery = Battery.model_construct(pct=o.batt, charging=charging)
        location = Location.model_construct(
            lat=o.lat, lon=o.lon, accuracy_m=o.acc, speed_kmh=o.vel, heading_deg=o.cog
        )
        ref = self._registry.get(device)
        site, kind = (ref.site, ref.kind) if ref is not None else (self._default_site, "handheld")
        ts_ms = _to_ms(o.tst)
        return Reading(site, kind, device, None, ts_ms, battery, location, None, "owntracks")

    def _check_ts(self, ts_ms: int) -> None:
        ahead_s = (ts_ms - self._now_ms()) / 1000
        if ahead_s > self._max_future_s:
            limit = f"limit {self._max_future_s:.12g} s"
            detail = f"ts {_iso(ts_ms, always_ms=False)} is {ahead_s:.0f} s in the future ({limit})"
            raise Rejected(Reason.FUTURE_TS, detail)
        if self._max_age_s is not None and -ahead_s > self._max_age_s:
            limit = f"limit {self._max_age_s:.12g} s"
            detail = f"ts {_iso(ts_ms, always_ms=False)} is {-ahead_s:.0f} s old ({limit})"
            raise Rejected(Reason.STALE_TS, detail)


# --- the InfluxDB schema ------------------------------------------------------------------------

_MEASUREMENTS = ("battery", "location", "status")
_GROUP_MODELS: tuple[type[BaseModel], ...] = (Battery, Location, Status)
# Point sorts fields by key; keeping these sorted (seq included) keeps our lines identical to it.
_GROUP_FIELDS = {
    name: tuple(sorted([*model.model_fields, "seq"]))
    for name, model in zip(_MEASUREMENTS, _GROUP_MODELS, strict=True)
}


@functools.lru_cache(maxsize=8192)
def _prefix(measurement: str, site: str, kind: str, device: str) -> str:
    return series_key(measurement, {"site": site, "kind": kind, "device": device})


def reading_lines(r: Reading) -> list[str]:
    """One line per present group: tags site, kind, device; fields as in the JSON; seq; ms."""
    lines = []
    for measurement, group in zip(_MEASUREMENTS, (r.battery, r.location, r.status), strict=True):
        if group is not None:
            values: dict[str, FieldValue | None] = group.__dict__
            fields = [(n, r.seq if n == "seq" else values[n]) for n in _GROUP_FIELDS[measurement]]
            prefix = _prefix(measurement, r.site, r.kind, r.device)
            lines.append(format_line(prefix, fields, r.ts_ms))
    return lines


def alert_line(
    *,
    site: str,
    kind: str,
    device: str,
    rule: str,
    severity: str,
    state: str,
    value: float | None,
    message: str,
    ts_ms: int,
) -> str:
    """The `alert` measurement: one point per alert event (fire, resolve, repeat, ...)."""
    tags = {"site": site, "kind": kind, "device": device, "rule": rule, "severity": severity}
    fields: list[tuple[str, FieldValue | None]] = [
        ("message", message),
        ("state", state),
        ("value", None if value is None else float(value)),
    ]
    return format_line(series_key("alert", tags), fields, ts_ms)


def deadletter_payload(
    topic: str, payload: bytes, reason: Reason, detail: str, received_ms: int, limit: int = 1024
) -> bytes:
    """The dead-letter message: what came in (truncated), why it was refused, and when."""
    doc = {
        "topic": topic,
        "reason": str(reason),
        "detail": detail,
        "payload": payload[:limit].decode("utf-8", errors="backslashreplace"),
        "payload_bytes": len(payload),
        "truncated": len(payload) > limit,
        "received_at": _iso(received_ms),
    }
    return json.dumps(doc, separators=(",", ":")).encode()
