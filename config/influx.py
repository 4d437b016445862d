"""Settings of the InfluxDB the collector writes to."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from fleet.config.base import Loc, Secret, StrictModel, raise_problems

_DURATION_UNITS_S = {
    "ns": 1e-9,
    "u": 1e-6,
    "µ": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
# Longest units first so "ms" is not read as "m" + "s".
_DURATION_PART = r"([0-9]+)(ns|ms|u|µ|s|m|h|d|w)"
_DURATION_RE = re.compile(rf"^(?:{_DURATION_PART})+$")
_DURATION_PART_RE = re.compile(_DURATION_PART)
_MIN_RETENTION_S = 3600.0  # InfluxDB refuses shorter retention policies.

# Safe inside a double-quoted InfluxQL identifier and a URL query parameter.
_NAME_RE = re.compile(r'^[^"\\\x00-\x1f\x7f]{1,255}$')


def _check_name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise PydanticCustomError(
            "fleet_influx_name",
            "must be 1-255 characters without '\"', '\\' or control characters",
        )
    return value


InfluxName = Annotated[str, AfterValidator(_check_name)]


def duration_seconds(text: str) -> float | None:
    """Seconds in an InfluxQL duration such as `30d`, `1h30m` or `INF` (None)."""
    if text.upper() == "INF":
        return None
    if not _DURATION_RE.fullmatch(text):
        raise ValueError("not an InfluxQL duration")
    return sum(
        int(count) * _DURATION_UNITS_S[unit] for count, unit in _DURATION_PART_RE.findall(text)
    )


class InfluxSettings(StrictModel):
    """Where and how readings are written."""

    renamed_keys: ClassVar[Mapping[str, str]] = {
        "backoff_initial_s": "write_backoff_initial_s",
        "backoff_max_s": "write_backoff_max_s",
    }

    url: str = Field(
        default="http://localhost:8086",
        description="Base http(s) URL of InfluxDB, without credentials or query; a path prefix "
        "(reverse proxy) is allowed. A trailing '/' is removed.",
    )
    api: Literal["v1", "v2"] = Field(
        default="v1",
        description="'v1': POST /write (InfluxDB 1.x, 2.x through DBRP, 3.x Core); "
        "'v2': influxdb-client's write API (InfluxDB 2.x / Cloud, needs org and token).",
    )
    database: InfluxName = Field(
        default="fleet",
        description="v1: the database. v2: the bucket name; on 2.x a DBRP mapping (virtual for "
        "every bucket) lets InfluxQL dashboards query it as this database.",
    )
    retention_policy: InfluxName = Field(
        default="raw",
        description="v1 retention policy the collector writes to; created with `retention` "
        "if missing.",
    )
    retention: str = Field(
        default="30d",
        description="How long readings are kept: an InfluxQL duration (30d, 12w, 720h; at least "
        "1h) or INF. Readings older than this are rejected.",
    )
    downsample_policy: InfluxName | Literal[""] = Field(
        default="rp_1h",
        description="v1 retention policy of the hourly roll-up that long-range dashboards read, "
        "fed by continuous queries the collector creates if missing; '' disables both.",
    )
    downsample_retention: str = Field(
        default="730d",
        description="How long the hourly roll-up is kept: an InfluxQL duration (at least 1h) "
        "or INF.",
    )
    downsample_every: str = Field(
        default="10m",
        description="How often the continuous queries recompute the roll-up (RESAMPLE EVERY): "
        "an InfluxQL duration; the current hour is visible in the roll-up this much later.",
    )
    downsample_for: str = Field(
        default="2h",
        description="How far back each continuous query run recomputes (RESAMPLE FOR, at least "
        "1h); the collector recomputes the hours of readings written later than this itself "
        "(backfill_hours_per_minute).",
    )
    backfill_hours_per_minute: int = Field(
        default=60,
        ge=0,
        le=100_000,
        description="v1 with a roll-up: most hours of the roll-up recomputed per minute for "
        "readings written too late for the continuous queries (an outage's backlog), once the "
        "spool holds less than one batch; 0 recomputes nothing (late hours are still counted).",
    )
    backfill_settle_s: float = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description="An hour is recomputed once no late reading has been written for it for this "
        "long (after a start: this long after it), so a backlog is recomputed once, not per batch.",
    )
    backfill_timeout_s: float = Field(
        default=300.0,
        gt=0,
        le=3600,
        description="HTTP timeout of one roll-up recompute statement (one hour of one "
        "measurement), in seconds: it reads the whole fleet's hour (15-55 s at 1,000 devices "
        "x 1 Hz on 2 cores); InfluxDB abandons a statement whose client gave up.",
    )
    org: str | None = Field(
        default=None, min_length=1, description="v2 only: the organisation (required for v2)."
    )
    token: Secret | None = Field(
        default=None,
        description="API token: v2, or 2.x/3.x through v1 (`Authorization: Token`). Prefer "
        "token_file or the systemd credential 'influx.token'.",
    )
    token_file: Path | None = Field(
        default=None,
        description="File whose content (trailing newline stripped) is the API token.",
    )
    username: str | None = Field(
        default=None, min_length=1, description="InfluxDB 1.x user (basic auth); unset: no auth."
    )
    password: Secret | None = Field(
        default=None,
        description="InfluxDB 1.x password. Prefer password_file or the systemd credential "
        "'influx.password'.",
    )
    password_file: Path | None = Field(
        default=None,
        description="File whose content (trailing newline stripped) is the 1.x password.",
    )
    create_database: bool = Field(
        default=True,
        description="At start, create the database and retention policy if missing (v1; needs "
        "admin rights on 1.x with auth).",
    )
    timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="HTTP timeout of one write (and of the start's set-up queries), in seconds; "
        "the roll-up's recompute has its own (backfill_timeout_s).",
    )
    batch_size: int = Field(
        default=5000, ge=1, le=100_000, description="Most points in one write request."
    )
    flush_interval_s: float = Field(
        default=1.0,
        ge=0.05,
        le=60,
        description="Longest time a spooled reading waits before it is written, in seconds.",
    )
    write_backoff_initial_s: float = Field(
        default=0.5,
        gt=0,
        le=3600,
        description="First retry delay after a failed write, in seconds; doubles per failure.",
    )
    write_backoff_max_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Longest retry delay after failed writes, in seconds.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018  # raises ValueError for a bad port
        except ValueError:
            raise PydanticCustomError("fleet_url", "not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PydanticCustomError("fleet_url", "must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            # Such a URL would print the password wherever the URL is shown.
            raise PydanticCustomError(
                "fleet_url",
                "must not contain credentials; use token/token_file or username/password_file",
            )
        if parts.query or parts.fragment:
            raise PydanticCustomError("fleet_url", "must not contain a query or fragment")
        return value.rstrip("/")

    @field_validator("retention")
    @classmethod
    def _check_retention(cls, value: str) -> str:
        try:
            seconds = duration_seconds(value)
        except ValueError:
            raise PydanticCustomError(
                "fleet_duration",
                "must be an InfluxQL duration such as 30d, 12w or 720h, or INF",
            ) from None
        if seconds is not None and seconds < _MIN_RETENTION_S:
            raise PydanticCustomError(
                "fleet_duration", "must be at least 1h (InfluxDB's minimum), or INF"
            )
        return "INF" if seconds is None else value

    @field_validator("downsample_retention", "downsample_every", "downsample_for")
    @classmethod
    def _check_downsample_duration(cls, value: str, info: ValidationInfo) -> str:
        try:
            seconds = duration_seconds(value)
        except ValueError:
            seconds = -1.0
        if seconds is None:
            if info.field_name == "downsample_retention":
                return "INF"
            seconds = -1.0
        if seconds <= 0:
            raise PydanticCustomError(
                "fleet_duration", "must be an InfluxQL duration such as 10m, 2h or 730d"
            )
        if info.field_name != "downsample_every" and seconds < _MIN_RETENTION_S:
            raise PydanticCustomError("fleet_duration", "must be at least 1h")
        return value

    @model_validator(mode="after")
    def _check_auth(self) -> InfluxSettings:
        problems: list[tuple[Loc, str]] = []
        if self.api == "v2":
            if self.org is None:
                problems.append((("org",), "required when influx.api is 'v2'"))
            if self.token is None:
                problems.append((("token",), "required when influx.api is 'v2'"))
        if self.password is not None and self.username is None:
            problems.append((("password",), "set, but influx.username is not"))
        if self.token is not None and self.username is not None:
            problems.append(
                (("token",), "set together with influx.username; use a token or a user, not both")
            )
        if self.downsample_policy and self.downsample_policy == self.retention_policy:
            problems.append((("downsample_policy",), "must differ from retention_policy"))
        raise_problems(problems)
        return self

    @property
    def retention_seconds(self) -> float | None:
        """The retention in seconds; None for INF (keep forever)."""
        return duration_seconds(self.retention)
