"""Settings of `fleet agent`: its identity, its outbox, supervision, and its drivers.

Each driver's config model lives beside the driver in drivers/; the `drivers`
list picks the model by the entry's `kind`. The union below must list the same
models as the agent's registry (daemon/agent/registry.py; a test checks it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, get_args

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from fleet.config.base import IdStr, Loc, StrictModel, problems_error
from fleet.config.errors import renamed_key, unknown_key_message
from fleet.drivers.ble.config import BleBatteryConfig, BTHomeConfig
from fleet.drivers.gps.config import NmeaGpsConfig
from fleet.drivers.ninebot.config import NinebotBleConfig, NinebotSerialConfig
from fleet.drivers.segway_pt.config import SegwayPtBatteryConfig

DriverSettings = Annotated[
    NinebotSerialConfig
    | NinebotBleConfig
    | BleBatteryConfig
    | BTHomeConfig
    | NmeaGpsConfig
    | SegwayPtBatteryConfig,
    Field(discriminator="kind"),
]

_KIB = 1024
_DRIVER_MODELS: dict[str, type[BaseModel]] = {
    model.model_fields["kind"].default: model for model in get_args(get_args(DriverSettings)[0])
}


def driver_secret_fields(kind: Any) -> tuple[str, ...]:
    """The secret fields of the driver `kind`: those with a `<field>_file` sibling (bind_key)."""
    model = _DRIVER_MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        return ()
    return tuple(name for name in model.model_fields if f"{name}_file" in model.model_fields)


def _driver_problems(exc: ValidationError) -> tuple[list[tuple[Loc, str]], list[tuple[Loc, str]]]:
    """The errors of `drivers` located as `drivers[i].key`, without pydantic's union tag,
    and the old keys used, with their new names."""
    problems: list[tuple[Loc, str]] = []
    renamed: list[tuple[Loc, str]] = []
    kinds = ", ".join(_DRIVER_MODELS)
    for error in exc.errors(include_url=False, include_input=False):
        loc: Loc = tuple(error["loc"])
        kind = error["type"]
        model = None
        if len(loc) >= 2 and loc[1] in _DRIVER_MODELS:
            model = _DRIVER_MODELS[str(loc[1])]
            loc = loc[:1] + loc[2:]
        if kind == "union_tag_invalid":
            problems.append(((*loc, "kind"), f"is not a driver kind; expected one of: {kinds}"))
        elif kind == "union_tag_not_found":
            problems.append(((*loc, "kind"), f"required key is missing (one of: {kinds})"))
        elif kind == "missing":
            problems.append((loc, "required key is missing"))
        elif kind == "extra_forbidden":
            new = renamed_key(model, loc[-1])
            if new:
                renamed.append((loc, new))
            else:
                problems.append((loc, unknown_key_message(model, loc)))
        else:
            problems.append((loc, str(error["msg"])))
    return problems, renamed


class AgentSettings(StrictModel):
    """The agent that reads devices through drivers and publishes the v1 contract."""

    id: IdStr = Field(
        default="agent-1",
        description="Id of this agent: the {agent} level of its availability topic "
        "{prefix}/v1/{site}/agent/{id}/availability (its last will).",
    )
    site: IdStr | None = Field(
        default=None,
        description="Site of the agent's availability topic; unset means site.id. Devices "
        "publish under their registry site (else site.id).",
    )
    client_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="MQTT client id of the agent; unset means fleet-agent-<id>. Must differ "
        "from the collector's and from every other agent's.",
    )
    outbox_path: Path = Field(
        default=Path("/var/lib/fleet/agent-outbox.sqlite"),
        description="SQLite file holding readings not yet acknowledged by the broker and each "
        "device's last seq number; its directory must be writable.",
    )
    outbox_max_bytes: int = Field(
        default=268_435_456,
        ge=64 * _KIB,
        description="Largest total payload kept in the outbox, in bytes (at least 64 KiB); past "
        "it the oldest readings are dropped and counted (the collector sees the seq gap).",
    )
    outbox_fsync: bool = Field(
        default=True,
        description="fsync each outbox commit so a power cut loses nothing; turn off only on "
        "throwaway test machines.",
    )
    outbox_hold_max_readings: int = Field(
        default=10_000,
        ge=1,
        description="Readings kept in memory while the outbox cannot be written (disk full, "
        "read-only, I/O error) and retried; past it the oldest are dropped and counted. "
        "Meanwhile the agent reports itself offline.",
    )
    ble_watchdog_s: float = Field(
        default=120.0,
        gt=0,
        le=86400,
        description="With BLE drivers configured: no advertisement at all for this many "
        "seconds restarts the BLE drivers (at most once per period) and logs it.",
    )
    restart_budget: int = Field(
        default=5,
        ge=0,
        description="A driver that fails more than this many times within restart_window_s is "
        "given up (its devices stay offline; the agent keeps running).",
    )
    restart_window_s: float = Field(
        default=600.0,
        gt=0,
        description="The window, in seconds, in which restart_budget failures are counted.",
    )
    restart_backoff_initial_s: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        description="Pause before restarting a failed driver, in seconds; doubles per failure "
        "within the window.",
    )
    restart_backoff_max_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Longest pause before restarting a failed driver, in seconds.",
    )
    drain_timeout_s: float = Field(
        default=5.0,
        ge=0,
        le=600,
        description="On a clean stop, how long to keep sending the outbox to the broker before "
        "leaving the rest on disk for the next start, in seconds.",
    )
    drivers: list[DriverSettings] = Field(
        default_factory=list,
        description="The drivers to run, one table per device link; `kind` picks the driver "
        "(see config/examples/agent.toml for every kind and its keys).",
    )

    @field_validator("drivers", mode="wrap")
    @classmethod
    def _locate_driver_errors(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            raise problems_error(*_driver_problems(exc)) from None

    def site_or(self, default: str) -> str:
        """The agent's site: its own, else the installation's `default`."""
        return self.site or default

    @property
    def mqtt_client_id(self) -> str:
        """The MQTT client id: `client_id`, else fleet-agent-<id>."""
        return self.client_id or f"fleet-agent-{self.id}"
