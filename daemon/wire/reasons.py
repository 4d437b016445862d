"""Why a message is refused: the reasons counted, and a sentence a person can act on.

pydantic's errors become `Rejected(reason, detail)`: the first problem in words (where, what was
sent, what is allowed), plus how many more there are. The dead-letter payload carries them.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ValidationError

from fleet.daemon.wire.envelope import DecodedReading, Telemetry, iso
from fleet.daemon.wire.owntracks import OwnTracksLocation
from fleet.drivers.contract import ID_RULE, clip, show
from fleet.drivers.readings import FIRMWARE_RULE, LIMITS, PACK_IDS_RULE


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

    def __init__(self, reason: Reason, detail: str, reading: DecodedReading | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        # A valid reading refused only for its time (future_ts): not stored, but the alert
        # engine still judges it, so a wrong clock on either side does not blind the alerts.
        self.reading = reading


def _model_bounds(*models: type[BaseModel]) -> dict[str, tuple[Any, Any]]:
    """Top-level field -> (low, high), read back from the models, for "x is outside low..high"."""
    found = {}
    for model in models:
        for name, info in model.model_fields.items():
            got = {k: getattr(m, k) for m in info.metadata for k in ("ge", "le") if hasattr(m, k)}
            if len(got) == 2:
                found[info.alias or name] = (got["ge"], got["le"])
    return found


# fmt: off
_GROUP_BOUNDS = {f"{group}.{name}": bounds for (group, name), bounds in LIMITS.items()}
_BOUNDS = _model_bounds(Telemetry, OwnTracksLocation) | _GROUP_BOUNDS
_COMPARISONS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
_OPERATORS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_RANGE_TYPES = {*_COMPARISONS, "string_too_short", "string_too_long", "string_pattern_mismatch",
                "literal_error", "enum", "finite_number", "ts_range"}
_REASONS = dict.fromkeys(_RANGE_TYPES, Reason.RANGE) | {"json_invalid": Reason.BAD_JSON}
_EXPECTED = {"float_type": "a number", "int_type": "an integer", "int_from_float": "an integer",
             "bool_type": "true or false", "string_type": "a string", "model_type": "an object",
             "dict_type": "an object", "model_attributes_type": "an object",
             "dataclass_type": "an object", "dataclass_exact_type": "an object"}
_JSON_TYPES = {str: "string", bool: "boolean", int: "number", float: "number",
               type(None): "null", list: "array", dict: "object"}
_PATTERN_RULES = {"device": ID_RULE, "status.firmware": FIRMWARE_RULE,
                  "battery.pack_ids": PACK_IDS_RULE}
# fmt: on


# pydantic-core's JSON parser refuses deeper nesting (it guards its stack); say so in words.
_JSON_DEPTH = 200
_TOO_DEEP = "recursion limit exceeded"


def json_problem(error: object) -> str:
    text = str(error)
    if text.startswith(_TOO_DEEP):
        text = f"nested deeper than {_JSON_DEPTH} levels{text.removeprefix(_TOO_DEEP)}"
    return clip(f"payload is not valid JSON: {text}", 120)


def _sentence(err: Any) -> str:
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx", {})
    path = clip(".".join(str(p) for p in err["loc"]), 80)
    where = f"{path}: " if path else "payload: "
    if kind == "json_invalid":
        return json_problem(ctx.get("error"))
    if kind in {"extra_forbidden", "unexpected_keyword_argument"}:
        return f"unknown field {show(path)}"
    if kind in {"missing", "missing_argument"}:
        return f"{where}required field is missing"
    if kind in _EXPECTED:
        got = _JSON_TYPES.get(type(value), type(value).__name__)
        return f"{where}expected {_EXPECTED[kind]}, got {got} {show(value)}"
    if kind in _COMPARISONS:
        if path in _BOUNDS:
            return f"{where}{show(value)} is outside {_BOUNDS[path][0]}..{_BOUNDS[path][1]}"
        op, limit = next(iter(ctx.items()))
        return f"{where}{show(value)} must be {_OPERATORS[op]} {limit}"
    if kind in {"string_too_short", "string_too_long"}:
        return f"{where}{show(value)} has {len(value)} characters; {err['msg'].lower()}"
    if kind == "string_pattern_mismatch":
        return f"{where}{show(value)} is not allowed: {_PATTERN_RULES.get(path, err['msg'])}"
    if kind == "finite_number":
        return f"{where}{show(value)} is not a finite number"
    if kind in {"literal_error", "enum"}:
        return f"{where}{show(value)} is not one of {ctx['expected']}"
    if kind == "empty_group":
        return f"{where}group is empty; send at least one of its fields or leave it out"
    if kind == "no_group":
        return "no battery, location or status group; at least one is required"
    return f"{where}{show(value)} {err['msg']}"


def rejected(exc: ValidationError) -> Rejected:
    """The first of pydantic's errors as a `Rejected`, with a count of the others."""
    errors = exc.errors(include_url=False)
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return Rejected(_REASONS.get(errors[0]["type"], Reason.SCHEMA), _sentence(errors[0]) + more)


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
        "received_at": iso(received_ms),
    }
    return json.dumps(doc, separators=(",", ":")).encode()
