"""Settings of the alert engine: thresholds, hold-downs, repeats, shifts, geofences.

Thresholds and hold-downs (`limits`) have defaults that a kind (`kinds.segway`) or a
single device (`devices.sw-03`) can override key by key; `AlertSettings.limits_for`
merges them, device over kind over defaults. Every merged set is checked at load
time so that a bad override (a "resolve" level on the wrong side of its "fire"
level, which would make an alert flap or never resolve) is a config error, not a
silent surprise at 3 a.m.
"""

from __future__ import annotations

import re
from datetime import time
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from fleet.config.base import IdStr, KindStr, Loc, StrictModel, raise_problems
from fleet.config.notify import NotifySettings

_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
_DAY_S = 86_400.0


class Rule(StrEnum):
    BATTERY_LOW = "battery_low"
    BATTERY_CRITICAL = "battery_critical"
    OFFLINE = "offline"
    NOT_CHARGING = "not_charging"
    OVERTEMP = "overtemp"
    FAULT = "fault"
    AGENT_DOWN = "agent_down"
    SITE_LINK_DOWN = "site_link_down"


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


DEFAULT_SEVERITIES: dict[Rule, Severity] = {
    Rule.BATTERY_LOW: Severity.WARNING,
    Rule.BATTERY_CRITICAL: Severity.CRITICAL,
    Rule.OFFLINE: Severity.WARNING,
    Rule.NOT_CHARGING: Severity.WARNING,
    Rule.OVERTEMP: Severity.CRITICAL,
    Rule.FAULT: Severity.WARNING,
    Rule.AGENT_DOWN: Severity.CRITICAL,
    Rule.SITE_LINK_DOWN: Severity.CRITICAL,
}


class Limits(StrictModel):
    """Thresholds and hold-downs of the device rules (the defaults of every device)."""

    battery_low_pct: float = Field(
        default=25, ge=0, le=100, description="battery_low fires at or below this charge (%)."
    )
    battery_low_clear_pct: float = Field(
        default=30,
        ge=0,
        le=100,
        description="battery_low resolves at or above this charge (%); above battery_low_pct.",
    )
    battery_low_for_s: float = Field(
        default=120,
        ge=0,
        le=_DAY_S,
        description="battery_low must hold this long (s) before it fires.",
    )
    battery_critical_pct: float = Field(
        default=10, ge=0, le=100, description="battery_critical fires at or below this charge (%)."
    )
    battery_critical_clear_pct: float = Field(
        default=15,
        ge=0,
        le=100,
        description="battery_critical resolves at or above this charge (%); above "
        "battery_critical_pct.",
    )
    battery_critical_for_s: float = Field(
        default=0,
        ge=0,
        le=_DAY_S,
        description="battery_critical must hold this long (s) before it fires.",
    )
    offline_after_s: float = Field(
        default=600,
        gt=0,
        le=7 * _DAY_S,
        description="offline fires when no telemetry arrived for longer than this (s): the "
        "kind's expected silence.",
    )
    not_charging_below_pct: float = Field(
        default=90,
        ge=0,
        le=100,
        description="not_charging considers a docked device below this charge (%).",
    )
    not_charging_for_s: float = Field(
        default=900,
        ge=0,
        le=_DAY_S,
        description="not_charging fires after the device has been docked, below "
        "not_charging_below_pct and not charging for this long (s).",
    )
    overtemp_c: float = Field(
        default=50, ge=-60, le=150, description="overtemp fires at or above this battery °C."
    )
    overtemp_clear_c: float = Field(
        default=45,
        ge=-60,
        le=150,
        description="overtemp resolves at or below this battery °C; below overtemp_c.",
    )
    overtemp_for_s: float = Field(
        default=0, ge=0, le=_DAY_S, description="overtemp must hold this long (s) before it fires."
    )
    fault_for_s: float = Field(
        default=0, ge=0, le=_DAY_S, description="fault must hold this long (s) before it fires."
    )
    disabled: frozenset[Rule] = Field(
        default=frozenset(),
        description="Rules not evaluated (e.g. not_charging for a kind that never docks).",
    )

    def problems(self) -> list[tuple[Loc, str]]:
        """Pairs of levels that would make an alert flap or never resolve."""
        found: list[tuple[Loc, str]] = []
        if self.battery_low_clear_pct <= self.battery_low_pct:
            found.append((("battery_low_clear_pct",), "must be above battery_low_pct"))
        if self.battery_critical_clear_pct <= self.battery_critical_pct:
            found.append((("battery_critical_clear_pct",), "must be above battery_critical_pct"))
        if self.overtemp_clear_c >= self.overtemp_c:
            found.append((("overtemp_clear_c",), "must be below overtemp_c"))
        return found

    @model_validator(mode="after")
    def _check(self) -> Limits:
        raise_problems(self.problems())
        return self


