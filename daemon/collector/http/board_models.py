"""Request bodies of the board's changes: sign-out, sign-in, out of service.

Who makes the change is never in the body: it is the signed-in user (the gate's
`request.user`). The officer who takes a device may be someone else (a sergeant signs
a Segway out to an officer), so `officer` is a field.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import field_validator, model_validator

from fleet.daemon import wire
from fleet.daemon.collector.http.models import _Body, _fail, one_line


def _within(field: str, value: str, limit: int) -> str:
    """One line of text (control characters as spaces); longer than `limit` is refused rather
    than cut: a name on the sign-out sheet is a record, and a cut one names someone else."""
    text = one_line(value, limit + 1)
    if len(text) > limit:
        raise ValueError(f'"{field}" is longer than {limit} characters')
    return text


MAX_SIGNOUT_HOURS = 7 * 24  # a hard ceiling; board.max_signout_hours is the site's own


def _iso_ms(value: object, field: str) -> int:
    if not isinstance(value, str):
        raise ValueError(f'"{field}" must be an ISO-8601 time with a zone, as a string')
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f'"{field}" is not an ISO-8601 time') from None
    if when.tzinfo is None:
        raise ValueError(f'"{field}" needs a time zone (e.g. 2026-12-01T16:00:00-05:00)')
    try:
        return int(when.timestamp() * 1000)
    except (OverflowError, ValueError, OSError):
        raise ValueError(f'"{field}" is out of range') from None


class SignOutRequest(_Body):
    """POST /api/v1/assignments: a device to an officer until an expected return."""

    MISSING: ClassVar[dict[str, str]] = {
        "device": 'say which device: "device"',
        "officer": 'say who takes it: "officer"',
    }

    device: str
    officer: str
    due_back: str | None = None
    hours: float | None = None
    note: str = ""

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        return wire.check_id("device", value)

    @field_validator("officer")
    @classmethod
    def _officer(cls, value: str) -> str:
        return _within("officer", value, 64) or _fail(cls.MISSING["officer"])

    @field_validator("note")
    @classmethod
    def _note(cls, value: str) -> str:
        return _within("note", value, 200)

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= MAX_SIGNOUT_HOURS:  # also NaN and infinity
            raise ValueError(f'"hours" must be more than 0 and at most {MAX_SIGNOUT_HOURS}')
        return value

    @field_validator("due_back")
    @classmethod
    def _due(cls, value: str | None) -> str | None:
        if value is not None:
            _iso_ms(value, "due_back")
        return value

    @model_validator(mode="after")
    def _whole(self) -> SignOutRequest:
        if self.due_back is not None and self.hours is not None:
            raise ValueError('give "due_back" or "hours", not both')
        return self

    def due_ms(self, now_ms: int, default_hours: float) -> int:
        if self.due_back is not None:
            return _iso_ms(self.due_back, "due_back")
        return now_ms + int((self.hours or default_hours) * 3_600_000)


class ReturnRequest(_Body):
    """POST /api/v1/assignments/{device}/return: signed back in."""

    note: str = ""

    @field_validator("note")
    @classmethod
    def _note(cls, value: str) -> str:
        return _within("note", value, 200)


class OutOfServiceRequest(_Body):
    """POST /api/v1/devices/{device}/out-of-service: why it must not be taken."""

    MISSING: ClassVar[dict[str, str]] = {"reason": 'say why: "reason" (e.g. "flat tyre")'}

    reason: str

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        return _within("reason", value, 200) or _fail(cls.MISSING["reason"])
