"""Request bodies as pydantic models: what a client may send, typed, cleaned and bounded.

Strict types (`"2"` is not a number of hours, `true` is not one either), unknown fields refused
(a typo'd `"rul"` would otherwise silence every rule of a device), and every refusal a
sentence that names the field, in `{"error": ..., "fields": {field: reason}}`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import ClassVar, TypeVar
from urllib.parse import parse_qs

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from fleet.daemon import wire
from fleet.daemon.collector.http.router import Refused

MAX_SILENCE_HOURS = 366 * 24  # 8784: "in repair" for longer than a year is a decommission
_MAX_FORM_FIELDS = 20


def one_line(text: str, limit: int) -> str:
    """A name or reason from a client, fit for a log line, a mail subject and the store:
    control characters (newlines, NUL, escapes) become spaces, runs of spaces one."""
    printable = "".join(ch if ch.isprintable() else " " for ch in text[: limit * 4])
    return " ".join(printable.split())[:limit]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    # What to say when a required field is missing, in words a person can act on.
    MISSING: ClassVar[dict[str, str]] = {}


class AckRequest(_Body):
    """POST /api/v1/alerts/{device}/{rule}/ack. The author is the signed-in user; a "by"
    (the previous release's body) is still accepted, checked, and not used."""

    by: str | None = None

    @field_validator("by")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError('"by": the name must be printable text (no control characters)')
        return value


class SilenceRequest(_Body):
    """POST /silences: mute notifications of a device, a rule or both, for a while."""

    MISSING: ClassVar[dict[str, str]] = {"reason": 'say why: "reason" (e.g. "in repair")'}

    device: str | None = None
    rule: str | None = None
    until: datetime | None = None
    hours: float | None = None
    reason: str
    by: str | None = None  # the previous release's author field; the signed-in user is used

    @field_validator("device", "rule")
    @classmethod
    def _id(cls, value: str | None, info: ValidationInfo) -> str | None:
        return wire.check_id(str(info.field_name), value) if value else None

    @field_validator("until", mode="before")
    @classmethod
    def _until(cls, value: object) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError('"until" must be an ISO-8601 time with a zone, as a string')
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError('"until" is not an ISO-8601 time') from None
        if when.tzinfo is None:
            raise ValueError('"until" needs a time zone (e.g. 2026-12-01T07:00:00-05:00)')
        try:
            when.timestamp()
        except (OverflowError, ValueError, OSError):
            raise ValueError('"until" is out of range') from None
        return when

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= MAX_SILENCE_HOURS:  # also NaN and infinity
            raise ValueError(
                f'"hours" must be more than 0 and at most a year ({MAX_SILENCE_HOURS})'
            )
        return value

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        return one_line(value, 200) or _fail(cls.MISSING["reason"])

    @field_validator("by")
    @classmethod
    def _by(cls, value: str | None) -> str | None:
        return None if value is None else one_line(value, 64)

    @model_validator(mode="after")
    def _whole(self) -> SilenceRequest:
        if self.device is None and self.rule is None:
            raise ValueError('name a "device", a "rule" or both (silencing everything is refused)')
        if self.until is None and self.hours is None:
            raise ValueError('say until when: "until" (ISO-8601 with zone) or "hours"')
        if self.until is not None and self.hours is not None:
            raise ValueError('give "until" or "hours", not both')
        return self

    @property
    def until_ms(self) -> int | None:
        return None if self.until is None else int(self.until.timestamp() * 1000)


def _fail(message: str) -> str:
    raise ValueError(message)


Model = TypeVar("Model", bound=_Body)


def json_object(body: bytes) -> dict[str, object]:
    try:
        decoded = json.loads(body.decode("utf-8", "replace"))
    except RecursionError:  # the json module recurses per level; a 4 kB body can go 2,000 deep
        raise Refused(400, "body is nested too deeply") from None
    except ValueError as exc:
        raise Refused(400, f"body is not valid JSON: {str(exc)[:80]}") from None
    if not isinstance(decoded, dict):
        raise Refused(400, "send a JSON object")
    return decoded


def form_or_json(body: bytes, content_type: str) -> dict[str, object]:
    """A JSON object, or an HTML form's `a=1&b=2` (its first value of each field)."""
    text = body.decode("utf-8", "replace").strip()
    if content_type.startswith("application/json") or text.startswith("{"):
        return json_object(body)
    try:
        fields = parse_qs(text, max_num_fields=_MAX_FORM_FIELDS)
    except ValueError:
        raise Refused(400, f"the form has more than {_MAX_FORM_FIELDS} fields") from None
    return {key: values[0] for key, values in fields.items()}


def parse(model: type[Model], data: dict[str, object]) -> Model:
    """`data` as `model`, or a 400 naming each field that is wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields: dict[str, str] = {}
        for error in exc.errors(include_url=False, include_input=False):
            field = ".".join(str(part) for part in error["loc"])
            fields.setdefault(field[:64] or "body", _sentence(model, field, error))
        raise Refused(400, "; ".join(fields.values()), fields=fields) from None


def _sentence(model: type[_Body], field: str, error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "value_error":
        return str(error.get("ctx", {}).get("error", error["msg"]))
    if kind == "missing":
        return model.MISSING.get(field, f'"{field}" is missing')
    if kind == "string_type":
        return f'"{field}" must be a string'
    if kind in ("float_type", "int_type", "float_parsing"):
        return f'"{field}" must be a number'
    if kind == "extra_forbidden":
        known = ", ".join(f'"{name}"' for name in model.model_fields)
        return f'"{field[:40]}" is not a field of this request (known: {known})'
    return f'"{field}": {error["msg"]}'