class LimitsOverride(StrictModel):
    """Some of `Limits`, for one kind or one device; unset keys keep the broader value."""

    battery_low_pct: float | None = Field(default=None, ge=0, le=100, description="See limits.")
    battery_low_clear_pct: float | None = Field(
        default=None, ge=0, le=100, description="See limits."
    )
    battery_low_for_s: float | None = Field(
        default=None, ge=0, le=_DAY_S, description="See limits."
    )
    battery_critical_pct: float | None = Field(
        default=None, ge=0, le=100, description="See limits."
    )
    battery_critical_clear_pct: float | None = Field(
        default=None, ge=0, le=100, description="See limits."
    )
    battery_critical_for_s: float | None = Field(
        default=None, ge=0, le=_DAY_S, description="See limits."
    )
    offline_after_s: float | None = Field(
        default=None, gt=0, le=7 * _DAY_S, description="See limits."
    )
    not_charging_below_pct: float | None = Field(
        default=None, ge=0, le=100, description="See limits."
    )
    not_charging_for_s: float | None = Field(
        default=None, ge=0, le=_DAY_S, description="See limits."
    )
    overtemp_c: float | None = Field(default=None, ge=-60, le=150, description="See limits.")
    overtemp_clear_c: float | None = Field(default=None, ge=-60, le=150, description="See limits.")
    overtemp_for_s: float | None = Field(default=None, ge=0, le=_DAY_S, description="See limits.")
    fault_for_s: float | None = Field(default=None, ge=0, le=_DAY_S, description="See limits.")
    disabled: frozenset[Rule] | None = Field(default=None, description="See limits.")


class Geofence(StrictModel):
    """A circle in which a device counts as docked (a sub-station's charging area)."""

    site: IdStr = Field(description="Site whose devices this geofence docks.")
    name: str = Field(
        default="sub-station", min_length=1, max_length=200, description="Name used in messages."
    )
    lat: float = Field(ge=-90, le=90, description="Centre latitude (WGS84 degrees).")
    lon: float = Field(ge=-180, le=180, description="Centre longitude (WGS84 degrees).")
    radius_m: float = Field(gt=0, le=100_000, description="Radius in metres.")


