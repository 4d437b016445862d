"""The officers' readiness board: the coming shift, and what each kind of device needs for it.

A device is judged against the coming shift (`shift_hours`): it needs enough charge for the
shift at its own learned drain (or its kind's default drain) plus a reserve, and never less
than the kind's `min_ready_pct`. The sign-out keys (`assignments_path`, `max_signout_hours`,
`overdue_alert`) belong to the sign-out sheet (daemon/board/assignments.py).

Built-in kind defaults, and where they come from:
- segway: a police Segway PT (i2 SE / x2 SE "Patroller") is rated for up to 24 mi (~38 km) on
  a full lithium pack and takes about 8 h to charge from empty (Segway's PT user materials),
  so 12.5 %/h. A foot-and-Segway patrol rides perhaps 15-20 km of an 8-hour shift, with long
  stands: ~6.25 %/h averaged, which with a 10 % reserve makes the 60 % an 8-hour shift needs.
  It reports every few seconds while on: 10 min of silence (the alert engine's default
  `offline_after_s`) is offline.
- handheld: a duty radio or phone on a high-capacity pack is rated ~12-14 h on the
  5/5/90 duty cycle (transmit/receive/standby), so ~7 %/h; a desk charger fills it in about
  3 h (~35 %/h). It reports less often (30 min of silence, as the example's
  `alerts.kinds.handheld.offline_after_s`).
- any other kind: a generic cautious default (runtime measure, 10 %/h, half charge minimum).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from fleet.config.base import KindStr, StrictModel

Measure = Literal["range", "runtime"]


class KindReadiness(StrictModel):
    """What one kind of device needs to count as ready for the coming shift."""

    measure: Measure = Field(
        default="runtime",
        description='How the board states what is left: "range" (km, vehicles) or "runtime" '
        "(hours, handhelds).",
    )
    min_ready_pct: float = Field(
        default=50,
        ge=0,
        le=100,
        description="Never ready below this charge (%), whatever the learned drain says.",
    )
    reserve_pct: float = Field(
        default=10,
        ge=0,
        le=100,
        description="Margin (%) on top of what the shift needs at the expected drain.",
    )
    default_drain_pct_per_h: float = Field(
        default=10,
        gt=0,
        le=100,
        description="Drain (%/h) in service assumed until the device's own is learned.",
    )
    default_charge_pct_per_h: float = Field(
        default=20,
        gt=0,
        le=1000,
        description="Charge rate (%/h) on a charger assumed until the device's own is learned.",
    )
    full_range_km: float | None = Field(
        default=None,
        gt=0,
        le=10_000,
        description='Range (km) on a full charge, for the "range" measure when the device does '
        "not report its own range.",
    )
    expected_silence_s: float = Field(
        default=900,
        gt=0,
        le=7 * 86_400,
        description="A device silent this long (s, on the reading's own time) is offline; its "
        "last known values stay on the board.",
    )
    min_history_h: float = Field(
        default=2,
        gt=0,
        le=168,
        description="Least in-service history (h) before the device's own drain is trusted "
        "over the default.",
    )
    min_charge_history_h: float = Field(
        default=0.5,
        gt=0,
        le=48,
        description="Least charging history (h) before the device's own charge rate is "
        "trusted over the default.",
    )


# Keys given for a built-in kind in the file override these one by one.
BUILTIN_KINDS: dict[str, dict[str, Any]] = {
    "segway": {
        "measure": "range",
        "min_ready_pct": 40,
        "reserve_pct": 10,
        "default_drain_pct_per_h": 6.25,
        "default_charge_pct_per_h": 12.5,
        "full_range_km": 38,
        "expected_silence_s": 600,
        "min_history_h": 2,
        "min_charge_history_h": 0.5,
    },
    "handheld": {
        "measure": "runtime",
        "min_ready_pct": 30,
        "reserve_pct": 10,
        "default_drain_pct_per_h": 7,
        "default_charge_pct_per_h": 35,
        "full_range_km": None,
        "expected_silence_s": 1800,
        "min_history_h": 2,
        "min_charge_history_h": 0.5,
    },
}
GENERIC_KIND = KindReadiness()


class BoardSettings(StrictModel):
    """The officers' readiness board and its sign-out sheet."""

    shift_hours: float = Field(
        default=8,
        gt=0,
        le=24,
        description="Length (h) of the coming shift each device is judged against.",
    )
    kinds: dict[KindStr, KindReadiness] = Field(
        default_factory=lambda: {k: KindReadiness(**v) for k, v in BUILTIN_KINDS.items()},
        description="Readiness thresholds per device kind; segway and handheld have built-in "
        "defaults (keys given here override them one by one), other kinds a generic default.",
    )
    history_hours: float = Field(
        default=24,
        gt=0,
        le=168,
        description="Hours of charge history kept per device (the device page's chart and "
        "the learned rates).",
    )
    history_step_s: float = Field(
        default=300,
        ge=10,
        le=3600,
        description="Spacing (s) of the kept charge history: one sample per step, plus every "
        "start and end of charging.",
    )
    assignments_path: Path | None = Field(
        default=None,
        description="SQLite file of the sign-out sheet and out-of-service marks; unset means "
        "beside alerts.state_path: <its name>.assignments.sqlite.",
    )
    max_signout_hours: float = Field(
        default=24,
        gt=0,
        le=168,
        description="Longest sign-out (h) from now to the expected return.",
    )
    overdue_alert: bool = Field(
        default=True,
        description="Raise a signout_overdue warning when a device is not back by its "
        "expected return.",
    )

    @model_validator(mode="before")
    @classmethod
    def _over_builtins(cls, data: Any) -> Any:
        # A table for a built-in kind overrides its defaults key by key, and naming one kind
        # does not drop the other built-in ones.
        if not isinstance(data, dict) or not isinstance(data.get("kinds"), dict):
            return data
        merged: dict[str, Any] = {k: dict(v) for k, v in BUILTIN_KINDS.items()}
        for kind, given in data["kinds"].items():
            if isinstance(given, dict) and kind in merged:
                merged[kind].update(given)
            else:
                merged[kind] = given
        return {**data, "kinds": merged}

    def kind(self, kind: str) -> KindReadiness:
        """The thresholds of `kind`: its table, else the generic default."""
        return self.kinds.get(kind, GENERIC_KIND)

    def assignments_file(self, alert_state_path: Path) -> Path:
        """`assignments_path`, or `<alert state stem>.assignments.sqlite` beside it."""
        if self.assignments_path is not None:
            return self.assignments_path
        return alert_state_path.with_name(f"{alert_state_path.stem}.assignments.sqlite")