class AlertSettings(StrictModel):
    """The alert engine inside the collector."""

    enabled: bool = Field(default=True, description="Evaluate alerts at all.")
    state_path: Path = Field(
        default=Path("/var/lib/fleet/alerts.sqlite"),
        description="SQLite file that keeps alert state and silences across restarts.",
    )
    timezone: str = Field(
        default="America/New_York",
        description="IANA time zone of the shifts and of the times in alert messages.",
    )
    shifts: list[str] = Field(
        default_factory=lambda: ["07:00", "15:00", "23:00"],
        description="Local start times (HH:MM) of the shifts; an unacknowledged critical "
        "alert escalates before the next one starts. Empty: no escalation.",
    )
    escalate_before_shift_min: int = Field(
        default=30,
        ge=0,
        le=720,
        description="Escalate this many minutes before the next shift starts.",
    )
    repeat_interval_s: float = Field(
        default=14_400,
        ge=60,
        le=7 * _DAY_S,
        description="Notify again this often while an alert fires unacknowledged.",
    )
    flap_window_s: float | None = Field(
        default=None,
        ge=0,
        le=7 * _DAY_S,
        description="After a fire notification, a new fire of the same device and rule within "
        "this many seconds is published but not notified (flapping); unset means "
        "repeat_interval_s.",
    )
    max_reading_age_s: float = Field(
        default=300,
        gt=0,
        le=7 * _DAY_S,
        description="Readings older than this (buffered, replayed late) update what is known "
        "of a device but never fire or resolve a battery, temperature, fault or docking alert. "
        "Age is judged on the device's own clock (its learned offset to the collector's), so a "
        "skewed clock on either side does not make live readings old.",
    )
    clock_settle_s: float = Field(
        default=30,
        gt=0,
        le=3600,
        description="How long (s) a device's readings must keep arriving in step with their "
        "timestamps before the engine adopts the offset between its clock and the collector's "
        "(after a clock was set, or for a new device). A flushed backlog never settles.",
    )
    agent_down_for_s: float = Field(
        default=60,
        ge=0,
        le=_DAY_S,
        description="An agent (or a sub-station's bridge) must stay offline this long (s) "
        "before agent_down (site_link_down) fires; its devices' offline alerts are held from "
        "the first second.",
    )
    severities: dict[Rule, Severity] = Field(
        default_factory=lambda: dict(DEFAULT_SEVERITIES),
        description="Severity (warning or critical) of each rule; rules not listed keep "
        "their default.",
    )
    limits: Limits = Field(
        default_factory=Limits, description="Thresholds and hold-downs of every device."
    )
    kinds: dict[KindStr, LimitsOverride] = Field(
        default_factory=dict, description="Overrides of `limits` per device kind."
    )
    devices: dict[IdStr, LimitsOverride] = Field(
        default_factory=dict, description="Overrides of `limits` per device id (over its kind's)."
    )
    geofences: list[Geofence] = Field(
        default_factory=list,
        description="Sub-station circles: a device inside one of its site's circles is docked.",
    )
    notify: NotifySettings = Field(
        default_factory=NotifySettings, description="Notification routes by severity."
    )

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError(
                "fleet_timezone", "is not an IANA time zone like America/New_York"
            ) from None
        return value

    @field_validator("shifts")
    @classmethod
    def _check_shifts(cls, shifts: list[str]) -> list[str]:
        problems: list[tuple[Loc, str]] = []
        for index, shift in enumerate(shifts):
            if not _HHMM.fullmatch(shift):
                problems.append(((index,), "must be a 24-hour time HH:MM, e.g. 07:00"))
            elif shift in shifts[:index]:
                problems.append(((index,), "duplicate shift time"))
        raise_problems(problems)
        return shifts

    @model_validator(mode="after")
    def _check_overrides(self) -> AlertSettings:
        problems: list[tuple[Loc, str]] = []
        for section, overrides in (("kinds", self.kinds), ("devices", self.devices)):
            for key, override in overrides.items():
                # A device's kind is not known here; limits_for checks the full merge.
                merged = self._merge(override, None)
                problems.extend(((section, key, *loc), msg) for loc, msg in merged.problems())
        raise_problems(problems)
        return self

    def _merge(self, first: LimitsOverride | None, second: LimitsOverride | None) -> Limits:
        data: dict[str, Any] = self.limits.model_dump()
        for override in (first, second):
            if override is not None:
                data.update(override.model_dump(exclude_none=True))
        # model_construct: callers only need the checks of `problems()`, not a raise.
        return Limits.model_construct(**data)

    @cached_property
    def _kind_limits(self) -> dict[str, Limits]:
        # Not a field (pydantic leaves cached_property alone): neither dumped nor compared.
        return {}

    def limits_for(self, kind: str, device: str) -> Limits:
        """The limits of one device: its own overrides over its kind's over the defaults."""
        override = self.devices.get(device)
        if override is None:
            # Most devices have no override: they share their kind's (frozen) Limits, where a
            # copy each cost ~1.3 kB a device for good in the alert engine (issue 14, memory).
            shared = self._kind_limits.get(kind)
            if shared is None:
                shared = self._kind_limits[kind] = self._merge(self.kinds.get(kind), None)
            return shared
        merged = self._merge(self.kinds.get(kind), override)
        if merged.problems():
            # A kind and a device override that clash only together: keep the device's
            # kind limits rather than run a rule that can never resolve.
            return self._merge(self.kinds.get(kind), None)
        return merged

    def severity(self, rule: Rule) -> Severity:
        return self.severities.get(rule, DEFAULT_SEVERITIES[rule])

    @property
    def shift_times(self) -> list[time]:
        return sorted(time.fromisoformat(shift) for shift in self.shifts)

    @property
    def flap_window(self) -> float:
        return self.repeat_interval_s if self.flap_window_s is None else self.flap_window_s
